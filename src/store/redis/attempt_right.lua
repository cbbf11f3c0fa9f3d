-- A right answer takes its failure back from the account's window and lifts
-- the lock its admission set, not one set since by anything else.
-- KEYS[1] account failure log, KEYS[2] account lock; ARGV[1] the admission's member
redis.call('ZREM', KEYS[1], ARGV[1])
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
end
return 1
