"""A minimal aiohttp reverse proxy: the "fast common Python stack" baseline for bench/proxy.py.

One process, uvloop when installed, one shared ClientSession with a keep-alive pool. Every
request is forwarded with its method, raw path and query, headers (minus hop-by-hop) and
body; the status, headers (minus hop-by-hop) and body come back.

    python bench/aiohttp_proxy.py --port 8081 --upstream http://127.0.0.1:8080
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator, Mapping

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web
from multidict import CIMultiDict
from yarl import URL

# Headers that belong to one connection (RFC 9110 section 7.6.1) plus the framing ones that
# aiohttp recomputes itself.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)
SESSION = web.AppKey("session", ClientSession)


def end_to_end(headers: Mapping[str, str], *, drop: frozenset[str]) -> CIMultiDict[str]:
    """A copy of ``headers`` without the hop-by-hop ones."""
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        if name.lower() not in drop:
            out.add(name, value)
    return out


def make_app(upstream: str, pool_size: int) -> web.Application:
    base = upstream.rstrip("/")

    async def session_context(app: web.Application) -> AsyncIterator[None]:
        connector = TCPConnector(limit=pool_size, keepalive_timeout=60)
        timeout = ClientTimeout(total=60)
        async with ClientSession(
            connector=connector, timeout=timeout, auto_decompress=False
        ) as session:
            app[SESSION] = session
            yield

    async def forward(request: web.Request) -> web.Response:
        body = await request.read()
        async with request.app[SESSION].request(
            request.method,
            URL(base + request.raw_path, encoded=True),
            headers=end_to_end(request.headers, drop=HOP_BY_HOP | {"host"}),
            data=body or None,
            allow_redirects=False,
        ) as response:
            payload = await response.read()
            headers = end_to_end(response.headers, drop=HOP_BY_HOP)
        return web.Response(status=response.status, body=payload, headers=headers)

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.cleanup_ctx.append(session_context)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


def use_uvloop() -> bool:
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="e.g. http://127.0.0.1:8080")
    parser.add_argument("--pool", type=int, default=100, help="upstream connections (0: no limit)")
    args = parser.parse_args()
    loop_name = "uvloop" if use_uvloop() else "asyncio"
    print(f"aiohttp proxy ({loop_name}) on {args.host}:{args.port} -> {args.upstream}", flush=True)
    web.run_app(
        make_app(args.upstream, args.pool),
        host=args.host,
        port=args.port,
        access_log=None,
        print=None,
    )


if __name__ == "__main__":
    main()
