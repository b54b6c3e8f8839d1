"""Redis backend for several server processes (or machines): a stream read by a consumer group.

Layout under one prefix (a ``{hash tag}``, so every key lands in one cluster slot):

- ``P:case:<id>``     hash: the case (JSON-valued fields stored as JSON strings)
- ``P:key:<key>``     the case id for an idempotency key (dedupe)
- ``P:stream``        one entry per delivery of a case; consumer group ``workers``
- ``P:delayed``       sorted set: cases waiting for a retry, scored by when they are due
- ``P:status:<s>``    sorted sets by status, scored by arrival (list and stats)

Every change that touches more than one key is a Lua script, so a process that dies between two
commands can never leave a case stored but not queued, or acknowledged but not recorded. A worker
that dies keeps its entries in the group's pending list; ``claim`` takes them over with XAUTOCLAIM
once they have been idle for the lease.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from .base import STATUSES, Case, CaseNotFound, Enqueued, NewCase, RetryPolicy, Status, dumps

GROUP = "workers"
JSON_FIELDS = ("local_result", "reasons", "answer")

# Shared by the scripts below: move a case between status sets, drop a delivered entry.
_LUA_HELPERS = """
local p = ARGV[1]
local function move(id, from, to)
  local score = redis.call('HGET', p .. ':case:' .. id, 'received_at')
  redis.call('ZREM', p .. ':status:' .. from, id)
  redis.call('ZADD', p .. ':status:' .. to, score, id)
end
local function drop(entry)
  if entry then
    redis.call('XACK', p .. ':stream', 'workers', entry)
    redis.call('XDEL', p .. ':stream', entry)
  end
end
"""

# ARGV: prefix, idempotency key, id, received_at, field, value, ...
ENQUEUE = _LUA_HELPERS + """
local existing = redis.call('GET', p .. ':key:' .. ARGV[2])
if existing then return {existing, 0} end
local id = ARGV[3]
local case = p .. ':case:' .. id
redis.call('SET', p .. ':key:' .. ARGV[2], id)
redis.call('HSET', case, unpack(ARGV, 5))
redis.call('HSET', case, 'entry', redis.call('XADD', p .. ':stream', '*', 'id', id))
redis.call('ZADD', p .. ':status:pending', ARGV[4], id)
return {id, 1}
"""

# ARGV: prefix, now, limit. Re-queues retries that are due as fresh stream entries.
PROMOTE = _LUA_HELPERS + """
local due = redis.call('ZRANGEBYSCORE', p .. ':delayed', '-inf', ARGV[2], 'LIMIT', 0,
                       tonumber(ARGV[3]))
for _, id in ipairs(due) do
  redis.call('ZREM', p .. ':delayed', id)
  redis.call('HSET', p .. ':case:' .. id, 'entry',
             redis.call('XADD', p .. ':stream', '*', 'id', id))
end
return #due
"""

# ARGV: prefix, entry, id, worker, now, lease_until, max_attempts, reclaimed (0|1)
# Returns 1: claimed; 0: stale entry dropped; -1: lost worker with no attempts left → failed.
TAKE = _LUA_HELPERS + """
local id, entry = ARGV[3], ARGV[2]
local case = p .. ':case:' .. id
local f = redis.call('HMGET', case, 'status', 'entry', 'attempts')
local status, current, attempts = f[1], f[2], tonumber(f[3] or '0')
if (not status) or current ~= entry or status == 'answered' or status == 'failed' then
  drop(entry)
  return 0
end
if ARGV[8] == '1' and status == 'processing' and attempts >= tonumber(ARGV[7]) then
  redis.call('HSET', case, 'status', 'failed', 'updated_at', ARGV[5], 'last_error',
             'worker stopped responding during attempt ' .. attempts .. '; no attempts left')
  redis.call('HDEL', case, 'claimed_by', 'lease_until', 'entry')
  move(id, status, 'failed')
  drop(entry)
  return -1
end
redis.call('HSET', case, 'status', 'processing', 'attempts', attempts + 1,
           'claimed_by', ARGV[4], 'lease_until', ARGV[6], 'updated_at', ARGV[5])
move(id, status, 'processing')
return 1
"""

# ARGV: prefix, id, answer JSON, now. First answer wins (a failed case can still be answered);
# returns 0 when the case is unknown.
COMPLETE = _LUA_HELPERS + """
local id = ARGV[2]
local case = p .. ':case:' .. id
local f = redis.call('HMGET', case, 'status', 'entry')
local status, entry = f[1], f[2]
if not status then return 0 end
if status == 'answered' then return 1 end
redis.call('HSET', case, 'status', 'answered', 'answer', ARGV[3], 'updated_at', ARGV[4])
redis.call('HDEL', case, 'claimed_by', 'lease_until', 'entry')
redis.call('ZREM', p .. ':delayed', id)
move(id, status, 'answered')
drop(entry)
return 1
"""

# ARGV: prefix, id, error, now, worker, max_attempts, base_s, factor, max_s
FAIL = _LUA_HELPERS + """
local id = ARGV[2]
local case = p .. ':case:' .. id
local f = redis.call('HMGET', case, 'status', 'entry', 'attempts', 'claimed_by')
local status, entry, attempts, owner = f[1], f[2], tonumber(f[3] or '0'), f[4]
if not status then return 0 end
if status ~= 'processing' or owner ~= ARGV[5] then return 1 end
drop(entry)
redis.call('HDEL', case, 'claimed_by', 'lease_until', 'entry')
local now = tonumber(ARGV[4])
if attempts >= tonumber(ARGV[6]) then
  redis.call('HSET', case, 'status', 'failed', 'last_error', ARGV[3], 'updated_at', ARGV[4],
             'next_attempt_at', ARGV[4])
  move(id, status, 'failed')
else
  local delay = math.min(tonumber(ARGV[9]), tonumber(ARGV[7]) * tonumber(ARGV[8]) ^ (attempts - 1))
  local due = string.format('%.6f', now + delay)
  redis.call('HSET', case, 'status', 'pending', 'last_error', ARGV[3], 'updated_at', ARGV[4],
             'next_attempt_at', due)
  redis.call('ZADD', p .. ':delayed', due, id)
  move(id, status, 'pending')
end
return 1
"""


class RedisQueue:
    """
    >>> q = RedisQueue.from_url("redis://127.0.0.1:6379/0")                   # doctest: +SKIP
    >>> q.claim("worker-1", lease_s=60)                                        # doctest: +SKIP
    """

    def __init__(
        self,
        client,
        prefix: str = "{edge-triage}:escalations",
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.client = client
        self.prefix = prefix
        self.retry = retry or RetryPolicy()
        self._clock = clock
        self._stream = f"{prefix}:stream"
        self._scripts = {name: client.register_script(src) for name, src in
                         (("enqueue", ENQUEUE), ("promote", PROMOTE), ("take", TAKE),
                          ("complete", COMPLETE), ("fail", FAIL))}
        self._ensure_group()

    @classmethod
    def from_url(cls, url: str, **kwargs) -> RedisQueue:
        try:
            import redis
        except ImportError as e:  # pragma: no cover - redis is a dependency
            raise RuntimeError("the Redis queue needs redis-py: pip install redis") from e
        return cls(redis.Redis.from_url(url, decode_responses=True), **kwargs)

    def _ensure_group(self) -> None:
        from redis.exceptions import ResponseError

        try:
            # id "0": entries added before the group existed are still delivered.
            self.client.xgroup_create(self._stream, GROUP, id="0", mkstream=True)
        except ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise

    def _run(self, name: str, *args: Any):
        return self._scripts[name](keys=[], args=[self.prefix, *args])

    # -- the EscalationQueue interface --------------------------------------------------------

    def enqueue(self, case: NewCase) -> Enqueued:
        new = Case.new(case, self._clock())
        fields = [item for pair in self._to_hash(new).items() for item in pair]
        case_id, created = self._run("enqueue", case.idempotency_key, new.id,
                                     repr(new.received_at), *fields)
        if created:
            return Enqueued(new, created=True)
        stored = self.get(case_id)
        if stored is None:  # pragma: no cover - the key and the case are written together
            raise CaseNotFound(case_id)
        return Enqueued(stored, created=False)

    def get(self, case_id: str) -> Case | None:
        data = self.client.hgetall(f"{self.prefix}:case:{case_id}")
        return self._from_hash(data) if data else None

    def claim(self, worker: str, lease_s: float) -> Case | None:
        now = self._clock()
        self._run("promote", repr(now), 100)
        lease_ms = max(1, int(lease_s * 1000))
        # A bounded loop: each pass either claims a case or drops one stale entry.
        for _ in range(64):
            delivery = self._next_delivery(worker, lease_ms)
            if delivery is None:
                return None
            entry, case_id, reclaimed = delivery
            taken = self._run("take", entry, case_id, worker, repr(now), repr(now + lease_s),
                              self.retry.max_attempts, "1" if reclaimed else "0")
            if taken == 1:
                return self.get(case_id)
        return None

    def _next_delivery(self, worker: str, lease_ms: int) -> tuple[str, str, bool] | None:
        # Entries of a dead worker first: they have waited longest.
        _, claimed, *_ = self.client.xautoclaim(self._stream, GROUP, worker,
                                                min_idle_time=lease_ms, start_id="0-0", count=1)
        for entry, fields in claimed:
            if fields:
                return entry, fields["id"], True
        batch = self.client.xreadgroup(GROUP, worker, {self._stream: ">"}, count=1)
        for _, entries in batch or ():
            for entry, fields in entries:
                return entry, fields["id"], False
        return None

    def complete(self, case_id: str, answer: dict[str, Any]) -> Case:
        if not self._run("complete", case_id, dumps(answer), repr(self._clock())):
            raise CaseNotFound(case_id)
        return self._require(case_id)

    def fail(self, case_id: str, error: str, worker: str) -> Case:
        r = self.retry
        if not self._run("fail", case_id, error, repr(self._clock()), worker, r.max_attempts,
                         r.base_s, r.factor, r.max_s):
            raise CaseNotFound(case_id)
        return self._require(case_id)

    def list(self, status: Status | None = None, limit: int = 100) -> list[Case]:
        scored: list[tuple[float, str]] = []
        for s in (status,) if status else STATUSES:
            scored.extend((score, cid) for cid, score in self.client.zrange(
                f"{self.prefix}:status:{s}", 0, limit - 1, withscores=True))
        ids = [cid for _, cid in sorted(scored)[:limit]]
        pipe = self.client.pipeline(transaction=False)
        for cid in ids:
            pipe.hgetall(f"{self.prefix}:case:{cid}")
        return [self._from_hash(d) for d in pipe.execute() if d]

    def stats(self) -> dict[str, int]:
        pipe = self.client.pipeline(transaction=False)
        for s in STATUSES:
            pipe.zcard(f"{self.prefix}:status:{s}")
        counts = dict(zip(STATUSES, pipe.execute(), strict=True))
        return {**counts, "total": sum(counts.values())}

    def close(self) -> None:
        self.client.close()

    # -- hashes -------------------------------------------------------------------------------

    def _require(self, case_id: str) -> Case:
        case = self.get(case_id)
        if case is None:
            raise CaseNotFound(case_id)
        return case

    @staticmethod
    def _to_hash(case: Case) -> dict[str, str]:
        data = case.model_dump(mode="json")
        out: dict[str, str] = {}
        for key, value in data.items():
            if value is None:
                continue
            if key in JSON_FIELDS:
                out[key] = dumps(value)
            elif isinstance(value, float):
                out[key] = repr(value)  # repr: the shortest text that round-trips exactly
            else:
                out[key] = str(value)
        return out

    @staticmethod
    def _from_hash(data: dict[str, str]) -> Case:
        data = dict(data)
        for key in JSON_FIELDS:
            if key in data:
                data[key] = json.loads(data[key])
        return Case.model_validate(data)
