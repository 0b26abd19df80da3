-- ListSchemas. KEYS[1] the tenant's schema index; ARGV[1] the prefix of a
-- schema's hash (same slot). Reads only.
-- Returns {name, version, updated ms, size bytes, ...} sorted by name.
local out = {}
for _, name in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local h = ARGV[1] .. name
  local meta = redis.call('HMGET', h, 'v', 't')
  if meta[1] then
    out[#out + 1] = name
    out[#out + 1] = tonumber(meta[1])
    out[#out + 1] = tonumber(meta[2])
    out[#out + 1] = redis.call('HSTRLEN', h, 'j')
  end
end
return out
