-- Shared by every script (prepended by redis_store.py, after lines that define
-- the status codes of redis_store.Status as locals: OK, SESSION_FULL, ..., and
-- LOG_KEEP_WATCHED_MS / LOG_KEEP_MS).
-- A record is one Redis string: <kind letter><version>:<expires ms>:<payload>,
-- written with PXAT <expires ms> in the same SET, so a value and its TTL are
-- always one atomic write and a plain GET returns everything a read needs.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function parse(rec)
  local kind, ver, exp, rest = string.match(rec, '^(%a)(%d+):(%d+):()')
  return kind, tonumber(ver), tonumber(exp), string.sub(rec, rest)
end

local function record(kind, ver, exp, payload)
  return kind .. string.format('%d', ver) .. ':' .. string.format('%d', exp) .. ':' .. payload
end

-- A session's bookkeeping keys (index, counter, change log, schema binding)
-- live as long as its longest-lived value: push each one's expiry to exp when
-- that is later (keys that do not exist are skipped).
local function extend(names, now, exp)
  for _, name in ipairs(names) do
    local left = redis.call('PTTL', name)
    if left == -1 or (left >= 0 and now + left < exp) then redis.call('PEXPIREAT', name, exp) end
  end
end

-- Give keys that have no expiry one (a change log created by a Delete).
local function bound(names, at)
  for _, name in ipairs(names) do
    if redis.call('PTTL', name) == -1 then redis.call('PEXPIREAT', name, at) end
  end
end

-- The session's revision: the version counter's value (0 before any write).
local function revision(seq)
  return tonumber(redis.call('GET', seq) or '0')
end

-- The change log: a stream of the session's last changes, entry id '<revision>-0',
-- field e = '<revision> <op> <kind> <version> <expires ms> <key>' (op s = set,
-- d = delete, b = the version counter began here). It is kept for
-- LOG_KEEP_WATCHED_MS after the last change while the session is watched (a
-- Watch in that time set the marker '<log>m'), else for LOG_KEEP_MS: enough to
-- read a document and then start watching after its revision. The same lines,
-- joined by newlines, are published on a channel named like the log, so Watch
-- streams learn of them without polling.
local watched_cache = {}
local function watched(log)
  if watched_cache[log] == nil then
    watched_cache[log] = redis.call('EXISTS', log .. 'm') == 1
  end
  return watched_cache[log]
end

local function log_change(log, maxlen, rev, line)
  local id = string.format('%d', rev) .. '-0'
  local r = redis.pcall('XADD', log, 'MAXLEN', maxlen, id, 'e', line)
  if type(r) == 'table' and r.err then
    -- A log older than its counter (ids out of order): start it afresh; a
    -- watcher resuming from before sees the gap and is told to re-read.
    redis.call('DEL', log)
    redis.call('XADD', log, 'MAXLEN', maxlen, id, 'e', line)
  end
  redis.call('PEXPIRE', log, watched(log) and LOG_KEEP_WATCHED_MS or LOG_KEEP_MS)
end

local function publish_changes(log, lines)
  if #lines > 0 then redis.call('PUBLISH', log, table.concat(lines, '\n')) end
end

local function change_line(rev, op, kind, ver, exp, name)
  return string.format('%d', rev) .. ' ' .. op .. ' ' .. kind .. ' ' .. string.format('%d', ver)
    .. ' ' .. string.format('%d', exp) .. ' ' .. name
end

-- Versions come from one counter per session. A new counter starts at the
-- current time in microseconds, so versions keep growing even after the whole
-- session expired and a stale version can never match again. The change log
-- marks where a counter began (op b), so a watcher from revision 0 knows that
-- nothing came before. Returns the value before the n new versions.
local function next_versions(seq, now, n, log, maxlen)
  if redis.call('EXISTS', seq) == 0 then
    local start = now * 1000
    redis.call('SET', seq, string.format('%d', start))
    log_change(log, maxlen, start, change_line(start, 'b', '-', 0, 0, '-'))
  end
  return redis.call('INCRBY', seq, n) - n
end


local function prune(idx, now)
  redis.call('ZREMRANGEBYSCORE', idx, '-inf', '(' .. string.format('%d', now))
end

-- The object-store name of a file record, or nil for other kinds.
local function blob_of(rec)
  if rec and string.sub(rec, 1, 1) == 'f' then
    local _, _, _, payload = parse(rec)
    return cjson.decode(payload).o
  end
  return nil
end

-- Refuse a write before anything changed when Redis is over maxmemory. Redis
-- checks maxmemory in a script only at its first deny-oom command, and only if
-- the script has not written yet (ZREMRANGEBYSCORE, say, is a write that is not
-- deny-oom and would let every later SET through). SETRANGE of '' is a deny-oom
-- write that changes nothing (it never creates a key), so calling it first asks
-- the question on Redis 6.2, 7.x and Valkey alike. ``key`` must hold a string
-- or be absent.
local function over_maxmemory(key)
  local r = redis.pcall('SETRANGE', key, 0, '')
  if type(r) == 'table' and r.err then
    if string.find(r.err, 'OOM', 1, true) then return true end
    return error(r.err)
  end
  return false
end

-- A request-id record is '<fingerprint>|<first result>'; the fingerprint names
-- the operation and its arguments. Returns nil (unseen), REPLAYED and the
-- first result (the same call again) or REQUEST_ID_REUSED (another call).
local function seen_request(rid, fp)
  local seen = redis.call('GET', rid)
  if not seen then return nil end
  local bar = string.find(seen, '|', 1, true)
  if bar and string.sub(seen, 1, bar - 1) == fp then
    return REPLAYED, string.sub(seen, bar + 1)
  end
  return REQUEST_ID_REUSED, nil
end

local function remember_request(rid, fp, result, keep_ms)
  redis.call('SET', rid, fp .. '|' .. result, 'PX', keep_ms)
end

-- A sorted set scored by expiry (ms) lives as long as its last member.
local function keep_until_last(key)
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if #last > 0 then redis.call('PEXPIREAT', key, last[2]) end
end
