-- Take a lease in a bounded set: a queue place, or a job slot without a ticket.
-- ARGV[4] 'q' or 's', ARGV[5] bound, ARGV[6] holder id, ARGV[7] lease_us.
-- Returns {1, fencing token, epoch, abandoned} taken, {0, 0, epoch, abandoned} full,
-- {LATE, 0, 0, 0} past the caller's deadline.
if late then return {LATE, 0, 0, 0} end
local set = set_of(ARGV[4])
prune(set)
local e = epoch()
if redis.call('ZCARD', set) >= tonumber(ARGV[5]) then return {0, 0, e, abandoned} end
redis.call('ZADD', set, now + tonumber(ARGV[7]), ARGV[6])
return {1, fence(), e, abandoned}
