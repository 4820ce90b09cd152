-- ARGV: ticket, wake channel
if redis.call('ZREM', K_WQ, ARGV[1]) == 1 then
  redis.call('ZREM', K_WEXP, ARGV[1])
  redis.call('HDEL', K_WFN, ARGV[1])
  if redis.call('ZCARD', K_WQ) > 0 then redis.call('PUBLISH', ARGV[2], '1') end
else
  redis.call('ZREM', K_WEXP, ARGV[1])
  redis.call('HDEL', K_WFN, ARGV[1])
end
return 1
