-- Replaces all of a user's backup codes at once (the old ones become void):
-- adds the new, then removes the rest, so the set only disappears when it
-- ends up empty (a Cluster node whose slot is moving away forbids a script to
-- touch a key again once it is gone).
-- KEYS[1] backup-code set; ARGV the new code hashes (hex), possibly none
if #ARGV > 0 then
  redis.call('SADD', KEYS[1], unpack(ARGV))
end
local keep = {}
for i = 1, #ARGV do
  keep[ARGV[i]] = true
end
local gone = {}
for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if not keep[m] then
    gone[#gone + 1] = m
  end
end
if #gone > 0 then
  redis.call('SREM', KEYS[1], unpack(gone))
end
return 1
