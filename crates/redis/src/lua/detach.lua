-- Detach a queue place from its holder: it stays in the queue, unrenewed, for at most
-- max_wait, under an unguessable id a claim from any process can take it by.
-- ARGV[4] holder id, ARGV[5] detached id ('d:' + random), ARGV[6] max_wait_us.
-- Returns {1, the place's end (us), abandoned} detached, {0, now, abandoned} the
-- holder's place is gone, {LATE, now, 0} past the caller's deadline (nothing moved).
if late then return {LATE, now, 0} end
prune(QUEUE)
if not redis.call('ZSCORE', QUEUE, ARGV[4]) then return {0, now, abandoned} end
local until_us = now + tonumber(ARGV[6])
redis.call('ZREM', QUEUE, ARGV[4])
redis.call('ZADD', QUEUE, until_us, ARGV[5])
return {1, until_us, abandoned}
