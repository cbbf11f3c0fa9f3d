-- Adds a session id to its user's index, scored by Redis's time (ms), and
-- keeps the index alive at least until ARGV[2] (it is only ever lengthened).
-- KEYS[1] user's session index; ARGV[1] id, ARGV[2] expiry (unix ms)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) - now then
  redis.call('PEXPIREAT', KEYS[1], ARGV[2])
end
return 1
