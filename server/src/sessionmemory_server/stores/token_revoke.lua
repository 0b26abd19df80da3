-- Record one session-token revocation (tokens.py, SessionTokens._revoke).
-- KEYS[1] revoked   sorted set: member -> when it may be dropped (ms)
-- KEYS[2] log       sorted set: member -> sequence number of its last change
-- KEYS[3] count     hash: tenant -> its outstanding revocations
-- KEYS[4] version   the last sequence number (what every process polls)
-- ARGV: member ("t\t<tenant>\t<token id>" or "s\t<tenant>\t<session id>"),
--       tenant, now (ms), drop at (ms), the tenant's cap.
-- Returns {OK, sequence} or {REVOCATIONS_FULL, outstanding} or {STORE_FULL}.
-- All four keys share the hash tag of tokens.py, so this runs on one node.
if over_maxmemory(KEYS[4]) then return {STORE_FULL} end
local now = tonumber(ARGV[3])
-- Drop what no live token can need any more (a bounded batch per call).
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 1000)
for _, m in ipairs(old) do
  redis.call('ZREM', KEYS[1], m)
  redis.call('ZREM', KEYS[2], m)
  local t = string.match(m, '^[ts]\t([^\t]+)\t')
  if t and redis.call('HINCRBY', KEYS[3], t, -1) <= 0 then redis.call('HDEL', KEYS[3], t) end
end
local member, tenant, drop = ARGV[1], ARGV[2], tonumber(ARGV[4])
local prev = redis.call('ZSCORE', KEYS[1], member)
if prev then
  -- Revoked before: keep the later horizon (a session's covers more tokens).
  if tonumber(prev) > drop then drop = tonumber(prev) end
else
  local n = tonumber(redis.call('HGET', KEYS[3], tenant) or '0')
  if n >= tonumber(ARGV[5]) then return {REVOCATIONS_FULL, n} end
  redis.call('HINCRBY', KEYS[3], tenant, 1)
end
redis.call('ZADD', KEYS[1], drop, member)
local seq = redis.call('INCR', KEYS[4])
redis.call('ZADD', KEYS[2], seq, member)
return {OK, seq}
