-- Claim a detached queue place: it becomes an ordinary, renewed ticket of the caller.
-- ARGV[3] detached id, ARGV[4] new holder id, ARGV[5] lease_us.
-- Returns {1, fencing token, epoch, now, abandoned} claimed, {0, 0, 0, now, abandoned}
-- no such place (claimed already, expired, or never handed out).
prune(QUEUE)
if not redis.call('ZSCORE', QUEUE, ARGV[3]) then return {0, 0, 0, now, abandoned} end
redis.call('ZREM', QUEUE, ARGV[3])
redis.call('ZADD', QUEUE, now + tonumber(ARGV[5]), ARGV[4])
return {1, fence(), epoch(), now, abandoned}
