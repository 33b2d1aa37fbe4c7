"""An OpenAPI document as loaded: the root file, every file it references, and $ref
resolution across them. Validated once at load (openapi-spec-validator)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class SpecDocument:
    """``documents`` holds every file reachable by ``$ref`` (the root included), by file
    URI; ``version`` is "3.0" or "3.1"."""

    path: Path
    uri: str
    version: str
    root: dict
    documents: dict[str, Any] = field(default_factory=dict)

    def resolve(self, node: Any, base: str) -> tuple[Any, str]:
        """Follow ``$ref`` chains from ``node`` (found in the document at ``base``) to the
        node they name; returns it with the URI of the document holding it."""
        raise NotImplementedError


def load_spec(path: Path) -> SpecDocument:
    """Parse, load every referenced file, validate; SpecError with file, pointer, reason."""
    raise NotImplementedError
