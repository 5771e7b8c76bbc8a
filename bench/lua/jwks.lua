-- (n) GET /.well-known/jwks.json: the key set every app fetches.
dofile(os.getenv("BENCH_LUA") .. "/common.lua")
wrk.method = "GET"
wrk.path = "/.well-known/jwks.json"
