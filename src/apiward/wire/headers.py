"""A read-only, case-insensitive multi-dict over the raw header fields of a message."""

from __future__ import annotations

from collections.abc import Iterator


class Headers:
    """Header fields as received, duplicates and order kept.

    ``fields`` is a list of ``(lower_name, name, value)`` byte triples; names are
    lower-cased once by the parser, so look-ups are plain comparisons.
    """

    __slots__ = ("fields",)

    def __init__(self, fields: list[tuple[bytes, bytes, bytes]]) -> None:
        self.fields = fields

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name`` (any case), decoded as latin-1."""
        key = name.lower().encode("latin-1")
        for lname, _, value in self.fields:
            if lname == key:
                return value.decode("latin-1")
        return default

    def getall(self, name: str) -> list[str]:
        """Every value of ``name`` in order."""
        key = name.lower().encode("latin-1")
        return [value.decode("latin-1") for lname, _, value in self.fields if lname == key]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = name.lower().encode("latin-1")
        return any(lname == key for lname, _, _ in self.fields)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for _, name, value in self.fields:
            yield name.decode("latin-1"), value.decode("latin-1")

    def __len__(self) -> int:
        return len(self.fields)

    def __repr__(self) -> str:
        return f"Headers({list(self)!r})"
