-- backstop-redis: an exact sliding window, `count` decisions in one atomic step.
-- KEYS[1]  the window: a string of a 24-byte header (admissions so far, limit, window in
--          microseconds) and a ring of `limit` 8-byte big-endian admission times in
--          microseconds.
-- ARGV     limit, window_us, now_us ('' = Redis's own TIME), count.
-- Returns  d for one decision, {d1, ..., d_count} for several: d = 0 admitted, d > 0
--          refused, retry after d us.
-- Admission n is allowed at `now` iff admission n - limit was recorded at or before
-- now - window; recorded times are max(now, previous), so they are monotone.
--
-- Expiry: on Redis's clock the key lives at least until its newest admission has left
-- the current window (so a longer window never finds it gone too early, also after a
-- refusal); on an injected clock (ARGV[3] given) virtual time says nothing about real
-- time, so the key gets no TTL at all.
-- Effects replication: needed on 5 and 6 (TIME before a write); always so from 7.0.
if not redis.REDIS_VERSION_NUM and redis.replicate_commands then pcall(redis.replicate_commands) end
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local injected = ARGV[3] ~= ''
local now
if not injected then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[3])
end
local count = tonumber(ARGV[4])
local HEADER = 24

local blob = redis.call('GET', key)
local n = 0
local rebuild = true
local reshaped = false
local old = {}
if blob then
  if #blob < HEADER then
    return redis.error_reply('BACKSTOP_CORRUPT ' .. key .. ' is not a backstop window')
  end
  local stored_n, stored_limit, stored_window = struct.unpack('>I8>I8>I8', blob)
  if stored_limit < 1 or #blob ~= HEADER + 8 * stored_limit then
    return redis.error_reply('BACKSTOP_CORRUPT ' .. key .. ' is not a backstop window')
  end
  if stored_limit == limit then
    n = stored_n
    rebuild = false
    reshaped = stored_window ~= window
    if n >= limit and not reshaped then
      -- The common refusal, decided before anything else is built: the first decision
      -- is refused, so every one of the batch is, alike, and nothing is written. On
      -- Redis's clock the expiry set with the newest admission still holds (see below).
      local oldest = struct.unpack('>I8', blob, HEADER + 8 * ((n - limit) % limit) + 1)
      local free_at = oldest + window
      if free_at > now then
        if injected and redis.call('PTTL', key) >= 0 then redis.call('PERSIST', key) end
        if count == 1 then return free_at - now end
        local out = {}
        for i = 1, count do out[i] = free_at - now end
        return out
      end
    end
  else
    -- Another limit: keep the newest min(kept, limit) times, oldest first, and judge
    -- them by the new limit (as SlidingWindow::reconfigured does).
    local kept = math.min(stored_n, stored_limit, limit)
    for a = stored_n - kept, stored_n - 1 do
      local off = HEADER + 8 * (a % stored_limit)
      old[#old + 1] = struct.unpack('>I8', blob, off + 1)
    end
    n = kept
  end
end

local function time_of(a)
  if rebuild then return old[a + 1] end
  return (struct.unpack('>I8', blob, HEADER + 8 * (a % limit) + 1))
end

local first_new = n
local fresh = {}
local previous = 0
if n > 0 then previous = time_of(n - 1) end
local out = {}
-- The answer: a bare integer for one decision (the common lone caller), else a table.
local function answer()
  if count == 1 then return out[1] end
  return out
end
for i = 1, count do
  local wait = 0
  if n >= limit then
    local a = n - limit
    local oldest
    if a >= first_new then oldest = fresh[a - first_new + 1] else oldest = time_of(a) end
    local free_at = oldest + window
    if free_at > now then wait = free_at - now end
  end
  if wait > 0 then
    -- Nothing is admitted on a refusal, so the rest of the batch is refused alike.
    for j = i, count do out[j] = wait end
    break
  end
  local t = math.max(now, previous)
  fresh[#fresh + 1] = t
  previous = t
  n = n + 1
  out[i] = 0
end

local written = false
if #fresh > 0 then
  if rebuild then
    local parts = {struct.pack('>I8>I8>I8', n, limit, window)}
    local slots = {}
    for a = 0, first_new - 1 do slots[a % limit] = old[a + 1] end
    for a = first_new, n - 1 do slots[a % limit] = fresh[a - first_new + 1] end
    for s = 0, limit - 1 do parts[#parts + 1] = struct.pack('>I8', slots[s] or 0) end
    redis.call('SET', key, table.concat(parts))
  else
    redis.call('SETRANGE', key, 0, struct.pack('>I8>I8>I8', n, limit, window))
    -- The new times fill consecutive slots: at most two runs (before and after the wrap).
    local run = {}
    local run_start = first_new % limit
    for a = first_new, n - 1 do
      local s = a % limit
      if s == 0 and #run > 0 then
        redis.call('SETRANGE', key, HEADER + 8 * run_start, table.concat(run))
        run = {}
        run_start = 0
      end
      run[#run + 1] = struct.pack('>I8', fresh[a - first_new + 1])
    end
    redis.call('SETRANGE', key, HEADER + 8 * run_start, table.concat(run))
  end
  written = true
elseif blob and reshaped then
  -- A refusal under another window: the ring stays, the header and expiry follow the
  -- window now in force. (A refusal under another limit leaves the ring as it was, so
  -- no admission is forgotten by it; its expiry is still kept long enough below.)
  redis.call('SETRANGE', key, 16, struct.pack('>I8', window))
  written = true
elseif blob and not rebuild and not injected then
  -- A refusal under the stored limit and window: the expiry set when the newest
  -- admission was written (or the window last changed) already lasts until that
  -- admission leaves this window, so no PTTL is needed.
  return answer()
end

if blob or written then
  if injected then
    -- Virtual time: no TTL from it (a slow simulator would see keys vanish early).
    if redis.call('PTTL', key) >= 0 then redis.call('PERSIST', key) end
  elseif previous > 0 then
    -- Until the newest admission leaves the window. PEXPIRE counts from the command's
    -- time, whole milliseconds taken at or before `now`: round up and add 1 ms so the key
    -- never expires while that admission still counts.
    local ttl_ms = math.floor((previous + window - now + 999) / 1000) + 1
    if ttl_ms < 1 then ttl_ms = 1 end
    if written or redis.call('PTTL', key) < ttl_ms then
      redis.call('PEXPIRE', key, ttl_ms)
    end
  end
end
return answer()
