-- Stores a new one-time code, replacing (voiding) any previous one: every
-- field is overwritten. The key outlives the code (2 x ttl) so a late attempt
-- reports "expired", not "none".
-- KEYS[1] code hash; ARGV[1] code hash (hex), ARGV[2] ttl (ms), ARGV[3] max attempts
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'h', ARGV[1], 'exp', now + ttl, 'left', ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.max(2 * ttl, 1))
return 1
