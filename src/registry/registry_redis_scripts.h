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
    "local function fmt(x) return string.format('%.0f', x) end\n"

/* Per-user helpers (KEYS[1] the user's hash): last seen is field "l" (device
 * fields are decimal, so it cannot collide); an expired entry is folded into
 * it (its last refresh: expiry - session ttl) when a script deletes it. */
#define RR_LUA_USER                                                                                \
    RR_LUA_NOW                                                                                       \
    "local function seen(ms)\n"                                                                      \
    "  if ms > tonumber(redis.call('HGET', KEYS[1], 'l') or '0') then redis.call('HSET', KEYS[1], 'l', fmt(ms)) end\n" \
    "end\n"                                                                                          \
    "local function drop_expired(field, e, ttl)\n"                                                   \
    "  redis.call('HDEL', KEYS[1], field)\n"                                                         \
    "  seen(e - ttl)\n"                                                                              \
    "end\n"

/* KEYS: user. ARGV: device, since, conn, node, ttl_ms, last_seen_ttl_ms.
 * 1 written; 0 a live entry at least as new is there. Last seen is not
 * written here: while the entry lives the user is online (last seen =
 * now), and its disconnect or expiry writes it. A user's first session
 * is then a one-field hash: 40 bytes of used_memory less per user
 * (measured, bench/RESULTS.md "Redis bytes per session"). */
#define RR_LUA_CONNECT                                                                             \
    RR_LUA_USER                                                                                      \
    "local since = tonumber(ARGV[2])\n"                                                              \
    "local cs, ce, cc, cn = parse(redis.call('HGET', KEYS[1], ARGV[1]))\n"                           \
    "if cs and ce > now and not (cc == ARGV[3] and cn == ARGV[4]) then\n"                            \
    "  if cs > since then return 0 end\n"                                                            \
    "  if cs == since and (cn > ARGV[4] or (cn == ARGV[4] and num_lt(ARGV[3], cc))) then return 0 end\n" \
    "end\n"                                                                                          \
    "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. fmt(now + tonumber(ARGV[5])) .. ' ' .. ARGV[3] .. ' ' .. ARGV[4])\n" \
    "redis.call('PEXPIRE', KEYS[1], ARGV[6])\n"                                                      \
    "return 1\n"

/* KEYS: user. ARGV: device, conn, node, last_seen_ttl_ms.
 * 1 deleted; 0 the entry is someone else's (or gone). */
#define RR_LUA_DISCONNECT                                                                          \
    RR_LUA_USER                                                                                      \
    "local cs, ce, cc, cn = parse(redis.call('HGET', KEYS[1], ARGV[1]))\n"                           \
    "if not cs or cc ~= ARGV[2] or cn ~= ARGV[3] then return 0 end\n"                                \
    "redis.call('HDEL', KEYS[1], ARGV[1])\n"                                                         \
    "seen(now)\n"                                                                                    \
    "redis.call('PEXPIRE', KEYS[1], ARGV[4])\n"                                                      \
    "return 1\n"

/* KEYS: user. ARGV: device, conn, node, ttl_ms, last_seen_ttl_ms.
 * 1 refreshed; 0 gone (expired, replaced or deleted). Last seen is not
 * written: while the entry lives the user is online, and when it expires
 * its expiry says when it was last refreshed. */
#define RR_LUA_REFRESH                                                                             \
    RR_LUA_USER                                                                                      \
    "local cs, ce, cc, cn = parse(redis.call('HGET', KEYS[1], ARGV[1]))\n"                           \
    "if not cs or cc ~= ARGV[2] or cn ~= ARGV[3] then return 0 end\n"                                \
    "local ttl = tonumber(ARGV[4])\n"                                                                \
    "if ce <= now then drop_expired(ARGV[1], ce, ttl) return 0 end\n"                                \
    "redis.call('HSET', KEYS[1], ARGV[1], fmt(cs) .. ' ' .. fmt(now + ttl) .. ' ' .. cc .. ' ' .. cn)\n" \
    "redis.call('PEXPIRE', KEYS[1], ARGV[5])\n"                                                      \
    "return 1\n"

/* KEYS: user. ARGV: ttl_ms. The live entries as {device, entry, ...};
 * expired ones are deleted (folded into last seen). */
#define RR_LUA_LOOKUP                                                                              \
    RR_LUA_USER                                                                                      \
    "local all = redis.call('HGETALL', KEYS[1])\n"                                                   \
    "local out = {}\n"                                                                               \
    "for i = 1, #all, 2 do\n"                                                                        \
    "  if all[i] ~= 'l' then\n"                                                                      \
    "    local cs, ce = parse(all[i + 1])\n"                                                         \
    "    if cs and ce > now then out[#out + 1] = all[i]; out[#out + 1] = all[i + 1]\n"               \
    "    elseif cs then drop_expired(all[i], ce, tonumber(ARGV[1]))\n"                               \
    "    else redis.call('HDEL', KEYS[1], all[i]) end\n"                                             \
    "  end\n"                                                                                        \
    "end\n"                                                                                          \
    "return out\n"

/* KEYS: user. ARGV: ttl_ms. {online, last_seen_ms}: now while an entry
 * lives; else the latest of the stored last seen and the expired entries'
 * last refresh. Read-only. */
#define RR_LUA_PRESENCE                                                                            \
    RR_LUA_NOW                                                                                       \
    "local all = redis.call('HGETALL', KEYS[1])\n"                                                   \
    "local last = 0\n"                                                                               \
    "for i = 1, #all, 2 do\n"                                                                        \
    "  if all[i] == 'l' then\n"                                                                      \
    "    last = math.max(last, tonumber(all[i + 1]) or 0)\n"                                         \
    "  else\n"                                                                                       \
    "    local cs, ce = parse(all[i + 1])\n"                                                         \
    "    if cs and ce > now then return {1, now} end\n"                                              \
    "    if cs then last = math.max(last, ce - tonumber(ARGV[1])) end\n"                             \
    "  end\n"                                                                                        \
    "end\n"                                                                                          \
    "return {0, last}\n"

/* KEYS: the name's shard of the node directory (redis_node_shards.h).
 * ARGV: name, address, ttl_ms. 1. */
#define RR_LUA_NODE_REGISTER                                                                       \
    RR_LUA_NOW                                                                                       \
    "redis.call('HSET', KEYS[1], ARGV[1], string.format('%.0f', now + tonumber(ARGV[3])) .. ' ' .. ARGV[2])\n" \
    "return 1\n"

/* KEYS: the name's shard. ARGV: name. The address, or nil when absent or
 * expired. */
#define RR_LUA_NODE_GET                                                                            \
    RR_LUA_NOW                                                                                       \
    "local v = redis.call('HGET', KEYS[1], ARGV[1])\n"                                               \
    "if not v then return false end\n"                                                               \
    "local e, a = string.match(v, '^(%d+) (.+)$')\n"                                                 \
    "if not e or tonumber(e) <= now then return false end\n"                                         \
    "return a\n"

/* KEYS: one shard. {name, address, ...} of its live nodes; expired ones are
 * deleted. A listing runs it on every shard. */
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
