"""ipfilter: allow and deny lists of IP addresses and CIDR networks.

Deny wins over allow; with an allow list, any address outside it is refused. Verdicts are
cached per client address, so a known client costs one dict look-up.
"""

from __future__ import annotations

import ipaddress

from pydantic import Field

from apiward.config.units import Network
from apiward.pipeline.check import NO_DEPS, Check, CheckConfig, Deps, Mode
from apiward.pipeline.verdict import ALLOW, Verdict, deny

NAME = "ipfilter"
_CACHE_LIMIT = 65536



class Config(CheckConfig):
    allow: list[Network] = Field(default_factory=list)
    deny: list[Network] = Field(default_factory=list)


def build(config: Config, mode: Mode, deps: Deps = NO_DEPS) -> Check:
    allow = tuple(config.allow)
    denied = tuple(config.deny)
    refusal = deny(403, "ip_denied", "requests from this address are not allowed")
    cache: dict[str, Verdict] = {}

    def judge(client_ip: str) -> Verdict:
        try:
            address = ipaddress.ip_address(client_ip)
        except ValueError:
            return refusal
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        if any(address in net for net in denied):
            return refusal
        if allow and not any(address in net for net in allow):
            return refusal
        return ALLOW

    def run(request, context) -> Verdict:
        verdict = cache.get(request.client_ip)
        if verdict is None:
            if len(cache) >= _CACHE_LIMIT:
                cache.clear()
            verdict = cache[request.client_ip] = judge(request.client_ip)
        return verdict

    return Check(NAME, mode, run)
