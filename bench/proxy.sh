#!/usr/bin/env bash
# Caching proxy benchmark (issue 13): Lectern's `/proxy/{name}/...` against nginx with
# `proxy_cache`, the same upstream, the same TTL (5 minutes), one core each.
#
#   bench/proxy.sh
#   BENCH_DURATION=20 BENCH_ROUNDS=3 bench/proxy.sh
#
# The upstream: a second nginx (its own process, `return 200` of a 1 KB JSON body at /api/...),
# pinned with wrk to core $BENCH_WRK_CPU (1). The servers under test run alone on core
# $BENCH_SERVER_CPU (0): Lectern (release build; its runtime then has one worker thread) and
# nginx with `worker_processes 1`, `proxy_cache` (a 5-minute `proxy_cache_valid`, keep-alive
# to the upstream, `proxy_cache_lock on`, the same secret header added). Before measuring,
# each proxy's answer must be the upstream's body, and its second answer a hit
# (`x-lectern-cache: hit`, nginx `$upstream_cache_status` HIT).
#
# 1. Hits: wrk -t1 -c$BENCH_CONNECTIONS (32) GETs of one cached URL, BENCH_WARMUP seconds
#    unmeasured then BENCH_DURATION measured: requests/s and p99. Goal: Lectern >= 0.8x nginx.
# 2. Misses: wrk -t1 -c1 (one request at a time) through Lectern with `cache_ttl = 0` (every
#    request goes upstream), and straight to the upstream: p50 and p99; the p99 difference is
#    what the proxy adds. Goal: at most 1 ms. (nginx without cache shown for reference.)
# Rounds are interleaved (Lectern, nginx, Lectern, ...); each row is the median round.
#
# Environment:
#   BENCH_DURATION     seconds per measured run (default 10; capped at 120)
#   BENCH_WARMUP       seconds of unmeasured load before each run (default 2)
#   BENCH_ROUNDS       rounds (default 3)
#   BENCH_CONNECTIONS  wrk connections for hits (default 32)
#   BENCH_SERVER_CPU   core of the server under test (default 0); BENCH_WRK_CPU wrk's (default 1)
#   BENCH_NICE         nice value for the servers and wrk when run as root (default -19; "off")
#   BENCH_NO_BUILD=1   do not run cargo build (use $LECTERN_BIN as it is)
#   CARGO_TARGET_DIR   default $HOME/.cache/lectern/target (LECTERN_BIN: its release/lectern)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export BENCH_SERVER_CPU="${BENCH_SERVER_CPU:-0}" BENCH_WRK_CPU="${BENCH_WRK_CPU:-1}"
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

DURATION="${BENCH_DURATION:-10}"
WARMUP="${BENCH_WARMUP:-2}"
ROUNDS="${BENCH_ROUNDS:-3}"
CONNS="${BENCH_CONNECTIONS:-32}"
if [ "$DURATION" -gt 120 ]; then DURATION=120; fi
export WRK_THREADS=1 BENCH_METHOD=GET

for tool in wrk nginx curl; do
    command -v "$tool" >/dev/null || { log "$tool missing: apt-get install -y $tool"; exit 1; }
done
build_lectern

UP_PORT="$(free_port)"
NGINX_PORT="$(free_port)"
LECTERN_PORT="$(free_port)"
UPSTREAM_PID=""
BODY="$(python3 -c 'import json; print(json.dumps({"city": "Paris", "hours": [{"h": h, "temp": 20 + h / 10, "wind": h % 7} for h in range(24)], "note": "x" * 100}, separators=(",", ":")))')"
export BENCH_PROXY_KEY="bench-secret-value"

mkdir -p "$WORK/up" "$WORK/proxy/cache"
nginx_common() { # DIR: the temp paths of an nginx instance that runs as a foreground process
    # As root, the worker must reach the cache in the (0700) temporary directory.
    if [ "$(id -u)" = 0 ]; then echo "user root;"; fi
    cat <<EOF
worker_processes 1;
daemon off;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
EOF
}
{
    nginx_common "$WORK/up"
    cat <<EOF
http {
    access_log off;
    client_body_temp_path $WORK/up/body; proxy_temp_path $WORK/up/proxy;
    fastcgi_temp_path $WORK/up/fcgi; uwsgi_temp_path $WORK/up/uwsgi; scgi_temp_path $WORK/up/scgi;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$UP_PORT;
        location /api/ { default_type application/json; return 200 '$BODY'; }
    }
}
EOF
} >"$WORK/up/nginx.conf"
{
    nginx_common "$WORK/proxy"
    cat <<EOF
http {
    access_log off;
    client_body_temp_path $WORK/proxy/body; proxy_temp_path $WORK/proxy/proxy;
    fastcgi_temp_path $WORK/proxy/fcgi; uwsgi_temp_path $WORK/proxy/uwsgi; scgi_temp_path $WORK/proxy/scgi;
    keepalive_requests 1000000;
    proxy_cache_path $WORK/proxy/cache levels=1:2 keys_zone=bench:10m max_size=64m inactive=10m use_temp_path=off;
    upstream backend { server 127.0.0.1:$UP_PORT; keepalive 32; }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location /proxy/bench/ {
            proxy_pass http://backend/api/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Api-Key "$BENCH_PROXY_KEY";
            proxy_cache bench;
            proxy_cache_valid 200 5m;
            proxy_cache_lock on;
            add_header X-Cache \$upstream_cache_status;
        }
        location /proxy/nocache/ {
            proxy_pass http://backend/api/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Api-Key "$BENCH_PROXY_KEY";
        }
    }
}
EOF
} >"$WORK/proxy/nginx.conf"
cat >"$WORK/lectern.toml" <<EOF
[proxy.bench]
url = "http://127.0.0.1:$UP_PORT/api/"
secret_headers = { "X-Api-Key" = "BENCH_PROXY_KEY" }
cache_ttl = "5m"

[proxy.nocache]
url = "http://127.0.0.1:$UP_PORT/api/"
secret_headers = { "X-Api-Key" = "BENCH_PROXY_KEY" }
cache_ttl = 0
EOF

stop_upstream() {
    if [ -n "$UPSTREAM_PID" ]; then
        kill -TERM -- "-$UPSTREAM_PID" 2>/dev/null || true
        wait "$UPSTREAM_PID" 2>/dev/null || true
        UPSTREAM_PID=""
    fi
}
trap 'stop_upstream; bench_cleanup' EXIT

wait_for() { # URL: answers within 10 s
    for _ in $(seq 100); do
        if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    log "no answer from $1"
    return 1
}

"${PRIO[@]}" taskset -c "$WRK_CPU" nginx -c "$WORK/up/nginx.conf" >"$WORK/up/out.log" 2>&1 &
UPSTREAM_PID=$!
wait_for "http://127.0.0.1:$UP_PORT/api/x"

start_server() { # lectern | nginx
    case "$1" in
        lectern)
            mkdir -p "$WORK/data"
            "${PRIO[@]}" taskset -c "$SERVER_CPU" "$LECTERN_BIN" serve --config "$WORK/lectern.toml" \
                --listen "127.0.0.1:$LECTERN_PORT" --data "$WORK/data" --models "$WORK/no-models" \
                --log warn >"$WORK/lectern.log" 2>&1 &
            SERVER_PID=$!
            wait_for "http://127.0.0.1:$LECTERN_PORT/v2/health/live"
            ;;
        nginx)
            "${PRIO[@]}" taskset -c "$SERVER_CPU" nginx -c "$WORK/proxy/nginx.conf" >"$WORK/proxy/out.log" 2>&1 &
            SERVER_PID=$!
            wait_for "http://127.0.0.1:$NGINX_PORT/proxy/nocache/x"
            ;;
    esac
}

base_url() { case "$1" in lectern) echo "http://127.0.0.1:$LECTERN_PORT" ;; nginx) echo "http://127.0.0.1:$NGINX_PORT" ;; esac; }

# check SERVER: the proxied body is the upstream's, and the second answer a hit.
check() {
    local url body hit
    url="$(base_url "$1")/proxy/bench/weather?city=Paris"
    body="$(curl -fsS "$url")"
    [ "$body" = "$BODY" ] || { log "$1: the proxied body differs from the upstream's"; return 1; }
    hit="$(curl -fsS -D - -o /dev/null "$url" | tr -d '\r' | awk -F': ' 'tolower($1) == "x-lectern-cache" || tolower($1) == "x-cache" { print tolower($2) }')"
    [ "$hit" = hit ] || { log "$1: the second answer is not a hit ($hit)"; return 1; }
}

# measure NAME CONNS URL: one warm-up and one measured wrk run; prints "rps p50_us p99_us".
measure() {
    local name="$1" conns="$2" url="$3" out line
    if [ "$WARMUP" -gt 0 ]; then run_wrk "$WARMUP" "$conns" /dev/null "$url"; fi
    out="$WORK/wrk-$name.txt"
    run_wrk "$DURATION" "$conns" "$out" "$url"
    line="$(grep '^BENCH ' "$out" || true)"
    if [ -z "$line" ] || [ "$(wrk_field "$line" non2xx)" != 0 ] || [ "$(wrk_field "$line" socket_errors)" != 0 ]; then
        log "$name: wrk failed or saw errors: $(tail -n 3 "$out")"
        echo "0 0 0"
        return
    fi
    echo "$(wrk_field "$line" rps) $(wrk_field "$line" p50_us) $(wrk_field "$line" p99_us)"
}

declare -A RESULTS
LOAD_BEFORE="$(busy_pct)%"
for round in $(seq "$ROUNDS"); do
    for server in lectern nginx; do
        start_server "$server"
        check "$server"
        base="$(base_url "$server")"
        RESULTS[hit-$server-$round]="$(measure "hit-$server-$round" "$CONNS" "$base/proxy/bench/weather?city=Paris")"
        RESULTS[miss-$server-$round]="$(measure "miss-$server-$round" 1 "$base/proxy/nocache/weather?city=Paris")"
        stop_server
        log "round $round $server: hits ${RESULTS[hit-$server-$round]}; misses ${RESULTS[miss-$server-$round]}"
    done
    RESULTS[miss-direct-$round]="$(measure "miss-direct-$round" 1 "http://127.0.0.1:$UP_PORT/api/weather?city=Paris")"
    log "round $round direct: ${RESULTS[miss-direct-$round]}"
done
LOAD_AFTER="$(busy_pct)%"

# median KIND SERVER FIELD(1 rps, 2 p50, 3 p99): the median over the rounds (by that field).
median() {
    local values=()
    for round in $(seq "$ROUNDS"); do
        values+=("$(awk -v f="$3" '{ print $f }' <<<"${RESULTS[$1-$2-$round]}")")
    done
    printf '%s\n' "${values[@]}" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

echo
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); Lectern $(lectern_version); $(nginx -v 2>&1 | sed 's/.*: //'); servers on core $SERVER_CPU, wrk and the upstream on core $WRK_CPU; ${DURATION}s runs after ${WARMUP}s warm-up, $ROUNDS round(s), medians; nice $NICE_VALUE; load before $LOAD_BEFORE, after $LOAD_AFTER"
echo
echo "| cache hits, wrk -t1 -c$CONNS | requests/s | p50 | p99 |"
echo "|---|---:|---:|---:|"
for server in lectern nginx; do
    printf '| %s | %.0f | %.2f ms | %.2f ms |\n' "$server" "$(median hit "$server" 1)" \
        "$(awk '{ print $1 / 1000 }' <<<"$(median hit "$server" 2)")" "$(awk '{ print $1 / 1000 }' <<<"$(median hit "$server" 3)")"
done
echo
echo "| misses (no cache), wrk -t1 -c1 | requests/s | p50 | p99 |"
echo "|---|---:|---:|---:|"
for server in direct lectern nginx; do
    printf '| %s | %.0f | %.3f ms | %.3f ms |\n' "$server" "$(median miss "$server" 1)" \
        "$(awk '{ print $1 / 1000 }' <<<"$(median miss "$server" 2)")" "$(awk '{ print $1 / 1000 }' <<<"$(median miss "$server" 3)")"
done
echo
RATIO="$(awk -v l="$(median hit lectern 1)" -v n="$(median hit nginx 1)" 'BEGIN { printf "%.2f", (n > 0 ? l / n : 0) }')"
ADDED="$(awk -v l="$(median miss lectern 3)" -v d="$(median miss direct 3)" 'BEGIN { printf "%.3f", (l - d) / 1000 }')"
echo "hits: Lectern / nginx requests/s = ${RATIO}x (goal >= 0.8x)"
echo "misses: Lectern p99 - direct p99 = ${ADDED} ms (goal <= 1 ms)"
