-- wrk script for the profile run: bench/peers/wrk/post.lua (same request, same WRKJSON line),
-- and once WRK_COUNT (default 2000) answers have arrived the thread stops sending and creates
-- WRK_DONE_FILE (if set), on which bench/run.sh ends wrk with SIGINT (wrk otherwise waits out
-- its -d duration).  A profile thus covers a fixed number of requests.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "peers/wrk/post.lua")
local seen, limit = 0, tonumber(os.getenv("WRK_COUNT") or "2000")
local done_file = os.getenv("WRK_DONE_FILE")
function response(status, headers, body)
  seen = seen + 1
  if seen == limit then
    if done_file then local f = io.open(done_file, "w"); if f then f:close() end end
    wrk.thread:stop()
  end
end
