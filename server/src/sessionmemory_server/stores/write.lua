-- Set / SetJson / SetMany: all entries or none.
-- KEYS[1] index, KEYS[2] version counter, KEYS[2+i] value key of entry i.
-- ARGV[1] max keys per session; entry i: ARGV[a]=name, ARGV[a+1]=kind,
-- ARGV[a+2]=payload, ARGV[a+3]=ttl ms, ARGV[a+4]=if_version ('' = none),
-- with a = 2 + (i-1)*5.
-- Returns {0, released, version_1, expires_1, ...} where released lists the
-- object names of files this write replaced | {1, i, current_version} (failed
-- precondition of entry i) | {2, live_keys} (session full).
local idx, seq = KEYS[1], KEYS[2]
local n = #KEYS - 2
local now = now_ms()
prune(idx, now)
local added = 0
for i = 1, n do
  local a = 2 + (i - 1) * 5
  local cond = ARGV[a + 4]
  if cond ~= '' then
    local cur = redis.call('GET', KEYS[2 + i])
    local ver = 0
    if cur then ver = tonumber(string.match(cur, '^%a(%d+):')) end
    if ver ~= tonumber(cond) then return {1, i, ver} end
  end
  if not redis.call('ZSCORE', idx, ARGV[a]) then added = added + 1 end
end
if added > 0 then
  local live = redis.call('ZCARD', idx)
  if live + added > tonumber(ARGV[1]) then return {2, live} end
end
local first = next_versions(seq, now, n)
local released = {}
local out = {0, released}
local longest = 0
for i = 1, n do
  local a = 2 + (i - 1) * 5
  local ver = first + i
  local exp = now + tonumber(ARGV[a + 3])
  local old = blob_of(redis.call(
    'SET', KEYS[2 + i], record(ARGV[a + 1], ver, exp, ARGV[a + 2]), 'PXAT', exp, 'GET'))
  if old then released[#released + 1] = old end
  redis.call('ZADD', idx, exp, ARGV[a])
  if exp > longest then longest = exp end
  out[#out + 1] = ver
  out[#out + 1] = exp
end
extend(idx, seq, now, longest)
return out
