-- Increment.
-- KEYS[1] index, KEYS[2] version counter, KEYS[3] value key, KEYS[4] (with a
-- request id) request-id record; the schema binding and the change log are the
-- session's '<prefix>s' and '<prefix>w' (same hash tag, same slot).
-- ARGV[1] name, ARGV[2] delta, ARGV[3] ttl ms, ARGV[4] request-id window ms,
-- ARGV[5] request fingerprint ('' = none), ARGV[6] the guard: '' (the session
-- must be unbound) or '<binding>\n<if_revision>' (the binding the caller
-- validated against, the revision required).
-- Returns {OK, text, version, expires} (also when replayed) | {NOT_A_NUMBER, kind}
-- | {OUT_OF_RANGE, text} | {TOO_PRECISE, text} | {SESSION_FULL, live}
-- | {STORE_FULL} | {REQUEST_ID_REUSED} | {SCHEMA_BOUND, binding}
-- | {REVISION_MISMATCH, revision}.
local idx, seq, rid = KEYS[1], KEYS[2], KEYS[4]
local prefix = string.sub(idx, 1, -2)
local bind, log = prefix .. 's', prefix .. 'w'
local g_binding, g_revision = '', ''
if ARGV[6] ~= '' then g_binding, g_revision = string.match(ARGV[6], '^(.-)\n(.*)$') end
local fp = ARGV[5]
if fp ~= '' then
  local status, first = seen_request(rid, fp)
  if status == REPLAYED then
    local ver, exp, text = string.match(first, '^(%d+):(%d+):(.*)$')
    return {OK, text, tonumber(ver), tonumber(exp)}
  end
  if status then return {status} end
end
if over_maxmemory(seq) then return {STORE_FULL} end
local bound_to = redis.call('GET', bind) or ''
if bound_to ~= g_binding then return {SCHEMA_BOUND, bound_to} end
if g_revision ~= '' then
  local rev = revision(seq)
  if rev ~= tonumber(g_revision) then return {REVISION_MISMATCH, rev} end
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
  if live + 1 > MAX_KEYS then return {SESSION_FULL, live} end
end
local r = x + tonumber(ARGV[2])
if r == 0 then r = 0 end -- -0 is stored as 0
if math.abs(r) >= NUMBER_BOUND then return {OUT_OF_RANGE, string.format('%.17g', r)} end
local text = string.format(NUMBER_FORMAT, r)
if tonumber(text) ~= r then return {TOO_PRECISE, string.format('%.17g', r)} end
local ver = next_versions(seq, now, 1, log, LOG_LENGTH) + 1
local exp = now + tonumber(ARGV[3])
redis.call('SET', KEYS[3], record('n', ver, exp, text), 'PXAT', exp)
redis.call('ZADD', idx, exp, ARGV[1])
local line = change_line(ver, 's', 'n', ver, exp, ARGV[1])
log_change(log, LOG_LENGTH, ver, line)
extend({idx, seq, bind}, now, exp)
if fp ~= '' then
  remember_request(rid, fp,
    string.format('%d', ver) .. ':' .. string.format('%d', exp) .. ':' .. text, ARGV[4])
end
publish_changes(log, {line})
return {OK, text, ver, exp}
