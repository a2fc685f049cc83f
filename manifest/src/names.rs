//! How relations are named: quoted for SQL (`"schema"."name"`), readable for
//! people (`public.orders`, `"Sales"."Q1 totals"`), and which spellings of a
//! name a user may type to mean a relation. Job tables, selective restores
//! and error messages all name relations through here.

/// `"name"` with embedded quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `"schema"."name"`.
pub fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(name))
}

/// `schema.name` for people: each part quoted only when it is not a plain
/// lower-case identifier (`public.orders`, `"Sales"."Q1 totals"`).
pub fn readable(schema: &str, name: &str) -> String {
    let part = |id: &str| {
        let plain = id
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$');
        if plain {
            id.to_string()
        } else {
            quote_ident(id)
        }
    };
    format!("{}.{}", part(schema), part(name))
}

/// True when `spec`, as a user typed it, names the relation `schema.name`:
/// written plainly (`My Schema.Odd "T"`), fully quoted
/// (`"My Schema"."Odd ""T"""`) or in the readable form job details show.
pub fn spec_names(spec: &str, schema: &str, name: &str) -> bool {
    spec == format!("{schema}.{name}")
        || spec == qualified(schema, name)
        || spec == readable(schema, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_awkward_names() {
        assert_eq!(quote_ident(r#"We "said" hi"#), r#""We ""said"" hi""#);
        assert_eq!(qualified("my.schema", "Tbl"), r#""my.schema"."Tbl""#);
        assert_eq!(readable("public", "orders_2"), "public.orders_2");
        assert_eq!(readable("Sales", "q1 totals"), r#""Sales"."q1 totals""#);
    }

    #[test]
    fn a_relation_is_named_plainly_quoted_or_as_job_details_show_it() {
        for spec in ["public.orders", r#""public"."orders""#] {
            assert!(spec_names(spec, "public", "orders"), "{spec}");
        }
        for spec in [r#"Sales.Q1 "T""#, r#""Sales"."Q1 ""T""""#] {
            assert!(spec_names(spec, "Sales", r#"Q1 "T""#), "{spec}");
        }
        assert!(spec_names(r#"public."Orders""#, "public", "Orders"));
        assert!(!spec_names("public.Orders", "public", "orders"));
        assert!(!spec_names("orders", "public", "orders"));
    }
}
