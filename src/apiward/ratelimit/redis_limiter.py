"""The cluster's limiter: the same GCRA decisions as ``LocalLimiter``, kept in Redis.

One decision is one atomic round trip: the Lua script ``LUA`` checks the key's ban, does
``gcra.admit``'s arithmetic for every rate at once (all or nothing), writes the new TATs
and, on a refusal, counts the violation and bans when the rule says so. N gateways against
one Redis (or Redis Cluster: every key of one decision carries the same hash tag) share
every limit exactly.

Key layout (``prefix`` defaults to ``apiward:``; ``<tag>`` is the hash tag, below)::

    {prefix}{<tag>}<name>          a rate's TAT, one per slot name; PX: gone once it passed
    {prefix}{<tag>}ban|<key>       the ban's end; PX: the ban's duration
    {prefix}{<tag>}viol|<key>      hash n (refusals so far), d (when they are forgotten)
    {prefix}nodes                  sorted set: node id -> its last heartbeat

The slot names of one decision are the rule's ``<prefix>|<i>|<key>`` (names must end with
``"|" + key``; ``admit`` refuses others), so peek and charge, which get only the names, find
the same keys. The tag is the part of the key after its last ``|`` (the whole key, for keys
as the ratelimit check makes them), braces replaced, a blake2b digest when it is longer than
``LONG`` characters or empty; a part after the tag longer than ``LONG`` is a digest too, so
no client can make a key large.

Clocks: the script decides at Redis's clock (TIME), not the gateways', so a node whose clock
is skewed cannot grant extra quota (see ``RedisLimiter``).

While Redis is away (an error, or no answer within ``timeout``): ``fail_open`` decides with
the node's ``LocalLimiter`` at each rate divided by the live node count, so an outage
neither opens the gates nor closes them; ``fail_closed`` answers ``UNAVAILABLE`` (the caller
compares by identity and answers 503). Redis is then tried once a second, by one call, until
it answers again; the outage and the recovery are logged once each.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import os
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from redis.asyncio import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException, RedisError

from apiward.ratelimit.gcra import Decision, Rate
from apiward.ratelimit.local import BanRule, LocalLimiter
from apiward.ratelimit.resp import ReplyError, RespClient, Script, bulk, command
from apiward.state.redis import DEFAULT_PREFIX, parse_redis_url
from apiward.state.store import redact_url

log = logging.getLogger("apiward")

#: What a decision is while Redis is away under ``fail_closed``: refused, and not by a
#: limit. Compare by identity (``decision is UNAVAILABLE``) and answer 503.
UNAVAILABLE = Decision(False, 0, 0.0, 1.0)

TIMEOUT = 0.075  # seconds one decision may wait for Redis: a limiter must not add seconds
CONNECT_TIMEOUT = 0.25  # seconds to open a connection (TLS included); pooled ones are reused
MAX_CONNECTIONS = 64  # calls in flight per event loop
RETRY = 1.0  # seconds between probes while Redis is away
NODE_TTL = 15.0  # a node whose heartbeat is older is no longer counted
LONG = 100  # key parts longer than this are hashed
_ERRORS = (RedisError, RedisClusterException, ReplyError, OSError, TimeoutError)

_forks = 0  # bumped in a forked child, whose copies of the parent's sockets are not its own


def _forked() -> None:
    global _forks
    _forks += 1


os.register_at_fork(after_in_child=_forked)

# KEYS: the rates' TATs [, ban, violations]   (the ban pair only for an admit with a rule)
# ARGV: op (a admit | p peek | c charge), now ("" for Redis's TIME), slack ms, cost, n,
#       then count, period, burst per rate [, after, within, duration]
# Reply (admit, peek): "allowed remaining reset retry_after tightest banned", one string
# (redis-py reads one bulk string faster than an array of six); charge: 0.
# Numbers cross as %.17g text both ways, so every double is the one Python has; the
# arithmetic is gcra.admit's and gcra.charge's, operation for operation (Lua numbers are
# IEEE doubles too), so a decision here is the one LocalLimiter makes for the same TATs.
LUA = """
if redis.replicate_commands then redis.replicate_commands() end
local op = ARGV[1]
local now
if ARGV[2] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
else
  now = tonumber(ARGV[2])
end
local slack = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local n = tonumber(ARGV[5])
local function num(x) return string.format('%.17g', x) end
local function int(x) return string.format('%d', x) end
local function ms(seconds) return math.ceil(seconds * 1000) + slack end
local function keep(key, tat)
  if tat > now then
    redis.call('SET', key, num(tat), 'PX', ms(tat - now))
  else
    redis.call('DEL', key)
  end
end
local ruled = op == 'a' and #KEYS > n
if ruled then
  local ends = tonumber(redis.call('GET', KEYS[n + 1]))
  if ends and ends > now then
    return '0 0 0 ' .. num(ends - now) .. ' 0 1'
  end
end
local stored = {}
if n > 0 then stored = redis.call('MGET', unpack(KEYS, 1, n)) end
if op == 'c' then
  for i = 1, n do
    local count, period = tonumber(ARGV[3 * i + 3]), tonumber(ARGV[3 * i + 4])
    local tat = tonumber(stored[i]) or 0
    if not (tat > now) then tat = now end
    tat = tat + cost * period / count
    if not (tat > now) then tat = now end
    keep(KEYS[i], tat)
  end
  return 0
end
local allowed = true
local retry_after = 0.0
local remaining = -1
local reset = 0.0
local tightest = 0
local new = {}
for i = 1, n do
  local count, period = tonumber(ARGV[3 * i + 3]), tonumber(ARGV[3 * i + 4])
  local burst = tonumber(ARGV[3 * i + 5])
  local interval = period / count
  local tolerance = burst * interval
  local tat = tonumber(stored[i]) or 0
  if not (tat > now) then tat = now end
  local new_tat = tat + cost * interval
  local ahead = new_tat - now
  if ahead > tolerance + 1e-9 then
    allowed = false
    local wait = ahead - tolerance
    if wait > retry_after then retry_after = wait end
  end
  local left = 0
  if ahead <= tolerance then left = math.floor((tolerance - ahead) / interval + 1e-9) end
  if remaining < 0 or left < remaining then
    remaining, reset, tightest = left, ahead, i - 1
  end
  new[i] = new_tat
end
if not allowed then
  if ruled then
    local at = 3 * n + 6
    local after, within = tonumber(ARGV[at]), tonumber(ARGV[at + 1])
    local duration = tonumber(ARGV[at + 2])
    local viol = KEYS[n + 2]
    local seen = redis.call('HMGET', viol, 'n', 'd')
    local refusals = 0
    if seen[2] and tonumber(seen[2]) > now then refusals = tonumber(seen[1]) end
    refusals = refusals + 1
    if refusals >= after then
      redis.call('SET', KEYS[n + 1], num(now + duration), 'PX', ms(duration))
      redis.call('DEL', viol)
    else
      redis.call('HSET', viol, 'n', refusals, 'd', num(now + within))
      redis.call('PEXPIRE', viol, ms(within))
    end
  end
  return '0 0 ' .. num(reset) .. ' ' .. num(retry_after) .. ' ' .. int(tightest) .. ' 0'
end
if op == 'a' then
  for i = 1, n do keep(KEYS[i], new[i]) end
end
return '1 ' .. int(remaining) .. ' ' .. num(reset) .. ' 0 ' .. int(tightest) .. ' 0'
"""
_SCRIPT = Script(LUA)


class RedisLimiter:
    """``admit``, ``peek`` and ``charge`` as ``LocalLimiter``'s, cluster-wide.

    ``url``: a store URL as ``open_store`` takes it (``redis://``, ``rediss://``,
    ``redis+cluster://``, ``rediss+cluster://``; the same ``?prefix=``, ``timeout=``,
    ``connect_timeout=``, ``max_connections=`` and ``ssl_*`` options). An argument given
    here wins over the URL's option. ``timeout`` (75 ms unless told) bounds one decision's
    wait for a reply and for a free place; ``connect_timeout`` (250 ms: a TLS handshake
    may need it) bounds opening a connection, which happens once, not per call. At most
    ``max_connections`` (64) calls are in flight per event loop; a call that finds no
    place free within ``timeout`` is decided as in an outage, without declaring one.

    One server (``redis://``, ``rediss://``) is spoken to through ``resp.RespClient``: one
    pipelined connection per event loop, which every call shares (redis-py's own Python was
    two thirds of a decision's cost). A cluster goes through redis-py's ``RedisCluster``
    (slot maps, MOVED and ASK), with a pool of up to ``max_connections`` connections.

    ``time_source``: ``"redis"`` (the default) decides at the Redis server's clock (TIME in
    the script), not at the ``now`` each gateway passes. With the callers' clocks, a node
    whose clock runs ahead by d sees every TAT d older than it is and grants up to d/T extra
    calls at each limit (100/s and a clock 1 s fast: 100 more), and its writes eat the
    other nodes' quota; one clock for every node of a key (all of a key's state is on one
    server) makes skew harmless. TIME inside a script that writes needs effects
    replication (the default from Redis 7; the script asks for it on 5 and 6). ``"caller"``
    decides at the ``now`` passed in: exact and repeatable for tests and for one node. The
    fallback always uses ``now``, since it is the node's own state.

    ``clock`` times the probes while Redis is away and stamps the heartbeats.
    """

    def __init__(self, url: str, *, prefix: str | None = None,
                 on_failure: Literal["fail_open", "fail_closed"] = "fail_open",
                 fallback: LocalLimiter | None = None, node_id: str | None = None,
                 clock: Callable[[], float] = time.time,
                 time_source: Literal["redis", "caller"] = "redis",
                 timeout: float | None = None, connect_timeout: float | None = None,
                 max_connections: int | None = None) -> None:
        self.url = redact_url(url)
        base, self.cluster, options = parse_redis_url(url, self.url)
        given = options.pop("prefix", DEFAULT_PREFIX)
        self.prefix = prefix if prefix is not None else given
        if "{" in self.prefix or "}" in self.prefix:
            raise ValueError(f"a Redis key prefix must not contain braces (they make the "
                             f"cluster hash tag), got {self.prefix!r}")
        if on_failure not in ("fail_open", "fail_closed"):
            raise ValueError(f"on_failure must be fail_open or fail_closed, not {on_failure!r}")
        if time_source not in ("redis", "caller"):
            raise ValueError(f"time_source must be redis or caller, not {time_source!r}")
        self.timeout = timeout or options.pop("timeout", TIMEOUT)
        connect = connect_timeout or options.pop("connect_timeout", CONNECT_TIMEOUT)
        self.max_connections = (max_connections
                                or options.pop("max_connections", MAX_CONNECTIONS))
        for name in ("timeout", "connect_timeout", "max_connections"):
            options.pop(name, None)  # given here as arguments: those win
        if not (self.timeout > 0 and connect > 0 and self.max_connections > 0):
            raise ValueError(f"{self.url}: timeout, connect_timeout and max_connections "
                             "must be > 0")
        self._base = base
        self._password = urlsplit(url).password
        self._connect_timeout = connect
        # What is left of the options are the ssl_* files.
        if self.cluster:  # through redis-py
            self._settings = dict(
                socket_timeout=self.timeout, socket_connect_timeout=connect,
                retry=Retry(NoBackoff(), 0),  # a decision is never sent twice, nor waits twice
                max_connections=self.max_connections, encoding_errors="surrogatepass",
                **options)
        else:  # through resp.RespClient
            self._server, self._tls_files = _server(url, self.url, options)
            self._tls: ssl.SSLContext | None = None
        self.on_failure = on_failure
        self.fail_open = on_failure == "fail_open"
        self._fallback = fallback
        # One gateway (all its workers: they share one LocalLimiter table) is one node;
        # several gateways on one host must pass distinct ids.
        self.node_id = node_id or socket.gethostname()
        self.clock = clock
        self._server_time = time_source == "redis"
        # Keys outlive their worth by a little: 1 ms at Redis's clock; a second at the
        # callers', whose clock runs apart from the one that expires keys.
        self._slack = b"1" if self._server_time else b"1000"
        # The script's first three arguments (op, now, slack) as RESP, at Redis's clock.
        self._leads = {op: bulk(op) + bulk(b"") + bulk(self._slack) for op in (b"a", b"p", b"c")}
        self.nodes = 1
        self.available = True
        self._retry_at = 0.0
        # Connections belong to one event loop and process: one client for each.
        self._client: Any = None
        self._script: Any = None
        self._places: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fork = _forks

    def __repr__(self) -> str:
        return f"RedisLimiter({self.url!r}, prefix={self.prefix!r})"

    # -- decisions

    async def admit(self, key: str, names: tuple[str, ...], rates: tuple[Rate, ...],
                    now: float, cost: float, ban: BanRule | None) -> Decision:
        end = "|" + key
        for name in names:
            if not name.endswith(end):
                raise ValueError(f"a slot name must end with '|' and its key ({key!r}), "
                                 f"got {name!r}")
        if self.available or self._probe():
            tag = self.prefix + "{" + _tag(key) + "}"
            keys = [tag + _part(name) for name in names]
            if ban is not None:
                keys.append(tag + _part("ban|" + key))
                keys.append(tag + _part("viol|" + key))
            reply = await self._call(b"a", keys, now, cost, rates, ban)
            if reply is not None:
                return _decision(reply)
        if not self.fail_open:
            return UNAVAILABLE
        return self._local().admit(key, names, _divided(rates, self.nodes), now, cost, ban)

    async def peek(self, names: tuple[str, ...], rates: tuple[Rate, ...], now: float,
                   cost: float) -> Decision:
        """Would a call of ``cost`` be allowed? Writes nothing."""
        if self.available or self._probe():
            reply = await self._call(b"p", self._keys(names), now, cost, rates, None)
            if reply is not None:
                return _decision(reply)
        if not self.fail_open:
            return UNAVAILABLE
        return self._local().peek(names, _divided(rates, self.nodes), now, cost)

    async def charge(self, names: tuple[str, ...], rates: tuple[Rate, ...], now: float,
                     cost: float) -> None:
        """Count ``cost`` whatever the limits say, or give it back (a negative cost)."""
        if self.available or self._probe():
            reply = await self._call(b"c", self._keys(names), now, cost, rates, None)
            if reply is not None:
                return
        if self.fail_open:
            self._local().charge(names, _divided(rates, self.nodes), now, cost)

    # -- nodes and health

    async def heartbeat(self) -> None:
        """Say this node is alive and count the live ones (call it every ~5 s). A
        heartbeat tries Redis even while it is away, so it is a probe too."""
        now = self.clock()
        key = self.prefix + "nodes"
        probing = not self.available
        client, places = self._bound()
        await places.acquire()
        try:
            if self.cluster:
                async with client.pipeline(transaction=False) as pipe:
                    pipe.zadd(key, {self.node_id: now})
                    pipe.zremrangebyscore(key, "-inf", f"({now - NODE_TTL!r}")
                    pipe.zcard(key)
                    pipe.expire(key, int(NODE_TTL * 4))
                    replies = await pipe.execute()
            else:
                replies = await client.pipeline([
                    command(b"ZADD", key, repr(now), self.node_id),
                    command(b"ZREMRANGEBYSCORE", key, b"-inf", f"({now - NODE_TTL!r}"),
                    command(b"ZCARD", key),
                    command(b"EXPIRE", key, int(NODE_TTL * 4))])
                for reply in replies:
                    if isinstance(reply, BaseException):
                        raise reply
        except _ERRORS as error:
            self._failed(error)
            return
        finally:
            places.release()
        self.nodes = max(1, int(replies[2]))
        self._answered(probing)

    async def close(self) -> None:
        client, loop = self._client, self._loop
        self._client = self._loop = None
        if client is not None and loop is asyncio.get_running_loop():
            await client.aclose()  # (another loop's connections go with that loop)

    # -- inside

    def _bound(self) -> tuple[Any, asyncio.Semaphore]:
        """This event loop's client and its places for calls in flight."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop or self._fork != _forks:
            # Another loop (a reload's, a test's) or a forked child: the old client's
            # connections belong to the other loop or to the parent; make our own.
            if self.cluster:
                self._client = RedisCluster.from_url(self._base, **self._settings)
                self._script = self._client.register_script(LUA)
            else:
                self._client = RespClient(**self._server, timeout=self.timeout,
                                          connect_timeout=self._connect_timeout,
                                          ssl=self._tls_context
                                          if self._tls_files is not None else None)
            self._places = asyncio.Semaphore(self.max_connections)
            self._loop, self._fork = loop, _forks
        return self._client, self._places

    def _keys(self, names: tuple[str, ...]) -> list[str]:
        """The TAT keys of ``names`` (all ending with ``|<key>``: one tag)."""
        if not names:
            return []
        tag = self.prefix + "{" + _tag(names[0]) + "}"
        return [tag + _part(name) for name in names]

    def _now(self, now: float) -> str:
        return "" if self._server_time else repr(float(now))

    def _local(self) -> LocalLimiter:
        if self._fallback is None:
            self._fallback = LocalLimiter()
        return self._fallback

    def _probe(self) -> bool:
        """While Redis is away: whether this call is the one that tries it again (at most
        one a second, so an outage costs no timeout per call)."""
        now = self.clock()
        if now < self._retry_at:
            return False
        self._retry_at = now + RETRY
        return True

    def _tls_context(self) -> ssl.SSLContext:
        """As redis-py makes it for rediss://: the server's certificate verified and its
        name checked, against ``ssl_ca_certs`` (else the system's CAs); ``ssl_certfile``
        and ``ssl_keyfile`` are ours. Made at the first connection (its errors, OSErrors,
        are an unreachable Redis), then kept."""
        if self._tls is None:
            files = self._tls_files or {}
            context = ssl.create_default_context()
            if files.get("ssl_certfile") or files.get("ssl_keyfile"):
                context.load_cert_chain(files.get("ssl_certfile"), files.get("ssl_keyfile"))
            if files.get("ssl_ca_certs"):
                context.load_verify_locations(cafile=files["ssl_ca_certs"])
            self._tls = context
        return self._tls

    def _payload(self, op: bytes, keys: list[str], now: float, cost: float,
                 rates: tuple[Rate, ...], ban: BanRule | None) -> bytes:
        """The script's EVALSHA as one bytes object, from parts mostly encoded once."""
        lead = (self._leads[op] if self._server_time
                else bulk(op) + bulk(repr(float(now)).encode()) + bulk(self._slack))
        count, blob = _rate_blob(rates)
        parts = [_SCRIPT.head(len(keys), count + (3 if ban is not None else 0))]
        for key in keys:
            data = key.encode("utf-8", "surrogatepass")
            parts.append(b"$%d\r\n%b\r\n" % (len(data), data))  # bulk(data), inlined
        parts += (lead, _cost_blob(cost), blob)
        if ban is not None:
            parts.append(_ban_blob(ban))
        return b"".join(parts)

    async def _call(self, op: bytes, keys: list[str], now: float, cost: float,
                    rates: tuple[Rate, ...], ban: BanRule | None) -> bytes | int | None:
        """The script's reply, or None: Redis failed (and is now marked away), or every
        place stayed busy for ``timeout`` (a burst: this call only is decided without
        Redis)."""
        client, places = self._bound()
        if places.locked():
            try:
                async with asyncio.timeout(self.timeout):
                    await places.acquire()
            except TimeoutError:
                return None
        else:
            await places.acquire()  # free: returns at once
        probing = not self.available
        try:
            if self.cluster:
                args = [op, self._now(now), self._slack, repr(float(cost)), *_rate_args(rates)]
                if ban is not None:
                    args += _ban_args(ban)
                reply = await self._script(keys=keys, args=args)
            else:
                reply = await client.call(self._payload(op, keys, now, cost, rates, ban),
                                          _SCRIPT.load)
        except _ERRORS as error:
            self._failed(error)
            return None
        finally:
            places.release()
        self._answered(probing)
        return reply

    def _failed(self, error: BaseException) -> None:
        self._retry_at = self.clock() + RETRY
        if self.available:
            self.available = False
            detail = str(error) or type(error).__name__
            if self._password:
                detail = detail.replace(self._password, "***")
            log.warning("rate limits: Redis at %s is unreachable (%s); %s until it is back",
                        self.url, detail,
                        f"limiting on this node at 1/{self.nodes} of each limit"
                        if self.fail_open else "refusing limited calls with 503")

    def _answered(self, probing: bool) -> None:
        # Only a probe brings Redis back: a call that started before the outage and
        # answered after it was noticed says nothing about now.
        if probing and not self.available:
            self.available = True
            log.info("rate limits: Redis at %s answers again; limits are cluster-wide",
                     self.url)


def _decision(reply: bytes) -> Decision:
    allowed, remaining, reset, retry_after, tightest, banned = reply.split()
    return Decision(allowed == b"1", int(remaining), float(reset), float(retry_after),
                    int(tightest), banned == b"1")


@functools.lru_cache(maxsize=1024)
def _rate_args(rates: tuple[Rate, ...]) -> tuple[bytes, ...]:
    """Rates as the script reads them, encoded once (rates are compiled at load: a small,
    stable set)."""
    return (str(len(rates)).encode(),
            *(repr(float(value)).encode() for rate in rates
              for value in (rate.count, rate.period, rate.burst)))


@functools.lru_cache(maxsize=256)
def _ban_args(ban: BanRule) -> tuple[bytes, ...]:
    return tuple(repr(float(value)).encode() for value in (ban.after, ban.within, ban.duration))


@functools.lru_cache(maxsize=1024)
def _rate_blob(rates: tuple[Rate, ...]) -> tuple[int, bytes]:
    """The script's arguments from the cost on (cost, n, the rates), as RESP: their count
    and their bytes; the cost's, ``_cost_blob``, is put in front."""
    values = _rate_args(rates)
    return 4 + len(values), b"".join(map(bulk, values))


@functools.lru_cache(maxsize=256)
def _ban_blob(ban: BanRule) -> bytes:
    return b"".join(map(bulk, _ban_args(ban)))


@functools.lru_cache(maxsize=256)
def _cost_blob(cost: float) -> bytes:
    return bulk(repr(float(cost)).encode())


@functools.lru_cache(maxsize=1024)
def _divided(rates: tuple[Rate, ...], nodes: int) -> tuple[Rate, ...]:
    """This node's share of each rate while it limits alone."""
    if nodes <= 1:
        return rates
    return tuple(Rate(max(1, rate.count // nodes), rate.period, max(1, rate.burst // nodes))
                 for rate in rates)


def _digest(text: str) -> str:
    return "#" + hashlib.blake2b(text.encode("utf-8", "surrogatepass"),
                                 digest_size=16).hexdigest()


def _tag(key: str) -> str:
    """The cluster hash tag of ``key`` (or of a slot name ending with ``|<key>``: the same
    one): the text after the last ``|``, no braces, bounded and never empty."""
    tail = key.rpartition("|")[2]
    if not tail or len(tail) > LONG:
        return _digest(tail)
    if "{" in tail or "}" in tail:
        return tail.replace("{", "(").replace("}", ")")
    return tail


def _part(text: str) -> str:
    """A key's part after the tag: as it is, or its digest when long."""
    return text if len(text) <= LONG else _digest(text)


def _server(url: str, shown: str, files: dict[str, Any]
            ) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """What ``RespClient`` needs of a redis:// or rediss:// URL, and for rediss:// its
    ssl_* options (``files``; None for redis://), checked now: a bad URL fails when the
    limiter is made, not at a call."""
    parts = urlsplit(url)
    tls = parts.scheme.lower() == "rediss"
    if files and not tls:
        raise ValueError(f"{shown}: {', '.join(files)} need TLS; write rediss://")
    try:
        port = parts.port or 6379
    except ValueError:
        raise ValueError(f"{shown}: the port is not a number") from None
    db = parts.path.strip("/") or "0"
    if not (db.isdigit() and db.isascii()):
        raise ValueError(f"{shown}: the path is the database number "
                         f"(redis://host:port/0), not {parts.path!r}")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    return ({"host": parts.hostname or "localhost", "port": port, "db": int(db),
             "username": username, "password": password}, files if tls else None)
