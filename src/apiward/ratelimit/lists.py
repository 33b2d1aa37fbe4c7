"""Manual block and allow lists (IP addresses, CIDR networks, identities) in the store.

``apiward block add|remove|list`` writes them; every gateway reading the same store
picks a change up at its next refresh (seconds). A blocked client is refused (403); an
allowed one is never rate limited nor banned. Entries may expire (``--for 1h``).
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from apiward.state.store import Store

PREFIX = "list:"
KINDS = ("block", "allow")
_Net = ipaddress.IPv4Network | ipaddress.IPv6Network


class ListError(ValueError):
    """A target that is neither an address, a network nor an identity."""


def parse_target(target: str) -> str:
    """The canonical form of an entry's target: ``ip:203.0.113.7``, ``net:10.0.0.0/8``
    or ``id:key:alice`` (an identity as events print it: ``key:NAME``, ``jwt:ISS#SUB``,
    ``cert:FINGERPRINT``)."""
    text = target.strip()
    if text.startswith(("key:", "jwt:", "cert:")) and len(text.split(":", 1)[1]) > 0:
        return "id:" + text
    try:
        if "/" in text:
            net = ipaddress.ip_network(text, strict=False)
            if net.num_addresses == 1:
                return "ip:" + str(net.network_address)
            return "net:" + str(net)
        return "ip:" + str(ipaddress.ip_address(text))
    except ValueError:
        raise ListError(f"{target!r} is not an IP address, a CIDR network (10.0.0.0/8) or "
                        "an identity (key:NAME, jwt:ISSUER#SUBJECT, cert:FINGERPRINT)") from None


@dataclass(frozen=True, slots=True)
class Entry:
    kind: str  # block | allow
    target: str  # canonical, see parse_target
    reason: str
    added: float
    expires: float | None

    def public(self) -> dict[str, Any]:
        return {"list": self.kind, "target": self.target.split(":", 1)[1],
                "reason": self.reason, "added": self.added, "expires": self.expires}


async def add(store: Store, kind: str, target: str, reason: str = "",
              ttl: float | None = None, now: float | None = None) -> Entry:
    now = time.time() if now is None else now
    canonical = parse_target(target)
    entry = Entry(kind, canonical, reason, now, now + ttl if ttl else None)
    value = orjson.dumps({"reason": reason, "added": now, "expires": entry.expires})
    await store.set(f"{PREFIX}{kind}:{canonical}", value, ttl)
    return entry


async def remove(store: Store, kind: str, target: str) -> bool:
    return await store.delete(f"{PREFIX}{kind}:{parse_target(target)}")


async def entries(store: Store) -> list[Entry]:
    found = []
    for key, value in await store.scan(PREFIX):
        kind, _, target = key[len(PREFIX):].partition(":")
        if kind not in KINDS:
            continue
        try:
            data = orjson.loads(value)
        except orjson.JSONDecodeError:
            continue
        found.append(Entry(kind, target, str(data.get("reason", "")),
                           float(data.get("added", 0)), data.get("expires")))
    return found


@dataclass(slots=True)
class Lists:
    """Both lists compiled for look-ups by address and identity; a cache of verdicts per
    address (bounded) keeps a known client to one dict look-up."""

    ips: dict[str, str] = field(default_factory=dict)  # address -> kind
    nets: tuple[tuple[_Net, str], ...] = ()
    ids: dict[str, str] = field(default_factory=dict)  # identity -> kind
    _by_ip: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def compile(cls, found: list[Entry]) -> Lists:
        lists = cls()
        nets = []
        for entry in sorted(found, key=lambda e: e.kind == "block"):  # block wins
            kind, _, value = entry.target.partition(":")
            if kind == "ip":
                lists.ips[value] = entry.kind
            elif kind == "net":
                nets.append((ipaddress.ip_network(value), entry.kind))
            elif kind == "id":
                lists.ids[value] = entry.kind
        nets.sort(key=lambda item: item[1] != "block")  # a block network is tried first
        lists.nets = tuple(nets)
        return lists

    def __bool__(self) -> bool:
        return bool(self.ips or self.nets or self.ids)

    def of_ip(self, ip: str) -> str | None:
        """``block``, ``allow`` or None for a client address."""
        cached = self._by_ip.get(ip, 0)
        if cached != 0:
            return cached  # type: ignore[return-value]
        found = self.ips.get(ip)
        if found != "block" and self.nets:
            try:
                address = ipaddress.ip_address(ip)
            except ValueError:
                address = None
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
                address = address.ipv4_mapped
            if address is not None:
                for net, kind in self.nets:
                    if address in net:
                        found = kind if found is None or kind == "block" else found
                        break
        if len(self._by_ip) >= 65536:
            self._by_ip.clear()
        self._by_ip[ip] = found
        return found


class ListTable:
    """The lists as the gateway holds them: loaded at start, re-read every few seconds."""

    __slots__ = ("lists", "store")

    def __init__(self, store: Store, lists: Lists) -> None:
        self.store = store
        self.lists = lists

    @classmethod
    async def load(cls, store: Store) -> ListTable:
        return cls(store, Lists.compile(await entries(store)))

    async def refresh(self) -> None:
        self.lists = Lists.compile(await entries(self.store))
