-- Take a lease in a bounded set: a queue place, or a job slot without a ticket.
-- ARGV[3] 'q' or 's', ARGV[4] bound, ARGV[5] holder id, ARGV[6] lease_us.
-- Returns {1, fencing token, epoch, abandoned} taken, {0, 0, epoch, abandoned} full.
local set = set_of(ARGV[3])
prune(set)
local e = epoch()
if redis.call('ZCARD', set) >= tonumber(ARGV[4]) then return {0, 0, e, abandoned} end
redis.call('ZADD', set, now + tonumber(ARGV[6]), ARGV[5])
return {1, fence(), e, abandoned}
