"""The runner: order, block vs log mode, and a check that raises."""

from __future__ import annotations

import pytest

from apiward.pipeline.check import Check
from apiward.pipeline.context import Context
from apiward.pipeline.request import Request
from apiward.pipeline.runner import CHECK_FAILED, run_checks
from apiward.pipeline.verdict import ALLOW, Verdict, deny
from apiward.wire.headers import Headers

REQUEST = Request("GET", "/x", "", Headers([]), "127.0.0.1", "rid")
NO = deny(403, "no", "no")


def always(verdict: Verdict):
    return lambda request, context: verdict


def boom(request: Request, context: Context) -> Verdict:
    raise RuntimeError("bug in a check")


def run(*checks: Check) -> tuple[object, list[str]]:
    seen: list[str] = []
    result = run_checks(checks, REQUEST, Context(None, 0.0),
                        lambda request, context, name, verdict: seen.append(name))
    return result, seen


def test_all_allow() -> None:
    assert run(Check("a", "block", always(ALLOW)), Check("b", "block", always(ALLOW))) == (None, [])


def test_first_blocking_denial_ends_it() -> None:
    first = Check("first", "block", always(NO))
    result, seen = run(first, Check("second", "block", always(deny(401, "x", "x"))))
    assert result == (first, NO)
    assert seen == []


def test_log_mode_records_and_goes_on() -> None:
    blocking = Check("enforced", "block", always(NO))
    result, seen = run(Check("shadow", "log", always(NO)), blocking)
    assert seen == ["shadow"]
    assert result == (blocking, NO)


def test_raising_check_fails_closed_by_default(caplog: pytest.LogCaptureFixture) -> None:
    failing = Check("broken", "block", boom)
    result, _ = run(failing)
    assert result == (failing, CHECK_FAILED)
    assert CHECK_FAILED.status == 500
    assert "broken" in caplog.text


def test_raising_check_with_on_error_allow_lets_through() -> None:
    result, _ = run(Check("broken", "block", boom, on_error="allow"))
    assert result is None
