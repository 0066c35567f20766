-- What the wrk scripts of scripts/bench share: a fixed list of requests sent
-- in turn, and the machine-readable BENCH line the mode scripts parse.

local rotation = {}

-- Defines wrk's init() and request(). init() formats the requests that
-- `make_requests` returns once, so that the load generator spends its time
-- on the network and not in Lua; request() hands them out in turn.
function rotation.install(make_requests)
  local requests = {}
  local next_index = 1

  function init(args)
    requests = make_requests()
  end

  function request()
    local chosen = requests[next_index]
    next_index = next_index % #requests + 1
    return chosen
  end
end

-- How each value a BENCH line can hold is read from wrk's summary.
local readers = {
  requests = function(summary) return summary.requests end,
  duration_us = function(summary) return summary.duration end,
  p50_us = function(_, latency) return latency:percentile(50) end,
  p99_us = function(_, latency) return latency:percentile(99) end,
  errors_connect = function(summary) return summary.errors.connect end,
  errors_read = function(summary) return summary.errors.read end,
  errors_write = function(summary) return summary.errors.write end,
  errors_status = function(summary) return summary.errors.status end,
  errors_timeout = function(summary) return summary.errors.timeout end,
}

-- Defines wrk's done(): one line "BENCH name=value ..." after wrk's own
-- report, with the values `names` lists, in that order.
function rotation.report(names)
  function done(summary, latency)
    local fields = {}
    for _, name in ipairs(names) do
      fields[#fields + 1] = string.format("%s=%d", name, readers[name](summary, latency))
    end
    io.write("BENCH " .. table.concat(fields, " ") .. "\n")
  end
end

return rotation
