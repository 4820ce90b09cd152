-- ARGV: lease_id, grace (us) -> 1: release it (promised for grace), 0: keep it,
-- -1: the lease is gone. _policy.should_hand_off, transcribed.
local now, t = clock()
if redis.call('ZCARD', K_WQ) == 0 then return 0 end
local now_s = micros_text(t)
purge_waiters(now_s)
local waiting = redis.call('ZCARD', K_WQ)
if waiting == 0 then return 0 end
purge_leases(now_s)
if not redis.call('ZSCORE', K_EXPIRY, ARGV[1]) then return -1 end
redis.call('ZREMRANGEBYSCORE', K_OFFERS, '-inf', now_s)
local offered = redis.call('ZCARD', K_OFFERS)
local free = load_config().limit - redis.call('ZCARD', K_EXPIRY)
if free < 0 then free = 0 end
if waiting <= free + offered then return 0 end
redis.call('ZADD', K_OFFERS, int(now + tonumber(ARGV[2])), ARGV[1])
return 1
