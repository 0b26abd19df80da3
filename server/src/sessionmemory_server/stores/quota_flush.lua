-- Apply one process's batch of a tenant's quota bookkeeping; return its usage.
-- KEYS[1] ledger (hash: member -> '<bytes> <vrev> <erev>'; a member is a short
-- digest of the value's session and key, never parsed here), KEYS[2]
-- ledger expiries (sorted set: member -> expires ms), KEYS[3] stored-bytes total
-- (string), KEYS[4] sessions (sorted set: session -> registered until, ms),
-- KEYS[5] uploads (sorted set); all the tenant's {T}, one slot.
-- ARGV[1] how long a delete's tombstone is kept (ms), ARGV[2] most expired
-- ledger entries dropped per call; then operations of 5 arguments each:
--   S member bytes revision expires   a value was written
--   D member revision - -             a value was deleted
--   T member revision expires bytes   a value got a new expiry (revision: the
--                                     session's when it was touched; bytes:
--                                     what the value counts at that revision)
--   E session ms - -                  the session lives at least ms from now
-- Batches of several processes arrive in any order; revisions order them: a
-- value's bytes follow its newest write, delete or touch (vrev), its expiry its
-- newest write, delete or touch (erev; a touch at revision r came after the
-- write of revision r). Touch does not move the revision, so touches of one
-- revision tie: the later expiry is kept (a shortened TTL counts until the
-- longer expiry; never less than is stored). A touch whose entry was already
-- dropped (an earlier expiry passed) counts the value again. A deleted value
-- stays as a 0-byte tombstone for ARGV[1] ms so a late batch holding an older
-- write of it changes nothing (batches are assumed to land within that).
-- The ledger mirrors writes already made, so it is kept over maxmemory too:
-- PERSIST (a write Redis allows there) goes first and lets the rest through.
-- Returns {stored bytes, sessions, uploads, 1 when expired entries are left (at
-- most ARGV[2] are dropped per call) else 0}.
local kb, ke, kt, ss, up = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
redis.call('PERSIST', kt)
local now = now_ms()
local total = tonumber(redis.call('GET', kt) or '0')

local function entry(member)
  local v = redis.call('HGET', kb, member)
  if not v then return {0, 0, 0} end
  local b, vr, er = string.match(v, '^(%d+) (%d+) (%d+)$')
  return {tonumber(b), tonumber(vr), tonumber(er)}
end

local function put(member, e)
  redis.call('HSET', kb, member, string.format('%d %d %d', e[1], e[2], e[3]))
end

for i = 3, #ARGV, 5 do
  local op, m = ARGV[i], ARGV[i + 1]
  if op == 'S' then
    local bytes, rev, exp = tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4])
    local e = entry(m)
    if rev > e[2] or rev > e[3] then
      if rev > e[2] then
        total = total + bytes - e[1]
        e[1], e[2] = bytes, rev
      end
      if rev > e[3] then
        e[3] = rev
        redis.call('ZADD', ke, exp, m)
      end
      put(m, e)
    end
  elseif op == 'D' then
    local rev = tonumber(ARGV[i + 2])
    local e = entry(m)
    if rev > e[2] or rev > e[3] then
      if rev > e[2] then
        total = total - e[1]
        e[1], e[2] = 0, rev
      end
      if rev > e[3] then
        e[3] = rev
        redis.call('ZADD', ke, now + tonumber(ARGV[1]), m)
      end
      put(m, e)
    end
  elseif op == 'T' then
    local rev, exp, bytes = tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4])
    local e = entry(m)
    local changed = false
    if rev > e[2] then
      total = total + bytes - e[1]
      e[1], e[2], changed = bytes, rev, true
    end
    if rev > e[3] then
      e[3], changed = rev, true
      redis.call('ZADD', ke, exp, m)
    elseif rev == e[3] then
      local cur = redis.call('ZSCORE', ke, m)
      if not cur or tonumber(cur) < exp then redis.call('ZADD', ke, exp, m) end
    end
    if changed then put(m, e) end
  elseif op == 'E' then
    local want = now + tonumber(ARGV[i + 2])
    local score = redis.call('ZSCORE', ss, m)
    if not score or tonumber(score) < want then redis.call('ZADD', ss, want, m) end
  end
end

local limit = tonumber(ARGV[2])
local gone = redis.call('ZRANGEBYSCORE', ke, '-inf', '(' .. string.format('%d', now),
  'LIMIT', 0, limit)
for _, m in ipairs(gone) do
  total = total - entry(m)[1]
  redis.call('HDEL', kb, m)
end
if #gone > 0 then redis.call('ZREM', ke, unpack(gone)) end
if total < 0 then total = 0 end
local last = redis.call('ZRANGE', ke, -1, -1, 'WITHSCORES')
if #last == 0 then
  redis.call('DEL', kb, ke, kt)
else
  redis.call('SET', kt, string.format('%d', total), 'PXAT', last[2])
  redis.call('PEXPIREAT', kb, last[2])
  redis.call('PEXPIREAT', ke, last[2])
end
prune(ss, now)
prune(up, now)
keep_until_last(ss)
local more = 0
if limit > 0 and #gone == limit then more = 1 end
return {total, redis.call('ZCARD', ss), redis.call('ZCARD', up), more}
