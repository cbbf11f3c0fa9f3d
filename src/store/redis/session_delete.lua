-- Deletes a session and unindexes it; returns its user, or nil if absent.
-- KEYS[1] session hash; ARGV[1] id
local f = redis.call('HMGET', KEYS[1], 'user', 'idx')
if not f[1] then
  return false
end
redis.call('DEL', KEYS[1])
if f[2] then
  redis.call('SREM', f[2], ARGV[1])
end
return f[1]
