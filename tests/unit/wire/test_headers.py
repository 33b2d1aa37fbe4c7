"""FieldTable: field names classified once per spelling; names with "_" by the setting."""

from __future__ import annotations

import pytest

from apiward.errors import WireError
from apiward.wire.headers import (
    CONNECTION,
    CONTENT_LENGTH,
    DROPPED,
    HOP_BY_HOP,
    PASS,
    SET_ASIDE,
    FieldTable,
)


def test_names_are_classified_and_cached_by_their_raw_spelling() -> None:
    table = FieldTable(HOP_BY_HOP | {b"host"}, "drop")
    assert table.classify(b"X-Thing") == (PASS, b"x-thing")
    assert table.classify(b"Host") == (SET_ASIDE, b"host")
    assert table.classify(b"Proxy-Foo") == (SET_ASIDE, b"proxy-foo")
    assert table.classify(b"content-length") == (CONTENT_LENGTH, b"content-length")
    assert table.classify(b"Connection") == (CONNECTION, b"connection")
    assert table.cache[b"X-Thing"] == (PASS, b"x-thing")
    assert table.prefixes == {b"X-Thing": b"X-Thing: "}


@pytest.mark.parametrize("name", [b"X_Forwarded_For", b"Transfer_Encoding", b"_", b"a_",
                                  b"Content_Length", b"x-mixed_name"])
def test_drop_makes_a_name_with_an_underscore_a_class_of_its_own(name: bytes) -> None:
    table = FieldTable(HOP_BY_HOP, "drop")
    assert table.classify(name) == (DROPPED, name.lower())
    assert table.cache[name] == (DROPPED, name.lower())  # next time: a plain look-up
    assert name not in table.prefixes  # never passed on, upstream or down


def test_reject_raises_a_400_and_caches_nothing() -> None:
    table = FieldTable(HOP_BY_HOP, "reject")
    with pytest.raises(WireError) as caught:
        table.classify(b"X_A")
    assert (caught.value.status, caught.value.reason) == (400, "underscore_in_header_name")
    assert b"X_A" not in table.cache  # so it is refused again every time
    assert table.classify(b"X-A") == (PASS, b"x-a")


def test_without_the_setting_an_underscore_is_a_character_like_any_other() -> None:
    """The response table (the upstream's fields) takes no setting."""
    table = FieldTable(HOP_BY_HOP)
    assert table.classify(b"X_A") == (PASS, b"x_a")
    assert table.classify(b"Transfer_Encoding") == (PASS, b"transfer_encoding")


def test_the_table_stays_bounded() -> None:
    table = FieldTable(HOP_BY_HOP, "drop")
    for i in range(FieldTable.LIMIT + 10):
        table.classify(b"X_%d" % i)
    assert len(table.cache) == FieldTable.LIMIT
    assert table.classify(b"X_new") == (DROPPED, b"x_new")  # still classified, not cached


def test_declared_underscore_names_are_kept_unless_they_mean_framing() -> None:
    table = FieldTable(frozenset({b"host", b"x-forwarded-for"}), "drop",
                       frozenset({b"api_key", b"transfer_encoding", b"x_forwarded_for",
                                  b"content_length", b"proxy_authorization"}))
    assert table.classify(b"Api_Key") == (PASS, b"api_key")
    for name in (b"Transfer_Encoding", b"X_Forwarded_For", b"Content_Length",
                 b"Proxy_Authorization", b"Other_Name"):
        assert table.classify(name)[0] == DROPPED, name
