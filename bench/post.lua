-- wrk script for bench/infer.sh and others: POSTs one V2 infer body (or GETs), counts non-2xx
-- answers per status code, and prints a machine-readable summary line.
-- The body comes from $BENCH_BODY, or the file $BENCH_BODY_FILE (default: one iris row).

local default_body =
  '{"inputs":[{"name":"X","datatype":"FP32","shape":[1,4],"data":[5.1,3.5,1.4,0.2]}]}'

-- BENCH_METHOD=GET: plain GETs of the URL instead (bench/proxy.sh).
wrk.method = os.getenv("BENCH_METHOD") or "POST"
if wrk.method == "POST" then
  wrk.body = os.getenv("BENCH_BODY") or default_body
  -- BENCH_BODY_FILE: a body too large for an environment variable.
  local file = os.getenv("BENCH_BODY_FILE")
  if file then
    local f = assert(io.open(file, "rb"))
    wrk.body = f:read("*a")
    f:close()
  end
  wrk.headers["Content-Type"] = "application/json"
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  non2xx = 0
  codes = {}
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    codes[status] = (codes[status] or 0) + 1
  end
end

function done(summary, latency, requests)
  local bad = 0
  local by_code = {}
  for _, t in ipairs(threads) do
    bad = bad + t:get("non2xx")
    for code, n in pairs(t:get("codes")) do
      by_code[code] = (by_code[code] or 0) + n
    end
  end
  local parts = {}
  for code, n in pairs(by_code) do
    table.insert(parts, code .. "=" .. n)
  end
  io.write(string.format("non-2xx responses: %d %s\n", bad, table.concat(parts, " ")))
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout
  io.write(string.format(
    "BENCH requests=%d duration_us=%d rps=%.1f p50_us=%d p90_us=%d p99_us=%d non2xx=%d socket_errors=%d mean_us=%.0f\n",
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(90), latency:percentile(99), bad, errors, latency.mean))
end
