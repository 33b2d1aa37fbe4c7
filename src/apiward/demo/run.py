"""``apiward demo``: the bookshop API on a free port, the gateway in front, six calls shown."""

from __future__ import annotations

import asyncio
import signal

from apiward.config.models import Config
from apiward.demo.app import serve as serve_demo_api
from apiward.demo.app import spec_path
from apiward.runtime import Runtime
from apiward.server.gateway import Gateway, listen_socket
from apiward.server.workers import install_event_loop

HEALTH_LIMIT = 2  # calls a minute per client address, to show a 429

# (what it shows, method, path, curl flags, how many times it is called: the last is shown)
CALLS = (
    ("an allowed call", "GET", "/books/1", "", 1),
    ("a method the API does not accept", "PUT", "/books/1", "", 1),
    ("a path climbing out of the API", "GET", "/books/%2e%2e/%2e%2e/etc/passwd",
     "--path-as-is ", 1),
    ("an endpoint the OpenAPI document does not declare", "GET", "/admin/users", "", 1),
    ("a query parameter the schema does not allow", "GET", "/books?limit=1000", "", 1),
    (f"a client over its rate limit ({HEALTH_LIMIT}/min on GET /health; the third call)",
     "GET", "/health", "", HEALTH_LIMIT + 1),
)


def demo_config(upstream: str, port: int) -> Config:
    return Config.model_validate({
        "listen": f"127.0.0.1:{port}",
        "events": {"stdout": False},
        "apis": [{
            "name": "bookshop",
            "upstream": {"url": upstream},
            "spec": str(spec_path()),
            "checks": {
                "methods": {"allow": ["GET", "POST", "DELETE"]},
                "ipfilter": {"allow": ["127.0.0.0/8", "::1/128"]},
                "ratelimit": {"rules": [{"name": "health", "key": "ip",
                                         "match": "GET /health",
                                         "limits": [f"{HEALTH_LIMIT}/min"]}]},
            },
        }],
    })


async def fetch(port: int, method: str, path: str) -> str:
    """One raw HTTP/1.1 call, so the demo shows exactly what a client gets."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                 "Connection: close\r\n\r\n".encode())
    answer = (await reader.read()).decode("utf-8", "replace")
    writer.close()
    head, _, body = answer.partition("\r\n\r\n")
    return f"  {head.splitlines()[0]}\n  {body.strip()}"


async def main(port: int) -> int:
    api = await serve_demo_api()
    try:
        sock = listen_socket("127.0.0.1", port)
    except OSError:
        sock = listen_socket("127.0.0.1", 0)  # the usual port is taken: any free one
    bound = sock.getsockname()[1]
    gateway = Gateway(Runtime(demo_config(api.url, bound)))
    await gateway.serve(sock)
    base = f"http://127.0.0.1:{bound}"
    print(f"demo API (direct):  {api.url}   OpenAPI: {spec_path()}")
    print(f"apiward gateway:    {base}\n")
    for title, method, path, flags, times in CALLS:
        option = "" if method == "GET" else f"-X {method} "
        print(f"# {title}\ncurl -i {flags}{option}{base}{path}")
        for _ in range(times - 1):
            await fetch(bound, method, path)
        print(await fetch(bound, method, path) + "\n")
    print("Serving until Ctrl-C.", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await gateway.shutdown(5.0)
    await api.close()
    return 0


def run_demo(port: int) -> int:
    install_event_loop()
    return asyncio.run(main(port))
