-- backstop-redis: extend a held lease. KEYS[1] the sorted set; ARGV holder id, lease_us,
-- now_us ('' = Redis's own TIME). Returns 1 renewed, 0 the lease had expired or gone.
-- Effects replication: needed on 5 and 6 (TIME before a write); always so from 7.0.
if not redis.REDIS_VERSION_NUM and redis.replicate_commands then pcall(redis.replicate_commands) end
local now
if ARGV[3] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[3])
end
local deadline = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not deadline or tonumber(deadline) <= now then return 0 end
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
return 1
