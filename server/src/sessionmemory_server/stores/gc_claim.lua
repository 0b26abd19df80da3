-- Blob collector: claim due entries of the global collection set.
-- KEYS[1] the set (member "<object>\t<value key>", score = when to check, ms).
-- ARGV[1] lease ms, ARGV[2] batch size. Claimed entries are pushed one lease
-- into the future, so a collector that dies mid-batch leaves them to the next.
-- PERSIST (a no-op: the set has no TTL) is a write Redis allows over maxmemory;
-- writing first lets the rescheduling ZADDs (which grow nothing) through, so
-- collection goes on while Redis is full.
redis.call('PERSIST', KEYS[1])
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), member)
end
return due
