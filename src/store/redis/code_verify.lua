-- Counts one attempt and compares, atomically. Returns {status, remaining}:
-- 0 none, 1 expired, 2 exhausted, 3 ok (the code is consumed), 4 wrong.
-- KEYS[1] code hash; ARGV[1] candidate hash (hex)
local f = redis.call('HMGET', KEYS[1], 'h', 'exp', 'left')
if not f[1] then
  return {0, 0}
end
local exp, left = tonumber(f[2]), tonumber(f[3])
if not (exp and left) then
  return redis.error_reply('CORRUPT code fields')
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now >= exp then
  return {1, 0}
end
if left <= 0 then
  return {2, 0}
end
-- Compare every byte without stopping at the first difference.
local stored, candidate = f[1], ARGV[1]
local diff = 0
if #stored ~= #candidate then
  diff = 1
  candidate = stored
end
for i = 1, #stored do
  diff = bit.bor(diff, bit.bxor(string.byte(stored, i), string.byte(candidate, i)))
end
if diff == 0 then
  redis.call('DEL', KEYS[1])
  return {3, 0}
end
left = left - 1
redis.call('HSET', KEYS[1], 'left', left)
if left <= 0 then
  return {2, 0}
end
return {4, left}
