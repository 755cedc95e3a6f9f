-- Publishes a bundle revision and moves the bundle's active pointer to it, compare-and-swap
-- (bundles.rs has the key layout).
-- KEYS[1] the bundle's meta hash, KEYS[2] the revision's key.
-- ARGV[1] the bundle id, ARGV[2] the revision, ARGV[3] the expectation (`*` any active revision,
-- empty for none, otherwise the revision that must be active), ARGV[4] the bytes, ARGV[5] the
-- channel, ARGV[6] the message.
-- Returns {status, the revision active before or '', subscribers}; status is `activated`,
-- `unchanged` (the revision was already active) or `conflict` (the expectation does not hold:
-- nothing written); subscribers is how many received the announcement (0 unless activated).
local current = redis.call('HGET', KEYS[1], 'rev')
if not current then
  current = ''
end
if ARGV[3] ~= '*' and ARGV[3] ~= current then
  return {'conflict', current, 0}
end
-- A revision is named by the digest of its bytes: once written it is never rewritten.
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('SET', KEYS[2], ARGV[4])
end
if current == ARGV[2] then
  return {'unchanged', current, 0}
end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'rev', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'n', 1)
local subscribers = redis.call('PUBLISH', ARGV[5], ARGV[6])
return {'activated', current, subscribers}
