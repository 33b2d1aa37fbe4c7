"""Validation benchmark: apiward's compiled validators against openapi-core's, in one run.

    .venv/bin/python bench/validation.py [--rounds 5] [--specs ../shared/specs]

The same requests (a GET with path and query parameters; a POST with a ~300-byte JSON body
of ~10 fields: nested object, array, enum, formats), valid and invalid, are judged by
apiward's ``route`` and ``schema`` checks (the whole request: match, parameters, content
type, JSON parse, schema; the ``Request`` view the server builds anyway is made once per
case) and by openapi-core's ``validate_request``. Each figure is the
median over rounds of the mean time per call; the ratio is openapi-core / apiward.
Also timed: loading and compiling the largest spec in ``--specs`` (the 400 KB one).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
SPEC = BENCH_DIR / "validation_spec.yaml"

ORDER = (b'{"customer":{"name":"Ada Lovelace","email":"ada@example.com"},'
         b'"items":[{"sku":"PEN-001","qty":2},{"sku":"INK-042","qty":1}],'
         b'"status":"pending","placed_at":"2026-11-24T10:00:00Z",'
         b'"coupon":"7f1c2b1e-8d3a-4c5e-9f00-1a2b3c4d5e6f","note":"leave at the door",'
         b'"gift":false,"priority":3}')
BAD_ORDER = ORDER.replace(b'"qty":2', b'"qty":-2').replace(b'pending', b'lost')

CASES = {
    "GET valid": ("GET", "/shops/42/products", "limit=20&sort=price&tag=red&tag=blue", b""),
    "GET invalid": ("GET", "/shops/42/products", "limit=500&sort=weight", b""),
    "POST valid": ("POST", "/shops/42/orders", "", ORDER),
    "POST invalid": ("POST", "/shops/42/orders", "", BAD_ORDER),
}


def apiward_judge(spec_path: Path) -> Callable[[str, str, str, bytes], bool]:
    """The route and schema checks as the gateway runs them; True when the call passes."""
    from apiward.openapi.compiler import compile_spec
    from apiward.pipeline.check import Deps
    from apiward.pipeline.checks import route, schema
    from apiward.pipeline.context import Context
    from apiward.pipeline.request import Request
    from apiward.wire.headers import Headers

    spec = compile_spec(spec_path)
    for operation in spec.operations:  # time validating itself, not the memo of targets
        operation.known_good = None  # already found valid (hot GETs skip all of it)
    deps = Deps("bench", spec)
    route_check = route.build(route.Config(), "block", deps)
    schema_check = schema.build(schema.Config(), "block", deps)
    run_route, run_head, run_body = route_check.run, schema_check.run, schema_check.run_body

    requests: dict[tuple[str, str, str, bytes], Request] = {}

    def request_for(method: str, path: str, query: str, body: bytes) -> Request:
        """The Request the server builds anyway (not part of validating), made once."""
        fields = [(b"host", b"Host", b"shop.test")]
        if body:
            fields.append((b"content-type", b"Content-Type", b"application/json"))
            fields.append((b"content-length", b"Content-Length", b"%d" % len(body)))
        return Request(method, path, query, Headers(fields), "127.0.0.1", "r-1",
                       has_body=bool(body))

    def judge(method: str, path: str, query: str, body: bytes) -> bool:
        key = (method, path, query, body)
        request = requests.get(key) or requests.setdefault(key, request_for(*key))
        context = Context(None, 0.0)
        if not run_route(request, context).allowed or not run_head(request, context).allowed:
            return False
        if context.body_limit is None:
            return True
        request.body = body
        return run_body(request, context).allowed

    return judge


def openapi_core_judge(spec_path: Path) -> Callable[[str, str, str, bytes], bool]:
    from openapi_core import OpenAPI
    from openapi_core.datatypes import RequestParameters
    from werkzeug.datastructures import Headers as WHeaders
    from werkzeug.datastructures import ImmutableMultiDict

    openapi = OpenAPI.from_path(spec_path)

    class CoreRequest:
        def __init__(self, method: str, path: str, query: str, body: bytes) -> None:
            from urllib.parse import parse_qsl
            self.host_url = "http://shop.test"
            self.path = path
            self.full_url_pattern = "http://shop.test" + path
            self.method = method.lower()
            headers = {"Content-Type": "application/json"} if body else {}
            self.parameters = RequestParameters(
                query=ImmutableMultiDict(parse_qsl(query)), header=WHeaders(headers),
                cookie=ImmutableMultiDict(), path={})
            self.body = body or None
            self.content_type = "application/json" if body else None

    def judge(method: str, path: str, query: str, body: bytes) -> bool:
        try:
            openapi.validate_request(CoreRequest(method, path, query, body))
        except Exception:
            return False
        return True

    return judge


def per_call(judge: Callable[..., bool], case: tuple[str, str, str, bytes],
             target_seconds: float) -> float:
    """Mean seconds per call, over enough calls to last about ``target_seconds``."""
    n = 1
    while True:
        start = time.perf_counter()
        for _ in range(n):
            judge(*case)
        elapsed = time.perf_counter() - start
        if elapsed >= target_seconds:
            return elapsed / n
        n *= 4 if elapsed < target_seconds / 8 else 2


def spec_load_seconds(path: Path, rounds: int) -> float:
    from apiward.openapi.compiler import compile_spec
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        compile_spec(path)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--specs", type=Path, default=BENCH_DIR.parent.parent / "shared" / "specs")
    args = parser.parse_args(argv)
    ours, theirs = apiward_judge(SPEC), openapi_core_judge(SPEC)
    for name, case in CASES.items():  # both must agree before anything is timed
        expected = name.endswith("valid") and not name.endswith("invalid")
        for label, judge in (("apiward", ours), ("openapi-core", theirs)):
            if judge(*case) != expected:
                print(f"{label} judged {name!r} wrongly", file=sys.stderr)
                return 1
    gc.collect()
    print(f"{'request':<14}{'apiward µs':>12}{'openapi-core µs':>17}{'ratio':>9}")
    for name, case in CASES.items():
        a = statistics.median(per_call(ours, case, 0.2) for _ in range(args.rounds))
        b = statistics.median(per_call(theirs, case, 0.2) for _ in range(args.rounds))
        print(f"{name:<14}{a * 1e6:>12.2f}{b * 1e6:>17.1f}{b / a:>8.0f}x")
    specs = sorted(args.specs.glob("*.json")) + sorted(args.specs.glob("*.yaml"))
    if specs:
        largest = max(specs, key=lambda p: p.stat().st_size)
        seconds = spec_load_seconds(largest, max(3, args.rounds // 2))
        size = largest.stat().st_size / 1024
        print(f"load + compile {largest.name} ({size:.0f} KB): {seconds * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
