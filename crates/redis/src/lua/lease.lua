-- backstop-redis: the prelude of every lease script (prepended to each at build time).
-- A queue place or a job slot is a member of a sorted set: holder id -> the lease's end
-- in microseconds. One gate's keys share one hash tag, so every script stays on one
-- cluster slot:
-- KEYS[1]  the queue's sorted set
-- KEYS[2]  the slots' sorted set
-- KEYS[3]  the gate's hash: `epoch`, the time its data was born (it changes when Redis
--          loses the data: a restart without persistence, a failover to a replica that
--          never saw it), and `fence`, the last fencing token handed out
-- ARGV[1]  now_us ('' = Redis's own TIME)
-- ARGV[2]  a number unique to this call (decimal): the gate's epoch if the gate's data
--          is born in this call
-- ARGV[3]  the caller's deadline on Redis's clock, in us ('' = none)
-- The rest is each script's own.
-- Effects replication: needed on 5 and 6 (TIME before a write); always so from 7.0.
if not redis.REDIS_VERSION_NUM and redis.replicate_commands then pcall(redis.replicate_commands) end
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[1])
end
local QUEUE, SLOTS, GATE = KEYS[1], KEYS[2], KEYS[3]
-- A take that reaches Redis after its caller gave up takes nothing: the caller was
-- told the store did not answer. Scripts answer LATE (their code field) then.
local LATE = -2
local deadline = tonumber(ARGV[3])
local late = deadline ~= nil and now > deadline
-- Detached queue places (a ticket handed to another process) are members named 'd:...'.
local DETACHED = 'd:'

-- Expired leases leave `set` before anything is counted; `abandoned` counts the
-- detached places among them (nobody claimed them in time), for the caller's metrics.
local abandoned = 0
local function prune(set)
  local expired = redis.call('ZRANGEBYSCORE', set, '-inf', now)
  if #expired == 0 then return end
  for _, member in ipairs(expired) do
    if string.sub(member, 1, 2) == DETACHED then abandoned = abandoned + 1 end
  end
  redis.call('ZREMRANGEBYSCORE', set, '-inf', now)
end

-- The gate's epoch (a decimal string), born in this call when the gate has none (first
-- use, or Redis lost it). Unique per birth, also when two births share a microsecond.
local function epoch()
  local e = redis.call('HGET', GATE, 'epoch')
  if e then return e end
  redis.call('HSET', GATE, 'epoch', ARGV[2])
  return ARGV[2]
end

-- The next fencing token: above every token before it, and at least Redis's time in
-- microseconds, so that tokens keep rising also after Redis lost the gate's data.
local function fence()
  local last = tonumber(redis.call('HGET', GATE, 'fence') or '0')
  local token = math.max(last + 1, now)
  redis.call('HSET', GATE, 'fence', token)
  return token
end

-- The set ARGV names: 'q' the queue, 's' the slots.
local function set_of(which)
  if which == 'q' then return QUEUE end
  return SLOTS
end
