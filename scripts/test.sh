#!/usr/bin/env bash
# Installs what the tests need and runs every test. CI runs exactly this.
#
#   scripts/test.sh            # install missing parts, build, check fmt and clippy, run all tests
#
# Needs: a Rust toolchain (with rustfmt and clippy) and PostgreSQL 15+ server
# binaries (initdb, pg_ctl). Installs when missing: RabbitMQ (Debian package
# rabbitmq-server), headless Chromium and its WebDriver for the web console
# tests (Debian packages chromium, chromium-driver), the Azure Blob emulator
# Azurite (npm, into ./.tools), the S3 server moto (PyPI moto[server], into
# the virtualenv ./.tools/venv), and iproute2 (Debian package) for the
# private-network tests, which create network namespaces and so must run as
# root.
# The tests start their own PostgreSQL, RabbitMQ, Azurite and moto on free
# loopback ports and stop them after. Formatting and clippy are checked
# after the build, before the tests.
set -euo pipefail
cd "$(dirname "$0")/.."

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

echo "==> building"
cargo build --locked --workspace --all-targets

echo "==> checking formatting and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "==> running every test"
cargo test --locked --workspace --all-targets -- --test-threads="${PGVAULT_TEST_THREADS:-2}"
