"""API keys: made and revoked in the state store, verified from an in-memory table.

A key reads ``aw_<id>_<secret>``: the id (12 letters and digits) finds the record, the
secret (32 random bytes from ``secrets``, URL-safe base64) proves possession. Only the
SHA-256 of the secret is stored. A slow password hash (bcrypt, scrypt, Argon2) exists to
make guessing a *low-entropy* password from its hash expensive; a 256-bit random secret
cannot be guessed at any speed, so one fast hash is as safe and keeps ``verify`` within a
couple of microseconds. Nothing else is mixed in: the id is public, and the secret alone
already makes every hash unique.

Store layout (values are JSON unless said):

- ``apikey:<id>`` → ``{"name", "id", "hash" (hex SHA-256 of the secret), "scopes" (sorted
  list), "created", "expires" (ISO 8601 UTC or null), "revoked" (ISO 8601 UTC or null)}``;
  records are kept after revocation, for the record.
- ``apikey-name:<name>`` → the id (ASCII) of the one unrevoked key with that name; removed
  on revocation, so the name can be used again.

The gateway side is ``KeyTable``: every record loaded into a dict at start and reloaded by
``refresh`` every few seconds (a revocation made by ``apiward keys`` in another process
takes effect at the next refresh); ``verify`` is synchronous and does no I/O.
"""

from __future__ import annotations

import asyncio
import builtins
import hashlib
import hmac
import logging
import math
import re
import secrets
import string
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import orjson

from apiward.errors import ApiwardError
from apiward.state.store import Store, StoreError

log = logging.getLogger("apiward")

KEY_PREFIX = "apikey:"
NAME_PREFIX = "apikey-name:"
TOKEN_PREFIX = "aw_"
ID_ALPHABET = string.ascii_letters + string.digits  # no "_": it separates the parts
ID_LENGTH = 12  # 71 bits: ids never collide in practice (create retries if they do)
SECRET_BYTES = 32
# What verify accepts as well formed (a little wider than what create makes today)
ID_MIN, ID_MAX = 8, 32
SECRET_MIN = 43  # len(token_urlsafe(32))
TOKEN_MAX = 200
REFRESH_INTERVAL = 5.0

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,99}")
SCOPE_RE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,128}")  # an OAuth 2.0 scope-token

MALFORMED, UNKNOWN, REVOKED, EXPIRED = "malformed", "unknown", "revoked", "expired"


class ApiKeyError(ApiwardError):
    """A key cannot be created or revoked as asked; the message says why."""

    exit_code = 2


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One key's record, as stored (never the secret itself)."""

    name: str
    id: str
    hash: str = field(repr=False)  # hex SHA-256 of the secret; kept out of logs
    scopes: frozenset[str]
    created: datetime
    expires: datetime | None = None
    revoked: datetime | None = None

    def status(self, now: float) -> str:
        """``active``, ``revoked`` or ``expired`` at ``now`` (wall time, seconds)."""
        if self.revoked is not None:
            return REVOKED
        if self.expires is not None and now >= self.expires.timestamp():
            return EXPIRED
        return "active"

    def public(self, now: float) -> dict[str, object]:
        """What may be shown to people: everything but the hash."""
        return {
            "name": self.name, "id": self.id, "scopes": sorted(self.scopes),
            "created": _iso(self.created), "expires": _iso(self.expires),
            "revoked": _iso(self.revoked), "status": self.status(now),
        }

    def to_json(self) -> bytes:
        return orjson.dumps({
            "name": self.name, "id": self.id, "hash": self.hash,
            "scopes": sorted(self.scopes), "created": _iso(self.created),
            "expires": _iso(self.expires), "revoked": _iso(self.revoked),
        })

    @classmethod
    def from_json(cls, raw: bytes) -> ApiKey:
        """The record in ``raw``; ValueError when it is not one."""
        try:
            data = orjson.loads(raw)
            return cls(
                name=str(data["name"]), id=str(data["id"]), hash=str(data["hash"]),
                scopes=frozenset(str(s) for s in data["scopes"]),
                created=_parse_iso(data["created"]), expires=_parse_iso(data["expires"]),
                revoked=_parse_iso(data["revoked"]),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise ValueError(f"not an API key record: {error}") from None


@dataclass(frozen=True, slots=True)
class KeyCheck:
    """What ``verify`` found: ``ok`` with the ``key``, or a ``reason`` (``malformed``,
    ``unknown``, ``revoked``, ``expired``; ``key`` is set for the last two)."""

    ok: bool
    reason: str | None = None
    key: ApiKey | None = None


CHECK_MALFORMED = KeyCheck(False, MALFORMED)
CHECK_UNKNOWN = KeyCheck(False, UNKNOWN)


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def allows(key: ApiKey, required_scopes: Iterable[str]) -> bool:
    """True when ``key`` has every scope in ``required_scopes`` (none required: True)."""
    return key.scopes.issuperset(required_scopes)


# -- the gateway side ----------------------------------------------------------------------

# A table entry: (digest, deadline, check at or after the deadline, check before it).
# Revoked keys have deadline -inf, keys that never expire +inf: verify needs one comparison.
Entry = tuple[bytes, float, KeyCheck, KeyCheck]
# Unknown ids are compared against this: random, so no secret hashes to it.
_NO_ENTRY: Entry = (secrets.token_bytes(32), math.inf, CHECK_UNKNOWN, CHECK_UNKNOWN)


def _entry(key: ApiKey) -> Entry:
    digest = bytes.fromhex(key.hash)
    if key.revoked is not None:
        return (digest, -math.inf, KeyCheck(False, REVOKED, key), CHECK_UNKNOWN)
    ok = KeyCheck(True, None, key)
    if key.expires is None:
        return (digest, math.inf, ok, ok)
    return (digest, key.expires.timestamp(), KeyCheck(False, EXPIRED, key), ok)


class KeyTable:
    """Every key of a store in memory, for ``verify`` on the request path.

    Build it with ``await KeyTable.load(store)``; call ``refresh()`` every few seconds (or
    run ``keep_fresh()`` as a task) so that keys created or revoked elsewhere count. Each
    refresh swaps in a new dict in one assignment: ``verify`` never sees half a table.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._keys: dict[str, Entry] = {}
        self._raw: dict[str, tuple[bytes, Entry | None]] = {}  # id -> (stored JSON, entry)

    def __len__(self) -> int:
        return len(self._keys)

    @classmethod
    async def load(cls, store: Store) -> KeyTable:
        table = cls(store)
        await table.refresh()
        return table

    async def refresh(self) -> None:
        """Reload from the store (records whose JSON is unchanged are not parsed again).
        A StoreError propagates and leaves the current table in place."""
        rows = await self.store.scan(KEY_PREFIX)
        keys: dict[str, Entry] = {}
        raws: dict[str, tuple[bytes, Entry | None]] = {}
        for store_key, raw in rows:
            kid = store_key[len(KEY_PREFIX):]
            known = self._raw.get(kid)
            if known is not None and known[0] == raw:
                entry = known[1]
            else:
                try:
                    record = ApiKey.from_json(raw)
                    if record.id != kid:
                        raise ValueError(f"its id is {record.id!r}")
                    entry = _entry(record)
                except ValueError as error:  # said once, when it appears or changes
                    log.warning("API key %s%s ignored: %s", KEY_PREFIX, kid, error)
                    entry = None
            raws[kid] = (raw, entry)
            if entry is not None:
                keys[kid] = entry
        self._keys, self._raw = keys, raws

    async def keep_fresh(self, interval: float = REFRESH_INTERVAL) -> None:
        """Refresh every ``interval`` seconds until cancelled; a failing store is logged
        and the last table kept."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.refresh()
            except (StoreError, OSError) as error:
                log.warning("API keys not refreshed, keeping the last %d: %s",
                            len(self._keys), error)

    def verify(self, presented: str, now: float) -> KeyCheck:
        """Check a presented key at ``now`` (wall time, seconds). One dict lookup, one
        SHA-256 and one constant-time comparison, which also runs for an unknown id (against
        a random digest), so how long this takes does not tell which ids exist. A wrong
        secret for a real id is ``unknown`` too; ``revoked`` and ``expired`` are only said
        to the holder of the right secret."""
        if len(presented) > TOKEN_MAX or not presented.isascii() or \
                not presented.startswith(TOKEN_PREFIX):
            return CHECK_MALFORMED
        kid, sep, secret = presented[3:].partition("_")
        if not sep or not ID_MIN <= len(kid) <= ID_MAX or not kid.isalnum() or \
                len(secret) < SECRET_MIN:
            return CHECK_MALFORMED
        entry = self._keys.get(kid, _NO_ENTRY)
        if not hmac.compare_digest(hashlib.sha256(secret.encode()).digest(), entry[0]):
            return CHECK_UNKNOWN
        return entry[2] if now >= entry[1] else entry[3]


# -- managing keys (the CLI side) ------------------------------------------------------------

def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat()


def _parse_iso(text: str | None) -> datetime | None:
    if text is None:
        return None
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no time zone")
    return moment


def check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise ApiKeyError(f"invalid key name {name!r}: use 1-100 letters, digits and . _ @ -, "
                          "starting with a letter or digit")
    return name


def check_scopes(scopes: Iterable[str]) -> frozenset[str]:
    scopes = frozenset(scopes)
    for scope in sorted(scopes):
        if not SCOPE_RE.fullmatch(scope):
            raise ApiKeyError(f"invalid scope {scope!r}: 1-128 printable ASCII characters, "
                              "no space, quote or backslash (an OAuth 2.0 scope token)")
    return scopes


_DURATION_RE = re.compile(r"(\d{1,6})([hdw])")
_DURATION_UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}


def parse_expiry(text: str, now: datetime | None = None) -> datetime:
    """An expiry from ``30d`` / ``12h`` / ``2w`` (from ``now``), a date ``2027-01-31``
    (its midnight UTC) or an ISO 8601 time (UTC unless it has an offset); ValueError if none
    of those."""
    text = text.strip()
    match = _DURATION_RE.fullmatch(text)
    if match:
        return (now or _now()) + int(match.group(1)) * _DURATION_UNITS[match.group(2)]
    try:
        moment = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise ValueError(f"expected a duration like 30d, 12h or 2w, a date like 2027-01-31 "
                         f"or an ISO 8601 time, got {text!r}") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


async def create(store: Store, name: str, scopes: Iterable[str] = (),
                 expires: datetime | None = None, *,
                 now: datetime | None = None) -> tuple[ApiKey, str]:
    """Make a key: its stored record and the plaintext key, which exists nowhere else (show
    it once). ApiKeyError when the name is taken by an unrevoked key or anything is
    invalid."""
    check_name(name)
    scope_set = check_scopes(scopes)
    created = now or _now()
    if expires is not None:
        if expires.tzinfo is None:
            raise ApiKeyError("the expiry needs a time zone (e.g. datetime(..., tzinfo=UTC))")
        expires = expires.astimezone(UTC)
        if expires <= created:
            raise ApiKeyError(f"the expiry {_iso(expires)} is not in the future")
    secret = secrets.token_urlsafe(SECRET_BYTES)
    kid = _new_id()
    name_key = NAME_PREFIX + name
    if not await store.add(name_key, kid.encode()):
        await _name_taken(store, name)
    record = ApiKey(name=name, id=kid, hash=hash_secret(secret).hex(), scopes=scope_set,
                    created=created, expires=expires)
    while not await store.add(KEY_PREFIX + kid, record.to_json()):  # a 71-bit collision
        kid = _new_id()
        record = replace(record, id=kid)
        await store.set(name_key, kid.encode())
    return record, f"{TOKEN_PREFIX}{kid}_{secret}"


def _new_id() -> str:
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(ID_LENGTH))


async def _name_taken(store: Store, name: str) -> None:
    held = await store.get(NAME_PREFIX + name)
    if held is not None and await store.get(KEY_PREFIX + held.decode()) is None:
        raise ApiKeyError(f"the name {name!r} is held by an unfinished key (no record for "
                          f"id {held.decode()}); revoke {name!r} to release it")
    raise ApiKeyError(f"a key named {name!r} exists; revoke it first or choose another name")


async def list_keys(store: Store) -> builtins.list[ApiKey]:
    """Every key record (revoked ones too), oldest first. Unreadable records are logged and
    left out."""
    found = []
    for store_key, raw in await store.scan(KEY_PREFIX):
        try:
            found.append(ApiKey.from_json(raw))
        except ValueError as error:
            log.warning("API key %s ignored: %s", store_key, error)
    return sorted(found, key=lambda k: (k.created, k.name, k.id))


async def revoke(store: Store, name: str, *, now: datetime | None = None) -> ApiKey | None:
    """Revoke the unrevoked key called ``name`` and free the name; returns its record
    (None when the name was only held by an unfinished create, now released). ApiKeyError
    when there is no such key."""
    name_key = NAME_PREFIX + name
    held = await store.get(name_key)
    if held is None:
        if any(k.name == name for k in await list_keys(store)):
            raise ApiKeyError(f"the key {name!r} is already revoked")
        raise ApiKeyError(f"no key named {name!r}")
    raw = await store.get(KEY_PREFIX + held.decode())
    if raw is None:
        await store.delete(name_key)
        return None
    try:
        record = ApiKey.from_json(raw)
    except ValueError as error:
        raise ApiKeyError(f"the record of key {name!r} ({KEY_PREFIX}{held.decode()}) is "
                          f"damaged: {error}") from None
    record = replace(record, revoked=now or _now())
    await store.set(KEY_PREFIX + record.id, record.to_json())
    await store.delete(name_key)
    return record


list = list_keys  # ``apikeys.list(store)``; defined last, so it shadows nothing above
