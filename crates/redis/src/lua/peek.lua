-- backstop-redis: would the window admit one request now? Read-only: nothing is
-- recorded and the key's expiry is left alone. Same rule as window.lua: admission n is
-- allowed iff admission n - limit was recorded at or before now - window.
-- KEYS[1]  the window (see window.lua).
-- ARGV     limit, window_us, now_us ('' = Redis's own TIME).
-- Returns  0 when it would be admitted, else the wait in microseconds.
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local now
if ARGV[3] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[3])
end
local HEADER = 24
local blob = redis.call('GET', KEYS[1])
if not blob then return 0 end
if #blob < HEADER then
  return redis.error_reply('BACKSTOP_CORRUPT ' .. KEYS[1] .. ' is not a backstop window')
end
local n, stored_limit = struct.unpack('>I8>I8', blob)
if stored_limit < 1 or #blob ~= HEADER + 8 * stored_limit then
  return redis.error_reply('BACKSTOP_CORRUPT ' .. KEYS[1] .. ' is not a backstop window')
end
-- Under another limit window.lua keeps the newest min(n, stored_limit, limit) times.
if math.min(n, stored_limit, limit) < limit then return 0 end
local oldest = struct.unpack('>I8', blob, HEADER + 8 * ((n - limit) % stored_limit) + 1)
local free_at = oldest + window
if free_at > now then return free_at - now end
return 0
