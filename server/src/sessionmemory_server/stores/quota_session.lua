-- Admit a write to a session under the tenant's live-sessions quota.
-- KEYS[1] the tenant's sessions (sorted set: session -> registered until, ms),
-- KEYS[2] the tenant's stored-bytes total (a string, only asked about maxmemory;
-- same hash tag {T}, same slot).
-- ARGV[1] session, ARGV[2] how long to register it for (ms from now), ARGV[3]
-- the quota (sessions). A member (a live session) is extended, never refused.
-- Returns {OK, registered ms from now, sessions} | {QUOTA_EXCEEDED, sessions}
-- | {STORE_FULL}.
local ss = KEYS[1]
if over_maxmemory(KEYS[2]) then return {STORE_FULL} end
local now = now_ms()
prune(ss, now)
local want = now + tonumber(ARGV[2])
local score = redis.call('ZSCORE', ss, ARGV[1])
local count = redis.call('ZCARD', ss)
if not score then
  if count >= tonumber(ARGV[3]) then return {QUOTA_EXCEEDED, count} end
  count = count + 1
  redis.call('ZADD', ss, want, ARGV[1])
elseif tonumber(score) < want then
  redis.call('ZADD', ss, want, ARGV[1])
else
  want = tonumber(score)
end
keep_until_last(ss)
return {OK, want - now, count}
