-- Notes that an address is banned for its failures until (at the latest) now
-- plus ARGV[2] seconds, by Redis's clock; a later failure only moves it later.
-- KEYS[1] the bans' sorted set; ARGV[1] the address (its rate key), ARGV[2] seconds
local now = tonumber(redis.call('TIME')[1])
redis.call('ZADD', KEYS[1], 'GT', now + tonumber(ARGV[2]), ARGV[1])
return 1
