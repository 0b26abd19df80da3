-- Increment.
-- KEYS[1] index, KEYS[2] version counter, KEYS[3] value key, KEYS[4] request-id
-- record (used when ARGV[6] is not ''), KEYS[5] schema binding, KEYS[6] change log.
-- ARGV[1] max keys per session, ARGV[2] name, ARGV[3] delta, ARGV[4] ttl ms,
-- ARGV[5] request-id window ms, ARGV[6] request fingerprint ('' = none),
-- ARGV[7] the binding the caller validated against ('' = none), ARGV[8]
-- if_revision ('' = none), ARGV[9] change log length, ARGV[10] the number
-- bound (10^15), ARGV[11] the format of a number's canonical text ('%.15g').
-- Returns {OK, text, version, expires} (also when replayed) | {NOT_A_NUMBER, kind}
-- | {OUT_OF_RANGE, text} | {TOO_PRECISE, text} | {SESSION_FULL, live}
-- | {STORE_FULL} | {REQUEST_ID_REUSED} | {SCHEMA_BOUND, binding}
-- | {REVISION_MISMATCH, revision}.
local idx, seq, rid, log = KEYS[1], KEYS[2], KEYS[4], KEYS[6]
local fp = ARGV[6]
if fp ~= '' then
  local status, first = seen_request(rid, fp)
  if status == REPLAYED then
    local ver, exp, text = string.match(first, '^(%d+):(%d+):(.*)$')
    return {OK, text, tonumber(ver), tonumber(exp)}
  end
  if status then return {status} end
end
if over_maxmemory(seq) then return {STORE_FULL} end
local bound_to = redis.call('GET', KEYS[5]) or ''
if bound_to ~= ARGV[7] then return {SCHEMA_BOUND, bound_to} end
if ARGV[8] ~= '' then
  local rev = revision(seq)
  if rev ~= tonumber(ARGV[8]) then return {REVISION_MISMATCH, rev} end
end
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
local fmt = ARGV[11]
if math.abs(r) >= tonumber(ARGV[10]) then return {OUT_OF_RANGE, string.format('%.17g', r)} end
local text = string.format(fmt, r)
if tonumber(text) ~= r then return {TOO_PRECISE, string.format('%.17g', r)} end
local ver = next_versions(seq, now, 1, log, tonumber(ARGV[9])) + 1
local exp = now + tonumber(ARGV[4])
redis.call('SET', KEYS[3], record('n', ver, exp, text), 'PXAT', exp)
redis.call('ZADD', idx, exp, ARGV[2])
local line = change_line(ver, 's', 'n', ver, exp, ARGV[2])
log_change(log, tonumber(ARGV[9]), ver, line)
extend({idx, seq, KEYS[5]}, now, exp)
if fp ~= '' then
  remember_request(rid, fp,
    string.format('%d', ver) .. ':' .. string.format('%d', exp) .. ':' .. text, ARGV[5])
end
publish_changes(log, {line})
return {OK, text, ver, exp}
