-- Confirms an authenticator app: the sealed secret becomes the one sign-ins
-- check, the secret awaiting confirmation goes, and the confirming code's
-- step counts as used (it cannot sign anyone in afterwards).
-- KEYS[1] the user's TOTP hash; ARGV[1] sealed secret; ARGV[2] step
redis.call('HSET', KEYS[1], 'secret', ARGV[1], 'last_step', ARGV[2])
redis.call('HDEL', KEYS[1], 'pending')
return 1
