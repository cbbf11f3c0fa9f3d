-- Deletes one session if it belongs to ARGV[1]; returns 1 if it did.
-- KEYS[1] user's session index, KEYS[2] session hash; ARGV[1] user, ARGV[2] id
local owner = redis.call('HGET', KEYS[2], 'user')
if not owner then
  redis.call('SREM', KEYS[1], ARGV[2])
  return 0
end
if owner ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[1], ARGV[2])
return 1
