-- GCRA (generic cell rate algorithm, as in redis-cell and Envoy's global rate
-- limit) for one tenant's bucket, leasing tokens to a server process in batches.
-- Mirrored in Python by ratelimit.gcra (unit-tested there).
-- KEYS[1] the bucket's theoretical arrival time (TAT, microseconds of Redis
-- TIME as a decimal string); absent = a full bucket.
-- ARGV[1] emission interval T (microseconds per token = 1e6 / rate),
-- ARGV[2] burst (tokens), ARGV[3] owed (tokens the process already let pass:
-- charged whatever the state), ARGV[4] need (fewest tokens worth leasing),
-- ARGV[5] want (most to lease; need <= want <= burst).
-- Returns {granted, 0} or {0, wait}: microseconds until `want` tokens are free.
-- The key expires when the bucket is full again, so idle buckets vanish. Its
-- SET is not checked against maxmemory: over it (when only reads, Delete,
-- Clear and Touch work) the limiter admits what it computed without keeping
-- the state, rather than refusing reads.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local owed, need, want = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
tat = tat + owed * interval
local limit = now + burst * interval
local avail = math.floor((limit - tat) / interval + 1e-6)
local granted = 0
if avail >= need then
  granted = math.min(want, avail)
  tat = tat + granted * interval
end
if owed > 0 or granted > 0 then
  redis.pcall('SET', KEYS[1], string.format('%.17g', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
end
if granted > 0 then return {granted, 0} end
return {0, math.max(1, math.ceil(tat + want * interval - limit))}
