-- backstop-redis: take a lease in a bounded set (a queue place or a job slot).
-- KEYS[1]  a sorted set of holder id -> lease deadline (us).
-- ARGV     bound, holder id, lease_us, now_us ('' = Redis's own TIME).
-- Returns  {1, now} taken, or {0, now} full. Expired leases are pruned first.
-- Effects replication: needed on 5 and 6 (TIME before a write); always so from 7.0.
if not redis.REDIS_VERSION_NUM and redis.replicate_commands then pcall(redis.replicate_commands) end
local now
if ARGV[4] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[4])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return {0, now} end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
return {1, now}
