-- Shared by every bench script: thread numbering, token files and a
-- done() that writes the run's numbers as JSON to $BENCH_OUT.

local counter = 0

function setup(thread)
   thread:set("tid", counter)
   counter = counter + 1
end

-- Lines of a file (tokens, emails), skipping blanks.
function load_lines(path)
   local lines = {}
   for line in io.lines(path) do
      if line ~= "" then lines[#lines + 1] = line end
   end
   return lines
end

-- The lines that belong to this thread (round robin over threads).
function my_lines(path)
   local n = tonumber(os.getenv("BENCH_THREADS") or "1")
   local mine = {}
   for k, line in ipairs(load_lines(path)) do
      if (k - 1) % n == tid then mine[#mine + 1] = line end
   end
   return mine
end

-- BENCH_DELAY_MS paces each connection: a pause before every request, not
-- counted in the latency.
local pause = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
if pause > 0 then
   function delay() return pause end
end

function done(summary, latency, requests)
   local f = assert(io.open(os.getenv("BENCH_OUT"), "w"))
   local e = summary.errors
   f:write(string.format(
      '{"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"latency_us":{"min":%d,"max":%d,"mean":%.1f,"stdev":%.1f,' ..
      '"p50":%d,"p75":%d,"p90":%d,"p99":%d,"p999":%d}}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency.min, latency.max, latency.mean, latency.stdev,
      latency:percentile(50), latency:percentile(75), latency:percentile(90),
      latency:percentile(99), latency:percentile(99.9)))
   f:close()
end
