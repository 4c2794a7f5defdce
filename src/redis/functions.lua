#!lua name=tether_v1
-- The Redis Functions of tether's Redis store (src/redis/redis_store.cpp
-- embeds this file and loads it with FUNCTION LOAD REPLACE; docs/SCALING.md
-- describes the keys). Every key a function touches belongs to one room and
-- carries the room as a hash tag.
--
-- Keys of a room R under prefix P:
--   P:{R}:m  hash   epoch, head (the last offset handed out), r (the term: the
--                   run id of the Redis server that wrote it last)
--   P:{R}:s  stream the events; entry id "<offset>-0", fields d (data),
--                   u (publisher), i (publish id), t (append time, ms)
--   P:{R}:d  hash   the publish log: "<user>\n<publish id>" -> "<epoch> <offset> <at_ms>"
--   P:{R}:t  zset   the same fields scored by append time (trimmed by age and count)
--
-- Epochs and offsets are kept as strings: Lua numbers are doubles.

-- The room's epoch, created when the metadata is missing (the room is new,
-- expired, or Redis lost it): then its old events and publish log go too.
--
-- Lost writes: `term` is the run id of the server the caller is connected to
-- (INFO server, read at every connect). A room last written under another
-- term comes from another server history: a restart from a snapshot, or a
-- replica promoted by a failover, either of which may lack the newest
-- acknowledged entries and would hand their offsets out again. Such a room
-- gets a new epoch before anything else touches it: no position of the old
-- epoch resumes as recovered, and no re-used offset is mixed with the old
-- ones. (A failover that lost nothing costs the same: detection is per
-- term, not per entry; docs/SCALING.md.)
local function epoch_of(meta, stream, dd, ddz, new_epoch, meta_ttl, term)
  local m = redis.call('HMGET', meta, 'epoch', 'r')
  if m[1] then
    if m[2] == term then return m[1] end
    redis.call('HSET', meta, 'epoch', new_epoch, 'r', term)
    return new_epoch
  end
  redis.call('DEL', stream, dd, ddz)
  redis.call('HSET', meta, 'epoch', new_epoch, 'head', 0, 'r', term)
  redis.call('PEXPIRE', meta, meta_ttl)
  return new_epoch
end

-- Drops events appended before `cutoff` (ms), a bounded number per call.
local function trim_age(stream, cutoff)
  for _ = 1, 8 do
    local batch = redis.call('XRANGE', stream, '-', '+', 'COUNT', 64)
    if #batch == 0 then return end
    local keep = nil
    for _, entry in ipairs(batch) do
      local f = entry[2]
      local t = nil
      for i = 1, #f, 2 do
        if f[i] == 't' then t = tonumber(f[i + 1]) end
      end
      if t and t >= cutoff then keep = entry[1]; break end
    end
    if keep then
      redis.call('XTRIM', stream, 'MINID', keep)
      return
    end
    local last = tonumber(string.match(batch[#batch][1], '^(%d+)'))
    redis.call('XTRIM', stream, 'MINID', tostring(last + 1) .. '-0')
  end
end

-- The stream's first offset kept (head + 1 when empty).
local function first_of(stream, head)
  local e = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)
  if #e == 0 then return tostring(tonumber(head) + 1) end
  return string.match(e[1][1], '^(%d+)')
end

-- KEYS: meta, stream, publish log, publish times
-- ARGV: data, publisher, publish id, at_ms, dedupe_since_ms, history size,
--       new epoch, node id, channel, meta ttl ms, history ttl ms,
--       publish log max, room, term
-- Returns {epoch, offset, duplicate (0|1)}.
local function append(keys, args)
  local meta, stream, dd, ddz = keys[1], keys[2], keys[3], keys[4]
  local data, user, pid, at = args[1], args[2], args[3], args[4]
  local since = tonumber(args[5])
  local epoch = epoch_of(meta, stream, dd, ddz, args[7], args[10], args[14])
  local field = nil
  if pid ~= '' then
    field = user .. '\n' .. pid
    local v = redis.call('HGET', dd, field)
    if v then
      local e, o, t = string.match(v, '^(%d+) (%d+) (%d+)$')
      if e == epoch and tonumber(t) >= since then return {epoch, o, 1} end
    end
  end
  local off = tostring(redis.call('HINCRBY', meta, 'head', 1))
  redis.call('XADD', stream, 'MAXLEN', args[6], off .. '-0', 'd', data, 'u', user, 'i', pid,
             't', at)
  trim_age(stream, tonumber(at) - tonumber(args[11]))
  redis.call('PEXPIRE', meta, args[10])
  redis.call('PEXPIRE', stream, args[11])
  if field then
    redis.call('HSET', dd, field, epoch .. ' ' .. off .. ' ' .. at)
    redis.call('ZADD', ddz, at, field)
    -- The publish log: records older than the window go, then the oldest
    -- beyond its count bound (a bounded number per call).
    local old = redis.call('ZRANGEBYSCORE', ddz, '-inf', '(' .. args[5], 'LIMIT', 0, 64)
    if #old > 0 then
      redis.call('HDEL', dd, unpack(old))
      redis.call('ZREM', ddz, unpack(old))
    end
    local over = redis.call('ZCARD', ddz) - tonumber(args[12])
    if over > 0 then
      local gone = redis.call('ZRANGE', ddz, 0, math.min(over, 64) - 1)
      redis.call('HDEL', dd, unpack(gone))
      redis.call('ZREM', ddz, unpack(gone))
    end
    local window = tonumber(at) - since
    if window > 0 then
      redis.call('PEXPIRE', dd, window)
      redis.call('PEXPIRE', ddz, window)
    end
  end
  redis.call('PUBLISH', args[9], args[8] .. '\n' .. args[13] .. '\n' .. epoch .. '\n' .. off ..
             '\n' .. data)
  return {epoch, off, 0}
end

-- KEYS: meta, stream, publish log, publish times
-- ARGV: new epoch, meta ttl ms, history cutoff ms, term
-- Returns {epoch, head, first}.
local function stream(keys, args)
  local meta, s = keys[1], keys[2]
  local epoch = epoch_of(meta, s, keys[3], keys[4], args[1], args[2], args[4])
  trim_age(s, tonumber(args[3]))
  local head = redis.call('HGET', meta, 'head')
  return {epoch, head, first_of(s, head)}
end

-- KEYS: meta, stream, publish log, publish times
-- ARGV: new epoch, meta ttl ms, history cutoff ms, term, after, up to, count
-- Returns {epoch, head, first, {offset, at_ms, data, publisher, publish id}...}.
local function range(keys, args)
  local meta, s = keys[1], keys[2]
  local epoch = epoch_of(meta, s, keys[3], keys[4], args[1], args[2], args[4])
  trim_age(s, tonumber(args[3]))
  local head = redis.call('HGET', meta, 'head')
  local out = {epoch, head, first_of(s, head)}
  local entries = redis.call('XRANGE', s, '(' .. args[5] .. '-0', args[6] .. '-0', 'COUNT',
                             args[7])
  for _, entry in ipairs(entries) do
    local f = entry[2]
    local m = {}
    for i = 1, #f, 2 do m[f[i]] = f[i + 1] end
    table.insert(out, {string.match(entry[1], '^(%d+)'), m.t or '0', m.d or 'null', m.u or '',
                       m.i or ''})
  end
  return out
end

-- KEYS: stream
-- ARGV: history cutoff ms
local function trim(keys, args)
  trim_age(keys[1], tonumber(args[1]))
  return 0
end

-- Keys of a session S:
--   P:session:S   hash  t (resume token), u (user), r (rooms, JSON),
--                       e (expires_at_ms, 0 while held), n (the node holding it),
--                       g (generation: bumped by every claim)
--   P:sessions:N  zset  the ids of node N's sessions (read at its start-up)

-- KEYS: session hash, the node's session index
-- ARGV: id, resume token, user, rooms (JSON), expires_at_ms (0: held), node,
--       generation, held ttl ms
-- Returns 0, or 1 when the save is stale (a later claim took the session).
local function save_session(keys, args)
  local g = redis.call('HGET', keys[1], 'g')
  if g and tonumber(g) > tonumber(args[7]) then return 1 end
  redis.call('HSET', keys[1], 't', args[2], 'u', args[3], 'r', args[4], 'e', args[5], 'n',
             args[6], 'g', args[7])
  if args[5] == '0' then
    -- Held: refreshed by every save; bounded, should the node die for good.
    redis.call('PEXPIRE', keys[1], args[8])
  else
    redis.call('PEXPIREAT', keys[1], args[5])
  end
  redis.call('ZADD', keys[2], 0, args[1])
  return 0
end

-- KEYS: session hash, the node's session index
-- ARGV: id, node. Only the node that holds the session forgets it.
local function erase_session(keys, args)
  local owner = redis.call('HGET', keys[1], 'n')
  if owner == args[2] then redis.call('DEL', keys[1]) end
  redis.call('ZREM', keys[2], args[1])
  return 0
end

-- KEYS: session hash, the claiming node's session index
-- ARGV: id, resume token, new token, node, now ms, channel, session index
--       prefix, held ttl ms
-- The token check and its replacement are one step: of two claims with one
-- token, one wins. The node that held the session hears of it on the channel
-- ("claim\n<node>\n<id>\n<generation>").
-- Returns {0} (unknown, expired, another token) or {1, user, rooms, generation}.
local function claim_session(keys, args)
  local h = redis.call('HMGET', keys[1], 't', 'u', 'r', 'e', 'n')
  if not h[1] then return {0} end
  -- Hashes compared, not the secrets: no timing signal on the token itself.
  if redis.sha1hex(h[1]) ~= redis.sha1hex(args[2]) then return {0} end
  if h[4] and h[4] ~= '0' and tonumber(h[4]) <= tonumber(args[5]) then return {0} end
  local g = redis.call('HINCRBY', keys[1], 'g', 1)
  redis.call('HSET', keys[1], 't', args[3], 'e', '0', 'n', args[4])
  redis.call('PEXPIRE', keys[1], args[8])
  if h[5] and h[5] ~= args[4] then redis.call('ZREM', args[7] .. h[5], args[1]) end
  redis.call('ZADD', keys[2], 0, args[1])
  redis.call('PUBLISH', args[6], 'claim\n' .. args[4] .. '\n' .. args[1] .. '\n' .. g)
  return {1, h[2] or '', h[3] or '[]', g}
end

-- KEYS: the node's session index
-- ARGV: after (id), max, session key prefix, node
-- Returns {more (0|1), {id, token, user, rooms, expires, generation}...}. Index entries of
-- sessions that expired, or that another node took over, are dropped.
local function load_sessions(keys, args)
  local from = (args[1] == '') and '-' or ('(' .. args[1])
  local ids = redis.call('ZRANGEBYLEX', keys[1], from, '+', 'LIMIT', 0, args[2])
  local out = {(#ids == tonumber(args[2])) and 1 or 0}
  for _, id in ipairs(ids) do
    local h = redis.call('HMGET', args[3] .. id, 't', 'u', 'r', 'e', 'n', 'g')
    if h[1] and h[5] == args[4] then
      table.insert(out, {id, h[1], h[2], h[3], h[4], h[6] or '0'})
    else
      redis.call('ZREM', keys[1], id)
    end
  end
  return out
end

redis.register_function('tether_append', append)
redis.register_function('tether_stream', stream)
redis.register_function('tether_range', range)
redis.register_function('tether_trim', trim)
redis.register_function('tether_save_session', save_session)
redis.register_function('tether_erase_session', erase_session)
redis.register_function('tether_claim_session', claim_session)
redis.register_function('tether_load_sessions', load_sessions)
