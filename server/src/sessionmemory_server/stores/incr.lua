-- Increment.
-- KEYS[1] index, KEYS[2] version counter, KEYS[3] value key,
-- KEYS[4] (optional) request-id record.
-- ARGV[1] max keys per session, ARGV[2] name, ARGV[3] delta, ARGV[4] ttl ms,
-- ARGV[5] request-id window ms, ARGV[6] request fingerprint (with KEYS[4]).
-- Returns {OK, text, version, expires} (also when replayed) | {NOT_A_NUMBER, kind}
-- | {OUT_OF_RANGE, text} | {TOO_PRECISE, text} | {SESSION_FULL, live}
-- | {STORE_FULL} | {REQUEST_ID_REUSED}.
local idx, seq, rid = KEYS[1], KEYS[2], KEYS[4]
if rid then
  local status, first = seen_request(rid, ARGV[6])
  if status == REPLAYED then
    local ver, exp, text = string.match(first, '^(%d+):(%d+):(.*)$')
    return {OK, text, tonumber(ver), tonumber(exp)}
  end
  if status then return {status} end
end
if over_maxmemory(seq) then return {STORE_FULL} end
local now = now_ms()
prune(idx, now)
local cur = redis.call('GET', KEYS[3])
local x = 0
if cur then
  local kind, _, _, payload = parse(cur)
  if kind ~= 'n' then return {NOT_A_NUMBER, kind} end
  x = tonumber(payload)
else
  local live = redis.call('ZCARD', idx)
  if live + 1 > tonumber(ARGV[1]) then return {SESSION_FULL, live} end
end
local r = x + tonumber(ARGV[3])
if r == 0 then r = 0 end -- -0 is stored as 0
if math.abs(r) >= 1e15 then return {OUT_OF_RANGE, string.format('%.17g', r)} end
local text = string.format('%.15g', r)
if tonumber(text) ~= r then return {TOO_PRECISE, string.format('%.17g', r)} end
local ver = next_versions(seq, now, 1) + 1
local exp = now + tonumber(ARGV[4])
redis.call('SET', KEYS[3], record('n', ver, exp, text), 'PXAT', exp)
redis.call('ZADD', idx, exp, ARGV[2])
extend(idx, seq, now, exp)
if rid then
  remember_request(rid, ARGV[6],
    string.format('%d', ver) .. ':' .. string.format('%d', exp) .. ':' .. text, ARGV[5])
end
return {OK, text, ver, exp}
