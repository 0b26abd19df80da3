-- Clear. KEYS[1] index, KEYS[2] version counter, KEYS[3] schema binding,
-- KEYS[4] change log; ARGV[1] value-key prefix (same hash tag, same slot).
-- Returns {deleted, released '<object>\t<value key>' of deleted files, names of
-- the deleted keys, the revision of the last delete (0 = none)}. Every deleted
-- key is a change (a new revision); the schema binding goes too.
local idx, seq, log = KEYS[1], KEYS[2], KEYS[4]
local deleted = {}
local released = {}
for _, name in ipairs(redis.call('ZRANGE', idx, 0, -1)) do
  local vkey = ARGV[1] .. name
  local old = redis.call('GETDEL', vkey)
  if old then deleted[#deleted + 1] = {name, old} end
  local blob = blob_of(old)
  if blob then released[#released + 1] = blob .. '\t' .. vkey end
end
redis.call('DEL', idx, KEYS[3])
local names = {}
local rev = 0
if #deleted > 0 then
  local now = now_ms()
  rev = next_versions(seq, now, #deleted, log, LOG_LENGTH)
  local lines = {}
  for _, d in ipairs(deleted) do
    rev = rev + 1
    names[#names + 1] = d[1]
    local _, ver = parse(d[2])
    lines[#lines + 1] = change_line(rev, 'd', '-', ver, 0, d[1])
    log_change(log, LOG_LENGTH, rev, lines[#lines])
  end
  bound({seq}, now + LONE_KEY_MS)
  publish_changes(log, lines)
end
return {#deleted, released, names, rev}
