/*
 * scripts.h — the Lua scripts of the session store (used by sessions.c
 * only; a header of its own so that the Lua reads as one piece).
 *
 * Layout of a stored session (one Redis string, so a 194-byte session
 * costs what a bare 194-byte string costs — a hash with one field over
 * 64 bytes turns into a hashtable and doubles that; docs/sessions.md).
 * Format 2, written by every script:
 *
 *   MessagePack values, one after the other: the user id (a string, ""
 *   for none), then each attribute's name and value (strings)
 *   last 10 bytes: deadline (server ms, 6 bytes big-endian), then
 *   deadline − issued (ms, 4 bytes)
 *
 * Its first byte is a MessagePack string header (0xa0-0xbf, 0xd9-0xdb).
 * The last access is not stored: the key's expiry is min(last access +
 * idle, deadline), so sliding is one PEXPIRE and the listing derives it
 * (sessions.c). No map header, no version byte, no last-access field:
 * 6 bytes fewer than format 1, enough to keep a user id, one attribute
 * name and 194 bytes of value in Redis's 220-byte string class.
 *
 * Format 1 (written before; still read, slid in place, and rewritten as
 * format 2 by the next write): byte 1, issued (ms, 6 bytes), deadline −
 * issued (4), last access − issued (4), then MessagePack: the user id and
 * the attribute map.
 *
 * Every script receives its one key in KEYS[1] and builds no key name, so
 * each runs in one hash slot. Times come from the server (TIME), never
 * from the caller. Each script answers an array whose first element is a
 * code: 1 done, 0 no such session, 2 it had passed its deadline (and was
 * deleted now), 3 over a size limit (nothing changed), 4 the key exists
 * already (create / regenerate: a new id collided), -1 the key holds
 * something that is not a session (nothing changed).
 */
#ifndef RK_SRC_SESSIONS_SCRIPTS_H
#define RK_SRC_SESSIONS_SCRIPTS_H

#define RK__SESS_LUA_PRELUDE                                                                           \
    "local function now_ms()\n"                                                                        \
    "  local t = redis.call('TIME')\n"                                                                 \
    "  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"                             \
    "end\n"                                                                                            \
    "local function decode(v)\n"                                                                       \
    "  if type(v) ~= 'string' or #v < 11 then return nil end\n"                                        \
    "  local b = string.byte(v, 1)\n"                                                                  \
    "  if b == 1 then\n"                                                                               \
    "    if #v < 17 then return nil end\n"                                                             \
    "    local _, c, dd, ld, pos = struct.unpack('>BI6I4I4', v)\n"                                     \
    "    local ok, u, a = pcall(cmsgpack.unpack, string.sub(v, pos))\n"                                \
    "    if not ok or type(u) ~= 'string' or type(a) ~= 'table' then return nil end\n"                 \
    "    return {f = 1, c = c, d = c + dd, u = u, a = a, v = v}\n"                                     \
    "  end\n"                                                                                          \
    "  if not ((b >= 160 and b <= 191) or (b >= 217 and b <= 219)) then return nil end\n"              \
    "  local n = #v - 10\n"                                                                            \
    "  local d, dc = struct.unpack('>I6I4', v, n + 1)\n"                                               \
    "  local body = string.sub(v, 1, n)\n"                                                             \
    "  local ok, t = pcall(function()\n"                                                               \
    "    local t, off = {}, 0\n"                                                                       \
    "    repeat\n"                                                                                     \
    "      local r = {cmsgpack.unpack_limit(body, 64, off)}\n"                                         \
    "      off = r[1]\n"                                                                               \
    "      for i = 2, #r do t[#t + 1] = r[i] end\n"                                                    \
    "    until off < 0\n"                                                                              \
    "    return t\n"                                                                                   \
    "  end)\n"                                                                                         \
    "  if not ok or type(t[1]) ~= 'string' or #t % 2 ~= 1 then return nil end\n"                       \
    "  local a = {}\n"                                                                                 \
    "  for i = 2, #t, 2 do\n"                                                                          \
    "    if type(t[i]) ~= 'string' or type(t[i + 1]) ~= 'string' then return nil end\n"                \
    "    a[t[i]] = t[i + 1]\n"                                                                         \
    "  end\n"                                                                                          \
    "  return {f = 2, c = d - dc, d = d, u = t[1], a = a, v = v}\n"                                    \
    "end\n"                                                                                            \
    "local function load(k, now)\n"                                                                    \
    "  local v = redis.pcall('GET', k)\n"                                                              \
    "  if not v then return 0 end\n"                                                                   \
    "  local s = decode(v)\n"                                                                          \
    "  if not s then return -1 end\n"                                                                  \
    "  if now >= s.d then redis.call('DEL', k) return 2 end\n"                                         \
    "  return s\n"                                                                                     \
    "end\n"                                                                                            \
    "local function save(k, s, now, idle, maxb, nx)\n"                                                 \
    "  local p = {cmsgpack.pack(s.u)}\n"                                                               \
    "  for name, val in pairs(s.a) do p[#p + 1] = cmsgpack.pack(name, val) end\n"                      \
    "  p[#p + 1] = struct.pack('>I6I4', s.d, s.d - s.c)\n"                                             \
    "  local v = table.concat(p)\n"                                                                    \
    "  if #v > maxb then return 3 end\n"                                                               \
    "  local ttl = math.min(idle, s.d - now)\n"                                                        \
    "  if nx then\n"                                                                                   \
    "    if not redis.call('SET', k, v, 'PX', ttl, 'NX') then return 4 end\n"                          \
    "  else\n"                                                                                         \
    "    redis.call('SET', k, v, 'PX', ttl)\n"                                                         \
    "  end\n"                                                                                          \
    "  return 1\n"                                                                                     \
    "end\n"                                                                                            \
    "local function slide(k, s, now, idle)\n"                                                          \
    "  if s.f == 1 then redis.call('SETRANGE', k, 11, struct.pack('>I4', now - s.c)) end\n"            \
    "  local ttl = math.min(idle, s.d - now)\n"                                                        \
    "  redis.call('PEXPIRE', k, ttl)\n"                                                                \
    "  return ttl\n"                                                                                   \
    "end\n"

/* ARGV: idle_ms, absolute_ms, max_bytes, user, name, value, ...
 * -> {code, issued, deadline} */
#define RK__SESS_LUA_CREATE                                                                            \
    RK__SESS_LUA_PRELUDE                                                                               \
    "local now = now_ms()\n"                                                                           \
    "local a = {}\n"                                                                                   \
    "for i = 5, #ARGV, 2 do a[ARGV[i]] = ARGV[i + 1] end\n"                                            \
    "local s = {c = now, d = now + tonumber(ARGV[2]), l = now, u = ARGV[4], a = a}\n"                  \
    "return {save(KEYS[1], s, now, tonumber(ARGV[1]), tonumber(ARGV[3]), true), now, s.d}\n"

/* ARGV: idle_ms, [name, ...] (none = all)
 * -> {1, issued, now, deadline, ttl, user, name, value, ...} or {code} */
#define RK__SESS_LUA_GET                                                                               \
    RK__SESS_LUA_PRELUDE                                                                               \
    "local now = now_ms()\n"                                                                           \
    "local s = load(KEYS[1], now)\n"                                                                   \
    "if type(s) ~= 'table' then return {s} end\n"                                                      \
    "local ttl = slide(KEYS[1], s, now, tonumber(ARGV[1]))\n"                                          \
    "local r = {1, s.c, now, s.d, ttl, s.u}\n"                                                         \
    "if #ARGV > 1 then\n"                                                                              \
    "  for i = 2, #ARGV do\n"                                                                          \
    "    local v = s.a[ARGV[i]]\n"                                                                     \
    "    if type(v) == 'string' then r[#r + 1] = ARGV[i] r[#r + 1] = v end\n"                          \
    "  end\n"                                                                                          \
    "else\n"                                                                                           \
    "  for k, v in pairs(s.a) do\n"                                                                    \
    "    if type(k) == 'string' and type(v) == 'string' then r[#r + 1] = k r[#r + 1] = v end\n"        \
    "  end\n"                                                                                          \
    "end\n"                                                                                            \
    "return r\n"

/* ARGV: idle_ms -> {code} */
#define RK__SESS_LUA_TOUCH                                                                             \
    RK__SESS_LUA_PRELUDE                                                                               \
    "local now = now_ms()\n"                                                                           \
    "local s = load(KEYS[1], now)\n"                                                                   \
    "if type(s) ~= 'table' then return {s} end\n"                                                      \
    "slide(KEYS[1], s, now, tonumber(ARGV[1]))\n"                                                      \
    "return {1}\n"

/* ARGV: idle_ms, max_bytes, max_attrs, mode ('s' set: name, value, ...;
 * 'u' unset: name, ...) -> {code} */
#define RK__SESS_LUA_WRITE                                                                             \
    RK__SESS_LUA_PRELUDE                                                                               \
    "local now = now_ms()\n"                                                                           \
    "local s = load(KEYS[1], now)\n"                                                                   \
    "if type(s) ~= 'table' then return {s} end\n"                                                      \
    "if ARGV[4] == 's' then\n"                                                                         \
    "  for i = 5, #ARGV, 2 do s.a[ARGV[i]] = ARGV[i + 1] end\n"                                        \
    "  local n = 0\n"                                                                                  \
    "  for _ in pairs(s.a) do n = n + 1 end\n"                                                         \
    "  if n > tonumber(ARGV[3]) then return {3} end\n"                                                 \
    "else\n"                                                                                           \
    "  for i = 5, #ARGV do s.a[ARGV[i]] = nil end\n"                                                   \
    "end\n"                                                                                            \
    "s.l = now\n"                                                                                      \
    "return {save(KEYS[1], s, now, tonumber(ARGV[1]), tonumber(ARGV[2]), false)}\n"

/* Delete the session. mode 'd' (destroy) -> {1, user}; mode 't' (take,
 * the first half of regenerate) -> {1, now, value, user, deadline}. */
#define RK__SESS_LUA_TAKE                                                                              \
    RK__SESS_LUA_PRELUDE                                                                               \
    "local now = now_ms()\n"                                                                           \
    "local s = load(KEYS[1], now)\n"                                                                   \
    "if type(s) ~= 'table' then return {s} end\n"                                                      \
    "redis.call('DEL', KEYS[1])\n"                                                                     \
    "if ARGV[1] == 'd' then return {1, s.u} end\n"                                                     \
    "return {1, now, s.v, s.u, s.d}\n"

/* The second half of regenerate: store a value taken from the old key
 * under the new one, issued now, with its user set to ARGV[4].
 * ARGV: value, idle_ms, max_bytes, user -> {code} */
#define RK__SESS_LUA_PUT                                                                               \
    RK__SESS_LUA_PRELUDE                                                                               \
    "local now = now_ms()\n"                                                                           \
    "local s = decode(ARGV[1])\n"                                                                      \
    "if not s then return {-1} end\n"                                                                  \
    "if now >= s.d then return {2} end\n"                                                              \
    "s.c = now\n"                                                                                      \
    "s.l = now\n"                                                                                      \
    "s.u = ARGV[4]\n"                                                                                  \
    "return {save(KEYS[1], s, now, tonumber(ARGV[2]), tonumber(ARGV[3]), true)}\n"

/* A user's index: a sorted set of session ids scored by (an upper bound
 * of) each session's deadline. Every call first drops the entries whose
 * score has passed, and leaves the key expiring with its latest entry, so
 * the index can never outlive its sessions for long nor grow without
 * bound. ARGV[1] = mode: 'a' add (ARGV[2] = ms from now to the score,
 * ARGV[3..] ids), 'r' remove (ARGV[2..] ids), 'l' list (ARGV[2] = most
 * ids to return). -> the ids for 'l', else the index's size. */
#define RK__SESS_LUA_INDEX                                                                             \
    "local t = redis.call('TIME')\n"                                                                   \
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"                          \
    "local k = KEYS[1]\n"                                                                              \
    "redis.call('ZREMRANGEBYSCORE', k, '-inf', now)\n"                                                 \
    "if ARGV[1] == 'a' then\n"                                                                         \
    "  local score = now + tonumber(ARGV[2])\n"                                                        \
    "  for i = 3, #ARGV do redis.call('ZADD', k, score, ARGV[i]) end\n"                                \
    "elseif ARGV[1] == 'r' then\n"                                                                     \
    "  for i = 2, #ARGV do redis.call('ZREM', k, ARGV[i]) end\n"                                       \
    "end\n"                                                                                            \
    "local last = redis.call('ZRANGE', k, -1, -1, 'WITHSCORES')\n"                                     \
    "if #last > 0 then redis.call('PEXPIREAT', k, last[2]) end\n"                                      \
    "if ARGV[1] == 'l' then return redis.call('ZRANGE', k, 0, tonumber(ARGV[2]) - 1) end\n"            \
    "return redis.call('ZCARD', k)\n"

#endif
