-- _policy.admit(), transcribed. my_rank is the caller's place in the queue
-- (false: not queued, so every live waiter is ahead); queued: whether the
-- queue has anyone at all (an empty queue needs no look at it).
local function admit(cfg, fn, my_rank, total, queued)
  local mine = in_use(fn)
  if mine >= max_for(cfg, fn) then return false, 'at_function_max' end
  if total >= cfg.limit then return false, 'budget_full' end
  if mine < min_for(cfg, fn) then return true, 'granted_reserve' end
  local reserved = 0
  for name, spec in pairs(cfg.functions) do
    if name ~= fn then
      local short = spec[1] - in_use(name)
      if short > 0 then reserved = reserved + short end
    end
  end
  if total + reserved >= cfg.limit then return false, 'reserved_for_others' end
  if not queued then return true, 'granted' end
  -- total + reserved + ahead >= limit  <=>  ahead >= room
  local room = cfg.limit - total - reserved
  local tickets
  if my_rank == false then
    tickets = redis.call('ZRANGE', K_WQ, '0', '-1')
  elseif my_rank > 0 then
    tickets = redis.call('ZRANGE', K_WQ, '0', int(my_rank - 1))
  else
    tickets = {}
  end
  local ahead = 0
  local eligible = {}
  for i = 1, #tickets do
    local f = redis.call('HGET', K_WFN, tickets[i])
    if f then
      local ok = eligible[f]
      if ok == nil then
        ok = in_use(f) < max_for(cfg, f)
        eligible[f] = ok
      end
      if ok then
        ahead = ahead + 1
        if ahead >= room then return false, 'queued_behind_earlier_waiters' end
      end
    end
  end
  return true, 'granted'
end
