-- Records a login from an IP; returns {when it was seen before (unix s) or -1,
-- how many IPs the account knew before}. Keeps at most ARGV[2] IPs, forgetting
-- the least recently seen.
-- KEYS[1] known-IP hash; ARGV[1] ip, ARGV[2] cap
local now = tonumber(redis.call('TIME')[1])
local known = redis.call('HLEN', KEYS[1])
local before = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], now)
if redis.call('HLEN', KEYS[1]) > tonumber(ARGV[2]) then
  local all = redis.call('HGETALL', KEYS[1])
  local oldest, oldest_seen = nil, nil
  for i = 1, #all, 2 do
    local seen = tonumber(all[i + 1]) or 0
    if all[i] ~= ARGV[1] and (oldest_seen == nil or seen < oldest_seen) then
      oldest, oldest_seen = all[i], seen
    end
  end
  if oldest then
    redis.call('HDEL', KEYS[1], oldest)
  end
end
return {tonumber(before) or -1, known}
