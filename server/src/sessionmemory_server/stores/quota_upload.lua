-- Take one of the tenant's upload slots (shared by every server process).
-- KEYS[1] the tenant's uploads (sorted set: upload -> lease end, ms), KEYS[2]
-- the tenant's stored-bytes total (a string, only asked about maxmemory; same
-- hash tag {T}, same slot).
-- ARGV[1] upload (a random id), ARGV[2] lease ms, ARGV[3] the quota (uploads).
-- A lease whose process died without giving it back ends by itself.
-- Returns {OK, uploads} | {QUOTA_EXCEEDED, uploads} | {STORE_FULL}.
local up = KEYS[1]
if over_maxmemory(KEYS[2]) then return {STORE_FULL} end
local now = now_ms()
prune(up, now)
local count = redis.call('ZCARD', up)
if count >= tonumber(ARGV[3]) then return {QUOTA_EXCEEDED, count} end
redis.call('ZADD', up, now + tonumber(ARGV[2]), ARGV[1])
keep_until_last(up)
return {OK, count + 1}
