"""Who the client is: the socket peer, or — only behind a trusted proxy — what it says.

An ``X-Forwarded-For`` or ``Forwarded`` header from anyone else is ignored and replaced,
so nobody can choose the address that limits and events see.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable

_FOR_RE = re.compile(r'(?:^|[;,\s])for\s*=\s*("?)([^",;]+)\1', re.IGNORECASE)


def _clean(token: str) -> str | None:
    """An address from an XFF item or a ``for=`` value, or None if it isn't one."""
    token = token.strip()
    if token.startswith("["):  # [v6]:port
        token = token[1 : token.find("]")] if "]" in token else ""
    elif token.count(":") == 1:  # v4:port
        token = token.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(token))
    except ValueError:
        return None


def forwarded_chain(xff: list[str], forwarded: list[str]) -> list[str]:
    """Addresses the proxies before us claim, nearest last (XFF wins over Forwarded)."""
    if xff:
        items = [item for value in xff for item in value.split(",")]
    else:
        items = [m.group(2) for value in forwarded for m in _FOR_RE.finditer(value)]
    return [ip for ip in (_clean(i) for i in items) if ip is not None]


def client_ip(peer: str, chain: list[str], is_trusted: Callable[[str], bool]) -> str:
    """Walk right to left past trusted proxies; the first other address is the client."""
    if not is_trusted(peer):
        return peer
    for ip in reversed(chain):
        if not is_trusted(ip):
            return ip
    return chain[0] if chain else peer
