-- Forgets a user's durable state (store.forget_user): says what it held, then
-- deletes it, in one step, so no change made meanwhile survives unreported.
-- KEYS[1] state hash, KEYS[2] backup-code set, KEYS[3] TOTP hash,
-- KEYS[4] passkeys string, KEYS[5] known-IP hash (all the user's: one slot)
local otp = redis.call('HGET', KEYS[1], 'otp_enabled') == '1' and 1 or 0
local backup = redis.call('SCARD', KEYS[2])
local totp = redis.call('HEXISTS', KEYS[3], 'secret')
local passkeys = redis.call('EXISTS', KEYS[4])
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
return {otp, backup, totp, passkeys}
