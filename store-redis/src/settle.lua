-- Commits or releases one decision (see `settle` in lib.rs for the layout of KEYS and ARGV),
-- atomically and idempotently, with MemoryStore's answers: `committed`, `released`, `unknown`,
-- `expired`, `is_released` (committing a released decision), `is_committed` (releasing a
-- committed one), or `stale` when the decision's holds are in series whose keys were not passed
-- (the caller reads the decision again and retries). A commit rewrites the decision's entries as
-- permanent ones (same sequence number, time and amount); a release removes them. Either bumps
-- the versions of the series it changed. `now` is a fixed-width time text; no clock is read.

local function lt(a, b)
  local ah, bh = tonumber(string.sub(a, 1, 10)), tonumber(string.sub(b, 1, 10))
  if ah ~= bh then return ah < bh end
  return tonumber(string.sub(a, 11)) < tonumber(string.sub(b, 11))
end

local dec = KEYS[1]
local op, now, ttl = ARGV[1], ARGV[2], ARGV[3]
local nt = tonumber(ARGV[4])

local st = redis.call('HGET', dec, 'st')
if not st then return 'unknown' end
if st == 'c' then
  if op == 'c' then return 'committed' end
  return 'is_committed'
end
if st == 'r' then
  if op == 'r' then return 'released' end
  return 'is_released'
end
if op == 'c' and not lt(now, redis.call('HGET', dec, 'exp')) then return 'expired' end

local idx = {}
for j = 1, nt do idx[ARGV[4 + j]] = j end
local n = tonumber(redis.call('HGET', dec, 'n'))
local holds = {}
for i = 1, n do
  local j = idx[redis.call('HGET', dec, 't' .. i)]
  if not j then return 'stale' end
  holds[i] = { j, redis.call('HGET', dec, 'm' .. i) }
end

local touched = {}
for _, h in ipairs(holds) do
  local j, member = h[1], h[2]
  local m, e, x = KEYS[3 * j - 1], KEYS[3 * j], KEYS[3 * j + 1]
  if op == 'c' then
    local score = redis.call('ZSCORE', e, member)
    if score then
      local seq, time, amount = string.match(member, '^([^|]*)|([^|]*)|[^|]*|(.*)$')
      redis.call('ZREM', e, member)
      redis.call('ZREM', x, member)
      redis.call('ZADD', e, score, seq .. '|' .. time .. '||' .. amount)
    end
  else
    redis.call('ZREM', e, member)
    redis.call('ZREM', x, member)
  end
  if not touched[j] then
    touched[j] = true
    redis.call('HINCRBY', m, 'v', 1)
  end
end

redis.call('DEL', dec)
redis.call('HSET', dec, 'st', op)
if ttl ~= '' then redis.call('PEXPIRE', dec, ttl) end
if op == 'c' then return 'committed' end
return 'released'
