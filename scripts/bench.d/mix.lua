-- wrk script for scripts/bench: a three-route migration mix.
-- One request in three carries "X-Backend: new" (the canary rule), one in
-- three asks for a path under /api/v2/ (the prefix rule), and the rest go to
-- other paths (the catch-all). The requests are formatted once, in init, so
-- that the load generator spends its time on the network and not in Lua.

local requests = {}
local next_index = 1

function init(args)
  local canary = {["X-Backend"] = "new"}
  requests = {
    wrk.format("GET", "/legacy/page/17", canary),
    wrk.format("GET", "/api/v2/orders/42"),
    wrk.format("GET", "/legacy/orders/42"),
    wrk.format("GET", "/account/settings", canary),
    wrk.format("GET", "/api/v2/users/7?fields=name"),
    wrk.format("GET", "/static/app.js"),
  }
end

function request()
  local chosen = requests[next_index]
  next_index = next_index % #requests + 1
  return chosen
end

-- One machine-readable line after wrk's own report; times are microseconds.
function done(summary, latency)
  local errors = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d p50_us=%d p99_us=%d " ..
    "errors_connect=%d errors_read=%d errors_write=%d errors_status=%d errors_timeout=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    errors.connect, errors.read, errors.write, errors.status, errors.timeout))
end
