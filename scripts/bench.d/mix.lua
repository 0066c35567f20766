-- wrk script for scripts/bench: a three-route migration mix.
-- One request in three carries "X-Backend: new" (the canary rule), one in
-- three asks for a path under /api/v2/ (the prefix rule), and the rest go to
-- other paths (the catch-all).

-- wrk runs this file from any folder: the shared part is found next to it.
local folder = debug.getinfo(1, "S").source:match("^@(.*)/") or "."
package.path = folder .. "/?.lua;" .. package.path
local rotation = require("wrk_rotation")

rotation.install(function()
  local canary = {["X-Backend"] = "new"}
  return {
    wrk.format("GET", "/legacy/page/17", canary),
    wrk.format("GET", "/api/v2/orders/42"),
    wrk.format("GET", "/legacy/orders/42"),
    wrk.format("GET", "/account/settings", canary),
    wrk.format("GET", "/api/v2/users/7?fields=name"),
    wrk.format("GET", "/static/app.js"),
  }
end)

-- Times are microseconds.
rotation.report({"requests", "duration_us", "p50_us", "p99_us", "errors_connect", "errors_read", "errors_write",
                 "errors_status", "errors_timeout"})
