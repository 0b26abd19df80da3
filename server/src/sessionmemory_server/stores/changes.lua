-- A Watch's start or catch-up. KEYS[1] version counter, KEYS[2] change log;
-- ARGV[1] the first revision wanted (the one after what the watcher has seen).
-- A session that exists (its counter does) is marked watched for
-- LOG_KEEP_WATCHED_MS, but never past its counter's expiry (its log then lives
-- that long after a change): the marker of a session that does not exist would
-- be a key no quota admitted. The Watch renews it while it runs (watch.py).
-- Returns {revision, line, ...}: the session's revision and the logged changes
-- from ARGV[1] on, oldest first (see log_change). Marking is best effort (over
-- maxmemory it is skipped).
local left = redis.call('PTTL', KEYS[1])
if left == -1 or left > LOG_KEEP_WATCHED_MS then left = LOG_KEEP_WATCHED_MS end
if left > 0 then redis.pcall('SET', KEYS[2] .. 'm', '1', 'PX', left) end
local out = {revision(KEYS[1])}
for _, entry in ipairs(redis.call('XRANGE', KEYS[2], ARGV[1] .. '-0', '+')) do
  out[#out + 1] = entry[2][2]
end
return out
