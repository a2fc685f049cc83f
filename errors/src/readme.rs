//! The README's "Error codes" section: its table is rendered from the
//! catalogue ([`markdown_table`]), and a test fails when the README's copy
//! differs: a code missing, a code that does not exist, a row without an
//! action, or text that drifted from the catalogue.

use crate::catalogue::ErrorCode;

/// The heading of the README section holding the table.
pub const README_SECTION: &str = "## Error codes";

/// The catalogue as a Markdown table: code | what it means | what to do.
pub fn markdown_table() -> String {
    let mut table = String::from("| code | what it means | what to do |\n|---|---|---|\n");
    for &code in ErrorCode::ALL {
        table.push_str(&format!(
            "| `{code}` | {} | {} |\n",
            code.summary(),
            code.recommended_action()
        ));
    }
    table
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The table rows (lines starting with `|`) of the README's section.
    fn readme_rows() -> Vec<String> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
        let readme =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
        let section = readme
            .split_once(&format!("\n{README_SECTION}\n"))
            .unwrap_or_else(|| panic!("README.md has no \"{README_SECTION}\" section"))
            .1;
        let section = section.split("\n## ").next().unwrap_or_default();
        section
            .lines()
            .filter(|l| l.starts_with('|'))
            .map(str::to_string)
            .collect()
    }

    /// The code named in a row's first cell (`` `Code` ``), if any.
    fn row_code(row: &str) -> Option<&str> {
        let cell = row.trim_start_matches('|').split('|').next()?.trim();
        cell.strip_prefix('`')?.strip_suffix('`')
    }

    #[test]
    fn the_readme_table_lists_every_code_with_its_action_and_no_other() {
        let rows = readme_rows();
        let expected = markdown_table();
        let hint = format!(
            "replace the table under \"{README_SECTION}\" in README.md with:\n\n{expected}"
        );
        let listed: BTreeSet<&str> = rows.iter().filter_map(|r| row_code(r)).collect();
        for &code in ErrorCode::ALL {
            assert!(
                listed.contains(code.as_str()),
                "{code} is missing from the README's table; {hint}"
            );
        }
        for name in &listed {
            assert!(
                name.parse::<ErrorCode>().is_ok(),
                "the README's table names {name}, which is no error code; {hint}"
            );
        }
        for row in rows.iter().filter(|r| row_code(r).is_some()) {
            let action = row.trim_matches('|').split('|').nth(2).unwrap_or_default();
            assert!(
                !action.trim().is_empty(),
                "no action in the README row {row}; {hint}"
            );
        }
        let actual: String = rows.iter().map(|r| format!("{r}\n")).collect();
        assert_eq!(actual, expected, "the README's table drifted; {hint}");
    }

    #[test]
    fn the_table_has_one_row_per_code() {
        let table = markdown_table();
        assert_eq!(table.lines().count(), ErrorCode::ALL.len() + 2);
        assert!(table.contains(
            "| `UserErrorDBNotFound` | the database does not exist on the server | Check the database name"
        ));
    }
}
