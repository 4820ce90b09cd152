-- KEYS: 1 config (the others are derived from it: see bind)
--
-- Times are whole microseconds of the server's clock, in zset scores and in
-- arguments alike. Redis before 7.2 turns every Lua number handed to redis.call
-- into text with printf("%.17g") and a non-integral score into text again for
-- a small zset, and those float conversions cost more than the commands; an
-- integer goes through string.format('%d') (integer printing) and is kept
-- exactly, and constant numeric arguments are written as strings ('1', '-1').
-- A microsecond count of today (~1.8e15) is exact in a double.
--
-- The shared part of every operation. Operations are functions of (KEYS, ARGV):
-- loaded once as a Redis Functions library (Redis >= 7: FCALL runs only the
-- operation; the helpers below are built once, at load) or, on older servers,
-- sent as one EVALSHA script per operation.

-- Only KEYS[1] ('{fleetpool:<name>}:config') is passed: every key of a call
-- costs the server work, and the others share its hash tag (one Cluster slot),
-- so they are derived from it -- once per budget name, not per call (equal Lua
-- strings are one interned object: the check is a pointer compare).
local K_CONFIG, K_LEASES, K_EXPIRY, K_COUNTS, K_WQ, K_WEXP, K_WFN, K_SEQ, K_OFFERS, K_STORM
local function bind(keys)
  local k = keys[1]
  if k == K_CONFIG then return end
  local tag = string.sub(k, 1, -7)
  K_CONFIG, K_LEASES, K_EXPIRY, K_COUNTS = k, tag .. 'leases', tag .. 'expiry', tag .. 'counts'
  K_WQ, K_WEXP, K_WFN, K_SEQ = tag .. 'wq', tag .. 'wexp', tag .. 'wfn', tag .. 'seq'
  K_OFFERS, K_STORM = tag .. 'offers', tag .. 'storm'
end

local function int(x) return string.format('%d', x) end

-- The server's clock in microseconds, and the TIME reply {seconds, micros}
-- for the callers that also need the instant as text (string.format, one C
-- call per text: Lua string building costs more than the commands here).
local function clock()
  local t = redis.call('TIME')
  -- Each text parsed once: arithmetic converts a string once, tonumber() twice.
  local s, us = t[1] + 0, t[2] + 0
  t[1], t[2] = s, us
  return s * 1000000 + us, t
end

local function micros_text(t) return string.format('%d%06d', t[1], t[2]) end

-- The decoded config of the last raw text seen. Equal Lua strings are one
-- interned object, so the check costs a pointer compare; in a Functions
-- library the cache lives as long as the library (with EVAL, one call). It is
-- keyed by content, so budgets and config changes can never see a stale one.
local cfg_raw, cfg_val = nil, nil
local function load_config()
  local raw = redis.call('GET', K_CONFIG)
  if not raw then return {limit = 0, functions = {}} end
  if raw ~= cfg_raw then
    cfg_val = cjson.decode(raw)
    cfg_raw = raw
  end
  return cfg_val
end

local function in_use(fn)
  return (redis.call('HGET', K_COUNTS, fn) or 0) + 0
end

-- BudgetConfig.max_for: the function's cap, never above the limit.
local function max_for(cfg, fn)
  local spec = cfg.functions[fn]
  if spec == nil or spec[2] == nil or spec[2] == cjson.null then return cfg.limit end
  return math.min(spec[2], cfg.limit)
end

local function min_for(cfg, fn)
  local spec = cfg.functions[fn]
  if spec == nil then return 0 end
  return spec[1]
end

local function drop_lease(id)
  local v = redis.call('HGET', K_LEASES, id)
  redis.call('ZREM', K_EXPIRY, id)
  if not v then return end
  redis.call('HDEL', K_LEASES, id)
  local fn = cjson.decode(v).f
  if redis.call('HINCRBY', K_COUNTS, fn, '-1') <= 0 then redis.call('HDEL', K_COUNTS, fn) end
end

local function purge_leases(now_s)
  local ids = redis.call('ZRANGEBYSCORE', K_EXPIRY, '-inf', now_s)
  for i = 1, #ids do drop_lease(ids[i]) end
  return #ids
end

local function drop_waiter(t)
  redis.call('ZREM', K_WQ, t)
  redis.call('ZREM', K_WEXP, t)
  redis.call('HDEL', K_WFN, t)
end

-- Publish a wake-up if waiters other than the caller's ``own`` (0 or 1) exist.
local function wake_others(channel, own)
  if redis.call('ZCARD', K_WQ) - own > 0 then redis.call('PUBLISH', channel, '1') end
end

local function purge_waiters(now_s)
  local ts = redis.call('ZRANGEBYSCORE', K_WEXP, '-inf', now_s)
  for i = 1, #ts do drop_waiter(ts[i]) end
end
