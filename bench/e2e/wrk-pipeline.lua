-- wrk script: writes N GETs of the URL's path back to back per request batch (N = first script argument, default 16) and prints the WRK_JSON summary line.
local depth = 16
local batch = nil

init = function(args)
  depth = tonumber(args[1]) or 16
  local requests = {}
  for i = 1, depth do requests[i] = wrk.format(nil) end
  batch = table.concat(requests)
end

request = function()
  return batch
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"bytes":%d,"durationMicros":%d,"connectErrors":%d,"readErrors":%d,"writeErrors":%d,"statusErrors":%d,"timeouts":%d,"p50Micros":%d,"p99Micros":%d}\n',
    summary.requests, summary.bytes, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
