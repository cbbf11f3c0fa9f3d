-- Starts a cooldown unless one runs. Returns -1 if started, else the ms left.
-- KEYS[1] cooldown key; ARGV[1] cooldown (ms, > 0)
if redis.call('SET', KEYS[1], '1', 'PX', ARGV[1], 'NX') then
  return -1
end
return math.max(redis.call('PTTL', KEYS[1]), 0)
