-- Notes a token's last use, if the token still exists (a deleted or expired
-- token must not come back as a bare hash without expiry). Returns 1 or 0.
-- KEYS[1] token hash; ARGV[1] unix seconds
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], 'last_used', ARGV[1])
return 1
