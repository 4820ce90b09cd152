-- ARGV: function, ttl (us), payload JSON '{"f":..,"h":..,"m":..}' without its
--       opening brace, wake channel
--       (the part that repeats from call to call: the client packs it once), then
--       lease_id, ticket or '', queue_for (us), ticket to use when newly queued
--       ('' when not queueing), '1' when this call repeats one whose reply was
--       lost (else '')
-- -> {granted, reason, limit, in_use, ticket, reclaimed, acquired_at us, expires_at us,
--     us until the earliest live lease expires (-1: none)}
local fn, payload, channel = ARGV[1], ARGV[3], ARGV[4]
local id, ticket, new_ticket = ARGV[5], ARGV[6], ARGV[8]
local now, t = clock()
local now_s = micros_text(t)
local cfg = load_config()
local reclaimed = purge_leases(now_s)
-- The queue's size, counted before purging: enough to know it may hold someone.
local queued = redis.call('ZCARD', K_WQ) > 0
if queued then
  purge_waiters(now_s)
  queued = redis.call('ZCARD', K_WQ) > 0
end

local total = redis.call('ZCARD', K_EXPIRY)
if ARGV[9] == '1' then
  -- A retry of a call whose reply was lost: the lease may already be ours.
  local existing = redis.call('HGET', K_LEASES, id)
  if existing then
    local exp = tonumber(redis.call('ZSCORE', K_EXPIRY, id))
    local a = cjson.decode(existing).a
    return {1, 'granted', cfg.limit, total - 1, '', reclaimed,
            math.floor(tonumber(a) * 1000000 + 0.5), exp, -1}
  end
end

local my_rank = false
if ticket ~= '' and queued then my_rank = redis.call('ZRANK', K_WQ, ticket) end
local granted, reason = admit(cfg, fn, my_rank, total, queued)

if granted then
  local exp = now + ARGV[2]
  redis.call('HSET', K_LEASES, id, string.format('{"a":%d.%06d,%s', t[1], t[2], payload))
  redis.call('ZADD', K_EXPIRY, int(exp), id)
  redis.call('HINCRBY', K_COUNTS, fn, '1')
  if ticket ~= '' then drop_waiter(ticket) end
  if reclaimed > 0 then wake_others(channel, 0) end
  return {1, reason, cfg.limit, total, '', reclaimed, now, exp, -1}
end

local out = ''
local queue_for = ARGV[7] + 0
if queue_for > 0 then
  if my_rank == false then
    out = new_ticket
    redis.call('ZADD', K_WQ, int(redis.call('INCR', K_SEQ)), out)
  else
    out = ticket
  end
  redis.call('HSET', K_WFN, out, fn)
  redis.call('ZADD', K_WEXP, int(now + queue_for), out)
elseif ticket ~= '' then
  drop_waiter(ticket)
end
if reclaimed > 0 then
  if out ~= '' then wake_others(channel, 1) else wake_others(channel, 0) end
end
-- Fair handoff: tell the holders someone waits (they look at check-in, without
-- a store call). The contention channel is the wake channel's sibling.
if out ~= '' then redis.call('PUBLISH', string.sub(channel, 1, -5) .. 'contended', '1') end
-- When the earliest live lease runs out (the waiter sleeps no longer than that).
local soonest = -1
local first = redis.call('ZRANGE', K_EXPIRY, '0', '0', 'WITHSCORES')
if #first == 2 then soonest = math.max(0, tonumber(first[2]) - now) end
return {0, reason, cfg.limit, total, out, reclaimed, 0, 0, soonest}
