"""ratelimit: per-client limits per endpoint, bans, and manual block/allow lists.

Each rule names whom it counts (``key``: the identity by default, the client address or
its network, an API key, a JWT claim, a header, a path parameter, or several at once),
which calls (``match``: all, ``METHOD /template``, ``/template``, ``tag:NAME``), and one or
more limits (``100/s``, ``5/min``, ``10000/day``, each with a burst). The algorithm is
GCRA (``ratelimit/gcra.py``: smooth, exact, one timestamp per key and limit).

It runs last among the head checks, so a call another check refused never counts, and a
call refused in the body stage is given back; a call this check refuses counts neither.
A rule with ``count_status`` counts only calls answered with one of those statuses (for
credential stuffing: 401, 403), decided once the answer is known; until then it refuses
only a client already over it. A limited call gets 429 with ``Retry-After`` and the IETF
``RateLimit-Policy`` / ``RateLimit`` fields; allowed calls carry them too (``headers``).

State: ``store: memory://`` is the node's shared memory (exact across ``--workers``);
``redis://…`` makes limits cluster-wide, one atomic round trip per decision, with
``on_store_failure`` saying what happens while Redis is away.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from apiward.config.units import Duration
from apiward.errors import ConfigError
from apiward.pipeline.check import NO_DEPS, Check, CheckConfig, Deps, Mode, store_table
from apiward.pipeline.verdict import ALLOW, Verdict, deny
from apiward.ratelimit.gcra import Decision, Rate, parse_rate, seconds

if TYPE_CHECKING:  # the limiter (shared memory, locks) loads only for an API that limits
    from apiward.ratelimit.local import LocalLimiter

NAME = "ratelimit"
log = logging.getLogger("apiward.ratelimit")

_KEY_PART = re.compile(r"^(identity|ip|api_key)$|^ip/(\d{1,3})(?:/(\d{1,3}))?$"
                       r"|^(jwt|header|path):(.+)$")
_RULE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_TEMPLATE_PARAM = re.compile(r"\{([^{}/]+)\}")
LONG_KEY = 96  # key values longer than this are hashed: bounded store keys


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LimitSpec(Strict):
    rate: str
    burst: int | None = Field(None, ge=1)

    @field_validator("rate")
    @classmethod
    def _rate(cls, value: str) -> str:
        parse_rate(value)  # ValueError in plain words, located by the loader
        return value

    def compile(self) -> Rate:
        return parse_rate(self.rate, self.burst)


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class Rule(Strict):
    name: str | None = None
    key: list[str] = Field(default_factory=lambda: ["identity"])
    match: list[str] = Field(default_factory=lambda: ["*"])
    limits: list[LimitSpec] = Field(min_length=1)
    cost: int | None = Field(None, ge=1)
    count_status: list[int] | None = None

    @field_validator("key", "match", mode="before")
    @classmethod
    def _listed(cls, value: Any) -> Any:
        return _as_list(value)

    @field_validator("limits", mode="before")
    @classmethod
    def _limits(cls, value: Any) -> Any:
        value = _as_list(value)
        if isinstance(value, list):
            return [{"rate": item} if isinstance(item, str) else item for item in value]
        return value

    @field_validator("key")
    @classmethod
    def _key(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("a key names at least one part")
        for part in value:
            found = _KEY_PART.match(part)
            if found is None:
                raise ValueError(
                    f"unknown key part {part!r}; expected identity, ip, ip/24 (an IPv4 "
                    "prefix; IPv6 then /64), ip/64 (an IPv6 prefix), ip/24/56 (both), "
                    "api_key, jwt:<claim>, header:<Name> or path:<param>")
            if found.group(2) and _prefixes(found) is None:
                raise ValueError(f"{part!r}: prefixes are at most /32 (IPv4) and /128 "
                                 "(IPv6), written ip/<IPv4>/<IPv6>")
        return value

    @field_validator("match")
    @classmethod
    def _match(cls, value: list[str]) -> list[str]:
        for item in value:
            method, _, path = item.strip().rpartition(" ")
            if item == "*" or (item.startswith("tag:") and len(item) > 4):
                continue
            if not path.startswith("/") or (method and not method.isalpha()):
                raise ValueError(f'unknown match {item!r}; expected "*", "METHOD /template", '
                                 '"/template" or "tag:NAME"')
        return value

    @field_validator("count_status")
    @classmethod
    def _statuses(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (not value or any(not 100 <= s <= 599 for s in value)):
            raise ValueError("count_status lists HTTP statuses (100-599), e.g. [401, 403]")
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not _RULE_NAME.match(value):
            raise ValueError(f"a rule name is 1-64 of A-Z a-z 0-9 _ . -, got {value!r}")
        return value


class Ban(Strict):
    after: int = Field(100, ge=1, description="refused calls, each within `within` of the last")
    within: Duration = 60.0
    duration: Duration = 600.0


class Config(CheckConfig):
    rules: list[Rule] = Field(min_length=1)
    store: str = "memory://"
    on_store_failure: Literal["fail_open", "fail_closed"] = "fail_open"
    headers: bool = True
    ban: Ban | None = None
    lists: str | None = None  # the store `apiward block` writes to; None: no lists

    @model_validator(mode="after")
    def _names(self) -> Config:
        names = [rule.name or f"rule{i + 1}" for i, rule in enumerate(self.rules)]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"rule names must be unique; repeated: {', '.join(dupes)}")
        return self


# -- compiled rules ----------------------------------------------------------------------

KeyPart = Callable[[Any, Any], "str | None"]


@dataclass(frozen=True, slots=True)
class CompiledRule:
    name: str
    rates: tuple[Rate, ...]
    parts: tuple[KeyPart, ...]
    cost: int | None
    count_status: frozenset[int] | None
    policy: str  # this rule's RateLimit-Policy member
    everything: bool
    tags: frozenset[str]
    endpoints: tuple[tuple[str | None, str, Any], ...]  # (method, template, path regex)
    slot_prefix: str
    # Per limit: b'RateLimit-Policy: …\r\nRateLimit: "name";r=', the rest per call.
    header_lines: tuple[bytes, ...]

    def key(self, request: Any, context: Any) -> str:
        """The limited client's key value; a part the call lacks is its address."""
        parts = self.parts
        if len(parts) == 1:
            return parts[0](request, context) or "ip:" + request.client_ip
        return "&".join(part(request, context) or "ip:" + request.client_ip for part in parts)

    def names(self, key: str) -> tuple[str, ...]:
        prefix = self.slot_prefix
        if len(self.rates) == 1:
            return (prefix + "0|" + key,)
        return tuple(f"{prefix}{i}|{key}" for i in range(len(self.rates)))

    def applies(self, method: str, path: str, endpoint: Any) -> bool:
        if self.everything:
            return True
        if endpoint is not None:
            if self.tags and not self.tags.isdisjoint(endpoint.tags):
                return True
            return any((m is None or m == method) and template == endpoint.template
                       for m, template, _ in self.endpoints)
        return any((m is None or m == method) and regex.match(path) is not None
                   for m, _, regex in self.endpoints)


def _compile_rule(index: int, rule: Rule, api: str) -> CompiledRule:
    name = rule.name or f"rule{index + 1}"
    rates = tuple(limit.compile() for limit in rule.limits)
    endpoints = []
    tags = set()
    everything = False
    for item in rule.match:
        if item == "*":
            everything = True
        elif item.startswith("tag:"):
            tags.add(item[4:])
        else:
            method, _, template = item.strip().rpartition(" ")
            endpoints.append((method.upper() or None, template, _template_regex(template)))
    policy = ", ".join(f"{_member_name(name, len(rates), i)};q={rate.count};w={rate.window}"
                       for i, rate in enumerate(rates))
    return CompiledRule(
        name=name, rates=rates,
        parts=tuple(_key_part(part, tuple(endpoints)) for part in rule.key),
        cost=rule.cost, count_status=frozenset(rule.count_status) if rule.count_status else None,
        policy=policy, everything=everything, tags=frozenset(tags),
        endpoints=tuple(endpoints), slot_prefix=f"rl|{api}|{name}|",
        header_lines=tuple(f"RateLimit-Policy: {policy}\r\nRateLimit: "
                           f"{_member_name(name, len(rates), i)};r=".encode()
                           for i in range(len(rates))))


def _template_regex(template: str) -> Any:
    """``/accounts/{id}/orders`` -> a regex of whole segments, a group per parameter."""
    pattern, last = [], 0
    for found in _TEMPLATE_PARAM.finditer(template):
        pattern.append(re.escape(template[last:found.start()]))
        pattern.append(f"(?P<{_group(found.group(1))}>[^/]+)")
        last = found.end()
    pattern.append(re.escape(template[last:]))
    return re.compile("".join(pattern) + r"\Z")


def _group(param: str) -> str:
    return "p_" + hashlib.blake2b(param.encode(), digest_size=6).hexdigest()


def _bounded(kind: str, value: str) -> str:
    """A key value of the call's own making (a header, a claim, a path segment): long
    ones are hashed so a store key stays small whatever the client sends."""
    if len(value) > LONG_KEY:
        return kind + "#" + hashlib.blake2b(value.encode("utf-8", "surrogatepass"),
                                            digest_size=16).hexdigest()
    return kind + value


def _key_part(part: str, endpoints: tuple) -> KeyPart:
    found = _KEY_PART.match(part)
    assert found is not None
    if found.group(1) == "ip":
        return lambda request, context: "ip:" + request.client_ip
    if found.group(1) == "identity":
        def identity(request: Any, context: Any) -> str | None:
            who = context.identity
            if who is None or who.kind == "anonymous":
                return None
            return _bounded("id:", str(who))
        return identity
    if found.group(1) == "api_key":
        def api_key(request: Any, context: Any) -> str | None:
            who = context.identity
            return "key:" + who.id if who is not None and who.kind == "key" else None
        return api_key
    if found.group(2):
        return _network_part(*_prefixes(found))  # type: ignore[misc]
    kind, name = found.group(4), found.group(5)
    if kind == "header":
        label = f"h.{name.lower()}:"

        def header(request: Any, context: Any) -> str | None:
            value = request.headers.get(name)
            return _bounded(label, value) if value else None
        return header
    if kind == "jwt":
        label = f"jwt.{name}:"

        def claim(request: Any, context: Any) -> str | None:
            who = context.identity
            claims = who.claims if who is not None else None
            value = claims.get(name) if claims else None
            return _bounded(label, str(value)) if value is not None else None
        return claim
    label = f"p.{name}:"
    group = _group(name)

    def path(request: Any, context: Any) -> str | None:
        value = context.path_params.get(name) if context.endpoint is not None else None
        if value is None:  # no spec (or an unknown path): the rule's own template
            for _, _, regex in endpoints:
                matched = regex.match(request.path)
                if matched is not None and group in matched.groupdict():
                    value = matched.group(group)
                    break
        return _bounded(label, value) if value else None
    return path


def _prefixes(found: re.Match[str]) -> tuple[int, int] | None:
    """(IPv4, IPv6) prefix lengths of ``ip/N`` or ``ip/N/M``: one number up to 32 is an
    IPv4 prefix (IPv6 /64: one customer's network), a larger one an IPv6 prefix (IPv4
    whole addresses); None when out of range."""
    first, second = int(found.group(2)), found.group(3)
    if second is not None:
        v4, v6 = first, int(second)
    elif first <= 32:
        v4, v6 = first, 64
    else:
        v4, v6 = 32, first
    return (v4, v6) if v4 <= 32 and v6 <= 128 else None


def _network_part(v4: int, v6: int) -> KeyPart:
    cache: dict[str, str] = {}

    def network(request: Any, context: Any) -> str:
        ip = request.client_ip
        found = cache.get(ip)
        if found is None:
            try:
                address = ipaddress.ip_address(ip)
                if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
                    address = address.ipv4_mapped
                prefix = v4 if address.version == 4 else v6
                found = "net:" + str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))
            except ValueError:
                found = "ip:" + ip
            if len(cache) >= 65536:
                cache.clear()
            cache[ip] = found
        return found
    return network


# -- the check ---------------------------------------------------------------------------

@dataclass(slots=True)
class Counted:
    """One rule's part in a call: its key, slots and cost; ``charged`` when admitted."""

    rule: CompiledRule
    key: str
    names: tuple[str, ...]
    cost: int
    charged: bool


UNAVAILABLE_VERDICT = deny(503, "rate_limit_unavailable",
                           "the rate-limit store cannot be reached; try again shortly",
                           headers=(("Retry-After", "1"),))


def build(config: Config, mode: Mode, deps: Deps = NO_DEPS) -> Check:
    rules = tuple(_compile_rule(i, rule, deps.api_name) for i, rule in enumerate(config.rules))
    from apiward.ratelimit.local import BanRule, LocalLimiter

    ban = (BanRule(config.ban.after, config.ban.within, config.ban.duration)
           if config.ban is not None else None)
    local = LocalLimiter(deps.table)
    remote = _remote(config, deps, local)
    lists = _lists(config, deps)
    headers = config.headers
    by_operation: dict[int, tuple[Any, tuple[CompiledRule, ...]]] = {}
    unavailable = None
    if remote is not None:
        from apiward.ratelimit.redis_limiter import UNAVAILABLE as unavailable

    every_call = all(rule.everything for rule in rules)
    by_status = any(rule.count_status is not None for rule in rules)

    def rules_for(request: Any, context: Any) -> tuple[CompiledRule, ...]:
        if every_call:
            return rules
        endpoint = context.endpoint
        if endpoint is not None:
            known = by_operation.get(id(endpoint))
            if known is not None and known[0] is endpoint:
                return known[1]
            found = tuple(r for r in rules if r.applies(request.method, "", endpoint))
            by_operation[id(endpoint)] = (endpoint, found)
            return found
        return tuple(r for r in rules if r.applies(request.method, request.path, None))

    def plan(request: Any, context: Any) -> list[Counted] | None:
        applying = rules_for(request, context)
        if not applying:
            return None
        endpoint = context.endpoint
        counted = []
        for rule in applying:
            key = rule.key(request, context)
            cost = rule.cost or (_spec_cost(endpoint) if endpoint is not None else 1)
            counted.append(Counted(rule, key, rule.names(key), cost, False))
        return counted

    def listed(request: Any, context: Any) -> Verdict | None:
        """BLOCKED, ALLOW (on the allow list: not limited) or None."""
        current = lists.lists
        if not current:
            return None
        kind = current.of_ip(request.client_ip)
        who = context.identity
        if kind != "block" and who is not None and current.ids:
            kind = current.ids.get(str(who), kind)
        if kind == "block":
            return BLOCKED
        return ALLOW if kind == "allow" else None

    def run(request: Any, context: Any) -> Verdict:
        if lists is not None:
            found = listed(request, context)
            if found is not None:
                return found
        counted = plan(request, context)
        if counted is None:
            return ALLOW
        if remote is not None:
            context.pending = decide_remote(counted, context)
            return ALLOW
        now = context.now
        decisions = []
        for item in counted:
            rule = item.rule
            peek = rule.count_status is not None
            decision = local.admit(item.key, item.names, rule.rates, now, item.cost, ban, peek)
            item.charged = decision.allowed and not peek
            if not decision.allowed:
                _give_back_local(counted, now)
                return _refusal(rule, decision)
            decisions.append(decision)
        context.limited = counted
        if headers:
            context.response_lines = _lines(counted, decisions)
        return ALLOW

    async def decide_remote(counted: list[Counted], context: Any) -> Verdict:
        now = context.now
        assert remote is not None
        asks = [remote.peek(item.names, item.rule.rates, now, item.cost)
                if item.rule.count_status is not None else
                remote.admit(item.key, item.names, item.rule.rates, now, item.cost, ban)
                for item in counted]
        # One rule (the common case) is awaited as it is: gather would cost a task.
        decisions = [await asks[0]] if len(asks) == 1 else await asyncio.gather(*asks)
        refusal = None
        for item, decision in zip(counted, decisions, strict=True):
            item.charged = decision.allowed and item.rule.count_status is None
            if decision is unavailable:
                refusal = refusal or UNAVAILABLE_VERDICT
            elif not decision.allowed and refusal is None:
                refusal = _refusal(item.rule, decision)
        if refusal is not None:
            for item in counted:
                if item.charged:
                    item.charged = False
                    await remote.charge(item.names, item.rule.rates, now, -item.cost)
            return refusal
        context.limited = counted
        if headers:
            context.response_lines = _lines(counted, decisions)
        return ALLOW

    def _give_back_local(counted: list[Counted], now: float) -> None:
        for item in counted:
            if item.charged:
                item.charged = False
                local.charge(item.names, item.rule.rates, now, -item.cost)

    def after(request: Any, context: Any, status: int, refused_by: str | None) -> None:
        """Give back what a call refused further on was charged; count the calls whose
        cost is decided by their status."""
        if (refused_by is None and not by_status) or refused_by == NAME:
            return  # the common case: answered upstream, nothing decided by the status
        counted = context.limited
        if counted is None:
            if refused_by is None or context.pending is not None:
                return
            counted = plan(request, context)  # refused before this check ran
            if counted is None:
                return
        now = context.now
        for item in counted:
            rule = item.rule
            cost = 0
            if item.charged and refused_by is not None:
                cost = -item.cost
            elif rule.count_status is not None and status in rule.count_status:
                cost = item.cost
            if cost:
                if remote is not None:
                    _spawn(remote.charge(item.names, rule.rates, now, cost))
                else:
                    local.charge(item.names, rule.rates, now, cost)

    return Check(NAME, mode, run, run_after=after, defers=remote is not None)


BLOCKED = deny(403, "blocked", "this client is on the gateway's block list")


def _spec_cost(endpoint: Any) -> int:
    if endpoint is None:
        return 1
    cost = endpoint.extensions.get("x-apiward-cost") if endpoint.extensions else None
    return cost if isinstance(cost, int) and not isinstance(cost, bool) and cost >= 1 else 1


_REFUSALS: dict[tuple[int, int, int, bool], tuple[CompiledRule, Verdict]] = {}
REFUSAL_CACHE = 4096


def _refusal(rule: CompiledRule, decision: Decision) -> Verdict:
    """The 429 for a refused decision. In a flood refusals are the hot path, and one
    depends only on the rule, the limit and the whole seconds to wait: each is built once
    (a bounded cache)."""
    wait = seconds(decision.retry_after)
    key = (id(rule), decision.tightest, wait, decision.banned)  # (a rule hashes slowly)
    found = _REFUSALS.get(key)
    if found is not None and found[0] is rule:
        return found[1]
    if len(_REFUSALS) >= REFUSAL_CACHE:
        _REFUSALS.clear()
    verdict = _build_refusal(rule, decision.tightest, wait, decision.banned)
    _REFUSALS[key] = (rule, verdict)
    return verdict


def _build_refusal(rule: CompiledRule, tightest: int, wait: int, banned: bool) -> Verdict:
    if banned:
        return deny(429, "banned", f"this client keeps exceeding its rate limits and is "
                    f"refused for {wait} s", headers=(("Retry-After", str(wait)),))
    rate = rule.rates[tightest]
    member = _member(rule, tightest)
    return deny(429, "rate_limited",
                f"rate limit {rule.name!r} ({rate.count} per {_period(rate.period)}) exceeded;"
                f" retry in {wait} s",
                headers=(("Retry-After", str(wait)), ("RateLimit-Policy", rule.policy),
                         ("RateLimit", f"{member};r=0;t={wait}")))


def _period(period: float) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if period >= size and period % size == 0:
            count = int(period // size)
            return unit if count == 1 else f"{count} {unit}s"
    return "second" if period == 1 else f"{period:g} seconds"


def _member(rule: CompiledRule, index: int) -> str:
    return _member_name(rule.name, len(rule.rates), index)


def _member_name(name: str, count: int, index: int) -> str:
    """A policy's name in RateLimit fields: the rule's, with the limit's index when the
    rule has several limits."""
    return f'"{name}"' if count == 1 else f'"{name}-{index}"'


def _lines(counted: list[Counted], decisions: list[Decision]) -> bytes:
    """RateLimit-Policy and RateLimit for an allowed call: every counted rule's state, as
    its decision left it (one rule, the common case, from bytes built at load)."""
    if len(counted) == 1:
        last = decisions[0]
        reset = last.reset
        return counted[0].rule.header_lines[last.tightest] + b"%d;t=%d" % (
            last.remaining, (int(reset) + (reset % 1 > 1e-9)) if reset > 0 else 0)
    policies = ", ".join(item.rule.policy for item in counted)
    state = ", ".join(f"{_member(item.rule, d.tightest)};r={d.remaining};t={seconds(d.reset)}"
                      for item, d in zip(counted, decisions, strict=True))
    return f"RateLimit-Policy: {policies}\r\nRateLimit: {state}".encode()


_BACKGROUND: set[asyncio.Task[Any]] = set()


def _spawn(coroutine: Any) -> None:
    """A charge after the answer: nobody waits for it, but it must not vanish."""
    task = asyncio.get_running_loop().create_task(coroutine)
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)


def _remote(config: Config, deps: Deps, local: LocalLimiter) -> Any:
    store = config.store
    if store == "memory://":
        return None
    from apiward.state.store import is_redis_url

    where = f"apis ({deps.api_name}).checks.ratelimit.store"
    if not is_redis_url(store):
        raise ConfigError([f"{where}: expected memory:// (this node), redis://host:port/db, "
                           "rediss://… or redis+cluster://host:port"])
    from apiward.ratelimit.local import node_id
    from apiward.ratelimit.redis_limiter import RedisLimiter
    from apiward.state.store import redact_url

    try:
        remote = RedisLimiter(store, on_failure=config.on_store_failure, fallback=local,
                              node_id=node_id() if deps.table is None else None)
    except ValueError as error:
        raise ConfigError([f"{where} ({redact_url(store)}): {error}"]) from None
    deps.periodic.append(remote.heartbeat)
    deps.closers.append(remote.close)
    return remote


def _lists(config: Config, deps: Deps) -> Any:
    if config.lists is None:
        return None
    from apiward.ratelimit.lists import ListTable

    return store_table(config.lists, ListTable.load, deps, "ratelimit.lists")
