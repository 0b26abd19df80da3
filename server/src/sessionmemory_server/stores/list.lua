-- List. KEYS[1] index; ARGV[1] value-key prefix (same hash tag, same slot).
-- Returns {name, kind, size, version, expires, ...} for every live key.
local now = now_ms()
local out = {}
for _, name in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')) do
  local rec = redis.call('GET', ARGV[1] .. name)
  if rec then
    local kind, ver, exp, rest = string.match(rec, '^(%a)(%d+):(%d+):()')
    out[#out + 1] = name
    out[#out + 1] = kind
    if kind == 'f' then
      out[#out + 1] = cjson.decode(string.sub(rec, rest)).s
    else
      out[#out + 1] = #rec - rest + 1
    end
    out[#out + 1] = tonumber(ver)
    out[#out + 1] = tonumber(exp)
  end
end
return out
