-- backstop-redis: the window's ring, read and written in place (after layout.lua; the
-- helpers of window.lua, peek.lua and refund.lua).
-- The layout before this one: a 24-byte header (n, limit, window) and `limit` slots,
-- admission a in slot a mod limit. Such keys are read once and rewritten (window.lua).
local V1_HEADER = 24

-- The window as loaded: `exists`, the header's fields, and `blob` (the slots, in memory)
-- for a key read in the earlier layout.
local ring = {}

local function corrupt()
  return redis.error_reply('BACKSTOP_CORRUPT ' .. KEY .. ' is not a backstop window')
end

local function fresh_ring()
  ring.exists = false
  ring.cap, ring.n, ring.newest = limit, 0, 0
  ring.w_max, ring.w_min, ring.horizon, ring.base = window, window, 0, 0
end

-- A key in the earlier layout: its slots in memory, the header derived from them.
local function load_v1(head)
  local n, cap, w = struct.unpack('>I8>I8>I8', head)
  if cap < 1 or redis.call('STRLEN', KEY) ~= V1_HEADER + 8 * cap then return corrupt() end
  local slots = string.sub(redis.call('GET', KEY), V1_HEADER + 1)
  local function at(a) return (struct.unpack('>I8', slots, 8 * (a % cap) + 1)) end
  ring.exists = true
  ring.cap, ring.n, ring.base = cap, n, 0
  ring.w_max, ring.w_min, ring.horizon = w, w, 0
  ring.newest = 0
  if n > 0 then ring.newest = at(n - 1) end
  if n < cap then
    slots = string.sub(slots, 1, 8 * n) -- the slots not yet used are not kept
  else
    if n > cap then ring.horizon = math.max(1, math.min(at(n - cap), ring.newest - w)) end
  end
  ring.blob = slots
  return nil
end

-- Loads the header into `ring` (`head`: the header already read, if any); an error
-- reply for a value this crate did not write.
local function load(head)
  head = head or redis.call('GETRANGE', KEY, 0, HEADER - 1)
  if head == '' then
    fresh_ring()
    return nil
  end
  if #head >= HEADER and string.sub(head, 1, 2) == MAGIC then
    local _, cap, n, newest, w_max, w_min, horizon, base = struct.unpack(FORMAT, head)
    if cap < 1 or base > n then return corrupt() end
    ring.exists = true
    ring.cap, ring.n, ring.newest = cap, n, newest
    ring.w_max, ring.w_min, ring.horizon, ring.base = w_max, w_min, horizon, base
    return nil
  end
  if #head >= V1_HEADER then return load_v1(head) end
  return corrupt()
end

local function header()
  return struct.pack(FORMAT, MAGIC, ring.cap, ring.n, ring.newest, ring.w_max, ring.w_min,
    ring.horizon, ring.base)
end

-- How many slots the string holds.
local function slots_held()
  if ring.blob then return #ring.blob / 8 end
  if not ring.exists then return 0 end
  return (redis.call('STRLEN', KEY) - HEADER) / 8
end

-- The recorded times of admissions a0 .. a0 + count - 1 (each below n), oldest first.
-- An admission whose slot the string does not hold yet was forgotten when the ring
-- grew: it reads as the horizon.
local function times(a0, count)
  local out = {}
  local a = a0
  while #out < count do
    local pos = (a - ring.base) % ring.cap
    local run = math.min(count - #out, ring.cap - pos)
    local bytes
    if ring.blob then
      bytes = string.sub(ring.blob, 8 * pos + 1, 8 * (pos + run))
    else
      bytes = redis.call('GETRANGE', KEY, HEADER + 8 * pos, HEADER + 8 * (pos + run) - 1)
    end
    for j = 0, run - 1 do
      if 8 * j + 8 <= #bytes then
        out[#out + 1] = struct.unpack('>I8', bytes, 8 * j + 1)
      else
        out[#out + 1] = ring.horizon
      end
    end
    a = a + run
  end
  return out
end

-- How many of the newest admissions the ring holds.
local function known(held)
  return math.min(ring.n - ring.base, held)
end

-- The horizon a ring that holds `held` slots has once the limit rises above cap: every
-- admission it no longer holds was recorded at or before the oldest one it holds, and
-- at or before the newest minus the narrowest window any admission was made under
-- (the admission that overwrote its slot needed it that far back).
local function horizon_on_growth(held)
  local kept = known(held)
  if held < ring.cap or ring.n <= kept then return ring.horizon end
  local oldest = times(ring.n - kept, 1)[1]
  return math.max(1, math.min(oldest, ring.newest - ring.w_min))
end
