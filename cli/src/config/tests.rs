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
        err.ends_with(
            "pgvault's sections are [coordinator], [queue], [worker], [up], [log], [agent], [telemetry]"
        ),
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

#[test]
fn the_console_is_an_address_off_or_the_commands_default() {
    let at = |value: &str| {
        load(serde_json::json!({"coordinator": {"console_listen": value}}))
            .map(|s| s.coordinator.console_listen().expect("validated"))
    };
    assert_eq!(at("").unwrap(), ConsoleListen::Default);
    assert_eq!(at("off").unwrap(), ConsoleListen::Off);
    assert_eq!(
        at("0.0.0.0:9090").unwrap(),
        ConsoleListen::At("0.0.0.0:9090".parse().unwrap())
    );
    let err = at("localhost").expect_err("refused").to_string();
    assert!(err.contains("coordinator.console_listen"), "{err}");
    let err = load(serde_json::json!({"coordinator": {"console_idle_timeout_seconds": 0}}))
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("coordinator.console_idle_timeout_seconds"),
        "{err}"
    );
}

#[test]
fn metrics_are_an_address_off_or_the_commands_default() {
    let at = |value: &str| {
        load(serde_json::json!({"telemetry": {"metrics_listen": value}}))
            .map(|s| s.telemetry.metrics_listen().expect("validated"))
    };
    assert_eq!(at("").unwrap(), ConsoleListen::Default);
    assert_eq!(at("OFF").unwrap(), ConsoleListen::Off);
    assert_eq!(
        at("0.0.0.0:9750").unwrap(),
        ConsoleListen::At("0.0.0.0:9750".parse().unwrap())
    );
    let err = at("localhost:x").expect_err("refused").to_string();
    assert!(err.contains("telemetry.metrics_listen"), "{err}");
    let err = load_file("[telemetry]\nmetrics_port = 1\n", &[])
        .err()
        .expect("unknown key refused")
        .to_string();
    assert!(err.contains("metrics_port"), "{err}");
    let s = load_file(
        "",
        &[("PGVAULT_TELEMETRY__METRICS_LISTEN", "127.0.0.1:9999")],
    )
    .expect("from the environment");
    assert_eq!(s.telemetry.metrics_listen, "127.0.0.1:9999");
}

#[test]
fn traces_are_exported_only_to_an_http_or_https_otlp_endpoint() {
    let s = load(serde_json::json!({})).expect("defaults");
    assert_eq!(s.telemetry.otlp_endpoint().expect("valid"), None);
    let s = load_file(
        "",
        &[("PGVAULT_TELEMETRY__OTLP_ENDPOINT", "http://127.0.0.1:4317")],
    )
    .expect("from the environment");
    assert_eq!(
        s.telemetry.otlp_endpoint().expect("valid"),
        Some("http://127.0.0.1:4317")
    );
    let err = load(serde_json::json!({"telemetry": {"otlp_endpoint": "collector:4317"}}))
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("telemetry.otlp_endpoint"), "{err}");
}

#[test]
fn up_serves_metrics_by_default_and_coordinators_only_when_asked() {
    let up_default: std::net::SocketAddr = "127.0.0.1:9750".parse().unwrap();
    let with = |value: &str| {
        let mut s = Settings::default();
        s.telemetry.metrics_listen = value.into();
        s
    };
    assert!(crate::serve::metrics_options(&with(""), None).is_none());
    let up = crate::serve::metrics_options(&with(""), Some(up_default)).expect("on");
    assert_eq!(up.listen, up_default);
    assert_eq!(up.fallback, pgvault_console::PortFallback::NextFree);
    let configured =
        crate::serve::metrics_options(&with("0.0.0.0:9101"), None).expect("configured");
    assert_eq!(configured.listen, "0.0.0.0:9101".parse().unwrap());
    assert_eq!(configured.fallback, pgvault_console::PortFallback::Fail);
    assert!(crate::serve::metrics_options(&with("off"), Some(up_default)).is_none());
    let config = crate::serve::coordinator_config(&with("127.0.0.1:9102"), String::new(), [0; 32]);
    assert_eq!(
        config.metrics.map(|m| m.listen.port()),
        Some(9102),
        "pgvault coordinator serves the configured address"
    );
}

#[test]
fn the_agent_section_is_read_from_the_file_and_the_environment() {
    let s = load_file(
        "[agent]\ncoordinator = \"https://vault.example:50051\"\nconcurrency = 2\n",
        &[
            ("PGVAULT_AGENT__NAME", "dc1"),
            ("PGVAULT_AGENT_TOKEN", "t"),
            ("PGVAULT_WORKER__CA_CERT", "/etc/pgvault/ca.pem"),
        ],
    )
    .expect("agent settings");
    assert_eq!(s.agent.coordinator, "https://vault.example:50051");
    assert_eq!((s.agent.name.as_str(), s.agent.concurrency), ("dc1", 2));
    assert_eq!(s.worker.ca_cert, PathBuf::from("/etc/pgvault/ca.pem"));
    assert_eq!(s.coordinator.agent_wait_seconds, 3600);
    let err = load_file("[agent]\nconcurrency = 0\n", &[])
        .err()
        .expect("refused")
        .to_string();
    assert_eq!(err, "agent.concurrency must be between 1 and 64 (got 0)");
    let err = load(serde_json::json!({"coordinator": {"agent_wait_seconds": 0}}))
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.starts_with("coordinator.agent_wait_seconds must be at least 1"),
        "{err}"
    );
}

#[test]
fn the_agent_status_interval_is_read_checked_and_handed_to_the_coordinator() {
    let defaults = load(serde_json::json!({})).expect("defaults");
    assert_eq!(defaults.coordinator.agent_status_interval_seconds, 5);
    let s = load_file(
        "[coordinator]\nagent_status_interval_seconds = 7\n",
        &[("PGVAULT_COORDINATOR__AGENT_STATUS_INTERVAL_SECONDS", "9")],
    )
    .expect("an interval from the file and the environment");
    assert_eq!(s.coordinator.agent_status_interval_seconds, 9, "env wins");
    let config = crate::serve::coordinator_config(&s, String::new(), [0; 32]);
    assert_eq!(
        config.agent_status_interval,
        std::time::Duration::from_secs(9)
    );
    for refused in [0, 3601] {
        let err =
            load(serde_json::json!({"coordinator": {"agent_status_interval_seconds": refused}}))
                .err()
                .expect("refused")
                .to_string();
        assert!(
            err.starts_with(&format!(
                "coordinator.agent_status_interval_seconds must be between 1 and 3600 (got {refused};"
            )),
            "{err}"
        );
    }
}

#[test]
fn up_serves_the_console_by_default_and_coordinators_only_when_asked() {
    let defaults = CoordinatorSettings::default();
    let up_default: std::net::SocketAddr = "127.0.0.1:8080".parse().unwrap();
    assert!(crate::serve::console_options(&defaults, None).is_none());
    let up = crate::serve::console_options(&defaults, Some(up_default)).expect("on");
    assert_eq!(up.listen, up_default);
    assert_eq!(up.fallback, pgvault_console::PortFallback::NextFree);
    let configured = CoordinatorSettings {
        console_listen: "127.0.0.1:9999".into(),
        console_idle_timeout_seconds: 60,
        ..CoordinatorSettings::default()
    };
    let options = crate::serve::console_options(&configured, Some(up_default)).expect("on");
    assert_eq!(options.listen.port(), 9999);
    assert_eq!(options.fallback, pgvault_console::PortFallback::Fail);
    assert_eq!(options.idle_timeout, std::time::Duration::from_secs(60));
    let off = CoordinatorSettings {
        console_listen: "off".into(),
        ..CoordinatorSettings::default()
    };
    assert!(crate::serve::console_options(&off, Some(up_default)).is_none());
}

#[test]
fn workers_take_a_list_of_client_tool_directories() {
    let s = load_file(
        "[worker]\npg_bin_dirs = [\"/opt/pg18/bin\", \"/usr/lib/postgresql/13/bin\"]\n",
        &[],
    )
    .expect("loads");
    assert_eq!(
        s.worker.pg_bin_dirs,
        vec![
            PathBuf::from("/opt/pg18/bin"),
            PathBuf::from("/usr/lib/postgresql/13/bin")
        ]
    );
    // A single directory under the singular name is refused, naming the list.
    let err = load_file("[worker]\npg_bin_dir = \"/opt/pg18/bin\"\n", &[])
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.starts_with("unknown setting worker.pg_bin_dir "),
        "{err}"
    );
    assert!(err.contains("pg_bin_dirs"), "{err}");
}
