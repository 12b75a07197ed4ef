-- Claim a detached queue place: it becomes an ordinary, renewed ticket of the caller.
-- ARGV[4] detached id, ARGV[5] new holder id, ARGV[6] lease_us.
-- Returns {1, fencing token, epoch, now, abandoned} claimed, {0, 0, 0, now, abandoned}
-- no such place (claimed already, expired, or never handed out), {LATE, 0, 0, now, 0}
-- past the caller's deadline (nothing taken).
if late then return {LATE, 0, 0, now, 0} end
prune(QUEUE)
if not redis.call('ZSCORE', QUEUE, ARGV[4]) then return {0, 0, 0, now, abandoned} end
redis.call('ZREM', QUEUE, ARGV[4])
redis.call('ZADD', QUEUE, now + tonumber(ARGV[6]), ARGV[5])
return {1, fence(), epoch(), now, abandoned}
