-- Record one session-token revocation (tokens.py, SessionTokens._record).
-- KEYS[1] revoked   sorted set: member -> when it may be dropped (ms)
-- KEYS[2] log       sorted set: '<drop ms>\t<member>' -> sequence number of its last
--                   change (the drop time in the entry, so reading the log is one
--                   command per batch)
-- KEYS[3] count     hash: tenant -> its outstanding revocations
-- KEYS[4] version   the last sequence number (what every process polls)
-- ARGV: member ("t\t<tenant>\t<token id>" or "s\t<tenant>\t<session id>"),
--       tenant, now (ms), drop at (ms), the tenant's cap, the cap of all tenants.
-- Returns {OK, sequence}, {REVOCATIONS_FULL, the tenant's outstanding},
-- {REVOCATIONS_FULL_TOTAL, all outstanding} or {STORE_FULL}.
-- All four keys share the hash tag of tokens.py, so this runs on one node.
if over_maxmemory(KEYS[4]) then return {STORE_FULL} end
local now = tonumber(ARGV[3])
local function log_entry(m, drop)
  return string.format('%d', drop) .. '\t' .. m
end
-- Drop what no live token can need any more (a bounded batch per call).
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0, 1000)
for i = 1, #old, 2 do
  local m = old[i]
  redis.call('ZREM', KEYS[1], m)
  redis.call('ZREM', KEYS[2], log_entry(m, tonumber(old[i + 1])))
  local t = string.match(m, '^[ts]\t([^\t]+)\t')
  if t and redis.call('HINCRBY', KEYS[3], t, -1) <= 0 then redis.call('HDEL', KEYS[3], t) end
end
local member, tenant, drop = ARGV[1], ARGV[2], tonumber(ARGV[4])
local prev = redis.call('ZSCORE', KEYS[1], member)
if prev then
  -- Revoked before: keep the later horizon (a session's covers more tokens).
  prev = tonumber(prev)
  if prev > drop then drop = prev end
  if prev ~= drop then redis.call('ZREM', KEYS[2], log_entry(member, prev)) end
else
  local n = tonumber(redis.call('HGET', KEYS[3], tenant) or '0')
  if n >= tonumber(ARGV[5]) then return {REVOCATIONS_FULL, n} end
  local total = redis.call('ZCARD', KEYS[1])
  if total >= tonumber(ARGV[6]) then return {REVOCATIONS_FULL_TOTAL, total} end
  redis.call('HINCRBY', KEYS[3], tenant, 1)
end
redis.call('ZADD', KEYS[1], drop, member)
local seq = redis.call('INCR', KEYS[4])
redis.call('ZADD', KEYS[2], seq, log_entry(member, drop))
return {OK, seq}
