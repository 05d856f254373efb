"""The Lua scripts of the Redis backend: each is one atomic step on the server.

Keys under the store's prefix `{p}`:
  {p}:zones {p}:links {p}:providers {p}:contracts   hashes  id -> object JSON
  {p}:resv:<provider>                                hash    contract id -> rps held
  {p}:resv_of:<contract>                             set     providers the contract holds capacity on
  {p}:resv_index                                     set     providers that have any reservation
  {p}:changes                                        stream  the change feed (MAXLEN ~ 100k)
  {p}:audit  {p}:audit:tail                          stream (id = "<seq>-0") + the sealed tail entry
  {p}:history                                        stream  topology snapshots (MAXLEN ~ history_limit)
  {p}:history:parts                                  hash    part id -> JSON of one snapshot part
  {p}:history:version                                string  the last history version handed out

History entries reference their parts by id (see redis_history.py). Parts are never deleted: one
that only trimmed entries referenced stays, so the hash grows by the changed parts of every change
(not by whole snapshots). Pruning would have to prove no entry, including one a replica is about
to append, references a part; the append script's check of every part id it relies on is what
would make that safe.

The scripts derive per-provider keys from a prefix argument instead of declaring them in KEYS, so
they need a single Redis primary (optionally with replicas / Sentinel), not Redis Cluster.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError


class LuaScript:
    """EVALSHA first (the common case costs no script upload); EVAL when the server forgot it
    (restart, SCRIPT FLUSH), which also caches it again for the next call."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def __call__(self, client: Redis, keys: Sequence[str], args: Sequence[str | int | float]) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)  # type: ignore[misc]
        except NoScriptError:
            return await client.eval(self.source, len(keys), *keys, *args)  # type: ignore[misc]


# KEYS: object hash, change stream. ARGV: op ("put"|"delete"), field, value JSON ("{}" on delete),
# stream maxlen, event kind, origin. Returns the change-event id, or nil for a delete of nothing.
WRITE = LuaScript(
    """
if ARGV[1] == 'put' then
  redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
elseif redis.call('HDEL', KEYS[1], ARGV[2]) == 0 then
  return false
end
return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*',
  'kind', ARGV[5], 'op', ARGV[1], 'key', ARGV[2], 'origin', ARGV[6], 'data', ARGV[3])
"""
)

# KEYS: contracts hash, change stream, resv_of:<contract>, resv_index.
# ARGV: resv key prefix ("{p}:resv:"), contract id, contract JSON, stream maxlen, origin, tolerance,
# n, then n triplets (provider, rps, capacity).
# Returns {"ok", event id} or {"capacity", provider, held by others, requested, capacity}.
# Check everything first, write only after: a conflict leaves no trace.
COMMIT_CONTRACT = LuaScript(
    """
local rp, cid, tol, n = ARGV[1], ARGV[2], tonumber(ARGV[6]), tonumber(ARGV[7])
for i = 0, n - 1 do
  local p, want, cap = ARGV[8 + 3 * i], tonumber(ARGV[9 + 3 * i]), tonumber(ARGV[10 + 3 * i])
  local held = redis.call('HGETALL', rp .. p)
  local others, own = 0, 0
  for j = 1, #held, 2 do
    if held[j] == cid then own = tonumber(held[j + 1]) else others = others + tonumber(held[j + 1]) end
  end
  if want > own and others + want > cap + tol then
    return {'capacity', p, string.format('%.17g', others), ARGV[9 + 3 * i], ARGV[10 + 3 * i]}
  end
end
for _, p in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  redis.call('HDEL', rp .. p, cid)
  if redis.call('HLEN', rp .. p) == 0 then redis.call('SREM', KEYS[4], p) end
end
redis.call('DEL', KEYS[3])
for i = 0, n - 1 do
  local p = ARGV[8 + 3 * i]
  redis.call('HSET', rp .. p, cid, ARGV[9 + 3 * i])
  redis.call('SADD', KEYS[3], p)
  redis.call('SADD', KEYS[4], p)
end
redis.call('HSET', KEYS[1], cid, ARGV[3])
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*',
  'kind', 'contract', 'op', 'put', 'key', cid, 'origin', ARGV[5], 'data', ARGV[3])
return {'ok', id}
"""
)

# KEYS: history stream, history version counter, history parts hash.
# ARGV: entry head JSON, entry kinds JSON, stream maxlen, ids of parts the caller believes stored
# (concatenated, 16 characters each), then (part id, part JSON) pairs to store.
# Replicas share one version sequence: each snapshot's version is taken here, in the same step that
# appends it (field "v" overrides the "version" inside the JSON when read). Parts go in before the
# entry that references them, in the same step, so no reader sees an entry without its parts.
# Returns the version, or {"missing", ids} (and writes nothing) if a part believed stored is not.
APPEND_HISTORY = LuaScript(
    """
local parts, known, missing = KEYS[3], ARGV[4], {}
for i = 1, #known, 16 do
  local id = string.sub(known, i, i + 15)
  if redis.call('HEXISTS', parts, id) == 0 then missing[#missing + 1] = id end
end
if #missing > 0 then return {'missing', table.concat(missing)} end
for i = 5, #ARGV, 2 do
  redis.call('HSETNX', parts, ARGV[i], ARGV[i + 1])
end
local v = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'h', ARGV[1], 'k', ARGV[2], 'v', v)
return v
"""
)

# KEYS: resv_index. ARGV: resv key prefix. Returns {provider, {contract, rps, ...}, ...} read in one
# step, so the caller never sees a half-applied commit.
RESERVATIONS = LuaScript(
    """
local out = {}
for _, p in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  table.insert(out, p)
  table.insert(out, redis.call('HGETALL', ARGV[1] .. p))
end
return out
"""
)
