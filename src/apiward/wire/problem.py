"""RFC 9457 problem+json answers, built as complete HTTP/1.1 response bytes."""

from __future__ import annotations

from http import HTTPStatus

import orjson

from apiward.pipeline.verdict import Verdict


def status_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem_body(verdict: Verdict, check: str, request_id: str) -> bytes:
    """The JSON document: type, title, status, detail, check, request_id (+ errors)."""
    doc: dict[str, object] = {
        "type": f"urn:apiward:problem:{verdict.reason}",
        "title": verdict.title or status_phrase(verdict.status),
        "status": verdict.status,
        "detail": verdict.detail,
        "check": check,
        "request_id": request_id,
    }
    if verdict.violations:
        doc["errors"] = [
            {"location": v.location, "rule": v.rule, "message": v.message}
            for v in verdict.violations
        ]
    return orjson.dumps(doc)


def problem_response(
    verdict: Verdict,
    check: str,
    request_id: str,
    *,
    request_id_header: bytes = b"X-Request-ID",
    close: bool = False,
    head_only: bool = False,
) -> bytes:
    """A whole response: status line, headers (the verdict's own included), JSON body."""
    body = problem_body(verdict, check, request_id)
    lines = [
        b"HTTP/1.1 %d %s\r\n" % (verdict.status, status_phrase(verdict.status).encode()),
        b"Content-Type: application/problem+json\r\n",
        b"Content-Length: %d\r\n" % len(body),
        b"Cache-Control: no-store\r\n",
        request_id_header + b": " + request_id.encode("latin-1") + b"\r\n",
    ]
    for name, value in verdict.headers:
        lines.append(f"{name}: {value}\r\n".encode("latin-1"))
    if close:
        lines.append(b"Connection: close\r\n")
    lines.append(b"\r\n")
    if not head_only:
        lines.append(body)
    return b"".join(lines)
