-- backstop-redis: give one admission back (after ring.lua): the newest is forgotten, as
-- if it had not been made. A caller whose admission was refused by a later stage (the
-- shared window after the client's, or the local window after an outage) calls it; if
-- others were admitted since, theirs is the one forgotten, which frees the same number
-- of places in every window from now on. Forgetting an admission never lets a window
-- hold more than the limit: the key's other admissions keep their times. The newest
-- recorded time stays in the header, so times recorded later stay monotone.
-- Returns 1 given back, 0 nothing to give back (the key expired meanwhile).
local loaded = load()
if loaded then return loaded end
if not ring.exists or ring.blob or ring.n <= ring.base then return 0 end
ring.n = ring.n - 1
redis.call('SETRANGE', KEY, 0, header())
return 1
