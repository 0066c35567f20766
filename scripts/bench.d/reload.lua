-- wrk script for scripts/bench reload: keep-alive GETs and POSTs.
-- One request in two is a POST with a small JSON body: a client cannot safely
-- resend a POST that a closed connection lost, so each loss counts. The
-- requests are formatted once, in init.

local requests = {}
local next_index = 1

function init(args)
  local json = {["Content-Type"] = "application/json"}
  requests = {
    wrk.format("GET", "/legacy/orders/42"),
    wrk.format("POST", "/api/orders", json, '{"item":"book","quantity":1}'),
    wrk.format("GET", "/api/orders/7"),
    wrk.format("POST", "/legacy/cart", json, '{"item":"pen","quantity":3}'),
  }
end

function request()
  local chosen = requests[next_index]
  next_index = next_index % #requests + 1
  return chosen
end

-- One machine-readable line after wrk's own report.
function done(summary, latency)
  local errors = summary.errors
  io.write(string.format(
    "BENCH requests=%d errors_connect=%d errors_read=%d errors_write=%d errors_status=%d errors_timeout=%d\n",
    summary.requests, errors.connect, errors.read, errors.write, errors.status, errors.timeout))
end
