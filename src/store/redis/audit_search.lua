-- One page of an audit trail (a stream, newest first): the entries between
-- ARGV[1] (the newest id allowed: '+', an id, or '(' id for "older than") and
-- ARGV[2] (the oldest: '-' or an id) whose fields match the filters, at most
-- ARGV[3] of them, looking at no more than ARGV[4] entries. Filters compare
-- the entry's fields k (kind), e (event) and ip; an empty filter matches all.
-- Returns {next, id1, json1, id2, json2, ...}: next is the id to go on from
-- (exclusive), or '' when the range is exhausted.
-- KEYS[1] the stream; ARGV[5] kind, ARGV[6] event, ARGV[7] ip
local finish, start = ARGV[1], ARGV[2]
local limit, budget = tonumber(ARGV[3]), tonumber(ARGV[4])
local want = {k = ARGV[5], e = ARGV[6], ip = ARGV[7]}
local out = {''}
local found, scanned = 0, 0
while scanned < budget do
  local n = math.min(500, budget - scanned)
  local batch = redis.call('XREVRANGE', KEYS[1], finish, start, 'COUNT', n)
  for i, entry in ipairs(batch) do
    scanned = scanned + 1
    local f, fields = entry[2], {}
    for j = 1, #f, 2 do
      fields[f[j]] = f[j + 1]
    end
    local ok = true
    for k, v in pairs(want) do
      if v ~= '' and fields[k] ~= v then
        ok = false
        break
      end
    end
    if ok then
      found = found + 1
      out[#out + 1] = entry[1]
      out[#out + 1] = fields['j'] or '{}'
      if found == limit then
        -- More only if this was not the range's last entry.
        if i < #batch or #batch == n then
          out[1] = entry[1]
        end
        return out
      end
    end
  end
  if #batch < n then
    return out
  end
  finish = '(' .. batch[#batch][1]
end
out[1] = string.sub(finish, 2)
return out
