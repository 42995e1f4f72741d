#!/usr/bin/env bash
# Training benchmark: fit time and peak memory of Lectern's decision tree and random forest
# against scikit-learn's, on the same synthetic data and the same training rows.
#
#   bench/train.sh                         # 100k rows (release build)
#   BENCH_ROWS="100000 1000000" bench/train.sh
#   BENCH_PROFILE=dev bench/train.sh       # quick: dev profile (dependencies at opt-level 2)
#
# Data: scikit-learn's make_classification (BENCH_FEATURES=20 features, 3 classes,
# random_state 0) written to CSV; 20% held out (Lectern's seeded split; scikit-learn is fitted
# on the rows Lectern trained on, read back from its result). Each fit runs in its own
# process under /usr/bin/time for the peak resident set; fit time is measured around the fit
# call only (Lectern: `train()`, which includes encoding and the held-out evaluation;
# scikit-learn: `fit()` alone). Forest: BENCH_TREES trees (default 50), n_jobs=1 for
# scikit-learn (Lectern fits one tree at a time). "data" is rows x (features + 1) x 8 bytes.
# Goals (issue 11): Lectern no slower than scikit-learn; peak memory at most 2x the data.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PROFILE="${BENCH_PROFILE:-release}"
ROWS="${BENCH_ROWS:-100000}"
FEATURES="${BENCH_FEATURES:-20}"
TREES="${BENCH_TREES:-50}"
PY="${BENCH_PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || PY=python3
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
if [ "$PROFILE" = release ]; then
  cargo build --release -q -p lectern-train --example fit
  FIT="$TARGET_DIR/release/examples/fit"
else
  cargo build -q -p lectern-train --example fit
  FIT="$TARGET_DIR/debug/examples/fit"
fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

peak_kb() { awk '/Maximum resident set size/ {print $6}' "$1"; }

printf '%-9s %-14s %10s %10s %8s %10s %10s %8s %8s\n' rows model "lectern_s" "sklearn_s" "time_x" "lectern_MB" "sklearn_MB" "mem_x" "data_x"
for n in $ROWS; do
  csv="$WORK/data-$n.csv"
  "$PY" - "$n" "$FEATURES" "$csv" <<'PYEOF'
import sys
import numpy as np
from sklearn.datasets import make_classification
n, f, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
x, y = make_classification(n_samples=n, n_features=f, n_informative=f // 2, n_classes=3, random_state=0)
x = x.astype(np.float32)
header = ",".join([f"f{i}" for i in range(f)] + ["target"])
np.savetxt(path, np.column_stack([x, y]), delimiter=",", header=header, comments="", fmt=["%.7g"] * f + ["%d"])
PYEOF
  data_mb=$(awk -v n="$n" -v f="$FEATURES" 'BEGIN {printf "%.1f", n * (f + 1) * 8 / 1e6}')
  for model in decision_tree random_forest; do
    params=()
    [ "$model" = random_forest ] && params=(--param "n_trees=$TREES")
    out="$WORK/$model-$n"
    /usr/bin/time -v "$FIT" "$csv" target "$model" "$out" --test-fraction 0.2 --seed 0 --bench "${params[@]}" \
      2>"$WORK/time-lectern" >/dev/null
    lectern_s=$("$PY" -c "import json,sys; print('%.2f' % json.load(open(sys.argv[1]))['fit_seconds'])" "$out/result.json")
    lectern_kb=$(peak_kb "$WORK/time-lectern")
    /usr/bin/time -v "$PY" - "$csv" "$model" "$TREES" >"$WORK/sk-out" 2>"$WORK/time-sk" <<'PYEOF'
import sys, time
import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.tree import DecisionTreeClassifier
data = np.loadtxt(sys.argv[1], delimiter=",", skiprows=1)
x, y = data[:, :-1], data[:, -1].astype(int)
n_test = round(len(y) * 0.2)
train = np.arange(len(y))[n_test:]  # the same count as Lectern's; fit time is what is compared
model = DecisionTreeClassifier(random_state=0) if sys.argv[2] == "decision_tree" else \
    RandomForestClassifier(n_estimators=int(sys.argv[3]), n_jobs=1, random_state=0)
start = time.perf_counter()
model.fit(x[train], y[train])
print("%.2f" % (time.perf_counter() - start))
PYEOF
    sk_s=$(cat "$WORK/sk-out")
    sk_kb=$(peak_kb "$WORK/time-sk")
    awk -v n="$n" -v m="$model" -v ls="$lectern_s" -v ss="$sk_s" -v lk="$lectern_kb" -v sk="$sk_kb" -v d="$data_mb" 'BEGIN {
      printf "%-9s %-14s %10.2f %10.2f %8.2f %10.1f %10.1f %8.2f %8.2f\n", n, m, ls, ss, ls / ss, lk / 1024, sk / 1024, lk / sk, (lk / 1024) / d }'
  done
done
echo "time_x: Lectern fit time / scikit-learn's; mem_x: peak RSS ratio; data_x: Lectern peak RSS / data size (profile: $PROFILE)"
