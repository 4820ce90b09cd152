-- ARGV: config JSON, wake channel
redis.call('SET', K_CONFIG, ARGV[1])
if redis.call('ZCARD', K_WQ) > 0 then redis.call('PUBLISH', ARGV[2], '1') end
return 1
