-- Clear. KEYS[1] index; ARGV[1] value-key prefix (same hash tag, same slot).
-- Returns {deleted, released object names}.
local deleted = 0
local released = {}
for _, name in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local key = ARGV[1] .. name
  local old = blob_of(redis.call('GET', key))
  if old then released[#released + 1] = old end
  deleted = deleted + redis.call('DEL', key)
end
redis.call('DEL', KEYS[1])
return {deleted, released}
