-- -> {id1, value1, expires1 us, id2, ...} of live leases
local _, t = clock()
local now_s = micros_text(t)
local live = redis.call('ZRANGEBYSCORE', K_EXPIRY, '(' .. now_s, '+inf', 'WITHSCORES')
local out = {}
for i = 1, #live, 2 do
  local v = redis.call('HGET', K_LEASES, live[i])
  if v then
    out[#out + 1] = live[i]
    out[#out + 1] = v
    out[#out + 1] = live[i + 1]
  end
end
return out
