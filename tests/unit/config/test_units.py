"""Human sizes and durations, as functions and as pydantic field types."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from apiward.config.units import Duration, Size, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (1024, 1024),
        (0, 0),
        ("1024", 1024),
        ("1MiB", 1024 * 1024),
        ("1mib", 1024 * 1024),
        ("16 KB", 16_000),
        ("16KiB", 16 * 1024),
        ("16k", 16_000),
        ("16Ki", 16 * 1024),
        ("1.5KiB", 1536),
        ("2GB", 2_000_000_000),
        ("1GiB", 1024**3),
        ("512b", 512),
        ("  8 MB  ", 8_000_000),
    ],
)
def test_sizes(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    "bad", ["lots", "", "1XB", "MiB", "-1", "1.5.5KiB", "1 M iB", -1, True, None, 1.5, [1]]
)
def test_bad_sizes(bad):
    with pytest.raises(ValueError, match=r"expected a size"):
        parse_size(bad)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10s", 10.0),
        ("250ms", 0.25),
        ("1m30s", 90.0),
        ("1h", 3600.0),
        ("1h2m3s", 3723.0),
        ("1.5s", 1.5),
        ("10 s", 10.0),
        (5, 5.0),
        (0, 0.0),
        (2.5, 2.5),
    ],
)
def test_durations(text, expected):
    assert parse_duration(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    "bad", ["soon", "", "10sec", "s", "ms10", "-1s", "1m30", "10s garbage", -1, True, None]
)
def test_bad_durations(bad):
    with pytest.raises(ValueError, match=r"expected a duration"):
        parse_duration(bad)


def test_field_types_parse_and_serialise():
    assert TypeAdapter(Size).validate_python("1MiB") == 1024 * 1024
    assert TypeAdapter(Duration).validate_python("250ms") == pytest.approx(0.25)
    assert TypeAdapter(Size).dump_python(2048) == 2048
    with pytest.raises(ValidationError, match=r'expected a size like "1MiB", got \'lots\''):
        TypeAdapter(Size).validate_python("lots")
    with pytest.raises(ValidationError, match=r"expected a duration"):
        TypeAdapter(Duration).validate_python("forever")


def test_bare_number_string_is_seconds() -> None:
    from apiward.config.units import parse_duration

    assert parse_duration("5") == 5.0
    assert parse_duration("0.5") == 0.5


def test_network_refuses_bare_numbers() -> None:
    import pytest
    from pydantic import TypeAdapter, ValidationError

    from apiward.config.units import Network

    adapter = TypeAdapter(Network)
    assert str(adapter.validate_python("10.0.0.0/8")) == "10.0.0.0/8"
    with pytest.raises(ValidationError):
        adapter.validate_python(12)
