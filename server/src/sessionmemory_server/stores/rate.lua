-- GCRA (generic cell rate algorithm, as in redis-cell and Envoy's global rate
-- limit) for one tenant's bucket, leasing tokens to a server process in batches.
-- Mirrored in Python by ratelimit.gcra (unit-tested there). ratelimit.py
-- prepends the status codes OK and STORE_FULL (redis_store.Status) as locals.
-- KEYS[1] the bucket's theoretical arrival time (TAT, microseconds of Redis
-- TIME as a decimal string); absent = a full bucket.
-- ARGV[1] emission interval T (microseconds per token = 1e6 / rate),
-- ARGV[2] burst (tokens), ARGV[3] owed (tokens the process already let pass:
-- charged whatever the state), ARGV[4] need (fewest tokens worth leasing),
-- ARGV[5] want (most to lease; need <= want <= burst), ARGV[6] carry
-- (microseconds: the TAT is at least now + carry; what a process that limited
-- the bucket on its own while Redis was full hands back).
-- Returns {status, granted, wait, ahead}: granted tokens, or (none) the
-- microseconds until `want` tokens are free; ahead = TAT - now after the owed
-- and the carry, before the grant. status STORE_FULL: Redis is over maxmemory
-- and refused to keep the state, so nothing was granted or stored and the
-- process limits the bucket itself from `ahead` (ratelimit.py). The key
-- expires when the bucket is full again, so idle buckets vanish.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local owed, need, want = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local stored = tonumber(redis.call('GET', KEYS[1]) or '0')
local tat = math.max(stored, now + tonumber(ARGV[6]))
local carried = tat > stored and tat > now
tat = tat + owed * interval
local ahead = tat - now
local limit = now + burst * interval
local avail = math.floor((limit - tat) / interval + 1e-6)
local granted = 0
if avail >= need then
  granted = math.min(want, avail)
  tat = tat + granted * interval
end
if owed > 0 or granted > 0 or carried then
  -- The script's only write, so Redis checks maxmemory here (SET is deny-oom).
  local r = redis.pcall('SET', KEYS[1], string.format('%.17g', tat), 'PX',
    math.ceil((tat - now) / 1000) + 1)
  if type(r) == 'table' and r.err then
    if string.find(r.err, 'OOM', 1, true) then return {STORE_FULL, 0, 0, ahead} end
    return error(r.err)
  end
end
if granted > 0 then return {OK, granted, 0, ahead} end
return {OK, 0, math.max(1, math.ceil(tat + want * interval - limit)), ahead}
