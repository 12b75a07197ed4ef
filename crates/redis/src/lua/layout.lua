-- backstop-redis: the window's ring, its layout and the call's arguments (the first
-- part of every window script, prepended at build time: then refusal.lua for
-- window.lua, then ring.lua's helpers, then the script's own body).
--
-- One string per window: a 54-byte header and the ring's slots.
--   header  'w2' (the layout), cap (u32), then n, newest, w_max, w_min, horizon, base
--           (u64 each), all big-endian
--   slots   8-byte big-endian recorded times in microseconds; admission a (counted from
--           0) in slot (a - base) mod cap
-- n        admissions so far; newest, the recorded time of the last one
-- cap      the ring's modulus: the largest limit the key has been used with
-- w_max    the longest window it has been used with: its expiry follows that one, so
--          a replica with a shorter window never cuts it
-- w_min    the narrowest window an admission was made under
-- horizon  every admission the ring no longer holds was recorded at or before it
--          (0: none was forgotten)
-- The string holds P <= cap slots and grows by one slot per admission until P = cap: a
-- fresh key costs its header and one slot. A call reads the header and the slots it
-- needs (GETRANGE) and writes what changed (SETRANGE), never the whole value, except
-- once when the limit rises above cap after the ring wrapped (see window.lua's grow).
--
-- KEYS[1]  the window
-- ARGV[1]  limit, ARGV[2] window_us, ARGV[3] now_us ('' = Redis's own TIME)
-- Effects replication: needed on 5 and 6 (TIME before a write); always so from 7.0.
if not redis.REDIS_VERSION_NUM and redis.replicate_commands then pcall(redis.replicate_commands) end
local KEY = KEYS[1]
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local injected = ARGV[3] ~= ''
local now
if injected then
  now = tonumber(ARGV[3])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local HEADER = 54
local FORMAT = '>c2>I4>I8>I8>I8>I8>I8>I8'
local MAGIC = 'w2'
