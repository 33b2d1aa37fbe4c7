"""normalise_target: one canonical path, or a 400 with a stable reason."""

from __future__ import annotations

import contextlib
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apiward.errors import WireError
from apiward.wire.target import Target, is_valid_host, normalise_target

ALL = {"allow_non_ascii": True, "merge_empty_segments": True, "allow_matrix": True}


def norm(raw: bytes, method: str = "GET", **flags: bool) -> Target:
    return normalise_target(raw, method, **flags)


def reason(raw: bytes, method: str = "GET", **flags: bool) -> str:
    with pytest.raises(WireError) as info:
        normalise_target(raw, method, **flags)
    assert info.value.status == 400
    assert len(raw) < 4 or raw.decode("latin-1") not in info.value.detail  # no echo
    return info.value.reason


# --- accepted: (raw, path, query) ---------------------------------------------------------
ACCEPTED = [
    ("plain", b"/api/v1/books/123?limit=10", "/api/v1/books/123", "limit=10"),
    ("root", b"/", "/", ""),
    ("trailing-slash", b"/a/b/", "/a/b/", ""),
    ("empty-query", b"/a?", "/a", ""),
    ("query-kept-raw", b"/a?b=%2f%2e%2E&c=d/e?f", "/a", "b=%2f%2e%2E&c=d/e?f"),
    ("query-odd-ascii", b"/a?x=<\\>|{}", "/a", "x=<\\>|{}"),
    ("sub-delims", b"/a!$&'()*+,=:@b", "/a!$&'()*+,=:@b", ""),
    ("dotfile", b"/.well-known/openid", "/.well-known/openid", ""),
    ("three-dots", b"/a/.../b", "/a/.../b", ""),
    ("dot-inside", b"/v1.2/a..b", "/v1.2/a..b", ""),
    ("dot", b"/a/./b", "/a/b", ""),
    ("dotdot", b"/a/b/../c", "/a/c", ""),
    ("trailing-dot", b"/a/b/.", "/a/b/", ""),
    ("trailing-dotdot", b"/a/b/..", "/a/", ""),
    ("dotdot-to-root", b"/a/..", "/", ""),
    ("encoded-dot", b"/a/%2e/b", "/a/b", ""),
    ("encoded-dotdot-mixed", b"/a/b/%2E%2e/c", "/a/c", ""),
    ("half-encoded-dotdot", b"/a/b/.%2e/c", "/a/c", ""),
    ("decode-unreserved", b"/%41%7a%30%2D%2e%5F%7E", "/Az0-._~", ""),
    ("upper-case-hex", b"/a%3ab%40%20%25", "/a%3Ab%40%20%25", ""),
    ("encoded-semicolon-is-data", b"/a%3bb", "/a%3Bb", ""),
    ("encoded-ctl-free-reserved", b"/%21%24%2B", "/%21%24%2B", ""),
    ("percent-then-dotdot", b"/a/%2e%2e?x=1", "/", "x=1"),
]


@pytest.mark.parametrize(("raw", "path", "query"), [c[1:] for c in ACCEPTED],
                         ids=[c[0] for c in ACCEPTED])
def test_accepted(raw: bytes, path: str, query: str) -> None:
    target = norm(raw)
    assert target[:4] == Target(path, query, None, False)[:4]
    if target.verbatim:  # then the raw bytes are the normalised target (maybe a bare "?")
        expected = (path + ("?" + query if query else "")).encode()
        assert raw in (expected, expected + b"?")


# --- refused: (raw, reason, flags) --------------------------------------------------------
REFUSED = [
    ("fragment", b"/a#b", "fragment_in_target", {}),
    ("fragment-in-query", b"/a?b#c", "fragment_in_target", {}),
    ("empty-fragment", b"/a#", "fragment_in_target", {}),
    ("pct-alone", b"/a%", "invalid_percent_encoding", {}),
    ("pct-one-digit", b"/a%4", "invalid_percent_encoding", {}),
    ("pct-non-hex", b"/a%zz", "invalid_percent_encoding", {}),
    ("pct-sign", b"/a%+1", "invalid_percent_encoding", {}),
    ("pct-space", b"/a% 1", "space_in_path", {}),
    ("pct-unicode-iis", b"/%u002e", "invalid_percent_encoding", {}),
    ("query-bad-pct", b"/a?x=%zz", "invalid_percent_encoding", {}),
    ("query-trailing-pct", b"/a?x=%", "invalid_percent_encoding", {}),
    ("encoded-slash", b"/a%2Fb", "encoded_slash", ALL),
    ("encoded-slash-lower", b"/a%2fb", "encoded_slash", ALL),
    ("encoded-backslash", b"/a%5Cb", "encoded_backslash", ALL),
    ("encoded-backslash-lower", b"/a%5cb", "encoded_backslash", ALL),
    ("dotdot-encoded-slash", b"/%2e%2e%2fetc", "encoded_slash", ALL),
    ("nul-raw", b"/a\x00b", "nul_in_path", ALL),
    ("nul-encoded", b"/a%00b", "nul_in_path", ALL),
    ("raw-backslash", b"/a\\b", "backslash_in_path", ALL),
    ("raw-backslash-dotdot", b"/a/..\\..\\x", "backslash_in_path", ALL),
    ("encoded-question", b"/a%3Fb", "encoded_question_mark", ALL),
    ("encoded-hash", b"/a%23b", "encoded_hash", ALL),
    ("ctl-raw", b"/a\x01b", "control_character_in_path", ALL),
    ("ctl-raw-tab", b"/a\tb", "control_character_in_path", ALL),
    ("ctl-raw-del", b"/a\x7fb", "control_character_in_path", ALL),
    ("ctl-encoded", b"/a%0Db", "control_character_in_path", ALL),
    ("ctl-encoded-lf", b"/a%0ab", "control_character_in_path", ALL),
    ("ctl-encoded-del", b"/a%7Fb", "control_character_in_path", ALL),
    ("ctl-encoded-1f", b"/a%1fb", "control_character_in_path", ALL),
    ("raw-space", b"/a b", "space_in_path", ALL),
    ("raw-angle", b"/a<script>", "invalid_path_character", ALL),
    ("raw-brace", b"/a{b}", "invalid_path_character", ALL),
    ("raw-pipe", b"/a|b", "invalid_path_character", ALL),
    ("raw-quote", b'/a"b', "invalid_path_character", ALL),
    ("query-ctl", b"/a?b\x01", "invalid_query_character", ALL),
    ("query-space", b"/a?b c", "invalid_query_character", ALL),
    ("query-del", b"/a?b\x7f", "invalid_query_character", ALL),
    ("query-nul", b"/a?b\x00", "invalid_query_character", ALL),
    ("query-non-ascii", b"/a?b=\xc3\xa9", "invalid_query_character", ALL),
    ("overlong-dot", b"/a/%C0%AE%C0%AE/x", "invalid_utf8", ALL),
    ("overlong-dot-strict", b"/a/%C0%AE%C0%AE/x", "invalid_utf8", {}),
    ("overlong-slash", b"/a%C0%AFb", "invalid_utf8", ALL),
    ("overlong-3-byte-dot", b"/a%E0%80%AE", "invalid_utf8", ALL),
    ("overlong-raw", b"/a\xc0\xafb", "invalid_utf8", ALL),
    ("overlong-raw-strict", b"/a\xc0\xafb", "invalid_utf8", {}),
    ("truncated-utf8", b"/a%C3", "invalid_utf8", ALL),
    ("lone-continuation", b"/a%80", "invalid_utf8", ALL),
    ("surrogate", b"/a%ED%A0%80", "invalid_utf8", ALL),
    ("latin1-byte", b"/caf%E9", "invalid_utf8", ALL),
    ("non-ascii-encoded", b"/caf%C3%A9", "non_ascii_path", {}),
    ("non-ascii-raw", b"/caf\xc3\xa9", "non_ascii_path", {}),
    ("division-slash", b"/a%E2%88%95b", "unicode_lookalike", ALL),
    ("fraction-slash", b"/a%E2%81%84b", "unicode_lookalike", ALL),
    ("fullwidth-solidus", b"/a%EF%BC%8Fb", "unicode_lookalike", ALL),
    ("big-solidus", b"/a%E2%A7%B8b", "unicode_lookalike", ALL),
    ("fullwidth-stop", b"/%EF%BC%8E%EF%BC%8E/x", "unicode_lookalike", ALL),
    ("one-dot-leader", b"/a/%E2%80%A4%E2%80%A4/x", "unicode_lookalike", ALL),
    ("two-dot-leader", b"/a/%E2%80%A5/x", "unicode_lookalike", ALL),
    ("ideographic-stop", b"/a%E3%80%82b", "unicode_lookalike", ALL),
    ("small-stop", b"/a%EF%B9%92b", "unicode_lookalike", ALL),
    ("fullwidth-backslash", b"/a%EF%BC%BCb", "unicode_lookalike", ALL),
    ("small-reverse-solidus", b"/a%EF%B9%A8b", "unicode_lookalike", ALL),
    ("raw-division-slash", "/a\u2215b".encode(), "unicode_lookalike", ALL),
    ("fullwidth-percent", b"/a%EF%BC%85b", "unicode_lookalike", ALL),
    ("c1-control", b"/a%C2%85b", "unicode_lookalike", ALL),
    ("nbsp", b"/a%C2%A0b", "unicode_lookalike", ALL),
    ("bidi-override", b"/a%E2%80%AEb", "unicode_lookalike", ALL),
    ("zero-width-space", b"/a%E2%80%8Bb", "unicode_lookalike", ALL),
    ("escape-root", b"/../x", "dot_segments_escape_root", ALL),
    ("escape-root-deeper", b"/a/../../x", "dot_segments_escape_root", ALL),
    ("escape-root-encoded", b"/%2e%2e/x", "dot_segments_escape_root", ALL),
    ("escape-root-trailing", b"/..", "dot_segments_escape_root", ALL),
    ("escape-root-after-dot", b"/./..", "dot_segments_escape_root", ALL),
    ("escape-root-absolute", b"http://a/../x", "dot_segments_escape_root", ALL),
    ("empty-segment", b"/a//b", "empty_path_segment", {}),
    ("leading-empty", b"//a", "empty_path_segment", {}),
    ("only-slashes", b"//", "empty_path_segment", {}),
    ("matrix", b"/a;v=1/b", "matrix_parameters", {}),
    ("matrix-jsessionid", b"/a;jsessionid=1", "matrix_parameters", {}),
    ("matrix-on-dotdot", b"/a/..;/admin", "matrix_on_dot_or_empty_segment", ALL),
    ("matrix-on-dot", b"/a/.;x/b", "matrix_on_dot_or_empty_segment", ALL),
    ("matrix-on-empty", b"/a/;x/b", "matrix_on_dot_or_empty_segment", ALL),
    ("relative", b"a/b", "invalid_target_form", ALL),
    ("empty", b"", "invalid_target_form", ALL),
    ("authority-form", b"example.com:443", "invalid_target_form", ALL),
    ("other-scheme", b"ftp://a/b", "invalid_target_form", ALL),
    ("scheme-relative", b"//a/b", "empty_path_segment", {}),
    ("userinfo", b"http://user@a/b", "userinfo_in_target", ALL),
    ("userinfo-password", b"http://u:p@a/b", "userinfo_in_target", ALL),
    ("empty-authority", b"http:///b", "invalid_authority", ALL),
    ("bad-port", b"http://a:8x/b", "invalid_authority", ALL),
    ("authority-pct", b"http://a%2eb/", "invalid_authority", ALL),
    ("asterisk-get", b"*", "asterisk_form_not_options", ALL),
]


@pytest.mark.parametrize(("raw", "expected", "flags"), [c[1:] for c in REFUSED],
                         ids=[c[0] for c in REFUSED])
def test_refused(raw: bytes, expected: str, flags: dict[str, bool]) -> None:
    assert reason(raw, **flags) == expected


def test_connect_refused_whatever_the_target() -> None:
    assert reason(b"example.com:443", "CONNECT") == "authority_form_refused"
    assert reason(b"/", "CONNECT") == "authority_form_refused"


def test_asterisk_for_options() -> None:
    assert norm(b"*", "OPTIONS")[:4] == ("*", "", None, False)
    assert reason(b"*?x", "OPTIONS") == "invalid_target_form"


ABSOLUTE = [
    ("http", b"http://a.example/x?y=1", "a.example", "/x", "y=1"),
    ("https-port", b"https://a.example:8443/x", "a.example:8443", "/x", ""),
    ("scheme-case", b"HtTpS://A.example/x", "A.example", "/x", ""),
    ("empty-path", b"http://a", "a", "/", ""),
    ("empty-path-query", b"http://a?q", "a", "/", "q"),
    ("ipv6", b"http://[::1]:80/x", "[::1]:80", "/x", ""),
    ("normalised", b"http://a/b/%2e%2e/c", "a", "/c", ""),
]


@pytest.mark.parametrize(("raw", "authority", "path", "query"), [c[1:] for c in ABSOLUTE],
                         ids=[c[0] for c in ABSOLUTE])
def test_absolute_form(raw: bytes, authority: str, path: str, query: str) -> None:
    assert norm(raw)[:4] == (path, query, authority, False)


FLAGGED = [
    ("merge", b"/a//b///c", {"merge_empty_segments": True}, "/a/b/c", False),
    ("merge-leading", b"//a", {"merge_empty_segments": True}, "/a", False),
    ("merge-root", b"///", {"merge_empty_segments": True}, "/", False),
    ("merge-trailing", b"/a//", {"merge_empty_segments": True}, "/a/", False),
    ("merge-then-dotdot", b"/a//../b", {"merge_empty_segments": True}, "/b", False),
    ("matrix", b"/a;v=1/b", {"allow_matrix": True}, "/a;v=1/b", True),
    ("matrix-then-dotdot", b"/a;v=1/../b", {"allow_matrix": True}, "/b", True),
    ("non-ascii-encoded", b"/caf%c3%a9", {"allow_non_ascii": True}, "/caf%C3%A9", False),
    ("non-ascii-raw", "/café/☃".encode(), {"allow_non_ascii": True},
     "/caf%C3%A9/%E2%98%83", False),
    ("non-ascii-cjk", "/书".encode(), {"allow_non_ascii": True}, "/%E4%B9%A6", False),
]


@pytest.mark.parametrize(("raw", "flags", "path", "matrix"), [c[1:] for c in FLAGGED],
                         ids=[c[0] for c in FLAGGED])
def test_flags(raw: bytes, flags: dict[str, bool], path: str, matrix: bool) -> None:
    target = norm(raw, **flags)
    assert (target.path, target.has_matrix) == (path, matrix)


@pytest.mark.parametrize("host", [b"", b"a", b"a.example", b"a-b.c_d:8080", b"[::1]",
                                  b"[2001:db8::1]:443", b"127.0.0.1:80"])
def test_valid_hosts(host: bytes) -> None:
    assert is_valid_host(host)


@pytest.mark.parametrize("host", [b"a b", b"a ", b" a", b"a,b", b"a:", b"a:123456", b"a:x",
                                  b"a%2eb", b"u@a", b"\xe9", b"a\tb", b"[::1", b"a/b"])
def test_invalid_hosts(host: bytes) -> None:
    assert not is_valid_host(host)


# --- linear time ----------------------------------------------------------------------------
ADVERSARIAL = {
    "dotdot-encoded": b"/" + b"a/%2e%2e/" * 910,
    "dotdot-escape": b"/" + b"%2e%2e/" * 1170,
    "slashes": b"/" * 8192,
    "dots": b"/" + b"./" * 4096,
    "long-segment-bad-end": b"/" + b"a" * 8190 + b"%",
    "segments-bad-end": b"/" + b"ab/" * 2730 + b"\x01",
    "query-pct": b"/?" + b"%41" * 2730 + b"%",
    "non-ascii": b"/" + b"%C3%A9" * 1365,
    "matrix": b"/" + b"a;b/" * 2048,
}


@pytest.mark.parametrize("raw", ADVERSARIAL.values(), ids=ADVERSARIAL.keys())
def test_linear_time(raw: bytes) -> None:
    """A guard against quadratic (or worse) blow-ups, not a speed test: 8x the input may
    cost at most ~30x (quadratic would be 64x); the best of 5 runs and a floor of 0.25 s
    keep a busy machine from failing it."""

    def cost(data: bytes) -> float:
        runs = []
        for _ in range(5):
            start = time.perf_counter()
            with contextlib.suppress(WireError):
                normalise_target(data, "GET", **ALL)
            runs.append(time.perf_counter() - start)
        return min(runs)

    small = cost(raw)
    big = cost(raw[:2] + raw[2:] * 8)  # 8x the input
    assert big < max(small * 30, 0.25)


# --- properties ---------------------------------------------------------------------------
PIECES = [
    "/", "/", "/", "a", "b", "~", ".", "..", "%2e", "%2E", "%2f", "%5c", "%", "%4", "%41",
    "%7e", "%3a", "%c3%a9", "%C0%AE", "%e2%88%95", "%ef%bc%8e", "é", ";", ";x=1", "?", "#",
    "\\", "%00", " ", "\x01", "\x7f", "//", "=", "@", ":", "%25", "%20", "<", "%3F", "%E0%80%AE",
]
targets = st.lists(st.sampled_from(PIECES), max_size=14).map(lambda p: "".join(p).encode())
flags = st.fixed_dictionaries({
    "allow_non_ascii": st.booleans(),
    "merge_empty_segments": st.booleans(),
    "allow_matrix": st.booleans(),
})


def _check_output(target: Target) -> None:
    path = target.path
    assert path.startswith("/")
    assert path.isascii()
    for bad in ("/./", "/../", "%2F", "%2f", "%5C", "%5c", "\\", "#", "?", " "):
        assert bad not in path
    assert not path.endswith(("/.", "/.."))
    assert "//" not in path
    assert all(ord(c) > 0x1F and ord(c) != 0x7F for c in path)


@settings(max_examples=600, deadline=None)
@given(raw=targets, options=flags)
def test_properties(raw: bytes, options: dict[str, bool]) -> None:
    try:
        target = normalise_target(raw, "GET", **options)
    except WireError as error:
        assert error.status == 400
        assert error.reason.replace("_", "").isalnum()
        return
    _check_output(target)
    again = normalise_target(target.path.encode(), "GET", **options)
    assert again.path == target.path
    assert again.has_matrix == target.has_matrix
    # never an exception other than WireError, even with an absolute-form prefix
    absolute = normalise_target(b"http://h" + target.path.encode(), "GET", **options)
    assert absolute.path == target.path


@settings(max_examples=400, deadline=None)
@given(raw=st.binary(max_size=40), options=flags)
def test_arbitrary_bytes_only_raise_wire_error(raw: bytes, options: dict[str, bool]) -> None:
    try:
        target = normalise_target(b"/" + raw, "GET", **options)
    except WireError:
        return
    _check_output(target)
    assert normalise_target(target.path.encode(), "GET", **options).path == target.path


@settings(max_examples=300, deadline=None)
@given(text=st.text(min_size=1, max_size=8))
def test_non_ascii_text_round_trips_encoded(text: str) -> None:
    raw = ("/" + text).encode()
    try:
        target = normalise_target(raw, "GET", **ALL)
    except WireError:
        return
    _check_output(target)
    assert normalise_target(target.path.encode(), "GET", **ALL).path == target.path
