-- (l) GET /whoami at the gatehouse-verify app, cycling over the access
-- tokens in $BENCH_TOKENS like me.lua.
dofile(os.getenv("BENCH_LUA") .. "/common.lua")

local reqs = {}
local i = 0

function init(args)
   for _, token in ipairs(my_lines(os.getenv("BENCH_TOKENS"))) do
      reqs[#reqs + 1] = wrk.format("GET", "/whoami", { ["Authorization"] = "Bearer " .. token })
   end
   assert(#reqs > 0, "no tokens for this thread")
end

function request()
   i = i % #reqs + 1
   return reqs[i]
end
