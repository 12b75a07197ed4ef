-- Turn a queue ticket into a job permit in one atomic step.
-- ARGV[4] max_jobs, ARGV[5] holder id, ARGV[6] lease_us.
-- Returns {code, fencing token, epoch, abandoned}: code 1 started, 0 no free slot (the
-- ticket stays), -1 the ticket's place is gone, LATE past the caller's deadline (nothing
-- moved).
-- Idempotent: when the holder already holds a slot (an earlier call ran but its answer
-- came too late), it answers 1 again, so a retry finds the slot it took.
if late then return {LATE, 0, 0, 0} end
prune(QUEUE)
prune(SLOTS)
local e = epoch()
local holder = ARGV[5]
local lease_end = now + tonumber(ARGV[6])
if redis.call('ZSCORE', SLOTS, holder) then
  redis.call('ZREM', QUEUE, holder)
  redis.call('ZADD', SLOTS, 'XX', lease_end, holder)
  return {1, fence(), e, abandoned}
end
if not redis.call('ZSCORE', QUEUE, holder) then return {-1, 0, e, abandoned} end
if redis.call('ZCARD', SLOTS) >= tonumber(ARGV[4]) then return {0, 0, e, abandoned} end
redis.call('ZREM', QUEUE, holder)
redis.call('ZADD', SLOTS, lease_end, holder)
return {1, fence(), e, abandoned}
