-- Extend a held lease, or re-assert one whose member Redis lost.
-- ARGV[4] 'q' or 's', ARGV[5] holder id, ARGV[6] lease_us, ARGV[7] bound, ARGV[8] the
-- epoch the holder saw at its take.
-- Returns {code, epoch, abandoned}: 1 renewed; 2 re-asserted (the gate's data was lost
-- since the take, and there was room: the member is back); 0 gone (it expired or was
-- moved while the gate's data stayed); -1 the data was lost and there is no room now.
local set = set_of(ARGV[4])
local holder = ARGV[5]
local lease_end = now + tonumber(ARGV[6])
prune(set)
if redis.call('ZSCORE', set, holder) then
  redis.call('ZADD', set, 'XX', lease_end, holder)
  return {1, epoch(), abandoned}
end
local seen = redis.call('HGET', GATE, 'epoch')
if seen == ARGV[8] then
  -- The data is the one the take wrote into: the member was removed (it expired and
  -- was pruned, or a late answer moved it), so its place may be someone else's.
  return {0, seen, abandoned}
end
local e = epoch()
if redis.call('ZCARD', set) >= tonumber(ARGV[7]) then return {-1, e, abandoned} end
redis.call('ZADD', set, lease_end, holder)
return {2, e, abandoned}
