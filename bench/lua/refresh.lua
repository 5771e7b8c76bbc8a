-- (e) POST /auth/refresh rotation. Each thread holds a queue of refresh
-- tokens (its share of $BENCH_TOKENS, one session each): a request takes
-- one, its answer puts the successor back. Every token is used once, as a
-- client does; a non-200 answer loses that session (counted by wrk).
dofile(os.getenv("BENCH_LUA") .. "/common.lua")

local queue, head, tail = {}, 1, 0

local function push(token)
   tail = tail + 1
   queue[tail] = token
end

local function pop()
   if head > tail then return nil end
   local token = queue[head]
   queue[head] = nil
   head = head + 1
   return token
end

function init(args)
   for _, token in ipairs(my_lines(os.getenv("BENCH_TOKENS"))) do push(token) end
end

function request()
   local token = pop() or "exhausted"
   return wrk.format("POST", "/auth/refresh", { ["Content-Type"] = "application/json" },
      '{"refresh_token":"' .. token .. '"}')
end

function response(status, headers, body)
   if status == 200 then
      local token = body:match('"refresh_token"%s*:%s*"([^"]+)"')
      if token then push(token) end
   end
end
