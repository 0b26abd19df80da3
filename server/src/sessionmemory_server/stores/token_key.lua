-- Create the first session-token signing key when there is none (tokens.py).
-- KEYS[1] the signing keys hash (kid -> JSON), KEYS[2] its version counter.
-- ARGV: kid, record. Returns 1 when it created the key, 0 when one existed.
if redis.call('HLEN', KEYS[1]) > 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('INCR', KEYS[2])
return 1
