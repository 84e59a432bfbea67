/* registry_redis_scripts.h -- the Lua scripts of the Redis session registry
 * (registry_redis.h describes the layout they keep). Each reads the server's
 * clock once (TIME), so expiry has one clock whatever the gateways' clocks
 * say. An entry is "SINCE EXPIRES CONN NODE". */
#ifndef PARLEY_REGISTRY_REDIS_SCRIPTS_H
#define PARLEY_REGISTRY_REDIS_SCRIPTS_H

#define RR_LUA_NOW                                                                                 \
    "local t = redis.call('TIME')\n"                                                                 \
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"                        \
    "local function parse(v)\n"                                                                      \
    "  if not v then return nil end\n"                                                               \
    "  local s, e, c, n = string.match(v, '^(%d+) (%d+) (%d+) (.+)$')\n"                              \
    "  if not s then return nil end\n"                                                               \
    "  return tonumber(s), tonumber(e), c, n\n"                                                      \
    "end\n"                                                                                          \
    "local function num_lt(a, b) if #a ~= #b then return #a < #b end return a < b end\n"             \
    "local function keep_ttl(key, ttl)\n"                                                            \
    "  if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end\n"                  \
    "end\n"

/* KEYS: sessions, last-seen. ARGV: device, since, conn, node, ttl_ms, last_seen_ttl_ms.
 * 1 written; 0 a live entry at least as new is there. */
#define RR_LUA_CONNECT                                                                             \
    RR_LUA_NOW                                                                                       \
    "local since = tonumber(ARGV[2])\n"                                                              \
    "local cs, ce, cc, cn = parse(redis.call('HGET', KEYS[1], ARGV[1]))\n"                           \
    "if cs and ce > now and not (cc == ARGV[3] and cn == ARGV[4]) then\n"                            \
    "  if cs > since then return 0 end\n"                                                            \
    "  if cs == since and (cn > ARGV[4] or (cn == ARGV[4] and num_lt(ARGV[3], cc))) then return 0 end\n" \
    "end\n"                                                                                          \
    "local ttl = tonumber(ARGV[5])\n"                                                                \
    "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. string.format('%.0f', now + ttl) .. ' ' .. ARGV[3] .. ' ' .. ARGV[4])\n" \
    "keep_ttl(KEYS[1], ttl)\n"                                                                       \
    "redis.call('SET', KEYS[2], string.format('%.0f', now), 'PX', ARGV[6])\n"                        \
    "return 1\n"

/* KEYS: sessions, last-seen. ARGV: device, conn, node, last_seen_ttl_ms.
 * 1 deleted; 0 the entry is someone else's (or gone). */
#define RR_LUA_DISCONNECT                                                                          \
    RR_LUA_NOW                                                                                       \
    "local cs, ce, cc, cn = parse(redis.call('HGET', KEYS[1], ARGV[1]))\n"                           \
    "if not cs or cc ~= ARGV[2] or cn ~= ARGV[3] then return 0 end\n"                                \
    "redis.call('HDEL', KEYS[1], ARGV[1])\n"                                                         \
    "redis.call('SET', KEYS[2], string.format('%.0f', now), 'PX', ARGV[4])\n"                        \
    "return 1\n"

/* KEYS: sessions, last-seen. ARGV: device, conn, node, ttl_ms, last_seen_ttl_ms.
 * 1 refreshed; 0 gone (expired, replaced or deleted). */
#define RR_LUA_REFRESH                                                                             \
    RR_LUA_NOW                                                                                       \
    "local cs, ce, cc, cn = parse(redis.call('HGET', KEYS[1], ARGV[1]))\n"                           \
    "if not cs or cc ~= ARGV[2] or cn ~= ARGV[3] then return 0 end\n"                                \
    "if ce <= now then redis.call('HDEL', KEYS[1], ARGV[1]) return 0 end\n"                          \
    "local ttl = tonumber(ARGV[4])\n"                                                                \
    "redis.call('HSET', KEYS[1], ARGV[1], string.format('%.0f', cs) .. ' ' .. string.format('%.0f', now + ttl) .. ' ' .. cc .. ' ' .. cn)\n" \
    "keep_ttl(KEYS[1], ttl)\n"                                                                       \
    "redis.call('SET', KEYS[2], string.format('%.0f', now), 'PX', ARGV[5])\n"                        \
    "return 1\n"

/* KEYS: sessions. The live entries as {device, entry, ...}; expired ones are deleted. */
#define RR_LUA_LOOKUP                                                                              \
    RR_LUA_NOW                                                                                       \
    "local all = redis.call('HGETALL', KEYS[1])\n"                                                   \
    "local out = {}\n"                                                                               \
    "for i = 1, #all, 2 do\n"                                                                        \
    "  local cs, ce = parse(all[i + 1])\n"                                                           \
    "  if cs and ce > now then out[#out + 1] = all[i]; out[#out + 1] = all[i + 1]\n"                 \
    "  else redis.call('HDEL', KEYS[1], all[i]) end\n"                                               \
    "end\n"                                                                                          \
    "return out\n"

/* KEYS: sessions, last-seen. {online, last_seen_ms}. */
#define RR_LUA_PRESENCE                                                                            \
    RR_LUA_NOW                                                                                       \
    "for _, v in ipairs(redis.call('HVALS', KEYS[1])) do\n"                                          \
    "  local cs, ce = parse(v)\n"                                                                    \
    "  if cs and ce > now then return {1, now} end\n"                                                \
    "end\n"                                                                                          \
    "return {0, tonumber(redis.call('GET', KEYS[2]) or '0')}\n"

/* KEYS: {nodes}. ARGV: name, address, ttl_ms. 1. */
#define RR_LUA_NODE_REGISTER                                                                       \
    RR_LUA_NOW                                                                                       \
    "redis.call('HSET', KEYS[1], ARGV[1], string.format('%.0f', now + tonumber(ARGV[3])) .. ' ' .. ARGV[2])\n" \
    "return 1\n"

/* KEYS: {nodes}. ARGV: name. The address, or nil when absent or expired. */
#define RR_LUA_NODE_GET                                                                            \
    RR_LUA_NOW                                                                                       \
    "local v = redis.call('HGET', KEYS[1], ARGV[1])\n"                                               \
    "if not v then return false end\n"                                                               \
    "local e, a = string.match(v, '^(%d+) (.+)$')\n"                                                 \
    "if not e or tonumber(e) <= now then return false end\n"                                         \
    "return a\n"

/* KEYS: {nodes}. {name, address, ...} of the live nodes; expired ones are deleted. */
#define RR_LUA_NODE_LIST                                                                           \
    RR_LUA_NOW                                                                                       \
    "local all = redis.call('HGETALL', KEYS[1])\n"                                                   \
    "local out = {}\n"                                                                               \
    "for i = 1, #all, 2 do\n"                                                                        \
    "  local e, a = string.match(all[i + 1], '^(%d+) (.+)$')\n"                                      \
    "  if e and tonumber(e) > now then out[#out + 1] = all[i]; out[#out + 1] = a\n"                  \
    "  else redis.call('HDEL', KEYS[1], all[i]) end\n"                                               \
    "end\n"                                                                                          \
    "return out\n"

#endif
