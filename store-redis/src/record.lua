-- Records one decision (see `record` in lib.rs for the layout of KEYS and ARGV), atomically:
-- checks that every series the decision read still has the version it read, then appends the
-- recording's entries, registers its holds under the decision id, bumps the versions of the
-- series it wrote and purges their long-expired holds. Returns 1, or 0 when a version changed
-- (nothing is written then). Times are fixed-width texts compared by `lt`; no clock is read.

local function lt(a, b)
  local ah, bh = tonumber(string.sub(a, 1, 10)), tonumber(string.sub(b, 1, 10))
  if ah ~= bh then return ah < bh end
  return tonumber(string.sub(a, 11)) < tonumber(string.sub(b, 11))
end

local nr, ns, nu = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local holds = ARGV[4] == '1'
local time, time_score = ARGV[5], ARGV[6]
local exp, exp_score = ARGV[7], ARGV[8]
local cutoff, cutoff_score = ARGV[9], ARGV[10]
local ttl = ARGV[11]
local a = 11

for i = 1, nr do
  local v = redis.call('HGET', KEYS[1 + i], 'v')
  if (v or '') ~= ARGV[a + i] then return 0 end
end
a = a + nr

local dec = KEYS[1]
local k = 1 + nr
local b = a + 2 * ns
local n = 0
if holds then redis.call('DEL', dec) end
for u = 1, nu do
  local j = tonumber(ARGV[b + 3 * u - 2])
  local hold = ARGV[b + 3 * u - 1] == '1'
  local amount = ARGV[b + 3 * u]
  local m, e, x = KEYS[k + 3 * j - 2], KEYS[k + 3 * j - 1], KEYS[k + 3 * j]
  local seq = redis.call('HINCRBY', m, 'q', 1)
  if hold then
    local member = seq .. '|' .. time .. '|' .. exp .. '|' .. amount
    redis.call('ZADD', e, time_score, member)
    redis.call('ZADD', x, exp_score, member)
    n = n + 1
    redis.call('HSET', dec, 't' .. n, ARGV[a + 2 * j - 1], 'm' .. n, member)
  else
    redis.call('ZADD', e, time_score, seq .. '|' .. time .. '||' .. amount)
  end
end

for j = 1, ns do
  local m, e, x = KEYS[k + 3 * j - 2], KEYS[k + 3 * j - 1], KEYS[k + 3 * j]
  redis.call('HINCRBY', m, 'v', 1)
  redis.call('HSETNX', m, 'id', ARGV[a + 2 * j])
  if cutoff ~= '' then
    -- Holds that expired at or before the cutoff (now - grace) no longer count at any time the
    -- store is likely to be asked about: drop them, a bounded number per decision.
    local old = redis.call('ZRANGEBYSCORE', x, '-inf', cutoff_score, 'LIMIT', 0, 64)
    for _, member in ipairs(old) do
      local e_exp = string.match(member, '^[^|]*|[^|]*|([^|]*)|')
      if e_exp and e_exp ~= '' and not lt(cutoff, e_exp) then
        redis.call('ZREM', e, member)
        redis.call('ZREM', x, member)
      end
    end
  end
end

if holds then
  redis.call('HSET', dec, 'st', 'h', 'exp', exp, 'n', n)
  if ttl ~= '' then redis.call('PEXPIRE', dec, ttl) end
end
return 1
