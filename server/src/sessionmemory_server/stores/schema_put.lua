-- PutSchema. KEYS[1] the schema's hash, KEYS[2] the tenant's schema index
-- (sorted set of names), KEYS[3] the tenant's schema version counter (all in
-- the tenant's slot). ARGV[1] name, ARGV[2] compact JSON, ARGV[3] max schemas.
-- Returns {OK, version, updated ms} | {TOO_MANY_SCHEMAS, count} | {STORE_FULL}.
-- Versions come from one counter per tenant, so a name deleted and registered
-- again never repeats a version (compiled validators are cached by version).
if over_maxmemory(KEYS[3]) then return {STORE_FULL} end
if not redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  local count = redis.call('ZCARD', KEYS[2])
  if count >= tonumber(ARGV[3]) then return {TOO_MANY_SCHEMAS, count} end
end
local ver = redis.call('INCR', KEYS[3])
local now = now_ms()
redis.call('HSET', KEYS[1], 'v', ver, 't', now, 'j', ARGV[2])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return {OK, ver, now}
