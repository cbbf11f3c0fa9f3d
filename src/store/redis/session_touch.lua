-- Load-and-touch in one step: returns {record JSON, last_seen (s), Redis time
-- (unix ms)} and slides the expiry to min(now + idle, absolute), or nil when
-- the session is dead. Near caches judge expiry by the same rule, so a dead
-- session deleted here needs no announcement.
-- KEYS[1] session hash
local f = redis.call('HMGET', KEYS[1], 'rec', 'last_seen', 'idle', 'abs')
if not f[1] then
  return false
end
local last_seen, idle, abs = tonumber(f[2]), tonumber(f[3]), tonumber(f[4])
if not (last_seen and idle and abs) then
  return redis.error_reply('CORRUPT session fields')
end
local t = redis.call('TIME')
local now = tonumber(t[1])
local now_ms = now * 1000 + math.floor(tonumber(t[2]) / 1000)
if now > abs or now > last_seen + idle then
  redis.call('DEL', KEYS[1])
  return false
end
redis.call('HSET', KEYS[1], 'last_seen', now)
-- (Clamped to the year 9999: Redis refuses expiry times beyond that.)
redis.call('PEXPIREAT', KEYS[1], (math.min(now + idle, abs, 253402300799) + 1) * 1000)
return {f[1], now, now_ms}
