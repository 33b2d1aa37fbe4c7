"""Runs checks in order: the first blocking denial ends the call; log mode only records."""

from __future__ import annotations

import logging
from collections.abc import Callable

from apiward.pipeline.check import Check
from apiward.pipeline.context import Context
from apiward.pipeline.request import Request
from apiward.pipeline.verdict import ALLOW, Verdict, deny

log = logging.getLogger("apiward.pipeline")

CHECK_FAILED = deny(500, "check_failed", "a check failed on this request")

WouldBlock = Callable[[Request, Context, str, Verdict], None]


def run_checks(checks: tuple[Check, ...], request: Request, context: Context,
               would_block: WouldBlock) -> tuple[Check, Verdict] | None:
    """The blocking check and its denial, or None when the call may go on.

    A denial from a check in ``log`` mode is handed to ``would_block`` and the call goes
    on. A check that raises is logged with its name and fails closed, unless its config
    says ``on_error: allow``.
    """
    return _run(checks, request, context, would_block)


def run_body_checks(checks: tuple[Check, ...], request: Request, context: Context,
                    would_block: WouldBlock) -> tuple[Check, Verdict] | None:
    """The same, for the body stage: each check's ``run_body`` on the buffered body."""
    return _run(checks, request, context, would_block,
                lambda check: check.run_body(request, context))  # type: ignore[misc]


def run_response_checks(checks: tuple[Check, ...], request: Request, context: Context,
                        status: int, lines: list[bytes], body: bytes | None,
                        would_block: WouldBlock) -> tuple[Check, Verdict] | None:
    """The response stage: each check's ``run_response`` on the held answer, blocking
    per its ``response_mode``."""
    return _run(checks, request, context, would_block,
                lambda check: check.run_response(  # type: ignore[misc]
                    request, context, status, lines, body), response=True)


def _run(checks: tuple[Check, ...], request: Request, context: Context,
         would_block: WouldBlock, judge: Callable[[Check], Verdict] | None = None,
         response: bool = False) -> tuple[Check, Verdict] | None:
    """``judge`` runs one check (default: its head ``run``, the hot path, no closure)."""
    for check in checks:
        try:
            verdict = check.run(request, context) if judge is None else judge(check)
        except Exception:
            log.exception("check %r failed", check.name)
            verdict = ALLOW if check.on_error == "allow" else CHECK_FAILED
        if not verdict.allowed:
            if (check.response_mode if response else check.mode) == "block":
                return check, verdict
            would_block(request, context, check.name, verdict)
    return None
