//! The server-side Lua scripts. Each runs atomically: no other command runs in between.
//!
//! Redis does not roll back a script that fails half way, so every script orders its writes so
//! that a failure leaves nothing inconsistent behind: a message is written to its stream before
//! its seq is recorded as the head, so no seq is ever assigned without a stored message.

use redis::Script;

/// Shared Lua helpers, prepended to the scripts that use them.
const HEAD_LUA: &str = r#"
-- The head of a conversation: its latest seq, latest ts and epoch (false if none yet).
-- If the head hash is missing but the stream exists (the hash was lost or evicted), the seq
-- continues after the stream's last id so that XADD never meets an id at or below its top.
local function head(meta, log)
  local v = redis.call('HMGET', meta, 'seq', 'ts', 'epoch')
  local seq = tonumber(v[1])
  if not seq then
    seq = 0
    if redis.call('EXISTS', log) == 1 then
      local info = redis.call('XINFO', 'STREAM', log)
      for i = 1, #info, 2 do
        if info[i] == 'last-generated-id' then
          seq = tonumber(string.match(info[i + 1], '^(%d+)')) or 0
        end
      end
    end
  end
  return seq, tonumber(v[2]) or 0, v[3]
end
"#;

/// Append (see [`crate::broker`] for the arguments).
///
/// Every number handed to `redis.call` is a string made once with `string.format('%d')`: Redis
/// turns a Lua number argument into text with `%.17g`, floating-point printing that was about a
/// tenth of this script's instructions. `MAXLEN` is passed to XADD only once the seq is above the
/// limit: a stream holds at most one entry per seq (its ids are `<seq>-1`), so below that
/// nothing can be trimmed, and the trimming pass costs even when it removes nothing.
const APPEND_LUA: &str = r#"
local now, epoch, idem_ttl = tonumber(ARGV[1]), ARGV[3], ARGV[4]
local maxlen, maxlen_n = ARGV[2], tonumber(ARGV[2])
local has_copy, has_idem = ARGV[5] == '1', ARGV[6] == '1'
local mid, post, rpre = ARGV[7], ARGV[8], ARGV[9]
local ch1, pre1, ch2, pre2 = ARGV[10], ARGV[11], ARGV[12], ARGV[13]
-- '0': replicated mode, the confirm script publishes once WAIT saw the write replicated.
local publish = ARGV[14] ~= '0'
local meta1, log1 = KEYS[1], KEYS[2]
local meta2, log2, idem
if has_copy then
  meta2, log2 = KEYS[3], KEYS[4]
  idem = KEYS[5]
else
  idem = KEYS[3]
end

-- 1. A repeat of an earlier (owner, client_msg_id): its receipt; nothing stored or published.
if has_idem then
  local earlier = redis.call('GET', idem)
  if earlier then
    -- Replicated mode: a write of ours after the original one, so that the caller's WAIT
    -- covers it too (the original may have been written by a node that died before its WAIT).
    if not publish then redis.call('HSET', meta1, 'ack', ARGV[1]) end
    return {0, earlier}
  end
end

-- 2. Seqs and one time for both copies, never below the latest time of either conversation.
local s1, t1, e1 = head(meta1, log1)
local ts = math.max(now, t1)
local s2, t2, e2
local same = has_copy and meta2 == meta1
if has_copy and not same then
  s2, t2, e2 = head(meta2, log2)
  ts = math.max(ts, t2)
end
local ts_s = string.format('%d', ts)
local function add(log, seq, seq_s, m)
  if maxlen_n > 0 and seq > maxlen_n then
    redis.call('XADD', log, 'MAXLEN', maxlen, seq_s .. '-1', 'm', m, 't', ts_s)
  else
    redis.call('XADD', log, seq_s .. '-1', 'm', m, 't', ts_s)
  end
end
local function set_head(meta, seq, seq_s, had_epoch)
  if had_epoch then
    redis.call('HSET', meta, 'seq', seq_s, 'ts', ts_s)
  else
    -- `rseq`: the last seq published in replicated mode (see CONFIRM_LUA).
    redis.call('HSET', meta, 'seq', seq_s, 'ts', ts_s, 'epoch', epoch,
      'rseq', string.format('%d', seq - 1))
  end
end

-- 3. Store, then move the head (a failing XADD leaves the head where it was).
local seq1 = s1 + 1
local seq1_s = string.format('%d', seq1)
local m1 = pre1 .. seq1_s .. mid .. ts_s .. post
add(log1, seq1, seq1_s, m1)
set_head(meta1, seq1, seq1_s, e1)
local seq2, m2 = 0, nil
if has_copy then
  if same then seq2 = seq1 + 1 else seq2 = s2 + 1 end
  local seq2_s = string.format('%d', seq2)
  m2 = pre2 .. seq2_s .. mid .. ts_s .. post
  add(log2, seq2, seq2_s, m2)
  set_head(meta2, seq2, seq2_s, same or e2)
end

-- 4. The idempotency record, then publication: in seq order, since scripts run one at a time.
if has_idem then
  redis.call('SET', idem, rpre .. seq1_s .. ',"ts":' .. ts_s .. '}', 'EX', idem_ttl)
end
if publish then
  redis.call('PUBLISH', ch1, m1)
  if has_copy then redis.call('PUBLISH', ch2, m2) end
end
return {1, seq1, ts, seq2}
"#;

/// Replicated mode: publishes, in seq order, every stored message of a conversation up to seq
/// `ARGV[1]` not yet published, once the caller's WAIT saw that seq's write replicated (a replica
/// that has seq has every seq below it: one master writes them in order). KEYS: meta, log.
/// ARGV: seq, channel, publish command (`SPUBLISH` on a cluster). `rseq` in the head is the last
/// seq published. Returns the number published, or -1 when the head is below seq (the message
/// was lost in a failover before it was replicated: nothing to publish).
const CONFIRM_LUA: &str = r#"
local meta, log, seq, ch, publish = KEYS[1], KEYS[2], tonumber(ARGV[1]), ARGV[2], ARGV[3]
local v = redis.call('HMGET', meta, 'seq', 'rseq')
local head = tonumber(v[1]) or 0
if seq > head then return -1 end
local r = tonumber(v[2]) or (seq - 1)
if seq <= r then return 0 end
local from = math.max(r + 1, seq - 1000)
local entries = redis.call('XRANGE', log, string.format('%d-0', from), string.format('%d-1', seq))
for _, e in ipairs(entries) do
  local f = e[2]
  for j = 1, #f, 2 do
    if f[j] == 'm' then redis.call(publish, ch, f[j + 1]) end
  end
end
redis.call('HSET', meta, 'rseq', seq)
return #entries
"#;

/// Position: head, epoch (made once, when first asked or written), oldest stored seq.
const POSITION_LUA: &str = r#"
local meta, log = KEYS[1], KEYS[2]
local seq, _, epoch = head(meta, log)
if not epoch then
  epoch = ARGV[1]
  redis.call('HSET', meta, 'epoch', epoch)
end
local oldest = seq + 1
local first = redis.call('XRANGE', log, '-', '+', 'COUNT', 1)
if #first > 0 then oldest = tonumber(string.match(first[1][1], '^(%d+)')) end
return {seq, epoch, oldest}
"#;

/// Age trimming of one stream: removes the entries older than the cutoff (`ARGV[1]`, ms), at most
/// `ARGV[2]` of them per call. Returns the time of the oldest entry left, -1 if none is left, or
/// -2 if the limit was reached with more to remove.
const TRIM_AGE_LUA: &str = r#"
local log, cutoff, budget = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])
while budget > 0 do
  local batch = redis.call('XRANGE', log, '-', '+', 'COUNT', math.min(budget, 100))
  if #batch == 0 then return -1 end
  for _, e in ipairs(batch) do
    local f, t = e[2], nil
    for j = 1, #f, 2 do
      if f[j] == 't' then t = tonumber(f[j + 1]) end
    end
    if t and t >= cutoff then
      redis.call('XTRIM', log, 'MINID', e[1])
      return t
    end
  end
  local last = tonumber(string.match(batch[#batch][1], '^(%d+)'))
  redis.call('XTRIM', log, 'MINID', string.format('%d-0', last + 1))
  budget = budget - #batch
end
if redis.call('XLEN', log) == 0 then return -1 end
return -2
"#;

/// Removes up to `ARGV[4]` registry entries of a node, from its index set.
/// KEYS: lease, index set, node set. ARGV: node id, key prefix, force ('1': even if the lease is
/// there, for a node cleaning up after itself), batch size.
/// Returns -1 if the lease exists (the node is alive; nothing done), else the entries removed;
/// when fewer than the batch size were left, the node is also removed from the node set.
///
/// The hashes it edits are named from the index, not declared in KEYS: fine on one Redis; a Redis
/// Cluster deployment would sweep per key from the client instead.
const SWEEP_LUA: &str = r#"
local lease, index, nodes = KEYS[1], KEYS[2], KEYS[3]
local node, prefix, force, batch = ARGV[1], ARGV[2], ARGV[3] == '1', tonumber(ARGV[4])
if not force and redis.call('EXISTS', lease) == 1 then return -1 end
local items = redis.call('SPOP', index, batch)
for _, raw in ipairs(items) do
  local ok, e = pcall(cjson.decode, raw)
  if ok and type(e) == 'table' then
    if e[1] == 'c' then
      local key = prefix .. 'conns:' .. e[2]
      if redis.call('HGET', key, e[3]) == node then redis.call('HDEL', key, e[3]) end
    elseif e[1] == 'r' then
      local key = prefix .. 'roomsubs:' .. e[2]
      local v = redis.call('HGET', key, e[3])
      if v and string.sub(v, -(#node + 1)) == '\t' .. node then redis.call('HDEL', key, e[3]) end
    end
  end
end
if #items < batch and not force then redis.call('SREM', nodes, node) end
return #items
"#;

/// Deletes entries of a node, if its lease is gone, from one registry hash.
/// KEYS: the node's lease, the hash. ARGV: node id, then conn ids. Only entries still naming the
/// node are removed (`<node>` in `conns`, `<user>\t<node>` in `roomsubs`).
///
/// On a cluster the lease lives in another slot: KEYS is then the hash alone, and the caller has
/// checked the lease just before.
const REAP_LUA: &str = r#"
local hash = KEYS[#KEYS]
if #KEYS == 2 and redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local node, n = ARGV[1], 0
for i = 2, #ARGV do
  local v = redis.call('HGET', hash, ARGV[i])
  if v and (v == node or string.sub(v, -(#node + 1)) == '\t' .. node) then
    redis.call('HDEL', hash, ARGV[i])
    n = n + 1
  end
end
return n
"#;

/// Creates a user if the name is free. KEYS: username key, user key. ARGV: id, name, hash, now.
/// The two keys are in different slots: fine on one Redis (a cluster would need them tagged).
const CREATE_USER_LUA: &str = r#"
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then
  redis.call('HSET', KEYS[2], 'username', ARGV[2], 'password_hash', ARGV[3], 'created_at', ARGV[4])
  return 1
end
return 0
"#;

/// Creates a room with its owner as first member. KEYS: room counter, room, public rooms,
/// members, owner's rooms. ARGV: room id, name, visibility, owner, created_at.
const CREATE_ROOM_LUA: &str = r#"
local ord = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[2], 'name', ARGV[2], 'visibility', ARGV[3], 'owner', ARGV[4],
  'created_at', ARGV[5], 'ord', ord, 'joins', 1)
if ARGV[3] == 'public' then redis.call('ZADD', KEYS[3], ord, ARGV[1]) end
redis.call('ZADD', KEYS[4], 1, ARGV[4])
redis.call('ZADD', KEYS[5], ord, ARGV[1])
return ord
"#;

/// Adds a member at the end of the join order. KEYS: room, members, user's rooms. ARGV: room
/// id, user id. Returns -1 for an unknown room, 0 if already a member, 1 if added.
const ADD_MEMBER_LUA: &str = r#"
local ord = redis.call('HGET', KEYS[1], 'ord')
if not ord then return -1 end
if redis.call('ZSCORE', KEYS[2], ARGV[2]) then return 0 end
local n = redis.call('HINCRBY', KEYS[1], 'joins', 1)
redis.call('ZADD', KEYS[2], n, ARGV[2])
redis.call('ZADD', KEYS[3], ord, ARGV[1])
return 1
"#;

/// [`ADD_MEMBER_LUA`] without the user's index (another slot on a cluster). KEYS: room,
/// members. ARGV: room id, user id. Returns -1 for an unknown room, else the room's order.
const ADD_MEMBER_ROOM_LUA: &str = r#"
local ord = redis.call('HGET', KEYS[1], 'ord')
if not ord then return -1 end
if not redis.call('ZSCORE', KEYS[2], ARGV[2]) then
  local n = redis.call('HINCRBY', KEYS[1], 'joins', 1)
  redis.call('ZADD', KEYS[2], n, ARGV[2])
end
return tonumber(ord)
"#;

/// Every script, compiled once (their SHA1 is what EVALSHA sends).
pub(crate) struct Scripts {
    /// See `APPEND_LUA`.
    pub append: Script,
    /// See `CONFIRM_LUA`.
    pub confirm: Script,
    /// See `POSITION_LUA`.
    pub position: Script,
    /// See `TRIM_AGE_LUA`.
    pub trim_age: Script,
    /// See `SWEEP_LUA`.
    pub sweep: Script,
    /// See `REAP_LUA`.
    pub reap: Script,
    /// See `CREATE_USER_LUA`.
    pub create_user: Script,
    /// See `CREATE_ROOM_LUA`.
    pub create_room: Script,
    /// See `ADD_MEMBER_LUA`.
    pub add_member: Script,
    /// See `ADD_MEMBER_ROOM_LUA`.
    pub add_member_room: Script,
    /// See `recovery::PUT_LUA`.
    pub put_recovery: Script,
    /// See `recovery::DELETE_LUA`.
    pub delete_recovery: Script,
}

impl Scripts {
    /// Compiles (hashes) the scripts.
    pub(crate) fn new() -> Scripts {
        Scripts {
            append: Script::new(&format!("{HEAD_LUA}{APPEND_LUA}")),
            confirm: Script::new(CONFIRM_LUA),
            position: Script::new(&format!("{HEAD_LUA}{POSITION_LUA}")),
            trim_age: Script::new(TRIM_AGE_LUA),
            sweep: Script::new(SWEEP_LUA),
            reap: Script::new(REAP_LUA),
            create_user: Script::new(CREATE_USER_LUA),
            create_room: Script::new(CREATE_ROOM_LUA),
            add_member: Script::new(ADD_MEMBER_LUA),
            add_member_room: Script::new(ADD_MEMBER_ROOM_LUA),
            put_recovery: Script::new(crate::recovery::PUT_LUA),
            delete_recovery: Script::new(crate::recovery::DELETE_LUA),
        }
    }

    /// All of them, with names for messages.
    pub(crate) fn all(&self) -> [(&'static str, &Script); 12] {
        [
            ("append", &self.append),
            ("confirm", &self.confirm),
            ("position", &self.position),
            ("trim_age", &self.trim_age),
            ("sweep", &self.sweep),
            ("reap", &self.reap),
            ("create_user", &self.create_user),
            ("create_room", &self.create_room),
            ("add_member", &self.add_member),
            ("add_member_room", &self.add_member_room),
            ("put_recovery", &self.put_recovery),
            ("delete_recovery", &self.delete_recovery),
        ]
    }
}
