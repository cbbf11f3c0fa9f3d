-- Reads a session without touching it: returns its record JSON and last_seen
-- (s), or nil when it is dead. Nothing slides: for requests that must not keep
-- a session alive, and for watching an upgraded connection's session.
-- KEYS[1] session hash
local f = redis.call('HMGET', KEYS[1], 'rec', 'last_seen', 'idle', 'abs')
if not f[1] then
  return false
end
local last_seen, idle, abs = tonumber(f[2]), tonumber(f[3]), tonumber(f[4])
if not (last_seen and idle and abs) then
  return redis.error_reply('CORRUPT session fields')
end
local now = tonumber(redis.call('TIME')[1])
if now > abs or now > last_seen + idle then
  return false
end
return {f[1], last_seen}
