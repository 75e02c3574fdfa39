-- wrk script for the manifest GET scenario of benchmarks/run.py: sends the Accept header a
-- stock client (skopeo, containerd) sends, counts non-200 answers, and prints one JSON line
-- (prefixed WRKJSON) with the request count and latency percentiles in microseconds.
--
-- With WRK_TARGETS="HOST:PORT,HOST:PORT,..." in the environment, wrk's threads are spread
-- over those servers (thread k, with its connections, to target k modulo their number), as
-- the scale-out scenario does with several registry processes; the URL's path still applies.
wrk.method = "GET"

local targets = os.getenv("WRK_TARGETS")
if targets and targets ~= "" then
  local addrs = {}
  for target in string.gmatch(targets, "[^,]+") do
    local host, port = string.match(target, "^(.+):(%d+)$")
    local found = wrk.lookup(host, port)
    if found == nil or #found == 0 then
      error("WRK_TARGETS: cannot resolve " .. target)
    end
    table.insert(addrs, found[1])
  end
  local started = 0
  function setup(thread)
    thread.addr = addrs[started % #addrs + 1]
    started = started + 1
  end
end
wrk.headers["Accept"] = "application/vnd.oci.image.manifest.v1+json, "
  .. "application/vnd.oci.image.index.v1+json, "
  .. "application/vnd.docker.distribution.manifest.v2+json, "
  .. "application/vnd.docker.distribution.manifest.list.v2+json"

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "bytes": %d, "errors_status": %d, ' ..
    '"errors_connect": %d, "errors_read": %d, "errors_write": %d, "errors_timeout": %d, ' ..
    '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.status, e.connect, e.read, e.write,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
