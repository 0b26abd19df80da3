-- Clear. KEYS[1] index; ARGV[1] value-key prefix (same hash tag, same slot).
-- Returns how many values were deleted.
local deleted = 0
for _, name in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  deleted = deleted + redis.call('DEL', ARGV[1] .. name)
end
redis.call('DEL', KEYS[1])
return deleted
