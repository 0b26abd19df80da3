-- Read a session as a document, or some of its keys. KEYS[1] index, KEYS[2]
-- version counter, KEYS[3] schema binding; ARGV[1] value-key prefix (same hash
-- tag, same slot), ARGV[2..] names to read (none: every live key). Reads only.
-- Returns {revision, binding ('' = none), live key count, name_1, record_1, ...}
-- with the names that hold a live record.
local now = now_ms()
local names = {}
if #ARGV > 1 then
  for i = 2, #ARGV do names[#names + 1] = ARGV[i] end
else
  names = redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')
end
local out = {revision(KEYS[2]), redis.call('GET', KEYS[3]) or '',
  redis.call('ZCOUNT', KEYS[1], now, '+inf')}
for _, name in ipairs(names) do
  local rec = redis.call('GET', ARGV[1] .. name)
  if rec then
    out[#out + 1] = name
    out[#out + 1] = rec
  end
end
return out
