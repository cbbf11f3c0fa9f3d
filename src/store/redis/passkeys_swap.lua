-- Compare-and-set of a user's passkeys (a JSON string): replaced only if
-- they are still what the caller read, so a read-change-write cannot undo a
-- change made meanwhile. Returns 1 if replaced, 0 if another change came first.
-- KEYS[1] passkeys; ARGV[1] 1 if passkeys were read (ARGV[2] their JSON), 0 if
-- there were none; ARGV[3] 1 to write ARGV[4], 0 to forget them all
local cur = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if cur ~= ARGV[2] then
    return 0
  end
elseif cur then
  return 0
end
if ARGV[3] == '1' then
  redis.call('SET', KEYS[1], ARGV[4])
else
  redis.call('DEL', KEYS[1])
end
return 1
