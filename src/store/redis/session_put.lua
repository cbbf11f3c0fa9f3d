-- Stores a session and indexes it under its user. With KEYS[3], first deletes
-- the session it replaces (rotation), so old and new never both exist.
-- KEYS[1] session hash, KEYS[2] user's session index (set), KEYS[3] old session hash (optional)
-- ARGV[1] id, ARGV[2] record JSON, ARGV[3] user, ARGV[4] last_seen (s), ARGV[5] idle (s),
-- ARGV[6] absolute expiry (s), ARGV[7] session expiry (unix ms), ARGV[8] index expiry (unix ms),
-- ARGV[9] old id
if KEYS[3] then
  local old_idx = redis.call('HGET', KEYS[3], 'idx')
  redis.call('DEL', KEYS[3])
  if old_idx then
    redis.call('SREM', old_idx, ARGV[9])
  end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'rec', ARGV[2], 'user', ARGV[3], 'idx', KEYS[2],
  'last_seen', ARGV[4], 'idle', ARGV[5], 'abs', ARGV[6])
redis.call('PEXPIREAT', KEYS[1], ARGV[7])
redis.call('SADD', KEYS[2], ARGV[1])
-- The index lives as long as the longest-lived session it lists.
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[8]) - now_ms then
  redis.call('PEXPIREAT', KEYS[2], ARGV[8])
end
return 1
