// The Lua scripts of redis-state.ts. Each one touches the keys of one pool only (one hash tag, so one
// Redis Cluster slot), and each runs atomically: that is what keeps a pool's fleet totals exact.
// The rule every script keeps (the invariant the reconciliation checks):
//
//   totals[backend] = sum over the machines in `machines` of conns:<machine>[backend]
//
// A machine's share enters and leaves the totals only together with its conns hash and its entry in
// `machines`, inside one script: a machine that dies at any point of a sync (before, during or after
// the script, with or without the reply) is counted once and taken out once. Times are Redis's own
// (TIME), so machines' clocks never matter.

/**
 * Writes one machine's counts in one pool and reads the pool's totals back.
 *
 * KEYS[1] machines (zset: machine id -> deadline, ms), KEYS[2] totals (hash: backend -> tunnels,
 * '#' -> version), KEYS[3] this machine's share (hash: backend -> tunnels, '#' -> number of the
 * write that made it), KEYS[4] reconcile (hash: a running reconciliation, see RECONCILE_LUA).
 * ARGV[1] machine id, ARGV[2] countTtl ms, ARGV[3] 'delta' | 'full' | 'leave', ARGV[4] the totals
 * version the caller holds, ARGV[5] the share key prefix, ARGV[6] how long a pool's keys outlive
 * the last full write (ms), ARGV[7] this write's number (rising per machine), ARGV[8] the number of
 * the caller's last write it saw applied, then backend, tunnels pairs: this machine's absolute
 * counts ('delta': those that changed since that write, 0 for gone; 'full': all of them).
 *
 * Steps: take out up to REAP machines past their deadline (bounded work per call); register this
 * machine with a new deadline (one the script did not know starts from an empty share); then
 * - 'delta' applies only on top of the share the caller believes is there (its '#' is the caller's
 *   last applied write, or this very write, resent). Otherwise (the machine was taken out while
 *   alive, a reply was lost, Redis lost a write) it is refused and the caller sends a 'full' at once.
 * - 'full' replaces the whole share, unless a later write already did (a resend overtaken).
 * Each count moves the totals by its difference with the share it replaces; counts are absolute,
 * so a write that runs twice changes nothing the second time. A 'delta' with nothing in it writes
 * nothing (the caller's last applied write stays the base). Returns {applied (1/0), version} and,
 * when the caller's version is not current, the totals as one string 'field,value,...' (with '#'):
 * one bulk reply costs Redis less than a reply of two hundred.
 */
export const SYNC_LUA = `
local REAP = 8
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local version = redis.call('HGET', KEYS[2], '#')
if not version then
  -- A new totals hash (first machine, or a Redis that lost it): a version no earlier one had.
  version = t[1] .. string.format('%06d', tonumber(t[2]))
  redis.call('HSET', KEYS[2], '#', version)
end
local moved = false
-- totals[field] += delta; a running reconciliation sums the machines it has visited as they change
local function move(field, delta, mirror)
  if delta == 0 then return end
  if redis.call('HINCRBY', KEYS[2], field, delta) == 0 then redis.call('HDEL', KEYS[2], field) end
  if mirror then redis.call('HINCRBY', KEYS[4], 's:' .. field, delta) end
  moved = true
end
-- a registered machine's whole share out of the totals, and the machine out of the pool
local function drop(machine, share)
  local mirror = redis.call('HDEL', KEYS[4], 'd:' .. machine) == 1
  local h = redis.call('HGETALL', share)
  for i = 1, #h, 2 do
    if h[i] ~= '#' then move(h[i], -tonumber(h[i + 1]), mirror) end
  end
  redis.call('DEL', share)
  redis.call('ZREM', KEYS[1], machine)
end
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, REAP)) do drop(m, ARGV[5] .. m) end

local applied = 1
if ARGV[3] == 'leave' then
  if redis.call('ZSCORE', KEYS[1], ARGV[1]) then drop(ARGV[1], KEYS[3]) else redis.call('DEL', KEYS[3]) end
else
  if redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1]) == 1 then
    -- Not registered, so by the rule above not in the totals: whatever is left of its share goes.
    redis.call('DEL', KEYS[3])
    if redis.call('EXISTS', KEYS[4]) == 1 then redis.call('HSET', KEYS[4], 'd:' .. ARGV[1], 1) end
  end
  local full = ARGV[3] == 'full'
  local last = redis.call('HGET', KEYS[3], '#') or '0'
  if full then
    if tonumber(last) > tonumber(ARGV[7]) then applied = 0 end
  elseif last ~= ARGV[8] and last ~= ARGV[7] then
    applied = 0
  end
  if applied == 1 and (full or #ARGV > 8) then
    local mirror = redis.call('HEXISTS', KEYS[4], 'd:' .. ARGV[1]) == 1
    local old = {}
    if full then
      local h = redis.call('HGETALL', KEYS[3])
      for i = 1, #h, 2 do
        if h[i] ~= '#' then old[h[i]] = tonumber(h[i + 1]) end
      end
    end
    redis.call('HSET', KEYS[3], '#', ARGV[7])
    for i = 9, #ARGV, 2 do
      local b, n = ARGV[i], tonumber(ARGV[i + 1])
      local was
      if full then was = old[b] or 0; old[b] = nil else was = tonumber(redis.call('HGET', KEYS[3], b) or '0') end
      if n ~= was then
        if n == 0 then redis.call('HDEL', KEYS[3], b) else redis.call('HSET', KEYS[3], b, n) end
        move(b, n - was, mirror)
      end
    end
    for b, was in pairs(old) do
      redis.call('HDEL', KEYS[3], b)
      move(b, -was, mirror)
    end
  end
  if full then
    -- Keys of a pool that every machine left without a word (a whole fleet gone) do not stay forever.
    redis.call('PEXPIRE', KEYS[1], ARGV[6])
    redis.call('PEXPIRE', KEYS[2], ARGV[6])
    redis.call('PEXPIRE', KEYS[3], ARGV[6])
  end
end
if moved then version = redis.call('HINCRBY', KEYS[2], '#', 1) end
if tonumber(version) == tonumber(ARGV[4]) then return {applied, tonumber(version)} end
return {applied, tonumber(version), table.concat(redis.call('HGETALL', KEYS[2]), ',')}`;

/**
 * One step of a pool's reconciliation: proves the totals equal the sum of the registered machines'
 * shares, and repairs them when not (something outside these scripts changed a key: an eviction,
 * a failover that lost writes, a hand edit). Any machine may take a step; a run starts at most once
 * per interval (the gate key) and visits a bounded number of machines per step (ZSCAN COUNT; a small
 * machines zset comes back whole), so no call is long. While a run is on, the sync script keeps the
 * sums of visited machines current, so the comparison at the end holds however the shares moved.
 *
 * KEYS[1] machines, KEYS[2] totals, KEYS[3] reconcile (hash: 'cursor', 'd:<machine>' visited,
 * 's:<backend>' sums), KEYS[4] gate (string, PX interval).
 * ARGV[1] conns key prefix, ARGV[2] interval ms, ARGV[3] machines per step.
 * Returns {0} not due, {1} a step done, {2, fields repaired} a run finished.
 */
export const RECONCILE_LUA = `
if redis.call('EXISTS', KEYS[3]) == 0 then
  if not redis.call('SET', KEYS[4], '1', 'NX', 'PX', ARGV[2]) then return {0} end
  redis.call('HSET', KEYS[3], 'cursor', '0')
  redis.call('PEXPIRE', KEYS[3], ARGV[2])
end
local page = redis.call('ZSCAN', KEYS[1], redis.call('HGET', KEYS[3], 'cursor'), 'COUNT', ARGV[3])
local members = page[2]
for i = 1, #members, 2 do
  local m = members[i]
  if redis.call('HSETNX', KEYS[3], 'd:' .. m, 1) == 1 then
    local h = redis.call('HGETALL', ARGV[1] .. m)
    for j = 1, #h, 2 do
      if h[j] ~= '#' then redis.call('HINCRBY', KEYS[3], 's:' .. h[j], h[j + 1]) end
    end
  end
end
if page[1] ~= '0' then
  redis.call('HSET', KEYS[3], 'cursor', page[1])
  return {1}
end
local want = {}
local r = redis.call('HGETALL', KEYS[3])
for i = 1, #r, 2 do
  if string.sub(r[i], 1, 2) == 's:' then want[string.sub(r[i], 3)] = tonumber(r[i + 1]) end
end
local repaired = 0
local totals = redis.call('HGETALL', KEYS[2])
for i = 1, #totals, 2 do
  local b = totals[i]
  if b ~= '#' then
    local n = want[b] or 0
    want[b] = nil
    if tonumber(totals[i + 1]) ~= n then
      repaired = repaired + 1
      if n == 0 then redis.call('HDEL', KEYS[2], b) else redis.call('HSET', KEYS[2], b, n) end
    end
  end
end
for b, n in pairs(want) do
  if n ~= 0 then
    repaired = repaired + 1
    redis.call('HSET', KEYS[2], b, n)
  end
end
if repaired > 0 then redis.call('HINCRBY', KEYS[2], '#', 1) end
redis.call('DEL', KEYS[3])
return {2, repaired}`;

/**
 * Takes or renews the health-check leases of one pool's backends: a free lease is taken, one this
 * machine holds is renewed, another machine's is left alone. One MGET for the whole pool, so a
 * machine that holds nothing costs one call a pool, not one a backend.
 * KEYS[1] the pool's lease key prefix (it routes the call to the pool's slot); ARGV[1] machine id,
 * ARGV[2] leaseTtl ms, then the backends (host:port). Returns '0'/'1' per backend.
 */
export const LEASES_LUA = `
local keys = {}
for i = 3, #ARGV do keys[i - 2] = KEYS[1] .. ARGV[i] end
local holders = redis.call('MGET', unpack(keys))
local held = {}
for i, key in ipairs(keys) do
  local h = holders[i]
  if h == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
    held[i] = '1'
  elseif not h then
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
    held[i] = '1'
  else
    held[i] = '0'
  end
end
return table.concat(held)`;

/** Lets go of one lease if this machine holds it. KEYS[1] lease key; ARGV[1] machine id. */
export const RELEASE_LUA = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;

/**
 * Per-client counts (clientLimits.scope: fleet): this machine's IPs near a limit (a bounded few)
 * replace its hash, and the other machines' are summed by IP. KEYS: client machines set, own clients key. ARGV:
 * machine id, countTtl ms, clients key prefix, then ip/"tunnels:debt" pairs. Returns ip, tunnels, debt
 * triples (debt as text: Redis would truncate a Lua number to an integer).
 */
export const CLIENT_SYNC_LUA = `
redis.call('DEL', KEYS[2])
if #ARGV > 3 then redis.call('HSET', KEYS[2], unpack(ARGV, 4)) end
redis.call('HSET', KEYS[2], '', '0:0')
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('SADD', KEYS[1], ARGV[1])
local tunnels, debt = {}, {}
for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if m ~= ARGV[1] then
    local h = redis.call('HGETALL', ARGV[3] .. m)
    if #h == 0 then redis.call('SREM', KEYS[1], m) end
    for i = 1, #h, 2 do
      if h[i] ~= '' then
        local colon = string.find(h[i + 1], ':', 1, true)
        tunnels[h[i]] = (tunnels[h[i]] or 0) + tonumber(string.sub(h[i + 1], 1, colon - 1))
        debt[h[i]] = (debt[h[i]] or 0) + tonumber(string.sub(h[i + 1], colon + 1))
      end
    end
  end
end
local flat = {}
for ip, n in pairs(tunnels) do flat[#flat + 1] = ip; flat[#flat + 1] = n; flat[#flat + 1] = tostring(debt[ip]) end
return flat`;


/**
 * A machine's claims on a rebalance round (src/load-balancer/rebalance.ts grantCloses, the same
 * rule): each gets what it wants within what the round has left of the fleet's budget and what its
 * backend has left of its shed. KEYS[1] the pool's round hash ('#' -> granted in all, host:port ->
 * granted for it). ARGV: budget, ttl ms, then backend/want/shed triples (one pool's backends above
 * the skew: bounded). Returns the grants in order.
 */
export const REBALANCE_CLAIM_LUA = `
local budget = tonumber(ARGV[1])
local total = tonumber(redis.call('HGET', KEYS[1], '#') or '0')
local out = {}
for i = 3, #ARGV, 3 do
  local used = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0')
  local take = math.min(tonumber(ARGV[i + 1]), budget - total, tonumber(ARGV[i + 2]) - used)
  if take > 0 then
    total = total + take
    redis.call('HINCRBY', KEYS[1], ARGV[i], take)
  else
    take = 0
  end
  out[#out + 1] = take
end
redis.call('HSET', KEYS[1], '#', total)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return out`;
