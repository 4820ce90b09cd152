-- ARGV: lease_id, ttl (us) -> new expires_at us, or false if the lease is gone
local now = clock()
local exp = redis.call('ZSCORE', K_EXPIRY, ARGV[1])
if not exp then return false end
if tonumber(exp) <= now then
  drop_lease(ARGV[1])
  return false
end
local new = now + tonumber(ARGV[2])
redis.call('ZADD', K_EXPIRY, 'XX', int(new), ARGV[1])
return new
