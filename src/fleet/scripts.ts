// The Lua scripts hps runs in Redis: each is atomic there, so instances never race on a key.
//
// Every script reads the clock inside Redis (TIME), so the fleet shares one clock whatever the instances' clocks say.
// Keys under fleet.key_prefix are hps's own: a value of the wrong type or a number that cannot be right (someone
// wrote to the key, or an older layout) is replaced, reported in the reply (counted as repairedKeys), never an error.
// Scripts touch only the keys they are given, plus (stats) keys built from the prefix: one Redis (or a primary with
// replicas), not Redis Cluster.

/** A script and its SHA-1, for EVALSHA (falling back to EVAL when Redis has not seen it, e.g. after a restart). */
export interface Script {
  readonly name: string;
  readonly source: string;
  readonly sha: string;
}

function script(name: string, source: string): Script {
  return { name, source, sha: new Bun.CryptoHasher("sha1").update(source).digest("hex") };
}

/** Milliseconds on Redis's clock, and a helper that reads a key as a string value or reports it as of the wrong type. */
const PRELUDE = `
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + tonumber(time[2]) / 1000
local function read(command, key)
  local value = redis.pcall(command, key)
  if type(value) == 'table' and value.err then
    redis.call('DEL', key)
    return false, 1
  end
  return value, 0
end
`;

/**
 * Rate-limit token leases (GCRA, the arithmetic of src/net/gcra.ts over the tat stored in each key).
 * KEYS: one per address. ARGV: interval ms, tolerance ms, then per key: want, charge.
 * Per key, first `charge` tokens are taken unconditionally (requests an instance admitted before the fleet granted
 * them) or, when negative, given back (tokens leased and not spent); then up to `want` tokens are granted from what
 * the bucket holds. A full bucket leaves no key; a key expires once its bucket is full again.
 * Returns per key: granted, the bucket's debt (tat - now, ms, as text), 1 when the key was replaced.
 */
export const RATE_LEASE = script(
  "rate-lease",
  `${PRELUDE}
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
-- No debt can exceed this: anything larger was not written by hps.
local limit = tolerance * 4 + 86400000
local out = {}
for i = 1, #KEYS do
  local key = KEYS[i]
  local want = tonumber(ARGV[1 + 2 * i])
  local charge = tonumber(ARGV[2 + 2 * i])
  local stored, repaired = read('GET', key)
  local tat = tonumber(stored)
  if stored and (tat == nil or tat ~= tat or tat > now + limit) then
    tat = nil
    repaired = 1
  end
  if tat == nil or tat < now then tat = now end
  tat = tat + charge * interval
  if tat < now then tat = now end
  local granted = 0
  if want > 0 then
    local available = math.floor((now + tolerance - tat + 0.000001) / interval)
    if available > 0 then
      granted = math.min(want, available)
      tat = tat + granted * interval
    end
  end
  if tat > now then
    redis.call('SET', key, string.format('%.3f', tat), 'PX', math.ceil(tat - now) + 1000)
  elseif stored or repaired == 1 then
    redis.call('DEL', key)
  end
  out[#out + 1] = granted
  out[#out + 1] = string.format('%.3f', tat - now)
  out[#out + 1] = repaired
end
return out
`,
);

/**
 * A lease holder (one I/O thread of one instance) says it is alive, and learns how many are.
 * KEYS[1]: the holders sorted set (score: when the holder's lease on life ends). ARGV: holder id, ttl ms, or ttl 0 to
 * leave. Returns { holders alive, 1 when this holder was not there before (first call, or Redis lost its state),
 * 1 when the key was replaced }.
 */
export const HEARTBEAT = script(
  "heartbeat",
  `${PRELUDE}
local key = KEYS[1]
local ttl = tonumber(ARGV[2])
local kind = redis.pcall('TYPE', key)
local repaired = 0
if type(kind) == 'table' and kind.ok ~= 'none' and kind.ok ~= 'zset' then
  redis.call('DEL', key)
  repaired = 1
end
redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
local added = 0
if ttl > 0 then
  added = redis.call('ZADD', key, now + ttl, ARGV[1])
  redis.call('PEXPIRE', key, ttl * 4)
else
  redis.call('ZREM', key, ARGV[1])
end
return { redis.call('ZCARD', key), added, repaired }
`,
);

/**
 * Connection slots per address (limits.max_connections_per_ip across the fleet).
 * KEYS[1]: the holders sorted set; KEYS[2..]: one hash per address, field = holder id, value = slots it holds.
 * ARGV: holder id, key ttl ms, then per address: limit, held, want, reserve.
 * `held` (connections this holder has open, admitted already) is recorded as it is, even over the limit; then up to
 * `want` spare slots are added while `reserve` slots stay free besides (a spare kept ahead of need is for an
 * address far from its limit: near it, one holder's spare would refuse another holder's client). Fields of holders
 * no longer alive are dropped. Returns per address: slots recorded for this holder, slots the other holders hold,
 * 1 when repaired.
 */
export const CONNECTION_SLOTS = script(
  "connection-slots",
  `${PRELUDE}
local holders = KEYS[1]
local me = ARGV[1]
local ttl = tonumber(ARGV[2])
local out = {}
for i = 2, #KEYS do
  local key = KEYS[i]
  local base = 4 * (i - 2) + 3
  local limit = tonumber(ARGV[base])
  local held = tonumber(ARGV[base + 1])
  local want = tonumber(ARGV[base + 2])
  local reserve = tonumber(ARGV[base + 3])
  local fields, repaired = read('HGETALL', key)
  local others = 0
  if fields then
    for j = 1, #fields, 2 do
      local holder = fields[j]
      if holder ~= me then
        local slots = tonumber(fields[j + 1])
        local alive = redis.call('ZSCORE', holders, holder)
        if slots == nil or slots ~= slots or slots < 0 or slots > 1e9 then
          redis.call('HDEL', key, holder)
          repaired = 1
        elseif alive == false or tonumber(alive) < now then
          redis.call('HDEL', key, holder)
        else
          others = others + slots
        end
      end
    end
  end
  local record = held
  if want > 0 then
    local free = limit - others - held - reserve
    if free > 0 then record = held + math.min(want, free) end
  end
  if record > 0 then
    redis.call('HSET', key, me, record)
    redis.call('PEXPIRE', key, ttl)
  else
    redis.call('HDEL', key, me)
  end
  out[#out + 1] = record
  out[#out + 1] = others
  out[#out + 1] = repaired
end
return out
`,
);

/**
 * One instance's statistics for the fleet view.
 * KEYS[1]: the index (sorted set, score: when the entry expires), KEYS[2]: this instance's snapshot key.
 * ARGV: instance id, ttl ms, snapshot (JSON), boot id, or ttl 0 to withdraw.
 * Returns the boot id that published under this instance id before, when it was another one still alive
 * (two instances with the same fleet.instance_id), else false.
 */
export const STATS_PUBLISH = script(
  "stats-publish",
  `${PRELUDE}
local index = KEYS[1]
local key = KEYS[2]
local id = ARGV[1]
local ttl = tonumber(ARGV[2])
local kind = redis.pcall('TYPE', index)
if type(kind) == 'table' and kind.ok ~= 'none' and kind.ok ~= 'zset' then redis.call('DEL', index) end
redis.call('ZREMRANGEBYSCORE', index, '-inf', now)
local owner = redis.pcall('HGET', key, 'boot')
if type(owner) == 'table' then
  redis.call('DEL', key)
  owner = false
end
if ttl == 0 then
  if owner == ARGV[4] then
    redis.call('DEL', key)
    redis.call('ZREM', index, id)
  end
  return false
end
redis.call('HSET', key, 'boot', ARGV[4], 'snapshot', ARGV[3], 'at', string.format('%.3f', now))
redis.call('PEXPIRE', key, ttl)
redis.call('ZADD', index, now + ttl, id)
redis.call('PEXPIRE', index, ttl * 4)
if owner and owner ~= ARGV[4] then return owner end
return false
`,
);

/**
 * Every instance's statistics. KEYS[1]: the index. ARGV: the snapshot key prefix.
 * Returns { Redis time ms (as text), then per instance: id, when it published (Redis time ms, as text), snapshot
 * (JSON) }; entries that expired are dropped.
 */
export const STATS_READ = script(
  "stats-read",
  `${PRELUDE}
local index = KEYS[1]
local kind = redis.pcall('TYPE', index)
if type(kind) == 'table' and kind.ok ~= 'none' and kind.ok ~= 'zset' then return { string.format('%.3f', now) } end
redis.call('ZREMRANGEBYSCORE', index, '-inf', now)
local out = { string.format('%.3f', now) }
for _, id in ipairs(redis.call('ZRANGE', index, 0, -1)) do
  local entry = redis.pcall('HMGET', ARGV[1] .. id, 'at', 'snapshot')
  if type(entry) == 'table' and not entry.err and type(entry[1]) == 'string' and type(entry[2]) == 'string' then
    out[#out + 1] = id
    out[#out + 1] = entry[1]
    out[#out + 1] = entry[2]
  end
end
return out
`,
);

/** Every script, for loading and for tests. */
export const SCRIPTS: readonly Script[] = [RATE_LEASE, HEARTBEAT, CONNECTION_SLOTS, STATS_PUBLISH, STATS_READ];
