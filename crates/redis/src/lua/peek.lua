-- backstop-redis: would the window admit one request now? Read-only (after ring.lua):
-- nothing is recorded, the key and its expiry are left alone, and a key in the earlier
-- layout is read without being rewritten. Same rule as window.lua.
-- Returns  0 when it would be admitted, else the wait in microseconds.
local loaded = load()
if loaded then return loaded end
if ring.n < limit then return 0 end
local t
if limit <= ring.cap then
  t = times(ring.n - limit, 1)[1]
else
  -- window.lua would first grow the ring to this limit: admission n - limit is then one
  -- the ring does not hold, counted at the horizon that growth sets.
  t = horizon_on_growth(slots_held())
end
if t + window > now then return t + window - now end
return 0
