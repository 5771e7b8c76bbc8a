-- (b) POST /auth/login, cycling over the emails in $BENCH_EMAILS, all with
-- the password $BENCH_PASSWORD.
dofile(os.getenv("BENCH_LUA") .. "/common.lua")

local reqs = {}
local i = 0

function init(args)
   local password = os.getenv("BENCH_PASSWORD")
   for _, email in ipairs(my_lines(os.getenv("BENCH_EMAILS"))) do
      local body = '{"email":"' .. email .. '","password":"' .. password .. '"}'
      reqs[#reqs + 1] = wrk.format("POST", "/auth/login",
         { ["Content-Type"] = "application/json" }, body)
   end
   assert(#reqs > 0, "no emails for this thread")
end

function request()
   i = i % #reqs + 1
   return reqs[i]
end
