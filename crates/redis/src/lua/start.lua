-- backstop-redis: turn a queue ticket into a job permit in one atomic step.
-- KEYS[1]  the queue's sorted set, KEYS[2] the slots' (same hash slot: one hash tag).
-- ARGV     max_jobs, holder id, lease_us, now_us ('' = Redis's own TIME).
-- Returns  1 started, 0 no free slot (the ticket stays), -1 the ticket's lease is gone.
-- Idempotent: when the holder already holds a slot (an earlier call ran but its answer
-- came too late), it answers 1 again, so a retry finds the slot it took.
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
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZSCORE', KEYS[2], ARGV[2]) then
  redis.call('ZREM', KEYS[1], ARGV[2])
  redis.call('ZADD', KEYS[2], 'XX', now + tonumber(ARGV[3]), ARGV[2])
  return 1
end
if not redis.call('ZSCORE', KEYS[1], ARGV[2]) then return -1 end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZREM', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[2])
return 1
