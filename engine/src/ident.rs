//! SQL identifier and literal quoting: every name that reaches SQL text goes
//! through here, so mixed case, spaces, quotes and dots survive. How
//! relations are named is shared with the coordinator
//! ([`pgvault_manifest::names`]).

pub use pgvault_manifest::names::{qualified, quote_ident, readable};

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
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(
            dollar_quote("a $pgvault$ b"),
            "$pgvault1$a $pgvault$ b$pgvault1$"
        );
    }
}
