-- ARGV: interval (us), burst, within (us) -> us to wait for the reserved slot,
-- or -1 when it lies beyond `within` (nothing reserved). _policy.connect_slot,
-- transcribed: K_STORM holds the time the next slot is free (us).
local now = clock()
local interval, burst, within = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local start = tonumber(redis.call('GET', K_STORM) or '0')
if start < now then start = now end
local delay = start - now - (burst - 1) * interval
if delay < 0 then delay = 0 end
if delay > within then return -1 end
local tat = start + interval
-- The key outlives its schedule by a second: an idle fleet leaves nothing behind.
redis.call('SET', K_STORM, int(tat), 'PX', int(math.floor((tat - now) / 1000) + 1000))
return int(delay)
