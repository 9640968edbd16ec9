/*
 * limiter_lua.h — the Lua text of the limiter's one script (see limiter.c
 * for what it does), as a macro so that another script can embed it as a
 * function body: apikeys' verify_limit.c wraps it in
 * "local function rl(KEYS, ARGV) ... end" to check an API key and consume
 * from its limits in one script.
 *
 * KEYS: the limits' keys in order. ARGV: op, cost, fixed now (0 = TIME),
 * offset (us), lease, then per limit: algorithm letter (g s f t c), limit,
 * period_us, p1, p2 (see rk__limit_cfg). Reply: per limit allowed,
 * remaining, reset_us, retry_us, used * 1000. It only reads KEYS and
 * ARGV, and ends with "return out".
 */
#ifndef RK_SRC_LIMITER_LUA_H
#define RK_SRC_LIMITER_LUA_H

#define RK__LIMITER_LUA \
    "local op = ARGV[1]\n" \
    "local cost = tonumber(ARGV[2])\n" \
    "local t = redis.call('TIME')\n" \
    "local real = tonumber(t[1]) * 1000000 + tonumber(t[2])\n" \
    "local now = tonumber(ARGV[3])\n" \
    "if now == 0 then now = real end\n" \
    "now = now + tonumber(ARGV[4])\n" \
    "-- GCRA keeps its TAT in the key's own expiry time (PXAT), and only the\n" \
    "-- sub-millisecond rest (0..999, a shared integer) as the value: the\n" \
    "-- smallest a key with a TTL can be. Not under a test clock pinned in\n" \
    "-- the past, nor without PEXPIRETIME (Redis < 7): there the value is\n" \
    "-- the TAT itself.\n" \
    "local compact = ARGV[3] == '0' and tonumber(ARGV[4]) >= 0 and\n" \
    "  type(redis.pcall('PEXPIRETIME', KEYS[1])) == 'number'\n" \
    "local lease = ARGV[5]\n" \
    "local peek = op == 'p'\n" \
    "local decide = op == 'c' or peek\n" \
    "local c = cost\n" \
    "if peek then c = 1 end\n" \
    "local function ms(us) local m = math.ceil(us / 1000) if m < 1 then m = 1 end return m end\n" \
    "-- One limit: decide, and with commit, the state to write (w).\n" \
    "local function lim(i, commit)\n" \
    "  local b = 5 + (i - 1) * 5\n" \
    "  local algo = ARGV[b + 1]\n" \
    "  local limit = tonumber(ARGV[b + 2])\n" \
    "  local period = tonumber(ARGV[b + 3])\n" \
    "  local p1 = tonumber(ARGV[b + 4])\n" \
    "  local p2 = tonumber(ARGV[b + 5])\n" \
    "  local key = KEYS[i]\n" \
    "  local ok, rem, reset, retry, used = true, 0, 0, 0, 0\n" \
    "  local w = nil\n" \
    "  if algo == 'g' then\n" \
    "    local T, tau = p1, p2\n" \
    "    local tat = tonumber(redis.call('GET', key) or '') or now\n" \
    "    if tat >= 0 and tat < 1000 then\n" \
    "      local e = redis.pcall('PEXPIRETIME', key)\n" \
    "      if type(e) == 'number' and e > 0 then tat = e * 1000 - tat else tat = now end\n" \
    "    end\n" \
    "    if tat < now then tat = now end\n" \
    "    local cur = tat\n" \
    "    if op == '+' then cur = tat + T * c; w = 1\n" \
    "    elseif op == '-' then cur = tat - T * c; if cur < now then cur = now end; w = 1\n" \
    "    elseif decide then\n" \
    "      local nt = tat + T * c\n" \
    "      if nt - tau <= now then\n" \
    "        if commit then cur = nt; w = 1 end\n" \
    "      else\n" \
    "        ok = false\n" \
    "        if T * c > tau then retry = -1 else retry = nt - tau - now end\n" \
    "      end\n" \
    "    end\n" \
    "    if w then w = {'g', cur} end\n" \
    "    rem = math.floor((tau - (cur - now)) / T); used = (cur - now) / T; reset = cur - now\n" \
    "  elseif algo == 's' then\n" \
    "    local win = math.floor(now / period)\n" \
    "    local el = now - win * period\n" \
    "    local v = redis.call('GET', key)\n" \
    "    local sw, cc, pp = nil, 0, 0\n" \
    "    if v then\n" \
    "      local a, x, y = string.match(v, '^(%-?%d+) (%d+) (%d+)$')\n" \
    "      if a then sw, cc, pp = tonumber(a), tonumber(x), tonumber(y) end\n" \
    "    end\n" \
    "    local cur, prev = 0, 0\n" \
    "    if sw == win then cur, prev = cc, pp elseif sw == win - 1 then prev = cc end\n" \
    "    local wt = prev * (period - el) / period\n" \
    "    if op == '+' then cur = cur + c; w = 1\n" \
    "    elseif op == '-' then cur = cur - c; if cur < 0 then cur = 0 end; w = 1\n" \
    "    elseif decide then\n" \
    "      if wt + cur + c <= limit then\n" \
    "        if commit then cur = cur + c; w = 1 end\n" \
    "      else\n" \
    "        ok = false\n" \
    "        local need = limit - c\n" \
    "        if need < 0 then retry = -1\n" \
    "        elseif cur <= need and prev > 0 then retry = math.ceil((period - el) - (need - cur) * period / prev)\n" \
    "        else\n" \
    "          local e2 = period - need * period / cur\n" \
    "          if e2 < 0 then e2 = 0 end\n" \
    "          retry = (period - el) + math.ceil(e2)\n" \
    "        end\n" \
    "        if retry == 0 then retry = 1 end\n" \
    "      end\n" \
    "    end\n" \
    "    if w then w = {'s', string.format('%.0f %.0f %.0f', win, cur, prev), 2 * period - el} end\n" \
    "    local est = wt + cur\n" \
    "    rem = math.floor(limit - est); used = est\n" \
    "    if cur > 0 then reset = (period - el) + period elseif prev > 0 then reset = period - el end\n" \
    "  elseif algo == 'f' then\n" \
    "    local v = redis.call('GET', key)\n" \
    "    local st, cnt = nil, 0\n" \
    "    if v then\n" \
    "      local a, x = string.match(v, '^(%-?%d+) (%d+)$')\n" \
    "      if a then st, cnt = tonumber(a), tonumber(x) end\n" \
    "    end\n" \
    "    if st == nil or now >= st + period then\n" \
    "      if p1 == 1 then st = math.floor(now / period) * period else st = now end\n" \
    "      cnt = 0\n" \
    "    end\n" \
    "    if op == '+' then cnt = cnt + c; w = 1\n" \
    "    elseif op == '-' then cnt = cnt - c; if cnt < 0 then cnt = 0 end; w = 1\n" \
    "    elseif decide then\n" \
    "      if cnt + c <= limit then\n" \
    "        if commit then cnt = cnt + c; w = 1 end\n" \
    "      else\n" \
    "        ok = false\n" \
    "        if c > limit then retry = -1 else retry = st + period - now end\n" \
    "      end\n" \
    "    end\n" \
    "    if w then w = {'s', string.format('%.0f %.0f', st, cnt), st + period - now} end\n" \
    "    rem = limit - cnt; used = cnt; reset = st + period - now\n" \
    "  elseif algo == 't' then\n" \
    "    local cap = p1\n" \
    "    local v = redis.call('GET', key)\n" \
    "    local tok, ts = cap, now\n" \
    "    if v then\n" \
    "      local a, x = string.match(v, '^(%S+) (%S+)$')\n" \
    "      if a and tonumber(a) and tonumber(x) then tok, ts = tonumber(a), tonumber(x) end\n" \
    "    end\n" \
    "    if now > ts then\n" \
    "      tok = tok + (now - ts) * limit / period\n" \
    "      if tok > cap then tok = cap end\n" \
    "      ts = now\n" \
    "    end\n" \
    "    if op == '+' then tok = tok - c; w = 1\n" \
    "    elseif op == '-' then tok = tok + c; if tok > cap then tok = cap end; w = 1\n" \
    "    elseif decide then\n" \
    "      if tok + 1e-9 >= c then\n" \
    "        if commit then tok = tok - c; w = 1 end\n" \
    "      else\n" \
    "        ok = false\n" \
    "        if c > cap then retry = -1 else retry = math.ceil((c - tok) * period / limit) end\n" \
    "      end\n" \
    "    end\n" \
    "    reset = math.ceil((cap - tok) * period / limit)\n" \
    "    if reset < 0 then reset = 0 end\n" \
    "    if w then w = {'s', string.format('%.17g %.0f', tok, ts), reset} end\n" \
    "    rem = math.floor(tok + 1e-9); used = cap - tok\n" \
    "  elseif algo == 'c' then\n" \
    "    redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%.0f', now))\n" \
    "    if op == 'r' and commit then redis.call('ZREM', key, lease) end\n" \
    "    local cnt = redis.call('ZCARD', key)\n" \
    "    if decide then\n" \
    "      if cnt + c <= limit then\n" \
    "        if commit and c > 0 then w = {'z', now + period, period}; cnt = cnt + 1 end\n" \
    "      else\n" \
    "        ok = false\n" \
    "        local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')\n" \
    "        if c > limit then retry = -1 else retry = tonumber(first[2]) - now end\n" \
    "        if retry == 0 then retry = 1 end\n" \
    "      end\n" \
    "    end\n" \
    "    rem = limit - cnt; used = cnt\n" \
    "    if w and cnt == 1 then reset = period\n" \
    "    elseif cnt > 0 then\n" \
    "      local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')\n" \
    "      reset = tonumber(first[2]) - now\n" \
    "    end\n" \
    "  end\n" \
    "  if rem < 0 then rem = 0 end\n" \
    "  if w and w[1] == 'g' then\n" \
    "    local cur = w[2]\n" \
    "    if cur <= now then redis.call('DEL', key)\n" \
    "    elseif compact then\n" \
    "      local e = math.ceil(cur / 1000)\n" \
    "      redis.call('SET', key, string.format('%.0f', e * 1000 - cur), 'PXAT', string.format('%.0f', e))\n" \
    "    else redis.call('SET', key, string.format('%.0f', cur), 'PX', ms(cur - now)) end\n" \
    "  elseif w and w[1] == 's' then\n" \
    "    if w[3] > 0 then redis.call('SET', key, w[2], 'PX', ms(w[3]))\n" \
    "    else redis.call('DEL', key) end\n" \
    "  elseif w and w[1] == 'z' then\n" \
    "    redis.call('ZADD', key, string.format('%.0f', w[2]), lease)\n" \
    "    redis.call('PEXPIRE', key, ms(w[3]))\n" \
    "  end\n" \
    "  return {ok and 1 or 0, rem, math.ceil(reset), math.ceil(retry), math.floor(used * 1000 + 0.5)}\n" \
    "end\n" \
    "-- Phase one decides every limit without writing; phase two, only when\n" \
    "-- all allow a check, consumes (so each state reported is the stored one).\n" \
    "local res = {}\n" \
    "local all = true\n" \
    "for i = 1, #KEYS do\n" \
    "  res[i] = lim(i, not decide)\n" \
    "  if res[i][1] == 0 then all = false end\n" \
    "end\n" \
    "if all and op == 'c' then\n" \
    "  for i = 1, #KEYS do res[i] = lim(i, true) end\n" \
    "end\n" \
    "local out = {}\n" \
    "for i = 1, #KEYS do\n" \
    "  for j = 1, 5 do out[#out + 1] = res[i][j] end\n" \
    "end\n" \
    "return out\n"

#endif
