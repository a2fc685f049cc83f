//! Reading and adjusting a point's globals script (`pg_dumpall
//! --globals-only` output) before a whole-server restore runs it: the
//! script cut into statements (quotes, comment lines and psql
//! meta-commands respected), its tablespace definitions (left out when
//! the restore asks, and named when the target cannot create one), and
//! role passwords kept off roles the target already has (its own
//! superuser keeps the password the restore connects with).

/// One tablespace the script creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tablespace {
    pub name: String,
    pub location: String,
}

/// The script's pieces, in order and losslessly (joined they are the
/// script): statements up to their `;`, comment lines, psql
/// meta-command lines (`\connect`, `\restrict`) and the blanks between.
fn pieces(script: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    // Only blanks since `start`: a comment or meta-command may begin.
    let mut blank = true;
    let (mut single, mut double) = (false, false);
    let mut chars = script.char_indices();
    while let Some((i, c)) = chars.next() {
        if blank && (c == '\\' || script[i..].starts_with("--")) {
            if start < i {
                pieces.push(&script[start..i]);
            }
            let end = script[i..].find('\n').map_or(script.len(), |n| i + n + 1);
            pieces.push(&script[i..end]);
            start = end;
            // Skip to the end of the line.
            while chars.as_str().len() > script.len() - end {
                chars.next();
            }
            continue;
        }
        if !c.is_whitespace() {
            blank = false;
        }
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            ';' if !single && !double => {
                pieces.push(&script[start..=i]);
                start = i + 1;
                blank = true;
            }
            _ => {}
        }
    }
    if start < script.len() {
        pieces.push(&script[start..]);
    }
    pieces
}

/// An identifier as `pg_dumpall` writes it (plain, or double-quoted with
/// `""` for `"`) at the start of `text`: the name and what follows.
fn identifier(text: &str) -> Option<(String, &str)> {
    let text = text.trim_start();
    if let Some(quoted) = text.strip_prefix('"') {
        let mut name = String::new();
        let mut chars = quoted.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            if c == '"' {
                if chars.peek().is_some_and(|(_, n)| *n == '"') {
                    chars.next();
                    name.push('"');
                    continue;
                }
                return Some((name, &quoted[at + 1..]));
            }
            name.push(c);
        }
        return None;
    }
    let end = text
        .find(|c: char| c.is_whitespace() || c == ';')
        .unwrap_or(text.len());
    (end > 0).then(|| (text[..end].to_string(), &text[end..]))
}

/// The string literal at the start of `text` (`'…'`, `''` for `'`), and
/// the byte length it spans.
fn literal(text: &str) -> Option<(String, usize)> {
    let body = text.strip_prefix('\'')?;
    let mut value = String::new();
    let mut chars = body.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        if c == '\'' {
            if chars.peek().is_some_and(|(_, n)| *n == '\'') {
                chars.next();
                value.push('\'');
                continue;
            }
            return Some((value, at + 2));
        }
        value.push(c);
    }
    None
}

/// The statement's words before its first literal, upper-cased (enough
/// to tell what it is about).
fn head(statement: &str) -> String {
    let before = statement.split('\'').next().unwrap_or("");
    before
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_uppercase()
}

/// Whether `statement` defines a tablespace or something on one.
fn about_tablespace(statement: &str) -> bool {
    let head = head(statement);
    head.starts_with("CREATE TABLESPACE ")
        || head.starts_with("ALTER TABLESPACE ")
        || head.starts_with("COMMENT ON TABLESPACE ")
        || ((head.starts_with("GRANT ")
            || head.starts_with("REVOKE ")
            || head.starts_with("SECURITY LABEL "))
            && head.contains(" ON TABLESPACE "))
}

/// Every tablespace the script creates, with its location.
pub(crate) fn tablespaces(script: &str) -> Vec<Tablespace> {
    pieces(script)
        .into_iter()
        .filter_map(|piece| {
            let statement = piece.trim_start();
            if !head(statement).starts_with("CREATE TABLESPACE ") {
                return None;
            }
            let (name, _) = identifier(&statement["CREATE TABLESPACE ".len()..])?;
            let at = statement.find(" LOCATION '")? + " LOCATION ".len();
            let (location, _) = literal(&statement[at..])?;
            Some(Tablespace { name, location })
        })
        .collect()
}

/// The script to run: without its tablespace statements when
/// `skip_tablespaces`, and without the `PASSWORD` of roles in `existing`
/// (roles the target has keep theirs).
pub(crate) fn prepare(script: &str, skip_tablespaces: bool, existing: &[String]) -> String {
    let mut out = String::with_capacity(script.len());
    for piece in pieces(script) {
        if skip_tablespaces && about_tablespace(piece) {
            continue;
        }
        match password_of_existing_role(piece, existing) {
            Some((from, to)) => {
                out.push_str(&piece[..from]);
                out.push_str(&piece[to..]);
            }
            None => out.push_str(piece),
        }
    }
    out
}

/// The byte range of ` PASSWORD '…'` in an `ALTER ROLE` of a role in
/// `existing`.
fn password_of_existing_role(piece: &str, existing: &[String]) -> Option<(usize, usize)> {
    let statement = piece.trim_start();
    let offset = piece.len() - statement.len();
    if !head(statement).starts_with("ALTER ROLE ") {
        return None;
    }
    let (role, rest) = identifier(&statement["ALTER ROLE ".len()..])?;
    if !existing.contains(&role) {
        return None;
    }
    let rest_at = statement.len() - rest.len();
    let clause = rest.find(" PASSWORD '")?;
    let (_, length) = literal(&rest[clause + " PASSWORD ".len()..])?;
    let from = offset + rest_at + clause;
    Some((from, from + " PASSWORD ".len() + length))
}

/// Every role password the script carries (the values of its
/// `PASSWORD '…'` clauses), to keep them out of anything psql reports.
pub(crate) fn passwords(script: &str) -> Vec<String> {
    let mut found = Vec::new();
    for piece in pieces(script) {
        if !head(piece.trim_start()).starts_with("ALTER ROLE ") {
            continue;
        }
        let mut rest = piece;
        while let Some(at) = rest.find(" PASSWORD '") {
            rest = &rest[at + " PASSWORD ".len()..];
            match literal(rest) {
                Some((value, length)) => {
                    if !value.is_empty() {
                        found.push(value);
                    }
                    rest = &rest[length..];
                }
                None => break,
            }
        }
    }
    found
}

/// `message` with every one of `passwords` (as written or as a quoted
/// literal spells it) replaced by `<redacted>`: psql quotes the statement
/// it failed on, and a role's password hash is a secret.
pub(crate) fn redact(message: &str, passwords: &[String]) -> String {
    let mut out = message.to_string();
    for password in passwords {
        let quoted = password.replace('\'', "''");
        for form in [quoted.as_str(), password.as_str()] {
            if !form.is_empty() && out.contains(form) {
                out = out.replace(form, "<redacted>");
            }
        }
    }
    out
}

/// `psql`'s error about a tablespace's directory, restated naming the
/// tablespace, its location and the fix; `None` when `error` is not one.
pub(crate) fn explain(error: &str, tablespaces: &[Tablespace], target: &str) -> Option<String> {
    // psql names the location quoted (`directory "…"` and other forms).
    let space = tablespaces
        .iter()
        .find(|t| error.contains(&format!("\"{}\"", t.location)))?;
    Some(format!(
        "tablespace \"{}\" cannot be created on {target} at its location {} ({error}): create that \
         directory on the target server's machine, empty and owned by the operating-system user \
         PostgreSQL runs as (e.g. mkdir -p {} && chown postgres:postgres {}), then restore again; \
         or restore without tablespaces (pgvault restore server … --no-tablespaces): objects are \
         restored into the target's default tablespace either way",
        space.name, space.location, space.location, space.location
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRIPT: &str = "--\n-- Roles\n--\n\n\
        CREATE ROLE app_user;\n\
        ALTER ROLE app_user WITH NOSUPERUSER INHERIT LOGIN PASSWORD 'SCRAM-SHA-256$4096:abc=';\n\
        CREATE ROLE postgres;\n\
        ALTER ROLE postgres WITH SUPERUSER LOGIN PASSWORD 'SCRAM-SHA-256$4096:xyz=';\n\
        CREATE ROLE \"Odd \"\"Role\";\n\
        ALTER ROLE \"Odd \"\"Role\" WITH LOGIN PASSWORD 'md5abc';\n\
        \\restrict k3y\n\
        COMMENT ON ROLE app_user IS 'semi; colon and ''quotes''\n and a newline';\n\
        \n--\n-- Tablespaces\n--\n\n\
        CREATE TABLESPACE fast OWNER postgres LOCATION '/srv/pg fast';\n\
        ALTER TABLESPACE fast SET (random_page_cost=1.1);\n\
        GRANT ALL ON TABLESPACE fast TO app_user;\n\
        COMMENT ON TABLESPACE fast IS 'the ssd';\n\
        CREATE TABLESPACE \"Cold Store\" OWNER postgres LOCATION '/srv/o''cold';\n\
        ALTER ROLE app_user SET default_tablespace TO 'fast';\n\
        \\unrestrict k3y\n";

    #[test]
    fn every_password_in_the_script_is_found_and_redacted_from_psql_messages() {
        let found = passwords(SCRIPT);
        assert_eq!(
            found,
            [
                "SCRAM-SHA-256$4096:abc=",
                "SCRAM-SHA-256$4096:xyz=",
                "md5abc"
            ]
        );
        let message = "syntax error at or near \"x\" LINE 1: ALTER ROLE app_user WITH LOGIN \
                       PASSWORD 'SCRAM-SHA-256$4096:abc=' x";
        let redacted = redact(message, &found);
        assert!(!redacted.contains("abc="), "{redacted}");
        assert!(redacted.contains("PASSWORD '<redacted>'"), "{redacted}");
        let odd = vec!["it''s".replace("''", "'")];
        assert_eq!(redact("near 'it''s'", &odd), "near '<redacted>'");
    }

    #[test]
    fn pieces_join_back_into_the_script_and_respect_quotes() {
        let pieces = pieces(SCRIPT);
        assert_eq!(pieces.concat(), SCRIPT);
        let comment = pieces
            .iter()
            .find(|p| p.contains("COMMENT ON ROLE"))
            .unwrap();
        assert!(comment.trim_end().ends_with("newline';"), "{comment:?}");
        assert!(pieces.contains(&"\\restrict k3y\n"));
    }

    #[test]
    fn tablespaces_are_read_with_their_locations() {
        assert_eq!(
            tablespaces(SCRIPT),
            [
                Tablespace {
                    name: "fast".into(),
                    location: "/srv/pg fast".into()
                },
                Tablespace {
                    name: "Cold Store".into(),
                    location: "/srv/o'cold".into()
                },
            ]
        );
    }

    #[test]
    fn without_tablespaces_every_statement_on_one_is_left_out_and_the_rest_kept() {
        let prepared = prepare(SCRIPT, true, &[]);
        for gone in ["TABLESPACE fast", "TABLESPACE \"Cold Store\""] {
            assert!(!prepared.contains(gone), "{gone}: {prepared}");
        }
        for kept in [
            "CREATE ROLE app_user;",
            "COMMENT ON ROLE app_user",
            "ALTER ROLE app_user SET default_tablespace TO 'fast';",
            "\\restrict k3y\n",
            "\\unrestrict k3y\n",
        ] {
            assert!(prepared.contains(kept), "{kept}: {prepared}");
        }
        assert_eq!(prepare(SCRIPT, false, &[]), SCRIPT);
    }

    #[test]
    fn roles_the_target_has_keep_their_password_new_ones_get_theirs() {
        let existing = ["postgres".to_string(), "Odd \"Role".to_string()];
        let prepared = prepare(SCRIPT, false, &existing);
        assert!(
            prepared.contains("ALTER ROLE postgres WITH SUPERUSER LOGIN;\n"),
            "{prepared}"
        );
        assert!(
            prepared.contains("ALTER ROLE \"Odd \"\"Role\" WITH LOGIN;\n"),
            "{prepared}"
        );
        assert!(
            prepared.contains("LOGIN PASSWORD 'SCRAM-SHA-256$4096:abc=';"),
            "{prepared}"
        );
        assert!(!prepared.contains("xyz="), "{prepared}");
    }

    #[test]
    fn a_missing_tablespace_directory_is_named_with_the_fix() {
        let spaces = tablespaces(SCRIPT);
        let explained = explain(
            "directory \"/srv/pg fast\" does not exist",
            &spaces,
            "server 10.0.0.2:5432",
        )
        .expect("a tablespace error");
        assert!(
            explained.starts_with(
                "tablespace \"fast\" cannot be created on server 10.0.0.2:5432 at its location /srv/pg fast"
            ),
            "{explained}"
        );
        assert!(
            explained.contains("owned by the operating-system user"),
            "{explained}"
        );
        assert!(explained.contains("--no-tablespaces"), "{explained}");
        assert_eq!(
            explain("role \"x\" does not exist", &spaces, "server"),
            None
        );
    }
}
