-- -> {config JSON or '', {fn1, n1, fn2, n2, ...} live counts, live waiters}
local _, t = clock()
local now_s = micros_text(t)
local counts = {}
local raw = redis.call('HGETALL', K_COUNTS)
for i = 1, #raw, 2 do counts[raw[i]] = tonumber(raw[i + 1]) end
-- Expired leases not purged yet still sit in :counts; leave them out (no writes here).
local dead = redis.call('ZRANGEBYSCORE', K_EXPIRY, '-inf', now_s)
for i = 1, #dead do
  local v = redis.call('HGET', K_LEASES, dead[i])
  if v then
    local fn = cjson.decode(v).f
    counts[fn] = (counts[fn] or 0) - 1
  end
end
local flat = {}
for fn, n in pairs(counts) do
  if n > 0 then
    flat[#flat + 1] = fn
    flat[#flat + 1] = n
  end
end
local waiting = redis.call('ZCOUNT', K_WEXP, '(' .. now_s, '+inf')
return {redis.call('GET', K_CONFIG) or '', flat, waiting}
