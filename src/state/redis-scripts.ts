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
 * Writes one machine's counts in one pool.
 *
 * KEYS[1] machines (zset: machine id -> deadline, ms), KEYS[2] totals (hash: backend -> tunnels,
 * '#' -> version), KEYS[3] this machine's share (hash: backend -> tunnels, '#' -> number of the
 * write that made it), KEYS[4] reconcile (hash: a running reconciliation, see RECONCILE_LUA).
 * ARGV[1] machine id, ARGV[2] countTtl ms, ARGV[3] 'delta' | 'full' | 'leave', ARGV[4] unused
 * (kept so the arguments' places stay), ARGV[5] the share key prefix, ARGV[6] how long a pool's keys
 * outlive the last full write (ms), ARGV[7] this write's number (rising per machine), ARGV[8] the
 * number of the caller's last write it saw applied, then this machine's absolute counts:
 * - 'full': backend, tunnels pairs, all of them;
 * - 'delta': backend, tunnels, tunnels-before triples, for those that changed since that write (0 for
 *   gone), where tunnels-before is what the caller's share holds for it.
 *
 * Steps: take out up to REAP machines past their deadline (bounded work per call); register this
 * machine with a new deadline (one the script did not know starts from an empty share); then
 * - 'delta' applies only on top of the share the caller believes is there (its '#' is the caller's
 *   last applied write). Then that share is exactly what the caller holds, so the counts it had
 *   come with the call and each changed backend moves the totals by the difference: one HMGET and one
 *   HSET for the totals, one HSET for the share, whatever the number of changes. The same write
 *   resent (its '#' is this write's) is in already and changes nothing. Otherwise (the machine was
 *   taken out while alive, a reply was lost, Redis lost a write) it is refused and the caller sends
 *   a 'full' at once.
 * - 'full' replaces the whole share, unless a later write already did (a resend overtaken).
 * Returns {applied (1/0), version}. It does not read the totals back: a plain HGETALL after it, on
 * the same connection, costs Redis half of what building the reply inside the script does.
 */
export const SYNC_LUA = `
local REAP = 8
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local moved = false
-- A backend's field: not the version ('#') nor the layout mark (WIDE).
local function counted(field) return string.byte(field) ~= 35 end
-- A field longer than hash-max-listpack-value keeps a hash a hash table, so looking up one backend
-- costs the same however many the pool has (in a listpack each lookup scans them all: ~15,000
-- instructions at 100 backends).
local WIDE = '#' .. string.rep('w', 127)
-- One command over a list of arguments, in slices Lua's stack takes; returns the replies joined.
local function batched(command, key, args, first)
  local out = {}
  for i = first, #args, 4000 do
    local r = redis.call(command, key, unpack(args, i, math.min(i + 3999, #args)))
    if type(r) == 'table' then for j = 1, #r do out[#out + 1] = r[j] end end
  end
  return out
end
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
    if counted(h[i]) then move(h[i], -tonumber(h[i + 1]), mirror) end
  end
  redis.call('DEL', share)
  redis.call('ZREM', KEYS[1], machine)
end
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, REAP)) do drop(m, ARGV[5] .. m) end

local mode = ARGV[3]
-- The version and, for a 'delta', the changed backends' totals, in one call (after the reaping).
local fields = {'#'}
if mode == 'delta' then for i = 9, #ARGV, 3 do fields[#fields + 1] = ARGV[i] end end
local read = batched('HMGET', KEYS[2], fields, 1)
local version = read[1]
if not version then
  -- A new totals hash (first machine, or a Redis that lost it): a version no earlier one had.
  version = t[1] .. string.format('%06d', tonumber(t[2]))
  redis.call('HSET', KEYS[2], '#', version, WIDE, '')
end
local applied = 1
if mode == 'leave' then
  if redis.call('ZSCORE', KEYS[1], ARGV[1]) then drop(ARGV[1], KEYS[3]) else redis.call('DEL', KEYS[3]) end
else
  if redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1]) == 1 then
    -- Not registered, so by the rule above not in the totals: whatever is left of its share goes.
    redis.call('DEL', KEYS[3])
    if redis.call('EXISTS', KEYS[4]) == 1 then redis.call('HSET', KEYS[4], 'd:' .. ARGV[1], 1) end
  end
  local last = redis.call('HGET', KEYS[3], '#') or '0'
  if mode == 'full' then
    if tonumber(last) > tonumber(ARGV[7]) then applied = 0 end
  elseif last ~= ARGV[8] then
    if last ~= ARGV[7] then applied = 0 end
    fields = {'#'} -- refused, or this very write resent: nothing to write
  end
  if applied == 1 and mode == 'full' then
    local mirror = redis.call('HEXISTS', KEYS[4], 'd:' .. ARGV[1]) == 1
    local old = {}
    local h = redis.call('HGETALL', KEYS[3])
    for i = 1, #h, 2 do
      if counted(h[i]) then old[h[i]] = tonumber(h[i + 1]) end
    end
    redis.call('HSET', KEYS[3], '#', ARGV[7], WIDE, '')
    redis.call('HSET', KEYS[2], WIDE, '') -- totals made before the mark had it
    for i = 9, #ARGV, 2 do
      local b, n = ARGV[i], tonumber(ARGV[i + 1])
      local was = old[b] or 0
      old[b] = nil
      if n ~= was then
        if n == 0 then redis.call('HDEL', KEYS[3], b) else redis.call('HSET', KEYS[3], b, n) end
        move(b, n - was, mirror)
      end
    end
    for b, was in pairs(old) do
      redis.call('HDEL', KEYS[3], b)
      move(b, -was, mirror)
    end
    -- Keys of a pool that every machine left without a word (a whole fleet gone) do not stay forever.
    redis.call('PEXPIRE', KEYS[1], ARGV[6])
    redis.call('PEXPIRE', KEYS[2], ARGV[6])
    redis.call('PEXPIRE', KEYS[3], ARGV[6])
  elseif applied == 1 and #fields > 1 then
    local mirror = redis.call('HEXISTS', KEYS[4], 'd:' .. ARGV[1]) == 1
    local share, shareGone, totals, totalsGone = {'#', ARGV[7]}, {}, {'#', 0}, {}
    for k = 2, #fields do
      local i = 9 + (k - 2) * 3
      local b, n = fields[k], tonumber(ARGV[i + 1])
      if n == 0 then shareGone[#shareGone + 1] = b else share[#share + 1] = b; share[#share + 1] = ARGV[i + 1] end
      local delta = n - tonumber(ARGV[i + 2])
      if delta ~= 0 then
        local total = tonumber(read[k] or 0) + delta
        if total == 0 then totalsGone[#totalsGone + 1] = b else totals[#totals + 1] = b; totals[#totals + 1] = total end
        if mirror then redis.call('HINCRBY', KEYS[4], 's:' .. b, delta) end
        moved = true
      end
    end
    batched('HSET', KEYS[3], share, 1)
    batched('HDEL', KEYS[3], shareGone, 1)
    if moved then
      version = tonumber(version) + 1
      totals[2] = version
      batched('HSET', KEYS[2], totals, 1)
      batched('HDEL', KEYS[2], totalsGone, 1)
      return {applied, version}
    end
  end
end
if moved then version = redis.call('HINCRBY', KEYS[2], '#', 1) end
return {applied, tonumber(version)}`;

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
      if string.byte(h[j]) ~= 35 then redis.call('HINCRBY', KEYS[3], 's:' .. h[j], h[j + 1]) end
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
  if string.byte(b) ~= 35 then -- not '#...' (the version, the layout mark)
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
 * Per-client counts (clientLimits.scope: fleet), summed in Redis like the tunnel counts: each machine
 * writes its client IPs near a limit (a bounded few, MAX_REPORTED_CLIENTS) as its share, the script
 * moves the fleet's sums by what changed, and the reply is the sums minus this machine's share. So a
 * sync's work follows the fleet's hot IPs, not the number of machines.
 *
 * KEYS[1] machines (zset: machine id -> deadline, ms), KEYS[2] sums (hash: ip -> "machines:tunnels:debt",
 * machines the number of shares that name the IP, so the IP leaves exactly when the last one goes and a
 * fraction's rounding never lingers), KEYS[3] this machine's share (hash: ip -> "tunnels:debt").
 * ARGV[1] machine id, ARGV[2] countTtl ms, ARGV[3] share key prefix, ARGV[4] how long the keys outlive
 * the last write (ms), ARGV[5] 'sync' | 'leave', then ip, "tunnels:debt" pairs. Returns ip, tunnels,
 * debt triples (debt as text: Redis would truncate a Lua number to an integer).
 */
export const CLIENT_SYNC_LUA = `
local REAP = 8
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function parts(v)
  local a = string.find(v, ':', 1, true)
  return tonumber(string.sub(v, 1, a - 1)), tonumber(string.sub(v, a + 1))
end
-- sums[ip] += sign * "tunnels:debt"
local function move(ip, value, sign)
  local tunnels, debt = parts(value)
  local machines, sumTunnels, sumDebt = 0, 0, 0
  local was = redis.call('HGET', KEYS[2], ip)
  if was then
    local a = string.find(was, ':', 1, true)
    machines = tonumber(string.sub(was, 1, a - 1))
    sumTunnels, sumDebt = parts(string.sub(was, a + 1))
  end
  machines = machines + sign
  if machines <= 0 then redis.call('HDEL', KEYS[2], ip); return end
  redis.call('HSET', KEYS[2], ip, machines .. ':' .. (sumTunnels + sign * tunnels) .. ':' .. (sumDebt + sign * debt))
end
local function drop(machine, share)
  local h = redis.call('HGETALL', share)
  for i = 1, #h, 2 do move(h[i], h[i + 1], -1) end
  redis.call('DEL', share)
  redis.call('ZREM', KEYS[1], machine)
end
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, REAP)) do drop(m, ARGV[3] .. m) end
if ARGV[5] == 'leave' then
  if redis.call('ZSCORE', KEYS[1], ARGV[1]) then drop(ARGV[1], KEYS[3]) else redis.call('DEL', KEYS[3]) end
  return {}
end
-- Not registered, so not in the sums: whatever is left of its share goes.
if redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1]) == 1 then redis.call('DEL', KEYS[3]) end
local old = {}
local h = redis.call('HGETALL', KEYS[3])
for i = 1, #h, 2 do old[h[i]] = h[i + 1] end
local own = {}
for i = 6, #ARGV, 2 do
  local ip, value = ARGV[i], ARGV[i + 1]
  own[ip] = value
  if old[ip] ~= value then
    if old[ip] then move(ip, old[ip], -1) end
    move(ip, value, 1)
    redis.call('HSET', KEYS[3], ip, value)
  end
  old[ip] = nil
end
for ip, value in pairs(old) do
  move(ip, value, -1)
  redis.call('HDEL', KEYS[3], ip)
end
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[4]) end
local flat = {}
local sums = redis.call('HGETALL', KEYS[2])
for i = 1, #sums, 2 do
  local ip = sums[i]
  local a = string.find(sums[i + 1], ':', 1, true)
  local tunnels, debt = parts(string.sub(sums[i + 1], a + 1))
  if own[ip] then
    local ownTunnels, ownDebt = parts(own[ip])
    tunnels, debt = tunnels - ownTunnels, debt - ownDebt
  end
  if tunnels > 0 or debt > 0 then flat[#flat + 1] = ip; flat[#flat + 1] = tunnels; flat[#flat + 1] = tostring(debt) end
end
return flat`;
