-- Change one tenant's limit overrides (see limits.py) and bump their version.
-- KEYS[1] the overrides hash (tenant -> JSON object of overridden fields).
-- ARGV[1] the hash field of the version counter, ARGV[2] tenant, ARGV[3] JSON
-- object of fields to set, ARGV[4..] fields to drop ('*' = all of them).
-- A tenant left without overrides loses its field. Returns the new version.
local cur = redis.call('HGET', KEYS[1], ARGV[2])
local values = {}
if cur then values = cjson.decode(cur) end
for name, value in pairs(cjson.decode(ARGV[3])) do values[name] = value end
for i = 4, #ARGV do
  if ARGV[i] == '*' then values = {} else values[ARGV[i]] = nil end
end
if next(values) == nil then
  redis.call('HDEL', KEYS[1], ARGV[2])
else
  redis.call('HSET', KEYS[1], ARGV[2], cjson.encode(values))
end
return redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
