-- Ends a session: deletes it and announces its id on the revocation channel in
-- the same step, so no replica's near cache can outlive the deletion unheard.
-- With ARGV[3] set, only a session of that user is ended. An absent session is
-- announced all the same: whatever removed it, no cache should keep it.
-- Returns the session's user, or nil if absent or someone else's.
-- KEYS[1] session hash; ARGV[1] channel, ARGV[2] id, ARGV[3] owner or ''
local user = redis.call('HGET', KEYS[1], 'user')
if user and ARGV[3] ~= '' and user ~= ARGV[3] then
  return false
end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return user
