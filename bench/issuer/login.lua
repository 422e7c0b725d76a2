-- Password logins with the correct password. Each wrk thread logs in as its own user
-- (USER_PREFIX .. n, registered beforehand), so the per-account lockout budget (which every
-- in-flight attempt reserves) is not what is measured.
local next_thread = 0
function setup(thread)
  next_thread = next_thread + 1
  thread:set("user", (os.getenv("USER_PREFIX") or "bench") .. next_thread)
end

function request()
  return wrk.format("POST", "/v1/token",
    { ["Content-Type"] = "application/x-www-form-urlencoded" },
    "grant_type=password&username=" .. user .. "&password=" .. os.getenv("BENCH_PASSWORD"))
end
