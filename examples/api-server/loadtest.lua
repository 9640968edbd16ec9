-- loadtest.lua — wrk request generator for examples/api-server/loadtest.
--   wrk ... -s loadtest.lua URL -- product   GET /v1/products/{1..1000}
--   wrk ... -s loadtest.lua URL -- list      GET /v1/products?category=C&page=1..5
-- and a one-line summary that the loadtest script parses.
local categories = { "books", "music", "garden", "kitchen", "toys", "tools", "sports", "games",
  "office", "pets", "audio", "camera", "phones", "laptops", "shoes", "bags", "watches", "beauty",
  "health", "food" }
local mode = "product"
local threads = {}
local n = 0

function setup(thread)
  n = n + 1
  thread:set("seed", n)
  table.insert(threads, thread)
end

function init(args)
  mode = args[1] or "product"
  math.randomseed(os.time() * 100 + (seed or 0))
end

function request()
  if mode == "list" then
    return wrk.format("GET", "/v1/products?category=" .. categories[math.random(1, 20)] ..
      "&page=" .. math.random(1, 5))
  end
  return wrk.format("GET", "/v1/products/" .. math.random(1, 1000))
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT requests=%d seconds=%.2f rps=%.0f p50_ms=%.2f p99_ms=%.2f " ..
    "errors=%d\n", summary.requests, summary.duration / 1e6,
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, e.connect + e.read + e.write + e.status + e.timeout))
end
