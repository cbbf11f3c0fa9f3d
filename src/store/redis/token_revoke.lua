-- Deletes a token if it belongs to the user named. Returns 1 if it did.
-- KEYS[1] token hash; ARGV[1] user
if redis.call('HGET', KEYS[1], 'user') ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
return 1
