-- Shared by every script (prepended by redis_store.py, after one line that
-- defines the status codes of redis_store.Status as locals: OK, SESSION_FULL, ...).
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

-- Versions come from one counter per session. A new counter starts at the
-- current time in microseconds, so versions keep growing even after the whole
-- session expired and a stale version can never match again.
local function next_versions(seq, now, n)
  if redis.call('EXISTS', seq) == 0 then
    redis.call('SET', seq, string.format('%d', now * 1000))
  end
  return redis.call('INCRBY', seq, n) - n
end

-- The index and the counter live as long as the longest-lived value.
local function extend(idx, seq, now, exp)
  local left = redis.call('PTTL', idx)
  if left < 0 or now + left < exp then redis.call('PEXPIREAT', idx, exp) end
  left = redis.call('PTTL', seq)
  if left < 0 or now + left < exp then redis.call('PEXPIREAT', seq, exp) end
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
