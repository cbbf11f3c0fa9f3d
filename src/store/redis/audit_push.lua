-- Pushes an audit record onto a list, newest first, keeping at most ARGV[2].
-- KEYS[1] audit list; ARGV[1] record JSON, ARGV[2] cap
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[2]) - 1)
return 1
