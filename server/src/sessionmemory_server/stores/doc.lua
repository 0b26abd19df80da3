-- Read a session as a document, or some of its keys. KEYS[1] index, KEYS[2]
-- version counter, KEYS[3] schema binding; ARGV[1] value-key prefix (same hash
-- tag, same slot), ARGV[2] most bytes of records to return (0 = no limit),
-- ARGV[3..] names to read (none: every live key). Reads only.
-- Returns {revision, binding ('' = none), live key count, name_1, record_1, ...}
-- with the names that hold a live record | {revision, binding, live, -bytes}
-- when the records would be more than ARGV[2] bytes (nothing else is sent).
local now = now_ms()
local names = {}
if #ARGV > 2 then
  for i = 3, #ARGV do names[#names + 1] = ARGV[i] end
else
  names = redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')
end
local out = {revision(KEYS[2]), redis.call('GET', KEYS[3]) or '',
  redis.call('ZCOUNT', KEYS[1], now, '+inf')}
local most = tonumber(ARGV[2])
if most > 0 then
  local bytes = 0
  for _, name in ipairs(names) do bytes = bytes + redis.call('STRLEN', ARGV[1] .. name) end
  if bytes > most then
    out[4] = -bytes
    return out
  end
end
for _, name in ipairs(names) do
  local rec = redis.call('GET', ARGV[1] .. name)
  if rec then
    out[#out + 1] = name
    out[#out + 1] = rec
  end
end
return out
