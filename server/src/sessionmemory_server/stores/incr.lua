-- Increment.
-- KEYS[1] index, KEYS[2] version counter, KEYS[3] value key,
-- KEYS[4] (optional) request-id record.
-- ARGV[1] max keys per session, ARGV[2] name, ARGV[3] delta, ARGV[4] ttl ms,
-- ARGV[5] request-id window ms.
-- Returns {0, text, version, expires} | {1, kind} (not a number) |
-- {2, text} (out of range) | {3, text} (too precise) | {4, live} (full).
local idx, seq = KEYS[1], KEYS[2]
local now = now_ms()
if KEYS[4] then
  local seen = redis.call('GET', KEYS[4])
  if seen then
    local ver, exp, text = string.match(seen, '^(%d+):(%d+):(.*)$')
    return {0, text, tonumber(ver), tonumber(exp)}
  end
end
prune(idx, now)
local cur = redis.call('GET', KEYS[3])
local x = 0
if cur then
  local kind, _, _, payload = parse(cur)
  if kind ~= 'n' then return {1, kind} end
  x = tonumber(payload)
else
  local live = redis.call('ZCARD', idx)
  if live + 1 > tonumber(ARGV[1]) then return {4, live} end
end
local r = x + tonumber(ARGV[3])
if r == 0 then r = 0 end -- -0 is stored as 0
if math.abs(r) >= 1e15 then return {2, string.format('%.17g', r)} end
local text = string.format('%.15g', r)
if tonumber(text) ~= r then return {3, string.format('%.17g', r)} end
local ver = next_versions(seq, now, 1) + 1
local exp = now + tonumber(ARGV[4])
redis.call('SET', KEYS[3], record('n', ver, exp, text), 'PXAT', exp)
redis.call('ZADD', idx, exp, ARGV[2])
extend(idx, seq, now, exp)
if KEYS[4] then
  redis.call('SET', KEYS[4], string.format('%d', ver) .. ':' .. string.format('%d', exp) .. ':' .. text,
    'PX', ARGV[5])
end
return {0, text, ver, exp}
