-- Stores a session. A session already under this id is overwritten (every
-- field is set), and its id announced on the revocation channel so no near
-- cache keeps the old record. Returns Redis's time (unix ms), which replicas
-- measure their clocks against.
-- (No DEL first: on a Cluster node whose slot is moving away, a script may not
-- touch its key again once the key is gone.)
-- KEYS[1] session hash
-- ARGV[1] record JSON, ARGV[2] user, ARGV[3] last_seen (s), ARGV[4] idle (s),
-- ARGV[5] absolute expiry (s), ARGV[6] expiry (unix ms), ARGV[7] channel, ARGV[8] id
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('PUBLISH', ARGV[7], ARGV[8])
end
redis.call('HSET', KEYS[1], 'rec', ARGV[1], 'user', ARGV[2], 'last_seen', ARGV[3], 'idle', ARGV[4], 'abs', ARGV[5])
redis.call('PEXPIREAT', KEYS[1], ARGV[6])
local t = redis.call('TIME')
return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
