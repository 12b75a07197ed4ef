-- Detach a queue place from its holder: it stays in the queue, unrenewed, for at most
-- max_wait, under an unguessable id a claim from any process can take it by.
-- ARGV[3] holder id, ARGV[4] detached id ('d:' + random), ARGV[5] max_wait_us.
-- Returns {1, the place's end (us), abandoned} detached, {0, now, abandoned} the
-- holder's place is gone.
prune(QUEUE)
if not redis.call('ZSCORE', QUEUE, ARGV[3]) then return {0, now, abandoned} end
local until_us = now + tonumber(ARGV[5])
redis.call('ZREM', QUEUE, ARGV[3])
redis.call('ZADD', QUEUE, until_us, ARGV[4])
return {1, until_us, abandoned}
