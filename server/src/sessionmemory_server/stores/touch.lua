-- Touch: a new expiry for existing keys, values and versions unchanged.
-- KEYS[1] index, KEYS[2] version counter, KEYS[3] schema binding, KEYS[4..]
-- value keys.
-- ARGV[1] ttl ms, ARGV[2] kind letters whose cap allows this ttl,
-- ARGV[4..] names (ARGV[i] is the name of KEYS[i]; ARGV[3] unused).
-- Returns {OK, touched, files, expires, revision, names, sizes} where files
-- lists '<object>\t<value key>' of the files touched (their collection entries
-- follow the new expiry), revision is the session's, names the keys touched and
-- sizes their payloads' bytes (a file's: its size), for the quota ledger
-- | {TTL_NOT_ALLOWED, i, kind} (key i's kind does not allow the ttl).
-- Touch works over maxmemory (so tenants can shorten TTLs to free space): it
-- grows nothing, each record is rewritten at its own length, and its first
-- write is PEXPIREAT, which Redis does not refuse over maxmemory.
local idx, seq = KEYS[1], KEYS[2]
local now = now_ms()
local found = {}
for i = 4, #KEYS do
  local cur = redis.call('GET', KEYS[i])
  if cur then
    local kind = string.sub(cur, 1, 1)
    if not string.find(ARGV[2], kind, 1, true) then return {TTL_NOT_ALLOWED, i - 3, kind} end
    found[i] = cur
  end
end
local exp = now + tonumber(ARGV[1])
local touched = 0
local files = {}
local names = {}
local sizes = {}
for i = 4, #KEYS do
  if found[i] then
    local kind, ver, _, payload = parse(found[i])
    redis.call('PEXPIREAT', KEYS[i], exp)
    redis.call('SET', KEYS[i], record(kind, ver, exp, payload), 'PXAT', exp)
    redis.call('ZADD', idx, exp, ARGV[i])
    if kind == 'f' then files[#files + 1] = blob_of(found[i]) .. '\t' .. KEYS[i] end
    touched = touched + 1
    names[touched] = ARGV[i]
    if kind == 'f' then sizes[touched] = cjson.decode(payload).s else sizes[touched] = #payload end
  end
end
if touched > 0 then extend({idx, seq, KEYS[3]}, now, exp) end
return {OK, touched, files, exp, revision(seq), names, sizes}
