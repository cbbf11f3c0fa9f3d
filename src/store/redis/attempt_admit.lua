-- Admits one answer of a second factor for comparison, counting its failure
-- first, so parallel guesses compare at most as many answers as the limits
-- allow. Every key is under the user's hash tag (one Cluster slot).
-- Returns {0, ttl_ms} when the account is locked, {1} when the cap is used
-- up, else {2, member, remaining, cap_remaining (-1 without a cap), locked}.
-- An admission that fills the account's window locks the account before the
-- answer is compared; the lock's value names the admission, so only a right
-- answer of that admission lifts it (attempt_right.lua).
-- KEYS[1] account failure log (sorted set of times, ms), KEYS[2] account lock,
-- KEYS[3] the cap's log (optional)
-- ARGV[1] account limit, ARGV[2] window (ms), ARGV[3] lock (ms), ARGV[4] nonce,
-- ARGV[5] cap limit, ARGV[6] cap window (ms)
local ttl = redis.call('PTTL', KEYS[2])
if ttl > 0 then
  return {0, ttl}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local member = now .. ':' .. ARGV[4]
local cap_left = -1
if KEYS[3] then
  local cap_window = tonumber(ARGV[6])
  local cap_n = redis.call('ZCOUNT', KEYS[3], '(' .. (now - cap_window), '+inf')
  local cap = tonumber(ARGV[5])
  if cap_n >= cap then
    return {1}
  end
  redis.call('ZADD', KEYS[3], now, member)
  redis.call('PEXPIRE', KEYS[3], cap_window)
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - cap_window)
  cap_left = cap - cap_n - 1
end
local window = tonumber(ARGV[2])
local n = redis.call('ZCOUNT', KEYS[1], '(' .. (now - window), '+inf') + 1
redis.call('ZADD', KEYS[1], now, member)
redis.call('PEXPIRE', KEYS[1], window)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local limit = tonumber(ARGV[1])
local locked = 0
if n >= limit then
  redis.call('SET', KEYS[2], member, 'PX', ARGV[3])
  locked = 1
end
return {2, member, math.max(limit - n, 0), cap_left, locked}
