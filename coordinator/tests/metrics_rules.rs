//! The shipped Prometheus alert rules (`deploy/prometheus/alerts.yml`) and
//! Grafana dashboard (`deploy/grafana/pgvault.json`) parse, every
//! `pgvault_*` series they name is one the exporter writes, and every
//! family the exporter registers is written here (a new family must be
//! given a sample below) and listed in the README's metrics table.
//! Prometheus's own `promtool check rules` accepts the alert rules
//! (`scripts/test.sh` unpacks promtool from Debian's prometheus package).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use pgvault_coordinator::metrics::Metrics;
use pgvault_coordinator::metrics::families::{
    AgentLabels, AttemptLabels, InstanceLabels, JobLabels, NoLabels, OperationLabels, ServerLabels,
};
use pgvault_coordinator::metrics::feed::error_labels;
use yaml_rust2::{Yaml, YamlLoader};

fn workspace_file(path: &str) -> PathBuf {
    PathBuf::from(format!("{}/../{path}", env!("CARGO_MANIFEST_DIR")))
}

fn deploy_file(path: &str) -> String {
    let full = workspace_file(&format!("deploy/{path}"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("cannot read {}: {e}", full.display()))
}

/// Every sample name the exporter can write, from its `# TYPE` lines, with
/// one series in each family (an empty family writes nothing at all).
fn exported_series() -> BTreeSet<String> {
    let metrics = Metrics::new();
    let f = metrics.families();
    let job = JobLabels {
        operation: "SCHEDULED_BACKUP".into(),
        state: "FAILED".into(),
    };
    let operation = OperationLabels {
        operation: "SCHEDULED_BACKUP".into(),
    };
    f.jobs_finished.get_or_create(&job).inc();
    f.job_duration.get_or_create(&job).observe(1.0);
    f.job_bytes.get_or_create(&operation).observe(1.0);
    f.attempts_ended
        .get_or_create(&AttemptLabels {
            operation: "SCHEDULED_BACKUP".into(),
            outcome: "LEASE_EXPIRED".into(),
        })
        .inc();
    f.job_errors
        .get_or_create(&error_labels("SCHEDULED_BACKUP".into(), "DatastoreFull"))
        .inc();
    f.jobs_active.get_or_create(&job).set(1);
    f.jobs_oldest_age.get_or_create(&job).set(1.0);
    f.agent_instances
        .get_or_create(&AgentLabels {
            agent: "dc1".into(),
        })
        .set(0);
    f.last_success
        .get_or_create(&InstanceLabels {
            vault: "v".into(),
            backup_instance: "i".into(),
            server: "s".into(),
            database: "d".into(),
        })
        .set(1.0);
    f.server_connections
        .get_or_create(&ServerLabels { server: "s".into() })
        .set(1);
    f.worker_slots.get_or_create(&NoLabels {}).set(1);
    let text = metrics.encode();
    let mut names = BTreeSet::new();
    let mut typed = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
        typed.insert(name.to_string());
        let suffixes: &[&str] = match kind {
            "counter" => &["_total", "_created"],
            "histogram" => &["_bucket", "_sum", "_count", "_created"],
            _ => &[""],
        };
        for suffix in suffixes {
            names.insert(format!("{name}{suffix}"));
        }
    }
    let registered: BTreeSet<String> = metrics.family_names().into_iter().collect();
    assert_eq!(
        typed, registered,
        "every registered family is written: a family without a sample here must get one in exported_series\n{text}"
    );
    names
}

#[test]
fn every_registered_family_is_written_and_in_the_readme() {
    let metrics = Metrics::new();
    let names = metrics.family_names();
    assert!(names.len() >= 18, "{names:?}");
    // Panics naming the family that has no sample.
    exported_series();
    let readme = std::fs::read_to_string(workspace_file("README.md")).expect("README.md");
    for name in names {
        assert!(
            readme.contains(&format!("`{name}")),
            "{name} is not in the README's metrics table"
        );
    }
}

/// promtool: `.tools/prometheus/usr/bin/promtool` (what `scripts/test.sh`
/// unpacks), else the one on `PATH`.
fn promtool() -> Option<PathBuf> {
    let local = workspace_file(".tools/prometheus/usr/bin/promtool");
    if local.is_file() {
        return Some(local);
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("promtool"))
            .find(|p| p.is_file())
    })
}

#[test]
fn promtool_accepts_the_alert_rules() {
    let promtool = promtool().expect(
        "promtool is not installed: run scripts/test.sh (it unpacks Debian's prometheus package \
         into .tools/prometheus: apt-get download prometheus && dpkg -x prometheus_*.deb \
         .tools/prometheus), or apt-get install prometheus",
    );
    let rules = workspace_file("deploy/prometheus/alerts.yml");
    let out = Command::new(&promtool)
        .arg("check")
        .arg("rules")
        .arg(&rules)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", promtool.display()));
    assert!(
        out.status.success(),
        "promtool check rules {} failed:\n{}{}",
        rules.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The `pgvault_*` identifiers of a PromQL expression.
fn named_series(expr: &str) -> BTreeSet<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|word| word.starts_with("pgvault_"))
        .map(String::from)
        .collect()
}

#[test]
fn the_alert_rules_parse_and_name_only_exported_series() {
    let exported = exported_series();
    let docs = YamlLoader::load_from_str(&deploy_file("prometheus/alerts.yml"))
        .expect("alerts.yml is YAML");
    let groups = docs[0]["groups"].as_vec().expect("a groups list");
    let mut alerts = BTreeSet::new();
    for group in groups {
        assert!(group["name"].as_str().is_some(), "a group without a name");
        for rule in group["rules"].as_vec().expect("rules") {
            let alert = rule["alert"].as_str().expect("every rule is an alert");
            let expr = rule["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("{alert}: no expr"));
            assert!(
                ["warning", "critical"]
                    .contains(&rule["labels"]["severity"].as_str().unwrap_or("")),
                "{alert}: severity warning or critical"
            );
            assert!(
                rule["annotations"]["summary"].as_str().is_some(),
                "{alert}: no summary"
            );
            if let Yaml::String(duration) = &rule["for"] {
                assert!(
                    duration.ends_with('m') || duration.ends_with('h'),
                    "{alert}: for {duration}"
                );
            }
            assert_eq!(
                expr.matches('(').count(),
                expr.matches(')').count(),
                "{alert}: unbalanced parentheses in {expr}"
            );
            let named = named_series(expr);
            assert!(!named.is_empty(), "{alert} names no pgvault series");
            for series in named {
                assert!(
                    exported.contains(&series),
                    "{alert} names {series}, which the exporter does not write"
                );
            }
            assert!(alerts.insert(alert.to_string()), "{alert} twice");
        }
    }
    for expected in [
        "PgvaultNoSuccessfulBackup",
        "PgvaultJobsFailing",
        "PgvaultQueueStuck",
        "PgvaultDeadLetters",
        "PgvaultAgentDisconnected",
        "PgvaultNoWorkers",
    ] {
        assert!(alerts.contains(expected), "{expected} missing");
    }
}

#[test]
fn the_dashboard_is_json_and_queries_only_exported_series() {
    let exported = exported_series();
    let dashboard: serde_json::Value =
        serde_json::from_str(&deploy_file("grafana/pgvault.json")).expect("pgvault.json is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 6, "{} panels", panels.len());
    let mut queried = 0;
    for panel in panels {
        let title = panel["title"].as_str().expect("every panel has a title");
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("{title}: no expr"));
            for series in named_series(expr) {
                assert!(
                    exported.contains(&series),
                    "panel {title} queries {series}, which the exporter does not write"
                );
                queried += 1;
            }
        }
    }
    assert!(queried >= 6, "the dashboard queries {queried} series");
}
