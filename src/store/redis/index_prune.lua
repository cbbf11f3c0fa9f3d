-- Drops ids whose session was found gone from a user's index, but only entries
-- older than ARGV[1] ms: the index entry is written before its session, so a
-- younger one may belong to a session being created right now, which must stay
-- indexed (revoke-all finds sessions through the index). Returns how many went.
-- (One ZREM at the end: it may remove the key, which a Cluster node whose slot
-- is moving away forbids the script to touch again.)
-- KEYS[1] user's session index; ARGV[1] grace (ms), ARGV[2..] ids
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local oldest = now - tonumber(ARGV[1])
local old = {}
for i = 2, #ARGV do
  local score = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[i]))
  if score and score <= oldest then
    old[#old + 1] = ARGV[i]
  end
end
if #old == 0 then
  return 0
end
return redis.call('ZREM', KEYS[1], unpack(old))
