-- ARGV: lease_id, the lease's whole new meta JSON -> its expires_at us, or false if gone.
-- The holder merges (it owns the lease); the stored text keeps "m" last, and a
-- ',"m":' outside a JSON string cannot come earlier (a quote inside one is \").
local id = ARGV[1]
local exp = redis.call('ZSCORE', K_EXPIRY, id)
if not exp or tonumber(exp) <= clock() then return false end
local v = redis.call('HGET', K_LEASES, id)
if not v then return false end
local at = string.find(v, ',"m":', 1, true)
if not at then return false end
redis.call('HSET', K_LEASES, id, string.sub(v, 1, at) .. '"m":' .. ARGV[2] .. '}')
return tonumber(exp)
