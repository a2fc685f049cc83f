//! SQL identifier and literal quoting: every name that reaches SQL text goes
//! through here, so mixed case, spaces, quotes and dots survive.

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

/// `'text'` with embedded quotes doubled (standard_conforming_strings on).
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `$tag$body$tag$` with a tag that does not occur in `body`.
pub fn dollar_quote(body: &str) -> String {
    let mut tag = String::from("$pgvault$");
    let mut n = 0;
    while body.contains(&tag) {
        n += 1;
        tag = format!("$pgvault{n}$");
    }
    format!("{tag}{body}{tag}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_awkward_names() {
        assert_eq!(quote_ident(r#"We "said" hi"#), r#""We ""said"" hi""#);
        assert_eq!(qualified("my.schema", "Tbl"), r#""my.schema"."Tbl""#);
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(readable("public", "orders_2"), "public.orders_2");
        assert_eq!(readable("Sales", "q1 totals"), r#""Sales"."q1 totals""#);
    }
}
