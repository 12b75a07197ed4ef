-- backstop-redis: the window's common decisions (after layout.lua, before ring.lua's
-- helpers and window.lua), taken from the header and at most one slot before any
-- helper or table is built: building them is a large share of these calls' time.
-- They decide exactly as window.lua would, for a key in this layout whose ring holds
-- admission n - limit under its modulus (limit <= cap):
--   a refusal (of every request of the batch), when admission n - limit is still in
--   the window and nothing is written (this window is no longer than any before; else
--   the expiry moves on, in window.lua);
--   one admission (count = 1): the header and the new slot written in place, the
--   expiry moved on.
-- Every other call goes on to window.lua, which reuses `head`.
-- ARGV[4]  count
-- ARGV[5]  the deadline of the decisions on Redis's clock, in us ('' = none): one that
--          arrives later is not decided, and counts nothing
-- ARGV[6]  max_keys, ARGV[7] the client's member in the registry KEYS[2] (window.lua)
local count = tonumber(ARGV[4])
local deadline = tonumber(ARGV[5])
local max_keys = tonumber(ARGV[6] or '0') or 0
local late = deadline and now > deadline
local head = nil
if not late then
  head = redis.call('GETRANGE', KEY, 0, HEADER - 1)
  if #head >= HEADER and string.sub(head, 1, 2) == MAGIC then
    local _, cap, n, newest, w_max, w_min, horizon, base = struct.unpack(FORMAT, head)
    if cap >= 1 and base <= n and limit <= cap then
      local wait = 0
      if n >= limit then
        local at = HEADER + 8 * ((n - limit - base) % cap)
        local slot = redis.call('GETRANGE', KEY, at, at + 7)
        -- A slot the string does not hold yet was forgotten when the ring grew: the
        -- horizon (as ring.lua's times).
        local oldest = horizon
        if #slot == 8 then oldest = struct.unpack('>I8', slot) end
        wait = oldest + window - now
      end
      if wait > 0 then
        if window <= w_max then
          if count == 1 then return wait end
          local out = {}
          for i = 1, count do out[i] = wait end
          return out
        end
      elseif count == 1 then
        newest = math.max(now, newest)
        w_max = math.max(w_max, window)
        w_min = math.min(w_min, window)
        redis.call('SETRANGE', KEY, 0,
          struct.pack(FORMAT, MAGIC, cap, n + 1, newest, w_max, w_min, horizon, base))
        redis.call('SETRANGE', KEY, HEADER + 8 * ((n - base) % cap), struct.pack('>I8', newest))
        if injected then return 0 end
        -- As window.lua's expiry.
        local expire_ms = math.floor((newest + w_max + 999) / 1000) + 1
        redis.call('PEXPIREAT', KEY, expire_ms)
        if max_keys > 0 then
          redis.call('ZADD', KEYS[2], expire_ms * 1000, ARGV[7])
        end
        return 0
      end
    end
  end
end
