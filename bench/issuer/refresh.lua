-- Refresh rotation: each thread (one connection each) follows its own session's chain of
-- refresh tokens, RT1..RTn from the environment, so every request is a real rotation.
local next_thread = 0
function setup(thread)
  next_thread = next_thread + 1
  thread:set("rt", os.getenv("RT" .. next_thread))
end

function request()
  return wrk.format("POST", "/v1/token",
    { ["Content-Type"] = "application/x-www-form-urlencoded" },
    "grant_type=refresh_token&refresh_token=" .. rt)
end

function response(status, headers, body)
  if status == 200 then
    rt = string.match(body, '"refresh_token":"([^"]+)"')
  end
end
