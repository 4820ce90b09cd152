-- ARGV: lease_id, wake channel, the lease's function -> 1 if the lease was live
-- (the caller names the function, so the common path decodes no JSON)
local id, fn = ARGV[1], ARGV[3]
local exp = redis.call('ZSCORE', K_EXPIRY, id)
if not exp then return 0 end
redis.call('ZREM', K_EXPIRY, id)
redis.call('ZREM', K_OFFERS, id)
if redis.call('HDEL', K_LEASES, id) == 1 then
  if redis.call('HINCRBY', K_COUNTS, fn, '-1') <= 0 then redis.call('HDEL', K_COUNTS, fn) end
end
if exp + 0 <= clock() then return 0 end
if redis.call('ZCARD', K_WQ) > 0 then redis.call('PUBLISH', ARGV[2], '1') end
return 1
