-- Set / SetJson / SetMany / a file's commit: all entries or none.
-- KEYS[1] index, KEYS[2] version counter, KEYS[3] request-id record (read and
-- written only when ARGV[2] is not ''), KEYS[3+i] value key of entry i.
-- ARGV[1] max keys per session, ARGV[2] request fingerprint ('' = none),
-- ARGV[3] how long the request-id record is kept (ms); entry i:
-- ARGV[a]=name, ARGV[a+1]=kind, ARGV[a+2]=payload, ARGV[a+3]=ttl ms,
-- ARGV[a+4]=if_version ('' = none), with a = 4 + (i-1)*5.
-- Returns {OK, released, version_1, expires_1, ...} where released lists
-- '<object>\t<value key>' of the files this write replaced
-- | {PRECONDITION_FAILED, i, current_version} | {SESSION_FULL, live_keys}
-- | {STORE_FULL} | {REQUEST_ID_REUSED} | {REPLAYED, record of entry 1 as first written}.
local idx, seq, rid = KEYS[1], KEYS[2], KEYS[3]
local fp = ARGV[2]
if fp ~= '' then
  local status, first = seen_request(rid, fp)
  if status then return {status, first} end
end
if over_maxmemory(seq) then return {STORE_FULL} end
local n = #KEYS - 3
local now = now_ms()
prune(idx, now)
local added = 0
for i = 1, n do
  local a = 4 + (i - 1) * 5
  local cond = ARGV[a + 4]
  if cond ~= '' then
    local cur = redis.call('GET', KEYS[3 + i])
    local ver = 0
    if cur then ver = tonumber(string.match(cur, '^%a(%d+):')) end
    if ver ~= tonumber(cond) then return {PRECONDITION_FAILED, i, ver} end
  end
  if not redis.call('ZSCORE', idx, ARGV[a]) then added = added + 1 end
end
if added > 0 then
  local live = redis.call('ZCARD', idx)
  if live + added > tonumber(ARGV[1]) then return {SESSION_FULL, live} end
end
local first = next_versions(seq, now, n)
local released = {}
local out = {OK, released}
local longest = 0
for i = 1, n do
  local a = 4 + (i - 1) * 5
  local ver = first + i
  local exp = now + tonumber(ARGV[a + 3])
  local rec = record(ARGV[a + 1], ver, exp, ARGV[a + 2])
  local old = blob_of(redis.call('SET', KEYS[3 + i], rec, 'PXAT', exp, 'GET'))
  -- A repeated commit (a retry whose first reply was lost) finds its own object:
  -- that one is referenced again, never released.
  if old and old ~= blob_of(rec) then
    released[#released + 1] = old .. '\t' .. KEYS[3 + i]
  end
  redis.call('ZADD', idx, exp, ARGV[a])
  if i == 1 and fp ~= '' then remember_request(rid, fp, rec, ARGV[3]) end
  if exp > longest then longest = exp end
  out[#out + 1] = ver
  out[#out + 1] = exp
end
extend(idx, seq, now, longest)
return out
