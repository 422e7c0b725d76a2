-- Password logins for the bench user (correct password, so no lockout).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.body = "grant_type=password&username=bench&password=" .. os.getenv("BENCH_PASSWORD")
