-- Deletes every session of a user; returns how many existed.
-- KEYS[1] user's session index; ARGV[1] session key prefix (same hash slot)
local n = 0
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  n = n + redis.call('DEL', ARGV[1] .. id)
end
redis.call('DEL', KEYS[1])
return n
