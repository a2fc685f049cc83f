//! SQL fixtures shared by several engine tests. Fixtures one test needs stay
//! in that test.

/// Every type, awkward identifiers, partitions, inheritance, RLS, sequences,
/// views, materialized views (one indexed), triggers that refuse inserts (one
/// on a partitioned parent, with a partitioned index), large objects and a
/// commented event trigger.
pub const MIXED_FIXTURE: &str = r#"
CREATE ROLE app_owner NOLOGIN;
CREATE ROLE "Reader ""Role"" ü" NOLOGIN;
CREATE EXTENSION IF NOT EXISTS plpgsql;
CREATE SCHEMA app AUTHORIZATION app_owner;
CREATE SCHEMA "Odd.Schema ü";
CREATE TYPE app.mood AS ENUM ('sad', 'ok', 'happy');
CREATE TYPE app.pair AS (a int, b text);
CREATE DOMAIN app.posint AS int CHECK (VALUE > 0);

CREATE TABLE app.everything (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    n numeric(30, 10), ts timestamptz, iv interval, b bytea, arr int[], tarr text[],
    j json, jb jsonb, u uuid, ip inet, m app.mood, p app.pair, d app.posint, t text,
    g int GENERATED ALWAYS AS (d * 2) STORED
);
INSERT INTO app.everything (n, ts, iv, b, arr, tarr, j, jb, u, ip, m, p, d, t) VALUES
  (12345678901234567890.0123456789, '2024-02-29 23:59:59.999999+05:30', '1 year 2 mons 3 days 04:05:06.789', '\x00ff5c0a09',
   '{1,NULL,3}', '{"a b","c,d","e\"f",NULL,""}', '{"k": [1, 2, {"x": null}]}', '{"z": 1, "a": "\u00e9"}',
   'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '192.168.1.0/24', 'happy', ROW(1, 'x y'), 5, E'tab\there\nnewline\\backslash ünïcødé 🐘'),
  (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (-0.5, 'infinity', '-1 day', '', '{}', '{}', 'null', '[]', NULL, '::1', 'sad', ROW(NULL, ''), 1, ''),
  ('NaN', '-infinity', '0', '\x5c4e', '{{1,2},{3,4}}', '{"\\N"}', '"s"', '"\\N"', NULL, '10.0.0.1', 'ok', ROW(2, NULL), 7, E'\\N');
COMMENT ON TABLE app.everything IS 'every type';
ALTER TABLE app.everything OWNER TO app_owner;
GRANT SELECT ON app.everything TO "Reader ""Role"" ü";
CREATE INDEX everything_t ON app.everything (t);

CREATE TABLE app.child (id serial PRIMARY KEY, everything_id bigint REFERENCES app.everything (id), note text);
INSERT INTO app.child (everything_id, note) VALUES (1, 'a'), (2, NULL), (3, 'c');

CREATE TABLE "Odd.Schema ü"."Mixed Case ""quoted"" tbl" ("Col A" text, "ü" int, "x.y" text);
INSERT INTO "Odd.Schema ü"."Mixed Case ""quoted"" tbl" VALUES ('A', 1, 'dot'), (NULL, NULL, NULL), ('', 0, '');

CREATE TABLE app.parent (id int, k text) PARTITION BY LIST (k);
CREATE TABLE app.parent_a PARTITION OF app.parent FOR VALUES IN ('a');
CREATE TABLE app.parent_b PARTITION OF app.parent FOR VALUES IN ('b');
INSERT INTO app.parent SELECT g, CASE WHEN g % 2 = 0 THEN 'a' ELSE 'b' END FROM generate_series(1, 50) g;

CREATE TABLE app.base (id int, label text);
CREATE TABLE app.derived (extra text) INHERITS (app.base);
INSERT INTO app.base VALUES (1, 'base');
INSERT INTO app.derived VALUES (2, 'derived', 'more');

CREATE UNLOGGED TABLE app.scratch (v text);
INSERT INTO app.scratch VALUES ('unlogged row');

CREATE TABLE app.secret (owner_name text, v text);
ALTER TABLE app.secret ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_rows ON app.secret USING (owner_name = current_user);
INSERT INTO app.secret VALUES ('nobody', 'hidden by policy'), ('postgres', 'visible');

CREATE SEQUENCE app.called_seq;
SELECT nextval('app.called_seq'), nextval('app.called_seq'), nextval('app.called_seq');
CREATE SEQUENCE app.fresh_seq START 100;

CREATE VIEW app.v AS SELECT id, t FROM app.everything WHERE d > 1;
CREATE MATERIALIZED VIEW app.mv AS SELECT count(*) AS c FROM app.everything;
CREATE MATERIALIZED VIEW app.mv_empty AS SELECT 1 AS one WITH NO DATA;

CREATE FUNCTION app.refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'trigger fired'; END $$;
CREATE TRIGGER refuse_insert BEFORE INSERT ON app.child FOR EACH ROW EXECUTE FUNCTION app.refuse();
CREATE INDEX parent_k_id ON app.parent (k, id);
CREATE TRIGGER refuse_parent_insert BEFORE INSERT ON app.parent FOR EACH ROW EXECUTE FUNCTION app.refuse();
CREATE UNIQUE INDEX mv_c ON app.mv (c);

SELECT lo_from_bytea(424242, '\x00010203'::bytea || convert_to('large object ü', 'UTF8'));
ALTER LARGE OBJECT 424242 OWNER TO app_owner;
GRANT SELECT ON LARGE OBJECT 424242 TO "Reader ""Role"" ü";

CREATE FUNCTION app.note_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN RAISE NOTICE 'ddl'; END $$;
CREATE EVENT TRIGGER note_ddl ON ddl_command_end EXECUTE FUNCTION app.note_ddl();
COMMENT ON EVENT TRIGGER note_ddl IS 'restored last';
"#;
