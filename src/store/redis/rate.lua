-- Exact sliding-log rate limit on a sorted set of event times (ms); the window
-- is (now - window, now]. Modes:
--   hit:    count the event if fewer than limit are in the window
--   check:  decide without counting
--   record: count unconditionally (log capped at ARGV[5] entries)
-- Returns {1, remaining} (record: {1, count}) or {0, retry_after_ms}.
-- Events that left the window are removed last: that may remove the key, which
-- a Cluster node whose slot is moving away forbids the script to touch again.
-- KEYS[1] log; ARGV[1] mode, ARGV[2] limit, ARGV[3] window (ms, > 0), ARGV[4] nonce, ARGV[5] cap
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[3])
local mode = ARGV[1]
local since = '(' .. (now - window)
local n = redis.call('ZCOUNT', KEYS[1], since, '+inf')
-- Members must be unique: two events in the same millisecond are two events.
local member = now .. ':' .. ARGV[4]
local function add()
  redis.call('ZADD', KEYS[1], now, member)
  redis.call('PEXPIRE', KEYS[1], window)
end
local function prune()
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
end
if mode == 'record' then
  add()
  prune()
  local cap = tonumber(ARGV[5])
  if n + 1 > cap then
    redis.call('ZREMRANGEBYRANK', KEYS[1], 0, n - cap)
    return {1, cap}
  end
  return {1, n + 1}
end
local limit = tonumber(ARGV[2])
if n < limit then
  if mode == 'hit' then
    add()
    n = n + 1
  end
  prune()
  return {1, limit - n}
end
local oldest = redis.call('ZRANGE', KEYS[1], since, '+inf', 'BYSCORE', 'LIMIT', 0, 1, 'WITHSCORES')
prune()
if oldest[2] then
  return {0, math.max(tonumber(oldest[2]) + window - now, 0)}
end
return {0, window}
