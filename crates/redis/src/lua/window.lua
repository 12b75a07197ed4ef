-- backstop-redis: an exact sliding window, `count` decisions in one atomic step (after
-- layout.lua, common.lua, which has taken the common decisions, and ring.lua, which
-- loads the ring).
-- ARGV[4], ARGV[5]  count and the deadline (common.lua, which parses ARGV[6] too)
-- ARGV[6]  max_keys (0: none), for a keyed window whose clients share one hash tag;
--          then KEYS[2] is the name's registry (a sorted set: client key -> the time
--          its key expires, in us) and ARGV[7] this client's member in it
-- Returns  d for one decision, {d1, ..., d_count} for several: d = 0 admitted, d > 0
--          refused, retry after d us; d = -1 arrived after its deadline, not decided;
--          d <= -2 refused for too many keys of the name, until one of them expires in
--          -d - 1 us.
-- Admission m is allowed at `now` iff admission m - limit was recorded at or before
-- now - window; recorded times are max(now, previous), so they are monotone.
--
-- Expiry: on Redis's clock the key expires when its newest admission leaves the longest
-- window it has been used with (PEXPIREAT, at whole milliseconds, 1 ms late): never
-- sooner, whoever calls, so a key's expiry never shrinks. On an injected clock virtual
-- time says nothing about real time, so the key gets no expiry.
local function answer(out)
  if count == 1 then return out[1] end
  return out
end

local function all(value)
  local out = {}
  for i = 1, count do out[i] = value end
  return answer(out)
end

-- Its callers have given up: deciding now could only spend what they were refused.
if late then return all(-1) end

local loaded = load(head)
if loaded then return loaded end

-- A new client of a name with max_keys: room in the registry first.
if max_keys > 0 and not ring.exists then
  local registry = KEYS[2]
  -- An entry leaves once its key has expired (Redis keeps a key through its expiry's
  -- millisecond).
  redis.call('ZREMRANGEBYSCORE', registry, '-inf', now - 1001)
  if redis.call('ZCARD', registry) >= max_keys then
    -- Refused until the first live key expires (a window, on an injected clock).
    local wait = window
    local first = redis.call('ZRANGE', registry, 0, 0, 'WITHSCORES')
    local expires = tonumber(first[2] or '')
    if expires and expires < 1e300 then wait = math.max(1, expires + 1001 - now) end
    return all(-wait - 1)
  end
end

local dirty_header = false
local rewritten = nil -- the whole slot region, when it was reordered or migrated
if ring.blob then
  rewritten = ring.blob
  dirty_header = true
end

-- The limit rose above every limit the key has had: cap becomes it. A ring that wrapped
-- is first put in admission order from slot 0 (its one copy), and what it forgot gets
-- a horizon; a ring still filling only raises its modulus.
if limit > ring.cap then
  local held = slots_held()
  ring.horizon = horizon_on_growth(held)
  if held >= ring.cap then
    local h = (ring.n - ring.base) % ring.cap
    local slots = rewritten
    if not slots then slots = redis.call('GETRANGE', KEY, HEADER, HEADER + 8 * held - 1) end
    if h ~= 0 then
      slots = string.sub(slots, 8 * h + 1) .. string.sub(slots, 1, 8 * h)
      rewritten = slots
    end
    ring.base = ring.n - held
    ring.blob = rewritten
  end
  ring.cap = limit
  dirty_header = true
end

-- Decide. The first decision reads one slot; the rest of the batch's slots, when the
-- first is admitted, in one more read (two where the ring wraps).
local n0 = ring.n
local fresh = {}
local cached = {}
local read_once = false
local out = {}
local newest = ring.newest
for i = 1, count do
  local m = n0 + #fresh
  local wait = 0
  if m >= limit then
    local a = m - limit
    local t
    if a >= n0 then
      t = fresh[a - n0 + 1]
    else
      t = cached[a]
      if not t then
        local span = 1
        if read_once then span = math.min(count - i + 1, n0 - a) end
        local ts = times(a, span)
        for j = 1, span do cached[a + j - 1] = ts[j] end
        read_once = true
        t = ts[1]
      end
    end
    if t + window > now then wait = t + window - now end
  end
  if wait > 0 then
    -- Nothing is admitted on a refusal, so the rest of the batch is refused alike.
    for j = i, count do out[j] = wait end
    break
  end
  newest = math.max(now, newest)
  fresh[#fresh + 1] = newest
  out[i] = 0
end

local longer = window > ring.w_max
if longer then
  ring.w_max = window
  dirty_header = true
end
if #fresh > 0 then
  ring.n = n0 + #fresh
  ring.newest = newest
  if window < ring.w_min then ring.w_min = window end
  dirty_header = true
end
if not dirty_header and not rewritten then return answer(out) end

-- Write: the whole value when it was rewritten (one copy), else the header and the new
-- slots in place (at most two runs: before and after the wrap).
if rewritten then
  redis.call('SET', KEY, header() .. rewritten)
  ring.blob = nil
elseif ring.exists then
  redis.call('SETRANGE', KEY, 0, header())
end
local run, run_start = {}, nil
local function flush()
  if #run > 0 then redis.call('SETRANGE', KEY, HEADER + 8 * run_start, table.concat(run)) end
  run, run_start = {}, nil
end
if not ring.exists and not rewritten then
  -- A fresh key: header and first slots in one write.
  local parts = {header()}
  for j = 1, #fresh do parts[#parts + 1] = struct.pack('>I8', fresh[j]) end
  redis.call('SET', KEY, table.concat(parts))
else
  for j = 1, #fresh do
    local pos = (n0 + j - 1 - ring.base) % ring.cap
    if run_start and pos ~= run_start + #run then flush() end
    if not run_start then run_start = pos end
    run[#run + 1] = struct.pack('>I8', fresh[j])
  end
  flush()
end

if injected then
  if max_keys > 0 and not ring.exists then redis.call('ZADD', KEYS[2], '+inf', ARGV[7]) end
  return answer(out)
end
-- The expiry, as an absolute time: it only moves later, since newest and w_max only
-- grow.
local expire_ms = math.floor((ring.newest + ring.w_max + 999) / 1000) + 1
redis.call('PEXPIREAT', KEY, expire_ms)
if max_keys > 0 then redis.call('ZADD', KEYS[2], expire_ms * 1000, ARGV[7]) end
return answer(out)
