"""The demo API: a small bookshop that `apiward demo` puts behind the gateway.

A Starlette app with no database: each `build_app()` call gets its own in-memory shop,
seeded with a few books. It is deliberately trusting: it refuses only bodies that are
not JSON objects or that lack required fields, and stores whatever types it is given.
Checking types, bounds and formats against `openapi.yaml` is the gateway's job.

Routes (described exactly by `spec_path()`):

    GET    /books            list; `limit` (1..100, default 20), `author` (substring)
    POST   /books            create -> 201 + Location
    GET    /books/{id}       one book, 404 problem+json if unknown
    DELETE /books/{id}       204; needs `Authorization: Bearer <token from /login>`
    POST   /login            {"username", "password"} -> {"token"}; reader / secret
    GET    /health           {"status": "ok"}
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import importlib.resources
import pathlib
import secrets
import socket
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any, NamedTuple

import uvicorn
from starlette.applications import Starlette
from starlette.endpoints import HTTPEndpoint
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = ["DemoServer", "build_app", "serve", "spec_path"]

DEMO_USER = "reader"
DEMO_PASSWORD = "secret"
MAX_BODY_SIZE = 64 * 1024
PROBLEM_JSON = "application/problem+json"

_SEED_BOOKS: tuple[dict[str, Any], ...] = (
    {
        "title": "The Pragmatic Programmer",
        "author": "David Thomas",
        "price": 49.99,
        "isbn": "9780135957059",
        "tags": ["programming", "craft"],
    },
    {
        "title": "Designing Data-Intensive Applications",
        "author": "Martin Kleppmann",
        "price": 45.0,
        "isbn": "9781449373320",
        "tags": ["databases", "distributed-systems"],
    },
    {
        "title": "Structure and Interpretation of Computer Programs",
        "author": "Harold Abelson",
        "price": 55.0,
        "isbn": "9780262510875",
        "tags": ["programming", "lisp"],
    },
    {
        "title": "The Art of Computer Programming, Volume 1",
        "author": "Donald Knuth",
        "price": 89.99,
        "isbn": "9780201896831",
        "tags": ["algorithms"],
    },
    {
        "title": "Cryptography Engineering",
        "author": "Niels Ferguson",
        "price": 60.0,
        "isbn": "9780470474242",
        "tags": ["security", "cryptography"],
    },
)


class _Shop:
    """The state of one app instance: books by id, the next id, issued tokens."""

    def __init__(self) -> None:
        self.books: dict[int, dict[str, Any]] = {}
        self.tokens: set[str] = set()
        self._next_id = 1
        for book in _SEED_BOOKS:
            self.add({**book, "tags": list(book["tags"])})

    def add(self, fields: dict[str, Any]) -> dict[str, Any]:
        book = {"id": self._next_id, **fields}
        self.books[self._next_id] = book
        self._next_id += 1
        return book


def _problem(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


class _BadRequest(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


async def _json_object(request: Request, required: tuple[str, ...]) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise _BadRequest("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise _BadRequest("the request body must be a JSON object")
    missing = [name for name in required if name not in body]
    if missing:
        raise _BadRequest(f"missing required field(s): {', '.join(missing)}")
    return body


def _shop(request: Request) -> _Shop:
    return request.app.state.shop


class Books(HTTPEndpoint):
    async def get(self, request: Request) -> Response:
        raw_limit = request.query_params.get("limit", "20")
        try:
            limit = int(raw_limit)
        except ValueError:
            limit = 0
        if not 1 <= limit <= 100:
            return _problem(400, "limit must be an integer from 1 to 100")
        books = list(_shop(request).books.values())
        author = request.query_params.get("author")
        if author is not None:
            needle = author.casefold()
            books = [b for b in books if needle in str(b["author"]).casefold()]
        items = books[:limit]
        return JSONResponse({"items": items, "count": len(items)})

    async def post(self, request: Request) -> Response:
        try:
            body = await _json_object(request, ("title", "author", "price"))
        except _BadRequest as exc:
            return _problem(400, exc.detail)
        fields = {name: body[name] for name in ("title", "author", "price")}
        if "isbn" in body:
            fields["isbn"] = body["isbn"]
        fields["tags"] = body.get("tags", [])
        book = _shop(request).add(fields)
        return JSONResponse(book, status_code=201, headers={"Location": f"/books/{book['id']}"})


class Book(HTTPEndpoint):
    async def get(self, request: Request) -> Response:
        book_id = request.path_params["id"]
        book = _shop(request).books.get(book_id)
        if book is None:
            return _problem(404, f"no book with id {book_id}")
        return JSONResponse(book)

    async def delete(self, request: Request) -> Response:
        shop = _shop(request)
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return _problem(
                401,
                "a bearer token from POST /login is required",
                {"WWW-Authenticate": 'Bearer realm="apiward-demo"'},
            )
        if token.strip() not in shop.tokens:
            return _problem(
                401,
                "the bearer token is not valid",
                {"WWW-Authenticate": 'Bearer realm="apiward-demo", error="invalid_token"'},
            )
        book_id = request.path_params["id"]
        if shop.books.pop(book_id, None) is None:
            return _problem(404, f"no book with id {book_id}")
        return Response(status_code=204)


class Login(HTTPEndpoint):
    async def post(self, request: Request) -> Response:
        try:
            body = await _json_object(request, ("username", "password"))
        except _BadRequest as exc:
            return _problem(400, exc.detail)
        username, password = body["username"], body["password"]
        if not (isinstance(username, str) and isinstance(password, str)):
            return _problem(400, "username and password must be strings")
        # Compare both, always, in constant time.
        user_ok = hmac.compare_digest(username.encode(), DEMO_USER.encode())
        password_ok = hmac.compare_digest(password.encode(), DEMO_PASSWORD.encode())
        if not (user_ok and password_ok):
            return _problem(401, "unknown username or wrong password")
        token = secrets.token_urlsafe(32)
        _shop(request).tokens.add(token)
        return JSONResponse({"token": token})


class Health(HTTPEndpoint):
    async def get(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})


async def _http_exception(request: Request, exc: Exception) -> Response:
    """Unknown routes (404), wrong methods (405), bodies over the limit (413)."""
    assert isinstance(exc, HTTPException)
    return _problem(exc.status_code, exc.detail, dict(exc.headers or {}))


def build_app() -> Starlette:
    """A new bookshop app with its own in-memory state, seeded with five books."""
    app = Starlette(
        routes=[
            Route("/books", Books, name="books"),
            Route("/books/{id:int}", Book, name="book"),
            Route("/login", Login, name="login"),
            Route("/health", Health, name="health"),
        ],
        exception_handlers={HTTPException: _http_exception},
        max_body_size=MAX_BODY_SIZE,
    )
    app.state.shop = _Shop()
    return app


def spec_path() -> pathlib.Path:
    """The packaged OpenAPI 3.1 document describing `build_app()`."""
    ref = importlib.resources.files(__package__) / "openapi.yaml"
    if not isinstance(ref, pathlib.Path):  # e.g. imported from a zip file
        raise RuntimeError(f"apiward must be installed as plain files to find {ref}")
    return ref


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that shares its host's event loop and process.

    It leaves signal handling to the host (plain `uvicorn.Server.serve` takes over
    SIGINT/SIGTERM while it runs) and sets `ready` once it accepts connections.
    """

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self.ready.set()


class DemoServer(NamedTuple):
    """A running demo API, as returned by `serve()`.

    A named tuple, so `server, port = await serve()` works; also has `url`, `close()`
    and `async with` (which closes it on exit).
    """

    server: uvicorn.Server
    port: int

    @property
    def url(self) -> str:
        host = self.server.config.host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    async def close(self) -> None:
        """Stop accepting, let open requests finish, and wait until the server is gone.

        Equivalent to `server.should_exit = True` and awaiting the serve task. Idempotent.
        """
        self.server.should_exit = True
        task = getattr(self.server, "task", None)
        if task is not None:
            await task

    async def __aenter__(self) -> DemoServer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family)


async def serve(host: str = "127.0.0.1", port: int = 0) -> DemoServer:
    """Start the demo API inside the running event loop (asyncio or uvloop).

    Binds `host:port` first (port 0 picks a free port; a bind error is raised here as
    `OSError`), then runs uvicorn on that socket as a task of the current loop and
    returns once it accepts connections. Stop it with `await demo.close()` (or use
    `async with await serve() as demo:`); the loop must not end before that.
    """
    sock = _bind(host, port)
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(
        build_app(),
        host=host,
        port=bound_port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        log_config=None,  # embedded: leave the process's logging set-up to its host
    )
    server = _EmbeddedServer(config)
    try:
        server.task = asyncio.create_task(
            server.serve(sockets=[sock]), name=f"apiward-demo-{bound_port}"
        )
        ready = asyncio.create_task(server.ready.wait())
        try:
            await asyncio.wait({server.task, ready}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
        if not server.ready.is_set():
            server.task.result()  # raises what made it stop
            raise RuntimeError("the demo API stopped before it was ready")
    except BaseException:
        server.should_exit = True
        if server.task is not None and not server.task.done():
            server.task.cancel()
            await asyncio.wait({server.task})
        sock.close()
        raise
    return DemoServer(server, bound_port)
