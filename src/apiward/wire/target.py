"""Request-target normalisation (RFC 3986 §6.2.2, §5.2.4; RFC 9112 §3.2).

The gateway judges and forwards one canonical path, so a target that two servers could read
differently (encoded slashes, dot segments that climb, overlong UTF-8, look-alike slashes)
is refused instead of being "fixed" one way here and another way upstream.

The common target (plain ASCII, no ``%`` in the path, no dot or empty segment, no ``;``)
is recognised by one compiled regex and returned as is; everything else takes the slow
path, which is linear in the target length.
"""

from __future__ import annotations

import re
import unicodedata
from typing import NamedTuple

from apiward.errors import WireError


class Target(NamedTuple):
    """A normalised request target: what the checks see is what the upstream gets."""

    path: str
    query: str
    authority: str | None
    has_matrix: bool
    verbatim: bool = False
    """True when the raw target already was this path and query byte for byte (an empty
    query may keep its "?"), so the server may forward the raw bytes as they are."""


# --- character classes (RFC 3986 §2) -------------------------------------------------------
_ALNUM = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_UNRESERVED = _ALNUM + b"-._~"
# pchar without "%" (handled by decoding) and ";" (matrix parameters, a policy).
_PATH_SAFE = _UNRESERVED + b"!$&'()*+,=:@"
_PATH_RAW_OK = _PATH_SAFE + b"/;%"
_SAFE_CLASS = re.escape(_PATH_SAFE)
# Query: kept as received; any printable ASCII but "#" and a bare "%".
_QUERY_CLASS = rb"\x21\x22\x24\x26-\x7e"
_QUERY_BODY = rb"(?:[" + _QUERY_CLASS + rb"]++|%[0-9A-Fa-f]{2})*+"
_QUERY = re.compile(_QUERY_BODY)

# Origin-form with nothing to normalise: segments of safe characters, none empty (but a
# trailing one), none "." or "..". Possessive quantifiers: no backtracking, ever.
_FAST = re.compile(
    rb"(/(?:(?!\.\.?(?:[/?]|\Z))[" + _SAFE_CLASS + rb"]++/?)*+)(?:\?(" + _QUERY_BODY + rb"))?"
)
_HOST = re.compile(rb"(?:\[[0-9A-Fa-f:.]++\]|[A-Za-z0-9._\-]*+)(?::[0-9]{1,5})?")
_HIGH_BYTE = re.compile(rb"[\x80-\xff]")

_HEX: dict[bytes, int] = {
    b"%c%c" % (a, b): int(bytes((a, b)), 16)
    for a in b"0123456789abcdefABCDEF"
    for b in b"0123456789abcdefABCDEF"
}

_ENCODED_REFUSED = {
    0x00: "nul_in_path",
    0x2F: "encoded_slash",
    0x5C: "encoded_backslash",
    0x3F: "encoded_question_mark",
    0x23: "encoded_hash",
    **{c: "control_character_in_path" for c in (*range(1, 0x20), 0x7F)},
}


def _emit(value: int) -> bytes | str:
    """What a decoded %XX becomes: the unreserved byte, "%XX" upper-case, or a refusal."""
    if value in _ENCODED_REFUSED:
        return _ENCODED_REFUSED[value]
    if value < 0x80 and value in _UNRESERVED:
        return bytes((value,))
    return b"%%%02X" % value


_PCT: list[bytes | str] = [_emit(v) for v in range(256)]

# Unicode characters a server, a framework or a file system may read as "/", "\" or ".".
_LOOKALIKES = frozenset(
    "\u2044\u2215\u2571\u27cb\u29f8\uff0f\u1735\u3033"  # slashes
    "\uff3c\u2216\u2572\u27cd\u29f5\u29f9\ufe68"  # backslashes
    "\u2024\u2025\u2026\u3002\ufe52\uff0e\uff61\u0589\u06d4\u0701\u0702\ua4f8\ua60e"  # dots
)
_NFKC_DANGER = frozenset("/\\.%?#;") | _LOOKALIKES
# Controls, invisible format characters (bidi overrides, zero-width) and Unicode spaces.
_BAD_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zs", "Zl", "Zp"})

_ASTERISK = Target("*", "", None, False, True)
_new = tuple.__new__  # 65 ns instead of 145 ns for Target(...): this is the hot path


def _refuse(reason: str, detail: str) -> WireError:
    return WireError(400, reason, detail)


def normalise_target(
    raw: bytes,
    method: str,
    *,
    allow_non_ascii: bool = False,
    merge_empty_segments: bool = False,
    allow_matrix: bool = False,
) -> Target:
    """Validate and normalise one request target; raise WireError(400) when ambiguous."""
    match = _FAST.fullmatch(raw)
    if match is not None and method != "CONNECT":
        path, query = match.groups(b"")
        return _new(Target, (path.decode("ascii"), query.decode("ascii"), None, False, True))
    return _slow(raw, method, allow_non_ascii, merge_empty_segments, allow_matrix)


def _slow(raw: bytes, method: str, allow_non_ascii: bool, merge: bool, matrix: bool) -> Target:
    """Every target the fast path did not take: pick the form, then normalise."""
    if method == "CONNECT":
        raise _refuse("authority_form_refused", "CONNECT is not served by this gateway")
    if b"#" in raw:
        raise _refuse("fragment_in_target", "a request target must not carry a fragment")
    authority = None
    if raw[:1] == b"/":
        rest = raw
    elif raw == b"*":
        if method != "OPTIONS":
            raise _refuse("asterisk_form_not_options", "the target * is only valid for OPTIONS")
        return _ASTERISK
    else:
        authority, rest = _split_absolute(raw)
    path, sep, query = rest.partition(b"?")
    if sep:
        _check_query(query)
    norm, has_matrix = _normalise_path(path, allow_non_ascii, merge, matrix)
    return _new(Target, (norm, query.decode("ascii"), authority, has_matrix, False))


def _split_absolute(raw: bytes) -> tuple[str, bytes]:
    """Split an absolute-form target into (authority, path-and-query)."""
    lower = raw[:8].lower()
    if lower.startswith(b"http://"):
        rest = raw[7:]
    elif lower == b"https://":
        rest = raw[8:]
    else:
        raise _refuse("invalid_target_form",
                      "the target must be origin-form (/path) or an http(s) absolute URI")
    end = len(rest)
    for delim in b"/?":
        index = rest.find(delim)
        if 0 <= index < end:
            end = index
    authority, rest = rest[:end], rest[end:]
    if b"@" in authority:
        raise _refuse("userinfo_in_target", "the target must not carry user information")
    if not authority or not is_valid_host(authority):
        raise _refuse("invalid_authority", "the target's host or port is not valid")
    if rest[:1] != b"/":
        rest = b"/" + rest
    return authority.decode("ascii"), rest


def is_valid_host(value: bytes) -> bool:
    """A Host or authority we can route on unambiguously: DNS name or IP, optional port.

    Stricter than RFC 3986 reg-name on purpose: no percent-encoding, no sub-delims (a ","
    in a Host is read as a list by some proxies), no whitespace or non-ASCII.
    """
    return _HOST.fullmatch(value) is not None


def _check_query(query: bytes) -> None:
    """The query is forwarded as received, so only refuse what no server reads the same."""
    if _QUERY.fullmatch(query) is None:
        if query.translate(None, bytes(range(0x21, 0x7F))).replace(b"#", b""):
            raise _refuse("invalid_query_character",
                          "the query has a control character, a space or a non-ASCII byte")
        raise _refuse("invalid_percent_encoding", "the query has an invalid %-encoding")


def _normalise_path(path: bytes, allow_non_ascii: bool, merge: bool,
                    matrix: bool) -> tuple[str, bool]:
    """Check raw characters, decode, then remove dot segments."""
    bad = path.translate(None, _PATH_RAW_OK)
    if bad:
        _check_raw_path_bytes(bad)
    if b"%" in path or bad:
        path = _decode(path, allow_non_ascii)
    text = path.decode("ascii")
    has_matrix = ";" in text
    if has_matrix and not matrix:
        raise _refuse("matrix_parameters", "a path segment carries ';' parameters")
    return _remove_dot_segments(text, merge, has_matrix), has_matrix


def _check_raw_path_bytes(bad: bytes) -> None:
    """Name the first raw ASCII byte that may not appear in a path (high bytes: later)."""
    for byte in bad:
        if byte == 0:
            raise _refuse("nul_in_path", "the path contains a NUL byte")
        if byte < 0x20 or byte == 0x7F:
            raise _refuse("control_character_in_path", "the path contains a control character")
        if byte == 0x20:
            raise _refuse("space_in_path", "the path contains a raw space")
        if byte == 0x5C:
            raise _refuse("backslash_in_path", "the path contains a backslash")
        if byte < 0x80:
            raise _refuse("invalid_path_character",
                          "the path contains a character that must be percent-encoded")


def _decode(path: bytes, allow_non_ascii: bool) -> bytes:
    """Decode unreserved %XX, upper-case the rest, check UTF-8; non-ASCII leaves encoded."""
    parts = path.split(b"%")
    out = [parts[0]]
    high = not path.isascii()
    for part in parts[1:]:
        value = _HEX.get(part[:2])
        if value is None:
            raise _refuse("invalid_percent_encoding", "the path has an invalid %-encoding")
        emit = _PCT[value]
        if isinstance(emit, str):
            raise _refuse(emit, "the path contains a forbidden percent-encoded character")
        high = high or value >= 0x80
        out.append(emit)
        out.append(part[2:])
    result = b"".join(out)
    if high:
        _check_unicode(path, allow_non_ascii)
        result = _HIGH_BYTE.sub(lambda m: b"%%%02X" % m[0][0], result)
    return result


def _check_unicode(path: bytes, allow_non_ascii: bool) -> None:
    """Strict UTF-8 (no overlongs, surrogates) always; then policy and look-alikes."""
    decoded = re.sub(rb"%([0-9A-Fa-f]{2})", lambda m: bytes((int(m[1], 16),)), path)
    try:
        text = decoded.decode("utf-8")
    except UnicodeDecodeError:
        raise _refuse("invalid_utf8",
                      "the decoded path is not valid UTF-8 (or uses overlong forms)") from None
    if not allow_non_ascii:
        raise _refuse("non_ascii_path", "the path contains non-ASCII characters")
    for char in set(text):
        if char.isascii():
            continue
        if (char in _LOOKALIKES or unicodedata.category(char) in _BAD_CATEGORIES
                or not _NFKC_DANGER.isdisjoint(unicodedata.normalize("NFKC", char))):
            raise _refuse("unicode_lookalike",
                          "the path contains a Unicode look-alike of '/', '\\' or '.', "
                          "an invisible character or a Unicode space")


def _remove_dot_segments(text: str, merge: bool, has_matrix: bool) -> str:
    """RFC 3986 §5.2.4 on whole segments; refuse climbing above the root."""
    segments = text.split("/")
    last = len(segments) - 1
    out: list[str] = []
    for index in range(1, last + 1):
        segment = segments[index]
        if has_matrix and ";" in segment:
            name = segment.split(";", 1)[0]
            if name in ("", ".", ".."):
                raise _refuse("matrix_on_dot_or_empty_segment",
                              "';' parameters on an empty or dot segment are ambiguous")
        if segment == ".":
            if index == last:
                out.append("")
        elif segment == "..":
            if not out:
                raise _refuse("dot_segments_escape_root", "the path climbs above the root")
            out.pop()
            if index == last:
                out.append("")
        elif segment or index == last:
            out.append(segment)
        elif not merge:
            raise _refuse("empty_path_segment", "the path contains an empty segment ('//')")
    return "/" + "/".join(out)
