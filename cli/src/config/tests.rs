//! Unit tests of settings loading: defaults, flags, files and the
//! environment, and what is refused.

use super::*;

/// Loads with `overrides` and no `PGVAULT_*` variables (tests of this
/// process may set some for their own use).
fn load(overrides: serde_json::Value) -> anyhow::Result<Settings> {
    Settings::load_from(None, overrides, &Environment::default())
}

fn load_file(toml: &str, vars: &[(&str, &str)]) -> anyhow::Result<Settings> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("pgvault.toml");
    std::fs::write(&path, toml).expect("write settings");
    let environment = Environment::from_vars(
        vars.iter()
            .map(|(name, value)| (name.to_string(), value.to_string())),
    );
    Settings::load_from(Some(&path), serde_json::json!({}), &environment)
}

#[test]
fn sections_are_the_ones_the_environment_knows() {
    let defaults = serde_json::to_value(Settings::default()).expect("serialize");
    let sections: Vec<&str> = defaults
        .as_object()
        .expect("a table")
        .keys()
        .map(String::as_str)
        .collect();
    let mut known = env::SECTIONS.to_vec();
    known.sort_unstable();
    let mut sections = sections;
    sections.sort_unstable();
    assert_eq!(sections, known);
}

#[test]
fn a_misspelt_section_in_the_file_is_refused_naming_it_and_the_valid_ones() {
    let err = load_file("[telemtry]\nendpoint = \"x\"\n", &[])
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.starts_with("unknown section [telemtry] (from TOML file "),
        "{err}"
    );
    assert!(err.contains("pgvault.toml"), "{err}");
    assert!(
        err.ends_with("pgvault's sections are [coordinator], [queue], [worker], [up], [log]"),
        "{err}"
    );
}

#[test]
fn an_unknown_key_is_refused_naming_it_and_the_valid_ones() {
    let err = load_file("[worker]\nconcurency = 4\n", &[])
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.starts_with("unknown setting worker.concurency (from TOML file "),
        "{err}"
    );
    assert!(err.contains("its keys are coordinator, token,"), "{err}");
    let err = load_file("", &[("PGVAULT_WORKER__CONCURENCY", "4")])
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.starts_with("unknown setting worker.concurency (from PGVAULT_WORKER__CONCURENCY)"),
        "{err}"
    );
}

#[test]
fn a_misspelt_variable_is_refused_and_known_ones_are_read() {
    let err = load_file("", &[("PGVAULT_TELEMTRY__ENDPOINT", "x")])
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.starts_with("unknown environment variable PGVAULT_TELEMTRY__ENDPOINT"),
        "{err}"
    );
    let s = load_file(
        "[coordinator]\nsecret_env_prefix = \"PGVAULT_SECRET_\"\n",
        &[
            ("PGVAULT_WORKER__CONCURRENCY", "4"),
            ("PGVAULT_TOKEN", "t"),
            ("PGVAULT_SECRET_SHOP", "host=db"),
        ],
    )
    .expect("known variables");
    assert_eq!(s.worker.concurrency, 4);
}

#[test]
fn a_bad_value_from_the_environment_names_the_variable() {
    let err = load_file("", &[("PGVAULT_COORDINATOR__LISTEN", "nonsense")])
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.starts_with("invalid setting coordinator.listen (from PGVAULT_COORDINATOR__LISTEN)"),
        "{err}"
    );
}

#[test]
fn defaults_are_valid() {
    Settings::default().validate().unwrap();
}

#[test]
fn flags_override_defaults_and_errors_name_the_key() {
    let s = load(serde_json::json!({"worker": {"concurrency": 4}})).unwrap();
    assert_eq!(s.worker.concurrency, 4);
    let err = load(serde_json::json!({"worker": {"zstd_level": 99}}))
        .err()
        .unwrap();
    assert!(err.to_string().contains("worker.zstd_level"), "{err}");
    let err = load(serde_json::json!({"coordinator": {"listen": "nonsense"}}))
        .err()
        .unwrap();
    assert!(err.to_string().contains("coordinator.listen"), "{err}");
}

#[cfg(not(feature = "test-clock"))]
#[test]
fn production_builds_refuse_the_test_clock_as_unknown() {
    let err = load(serde_json::json!({"coordinator": {"clock_offset_file": "/tmp/offset"}}))
        .err()
        .expect("refused");
    let err = err.to_string();
    assert!(
        err.starts_with("unknown setting coordinator.clock_offset_file"),
        "{err}"
    );
}

#[cfg(feature = "test-clock")]
#[test]
fn test_builds_read_the_test_clock() {
    let s = load(serde_json::json!({"coordinator": {"clock_offset_file": "/tmp/offset"}})).unwrap();
    assert_eq!(
        s.coordinator.clock_offset_file,
        PathBuf::from("/tmp/offset")
    );
}

#[test]
fn master_key_must_be_32_bytes_of_base64() {
    let mut s = Settings::default();
    s.coordinator.master_key = "c2hvcnQ=".into();
    assert!(s.master_key().unwrap_err().to_string().contains("32 bytes"));
    s.coordinator.master_key =
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [7u8; 32]);
    assert_eq!(s.master_key().unwrap(), [7u8; 32]);
}
