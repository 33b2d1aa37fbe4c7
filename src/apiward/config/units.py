"""Human sizes ("1MiB", "16 KB", 1024), durations ("10s", "250ms", "1m30s", 5), networks."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
    "ki": 1024, "kib": 1024, "mi": 1024**2, "mib": 1024**2, "gi": 1024**3, "gib": 1024**3,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")


def parse_size(value: Any) -> int:
    """Bytes from an int or a string like ``1MiB``; raises ValueError with the expected form."""
    if isinstance(value, bool):
        raise ValueError(f'expected a size like "1MiB", got {value!r}')
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"expected a size >= 0, got {value}")
        return value
    if isinstance(value, str):
        match = _SIZE_RE.match(value)
        if match and match.group(2).lower() in _SIZE_UNITS:
            return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])
    raise ValueError(f'expected a size like "1MiB", got {value!r}')


def parse_duration(value: Any) -> float:
    """Seconds from a number or a string like ``10s``, ``250ms``, ``1m30s``."""
    if isinstance(value, bool):
        raise ValueError(f'expected a duration like "10s", got {value!r}')
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"expected a duration >= 0, got {value}")
        return float(value)
    if isinstance(value, str):
        text = value.strip().replace(" ", "")
        if re.fullmatch(r"\d+(?:\.\d+)?", text):  # a bare number of seconds, as for ints
            return float(text)
        parts = _DURATION_RE.findall(text)
        if parts and "".join(n + u for n, u in parts) == text:
            return sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
    raise ValueError(f'expected a duration like "10s", got {value!r}')


Size = Annotated[int, BeforeValidator(parse_size), PlainSerializer(int)]
Duration = Annotated[float, BeforeValidator(parse_duration), PlainSerializer(float)]


def _network_text(value: Any) -> Any:
    """Networks are written as text ("10.0.0.0/8", "::1"); a bare number is a mistake."""
    if not isinstance(value, str):
        raise ValueError(f'expected an address or network like "10.0.0.0/8", got {value!r}')
    return value


Network = Annotated[
    ipaddress.IPv4Network | ipaddress.IPv6Network, BeforeValidator(_network_text)
]
