-- Clear. KEYS[1] index; ARGV[1] value-key prefix (same hash tag, same slot).
-- Returns {deleted, released '<object>\t<value key>' of deleted files}.
local deleted = 0
local released = {}
for _, name in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local vkey = ARGV[1] .. name
  local old = redis.call('GETDEL', vkey)
  if old then deleted = deleted + 1 end
  local blob = blob_of(old)
  if blob then released[#released + 1] = blob .. '\t' .. vkey end
end
redis.call('DEL', KEYS[1])
return {deleted, released}
