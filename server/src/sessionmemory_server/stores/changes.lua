-- A Watch's backlog. KEYS[1] version counter, KEYS[2] change log; ARGV[1] the
-- revision the watcher has seen. Reads only.
-- Returns {revision, line, ...}: the session's revision and the logged changes
-- after ARGV[1], oldest first (see log_change).
local out = {revision(KEYS[1])}
local from = string.format('%d', tonumber(ARGV[1]) + 1) .. '-0'
for _, entry in ipairs(redis.call('XRANGE', KEYS[2], from, '+')) do
  out[#out + 1] = entry[2][2]
end
return out
