#!/usr/bin/env bash
# gRPC benchmark (issue 16): V2 ModelInfer, one iris row, concurrency 32, one core per server.
#
#   bench/grpc.sh
#   BENCH_SERVERS="lectern-grpc mlserver-grpc" bench/grpc.sh
#
# Servers (each alone, pinned to core $BENCH_SERVER_CPU (1); the load generator on core
# $BENCH_WRK_CPU (0)):
#   lectern-grpc   Lectern's gRPC port (--grpc-listen), h2load
#   lectern-rest   Lectern's HTTP port, the same request as V2 JSON, wrk (bench/post.lua)
#   mlserver-grpc  MLServer's gRPC port (sklearn runtime, the same LogisticRegression), h2load
# The gRPC request is one serialized `inference.ModelInferRequest` (input X, FP32 [1, 4] in
# fp32_contents: both servers read it), framed as gRPC's length-prefixed message and sent by
# h2load (nghttp2's HTTP/2 load generator, Debian's nghttp2-client) as unary calls over
# $BENCH_CONNECTIONS connections, one call in flight on each. Before a server is measured, its
# answer to that request (read with tritonclient's generated stub) must carry onnxruntime's
# label for the row. h2load reports the mean and spread of latency, not percentiles.
#
# Environment: BENCH_SERVERS, BENCH_DURATION (default 15), BENCH_WARMUP (3), BENCH_CONNECTIONS
# (32), BENCH_NICE, BENCH_SKIP_SETUP, BENCH_NO_BUILD, CARGO_TARGET_DIR, LECTERN_BENCH_VENV as
# bench/infer.sh.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

VENV="${LECTERN_BENCH_VENV:-$HOME/.cache/lectern/bench-venv}"
export LECTERN_BENCH_VENV="$VENV"
SERVERS="${BENCH_SERVERS:-lectern-grpc lectern-rest mlserver-grpc}"
DURATION="${BENCH_DURATION:-15}"
WARMUP="${BENCH_WARMUP:-3}"
CONNS="${BENCH_CONNECTIONS:-32}"
WRK_THREADS=1
MODEL="iris-logreg"
ONNX="$ROOT/examples/models/$MODEL/1/model.onnx"
export BENCH_BODY='{"inputs":[{"name":"X","datatype":"FP32","shape":[1,4],"data":[5.1,3.5,1.4,0.2]}]}'
GRPC_PATH="/inference.GRPCInferenceService/ModelInfer"

if [ "${BENCH_SKIP_SETUP:-0}" != 1 ]; then
    "$ROOT/bench/setup.sh" >&2
fi
command -v h2load >/dev/null || { log "h2load missing: run bench/setup.sh"; exit 1; }
build_lectern
PY="$(reference_python)"
"$PY" -c 'import tritonclient.grpc' 2>/dev/null || { log "$PY has no tritonclient[grpc]: run scripts/test.sh"; exit 1; }

mkdir -p "$WORK/lectern-models/$MODEL/1"
cp "$ONNX" "$WORK/lectern-models/$MODEL/1/model.onnx"

# The framed request: flag 0, 4-byte big-endian length, the message.
"$PY" - "$WORK/request.bin" <<'PY'
import struct, sys
from tritonclient.grpc import service_pb2
request = service_pb2.ModelInferRequest(model_name="iris-logreg")
x = request.inputs.add(name="X", datatype="FP32", shape=[1, 4])
x.contents.fp32_contents.extend([5.1, 3.5, 1.4, 0.2])
message = request.SerializeToString()
open(sys.argv[1], "wb").write(b"\0" + struct.pack(">I", len(message)) + message)
PY

# check_grpc PORT: the server answers the request with onnxruntime's label.
check_grpc() {
    "$PY" - "$1" "$ONNX" <<'PY'
import sys, time
import grpc, numpy as np, onnxruntime as ort
from tritonclient.grpc import service_pb2, service_pb2_grpc
port, onnx = sys.argv[1:3]
row = np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32)
expected = int(ort.InferenceSession(onnx).run(None, {"X": row})[0][0])
request = service_pb2.ModelInferRequest(model_name="iris-logreg")
x = request.inputs.add(name="X", datatype="FP32", shape=[1, 4])
x.contents.fp32_contents.extend(row.ravel().tolist())
stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
for _ in range(600):
    try:
        answer = stub.ModelInfer(request, timeout=2)
        break
    except grpc.RpcError as e:
        last = e
        time.sleep(0.1)
else:
    sys.exit(f"no answer: {last}")
labels = []
for i, out in enumerate(answer.outputs):
    if out.name in ("output_label", "label", "predict"):
        raw = answer.raw_output_contents[i] if answer.raw_output_contents else None
        if raw is not None:
            labels = np.frombuffer(raw, dtype={"INT64": "<i8", "INT32": "<i4"}[out.datatype]).tolist()
        else:
            labels = list(out.contents.int64_contents) or list(out.contents.int_contents)
if labels != [expected]:
    sys.exit(f"label {labels} is not onnxruntime's {expected}: {answer}")
print(f"answer ok: {[o.name for o in answer.outputs]}")
PY
}

start_lectern() {
    local http="$1" grpc="$2"
    "${PRIO[@]}" taskset -c "$SERVER_CPU" "$LECTERN_BIN" serve --models "$WORK/lectern-models" \
        --listen "127.0.0.1:$http" --grpc-listen "127.0.0.1:$grpc" --data "$WORK/lectern-data" \
        >"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
}

start_mlserver() {
    local http="$1" grpc="$2"
    rm -rf "$WORK/mlserver"
    "$VENV/bin/python" "$ROOT/bench/peers/train_iris.py" "$WORK/mlserver" "$http" "$grpc" "$(free_port)" >&2
    (cd "$WORK/mlserver" && exec "${PRIO[@]}" taskset -c "$SERVER_CPU" "$VENV/bin/mlserver" start "$WORK/mlserver") \
        >"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
}

# run_h2load SECONDS OUTFILE PORT
run_h2load() {
    timeout $(($1 + 30)) "${PRIO[@]}" taskset -c "$WRK_CPU" h2load -D "$1" -c "$CONNS" -m 1 -t 1 \
        -d "$WORK/request.bin" -H 'content-type: application/grpc' -H 'te: trailers' \
        "http://127.0.0.1:$3$GRPC_PATH" >"$2" 2>&1 || true
}

declare -A RPS MEAN NOTE CPU
for s in $SERVERS; do
    http="$(free_port)"
    grpc="$(free_port)"
    log "---- $s on core $SERVER_CPU"
    case "$s" in
    lectern-grpc | lectern-rest) start_lectern "$http" "$grpc" ;;
    mlserver-grpc) start_mlserver "$http" "$grpc" ;;
    *) log "unknown server $s"; exit 2 ;;
    esac
    if ! check_grpc "$grpc" >&2; then
        NOTE[$s]="wrong answer or not ready"
        tail -n 20 "$WORK/server.log" >&2
        stop_server
        continue
    fi
    out="$WORK/$s.txt"
    hz="$(getconf CLK_TCK)"
    if [ "$s" = lectern-rest ]; then
        url="http://127.0.0.1:$http/v2/models/$MODEL/infer"
        run_wrk "$WARMUP" "$CONNS" /dev/null "$url"
        cpu0="$(group_cpu_ticks "$SERVER_PID")"; t0="$(date +%s.%N)"
        run_wrk "$DURATION" "$CONNS" "$out" "$url"
        cpu1="$(group_cpu_ticks "$SERVER_PID")"; t1="$(date +%s.%N)"
        line="$(grep '^BENCH ' "$out" || true)"
        bad="$(( $(wrk_field "$line" non2xx) + $(wrk_field "$line" socket_errors) ))"
        RPS[$s]="$(wrk_field "$line" rps)"
        MEAN[$s]="$(wrk_field "$line" mean_us)"
        [ "$bad" = 0 ] || NOTE[$s]="$bad errors"
    else
        run_h2load "$WARMUP" /dev/null "$grpc"
        cpu0="$(group_cpu_ticks "$SERVER_PID")"; t0="$(date +%s.%N)"
        run_h2load "$DURATION" "$out" "$grpc"
        cpu1="$(group_cpu_ticks "$SERVER_PID")"; t1="$(date +%s.%N)"
        cat "$out" >&2
        RPS[$s]="$(sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p' "$out")"
        MEAN[$s]="$(awk '/^time for request:/ { v = $6; if (v ~ /ms$/) { sub(/ms$/, "", v); v *= 1000 } else if (v ~ /us$/) { sub(/us$/, "", v) } else if (v ~ /s$/) { sub(/s$/, "", v); v *= 1000000 } print v }' "$out")"
        failed="$(sed -n 's/^requests: .* \([0-9]*\) failed.*/\1/p' "$out")"
        [ "${failed:-0}" = 0 ] || NOTE[$s]="$failed failed"
    fi
    CPU[$s]="$(awk -v a="$cpu0" -v b="$cpu1" -v hz="$hz" -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%.0f%%", 100 * (b - a) / hz / (t1 - t0) }')"
    stop_server
done

echo
echo "V2 infer over gRPC and REST, one iris row, concurrency $CONNS, one core per server"
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); Lectern $(lectern_version); ${DURATION}s runs after ${WARMUP}s warm-up; h2load (gRPC) / wrk (REST) on core $WRK_CPU, servers on core $SERVER_CPU; nice $NICE_VALUE"
echo
echo "| server | req/s | mean latency | server CPU | note |"
echo "| --- | ---: | ---: | ---: | --- |"
for s in $SERVERS; do
    if [ -n "${RPS[$s]:-}" ]; then
        printf '| %s | %.0f | %.2f ms | %s | %s |\n' "$s" "${RPS[$s]}" "$(awk -v u="${MEAN[$s]:-0}" 'BEGIN { print u / 1000 }')" "${CPU[$s]}" "${NOTE[$s]:-}"
    else
        printf '| %s | | | | %s |\n' "$s" "${NOTE[$s]:-not run}"
    fi
done
echo
ratio() { awk -v a="${RPS[$1]}" -v b="${RPS[$2]}" -v n="$3" 'BEGIN { printf "%s: %.2fx req/s\n", n, a / b }'; }
if [ -n "${RPS[lectern-grpc]:-}" ] && [ -n "${RPS[lectern-rest]:-}" ]; then ratio lectern-grpc lectern-rest "Lectern gRPC / Lectern REST"; fi
if [ -n "${RPS[lectern-grpc]:-}" ] && [ -n "${RPS[mlserver-grpc]:-}" ]; then ratio lectern-grpc mlserver-grpc "Lectern gRPC / MLServer gRPC"; fi
