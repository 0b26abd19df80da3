-- A write's request id, read before the write is attempted (an upload checks
-- it before receiving any byte). KEYS[1] request-id record; ARGV[1] the call's
-- fingerprint. Returns {OK} (unused) | {REPLAYED, first result}
-- | {REQUEST_ID_REUSED}. Reads only.
local status, first = seen_request(KEYS[1], ARGV[1])
if not status then return {OK} end
return {status, first}
