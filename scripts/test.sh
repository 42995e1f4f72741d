#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what the tests need, builds, runs
# the Rust tests and the end-to-end Python tests against the real binary.
#
#   scripts/test.sh            # everything
#   PYTEST_ARGS="-k metrics" scripts/test.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

step() { printf '\n==> %s\n' "$*"; }

step "services (PostgreSQL, NATS): start them if they are down"
if command -v pg_ctlcluster >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start || echo "warning: could not start PostgreSQL"
fi
if [ -x /usr/sbin/nats-server ] && ! (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; then
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log || echo "warning: could not start NATS"
fi

step "Python environment (.venv) with the test requirements"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt

step "cargo fmt --check (the layout is rustfmt.toml's)"
cargo fmt --all -- --check

step "cargo build"
cargo build --workspace --locked

step "cargo clippy (warnings are errors)"
if cargo clippy --version >/dev/null 2>&1; then
  cargo clippy --workspace --all-targets --locked -- -D warnings
else
  echo "clippy is not installed; skipped"
fi

step "Rust tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi

step "end-to-end tests against the real binary (pytest)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
export LECTERN_BIN="$TARGET_DIR/debug/lectern"
# shellcheck disable=SC2086
LECTERN_TEST_DATABASE=sqlite .venv/bin/python -m pytest tests/python -q ${PYTEST_ARGS:-}

step "the same end-to-end tests with PostgreSQL as the store"
# shellcheck disable=SC2086
LECTERN_TEST_DATABASE=postgres .venv/bin/python -m pytest tests/python -q ${PYTEST_ARGS:-}
