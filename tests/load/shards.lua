-- wrk script: GET model shards (4 MiB each) in turn; SHARDS is a space-separated list of paths.
local paths = {}
local i = 0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  for p in string.gmatch(os.getenv("SHARDS"), "%S+") do table.insert(paths, p) end
  i = math.random(#paths)
end

function request()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end

s2xx, s429, s4xx, s5xx = 0, 0, 0, 0

function response(status, headers, body)
  if status < 300 then s2xx = s2xx + 1
  elseif status == 429 then s429 = s429 + 1
  elseif status < 500 then s4xx = s4xx + 1
  else s5xx = s5xx + 1 end
end

function done(summary, latency, requests)
  local c = {0, 0, 0, 0}
  for _, t in ipairs(threads) do
    c[1] = c[1] + t:get("s2xx"); c[2] = c[2] + t:get("s429")
    c[3] = c[3] + t:get("s4xx"); c[4] = c[4] + t:get("s5xx")
  end
  io.write(string.format('COUNTS {"2xx":%d,"429":%d,"4xx":%d,"5xx":%d}\n', c[1], c[2], c[3], c[4]))
  io.write(string.format(
    'JSON {"requests":%d,"bytes":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d}\n',
    summary.requests, summary.bytes, summary.duration, latency:percentile(50),
    latency:percentile(99), latency.max, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.status, summary.errors.timeout))
end
