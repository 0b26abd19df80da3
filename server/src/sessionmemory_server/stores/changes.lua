-- A Watch's start or catch-up. KEYS[1] version counter, KEYS[2] change log;
-- ARGV[1] the first revision wanted (the one after what the watcher has seen),
-- The session is marked watched for LOG_KEEP_WATCHED_MS (its log then lives
-- that long after a change).
-- Returns {revision, line, ...}: the session's revision and the logged changes
-- from ARGV[1] on, oldest first (see log_change). Marking is best effort (over
-- maxmemory it is skipped).
redis.pcall('SET', KEYS[2] .. 'm', '1', 'PX', LOG_KEEP_WATCHED_MS)
local out = {revision(KEYS[1])}
for _, entry in ipairs(redis.call('XRANGE', KEYS[2], ARGV[1] .. '-0', '+')) do
  out[#out + 1] = entry[2][2]
end
return out
