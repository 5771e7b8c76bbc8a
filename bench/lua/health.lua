-- (d) GET /health/live: the ceiling of the HTTP stack.
dofile(os.getenv("BENCH_LUA") .. "/common.lua")
wrk.method = "GET"
wrk.path = "/health/live"
