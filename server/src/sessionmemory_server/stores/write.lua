-- Set / SetJson / SetMany / Delete / PatchDocument / BindSchema / a file's
-- commit: all entries or none.
-- KEYS[1] index, KEYS[2] version counter, KEYS[3] request-id record (read and
-- written only when ARGV[1] is not ''), KEYS[3+i] value key of entry i; the
-- schema binding and the change log are the session's '<prefix>s' and
-- '<prefix>w' (same hash tag, same slot).
-- ARGV[1] request fingerprint ('' = none), ARGV[2] how long the request-id
-- record is kept (ms), ARGV[3] the guard: '' (the session must be unbound) or
-- '<binding>\n<if_revision>\n<must_exist>\n<bind>': the binding the caller
-- validated against ('' = none), the revision required ('' = any), '1' = the
-- session must have a live key, the binding change ('' keep, '-' unbind, else
-- the schema to bind); entry i: ARGV[a]=name, ARGV[a+1]=kind ('x' deletes),
-- ARGV[a+2]=payload, ARGV[a+3]=ttl ms, ARGV[a+4]=if_version ('' = none), with
-- a = 4 + (i-1)*5.
-- Returns {OK, released, revision, deleted, version_1, expires_1, ...} where
-- released lists '<object>\t<value key>' of the files this call replaced or
-- deleted, deleted counts the deleted keys that existed, and a deleted entry's
-- version is its deletion's revision (0 when it did not exist) and expiry 0
-- | {PRECONDITION_FAILED, i, current_version} | {SESSION_FULL, live_keys}
-- | {STORE_FULL} | {REQUEST_ID_REUSED} | {REPLAYED, record of entry 1 as first written}
-- | {SCHEMA_BOUND, binding} | {REVISION_MISMATCH, revision} | {SESSION_NOT_FOUND}.
local idx, seq, rid = KEYS[1], KEYS[2], KEYS[3]
local prefix = string.sub(idx, 1, -2)
local bind, log = prefix .. 's', prefix .. 'w'
local fp = ARGV[1]
local g_binding, g_revision, g_must, g_bind = '', '', '', ''
if ARGV[3] ~= '' then
  g_binding, g_revision, g_must, g_bind = string.match(ARGV[3], '^(.-)\n(.-)\n(.-)\n(.*)$')
end
local n = #KEYS - 3
if fp ~= '' then
  local status, first = seen_request(rid, fp)
  if status then return {status, first} end
end
local adds = g_bind ~= '' and g_bind ~= '-'
for i = 1, n do
  if ARGV[4 + (i - 1) * 5 + 1] ~= 'x' then adds = true end
end
-- Deletes only free space: they run over maxmemory (GETDEL is their first write).
if adds and over_maxmemory(seq) then return {STORE_FULL} end
local bound_to = redis.call('GET', bind) or ''
if bound_to ~= g_binding then return {SCHEMA_BOUND, bound_to} end
local now = now_ms()
prune(idx, now)
if g_must == '1' and redis.call('ZCOUNT', idx, now, '+inf') == 0 then
  return {SESSION_NOT_FOUND}
end
if g_revision ~= '' then
  local rev = revision(seq)
  if rev ~= tonumber(g_revision) then return {REVISION_MISMATCH, rev} end
end
local current = {}
local events = 0
local delta = 0
for i = 1, n do
  local a = 4 + (i - 1) * 5
  local cond = ARGV[a + 4]
  local cur = nil
  if cond ~= '' or ARGV[a + 1] == 'x' then
    cur = redis.call('GET', KEYS[3 + i])
    current[i] = cur
  end
  if cond ~= '' then
    local ver = 0
    if cur then ver = tonumber(string.match(cur, '^%a(%d+):')) end
    if ver ~= tonumber(cond) then return {PRECONDITION_FAILED, i, ver} end
  end
  local listed = redis.call('ZSCORE', idx, ARGV[a])
  if ARGV[a + 1] == 'x' then
    if cur then events = events + 1 end
    if listed then delta = delta - 1 end
  else
    events = events + 1
    if not listed then delta = delta + 1 end
  end
end
if delta > 0 then
  local live = redis.call('ZCARD', idx)
  if live + delta > MAX_KEYS then return {SESSION_FULL, live} end
end
local rev = 0
local maxlen = LOG_LENGTH
if events > 0 then rev = next_versions(seq, now, events, log, maxlen) end
local released = {}
local out = {OK, released, 0, 0}
local lines = {}
local longest = 0
local deleted = 0
for i = 1, n do
  local a = 4 + (i - 1) * 5
  local vkey = KEYS[3 + i]
  if ARGV[a + 1] == 'x' then
    local old = current[i] and redis.call('GETDEL', vkey)
    redis.call('ZREM', idx, ARGV[a])
    if old then
      rev = rev + 1
      deleted = deleted + 1
      local _, ver = parse(old)
      local blob = blob_of(old)
      if blob then released[#released + 1] = blob .. '\t' .. vkey end
      local line = change_line(rev, 'd', '-', ver, 0, ARGV[a])
      log_change(log, maxlen, rev, line)
      lines[#lines + 1] = line
      out[#out + 1] = rev
    else
      out[#out + 1] = 0
    end
    out[#out + 1] = 0
  else
    rev = rev + 1
    local exp = now + tonumber(ARGV[a + 3])
    local rec = record(ARGV[a + 1], rev, exp, ARGV[a + 2])
    local old = blob_of(redis.call('SET', vkey, rec, 'PXAT', exp, 'GET'))
    -- A repeated commit (a retry whose first reply was lost) finds its own object:
    -- that one is referenced again, never released.
    if old and old ~= blob_of(rec) then released[#released + 1] = old .. '\t' .. vkey end
    redis.call('ZADD', idx, exp, ARGV[a])
    if i == 1 and fp ~= '' then remember_request(rid, fp, rec, ARGV[2]) end
    if exp > longest then longest = exp end
    local line = change_line(rev, 's', ARGV[a + 1], rev, exp, ARGV[a])
    log_change(log, maxlen, rev, line)
    lines[#lines + 1] = line
    out[#out + 1] = rev
    out[#out + 1] = exp
  end
end
if g_bind == '-' then
  redis.call('DEL', bind)
elseif g_bind ~= '' then
  redis.call('SET', bind, g_bind)
  local left = redis.call('PTTL', idx)
  local at = now + LONE_KEY_MS
  if left > 0 and now + left > at then at = now + left end
  redis.call('PEXPIREAT', bind, at)
end
if longest > 0 then extend({idx, seq, bind}, now, longest) end
bound({seq}, now + LONE_KEY_MS)
if redis.call('ZCARD', idx) == 0 then redis.call('DEL', idx) end
publish_changes(log, lines)
out[3] = revision(seq)
out[4] = deleted
return out
