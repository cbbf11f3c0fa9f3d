-- Marks an authenticator-app code's time step used, once: only when the user
-- has a confirmed secret and the step is later than the last one used, so a
-- code (or an older one still inside the accepted drift) cannot be replayed.
-- KEYS[1] the user's TOTP hash; ARGV[1] the step the code matched
if redis.call('HEXISTS', KEYS[1], 'secret') == 0 then
  return 0
end
local last = tonumber(redis.call('HGET', KEYS[1], 'last_step') or '-1')
if tonumber(ARGV[1]) <= last then
  return 0
end
redis.call('HSET', KEYS[1], 'last_step', ARGV[1])
return 1
