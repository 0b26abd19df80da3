-- Delete. KEYS[1] index, KEYS[2..] value keys; ARGV[i-1] is the name of KEYS[i].
-- Returns {deleted, released '<object>\t<value key>' of deleted files}. Drops the
-- index once no live key is left in it.
local idx = KEYS[1]
local deleted = 0
local released = {}
for i = 2, #KEYS do
  local old = redis.call('GETDEL', KEYS[i])
  if old then deleted = deleted + 1 end
  local blob = blob_of(old)
  if blob then released[#released + 1] = blob .. '\t' .. KEYS[i] end
  redis.call('ZREM', idx, ARGV[i - 1])
end
prune(idx, now_ms())
if redis.call('ZCARD', idx) == 0 then redis.call('DEL', idx) end
return {deleted, released}
