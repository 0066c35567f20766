-- wrk script for scripts/bench reload: keep-alive GETs and POSTs.
-- One request in two is a POST with a small JSON body: a client cannot safely
-- resend a POST that a closed connection lost, so each loss counts.

-- wrk runs this file from any folder: the shared part is found next to it.
local folder = debug.getinfo(1, "S").source:match("^@(.*)/") or "."
package.path = folder .. "/?.lua;" .. package.path
local rotation = require("wrk_rotation")

rotation.install(function()
  local json = {["Content-Type"] = "application/json"}
  return {
    wrk.format("GET", "/legacy/orders/42"),
    wrk.format("POST", "/api/orders", json, '{"item":"book","quantity":1}'),
    wrk.format("GET", "/api/orders/7"),
    wrk.format("POST", "/legacy/cart", json, '{"item":"pen","quantity":3}'),
  }
end)

rotation.report({"requests", "errors_connect", "errors_read", "errors_write", "errors_status", "errors_timeout"})
