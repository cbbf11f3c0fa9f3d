-- Lists a user's sessions as a flat {id, record JSON, last_seen, ...} array,
-- pruning index entries whose session has expired.
-- KEYS[1] user's session index; ARGV[1] session key prefix (same hash slot)
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local f = redis.call('HMGET', ARGV[1] .. id, 'rec', 'last_seen')
  if f[1] and f[2] then
    out[#out + 1] = id
    out[#out + 1] = f[1]
    out[#out + 1] = f[2]
  else
    redis.call('SREM', KEYS[1], id)
  end
end
return out
