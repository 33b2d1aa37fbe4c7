"""The demo bookshop, served for real by `serve()` on 127.0.0.1:0 and called with httpx."""

from __future__ import annotations

import asyncio
import re
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import yaml
from starlette.routing import Route

from apiward.demo.app import build_app, serve, spec_path

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def _loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if name == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        return uvloop.new_event_loop
    return asyncio.new_event_loop


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    """A fresh demo API on its own event loop in a thread, and a client for it.

    The loop is uvloop's where available, as in the gateway; `serve()` on the plain
    asyncio loop is covered by the tests of `serve()` below.
    """
    try:
        import uvloop
    except ImportError:
        loop = asyncio.new_event_loop()
    else:
        loop = uvloop.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="demo-api-loop", daemon=True)
    thread.start()
    try:
        demo = asyncio.run_coroutine_threadsafe(serve(), loop).result(timeout=10)
        try:
            with httpx.Client(base_url=demo.url, timeout=5) as http:
                yield http
        finally:
            asyncio.run_coroutine_threadsafe(demo.close(), loop).result(timeout=10)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def _login(client: httpx.Client) -> str:
    response = client.post("/login", json={"username": "reader", "password": "secret"})
    assert response.status_code == 200
    return response.json()["token"]


def _assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status
    assert problem["title"]
    assert problem["detail"]
    return problem


# --- the API ---------------------------------------------------------------------------


def test_health(client: httpx.Client) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_list_books(client: httpx.Client) -> None:
    body = client.get("/books").json()
    assert body["count"] == len(body["items"]) == 5
    assert [book["id"] for book in body["items"]] == [1, 2, 3, 4, 5]

    limited = client.get("/books", params={"limit": 2}).json()
    assert [book["id"] for book in limited["items"]] == [1, 2]
    assert limited["count"] == 2

    by_author = client.get("/books", params={"author": "knuth"}).json()
    assert [book["author"] for book in by_author["items"]] == ["Donald Knuth"]
    assert client.get("/books", params={"author": "nobody"}).json() == {"items": [], "count": 0}


@pytest.mark.parametrize("limit", ["0", "101", "ten"])
def test_list_books_bad_limit(client: httpx.Client, limit: str) -> None:
    _assert_problem(client.get("/books", params={"limit": limit}), 400)


def test_get_book(client: httpx.Client) -> None:
    response = client.get("/books/2")
    assert response.status_code == 200
    book = response.json()
    assert book["id"] == 2
    assert book["author"] == "Martin Kleppmann"


def test_get_unknown_book_is_404_problem(client: httpx.Client) -> None:
    problem = _assert_problem(client.get("/books/999"), 404)
    assert "999" in problem["detail"]
    _assert_problem(client.get("/books/not-a-number"), 404)
    _assert_problem(client.get("/no/such/route"), 404)


def test_wrong_method_is_405_with_allow(client: httpx.Client) -> None:
    response = client.put("/books/1", json={})
    _assert_problem(response, 405)
    assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD", "DELETE"}


def test_create_book(client: httpx.Client) -> None:
    new = {"title": "Thinking in Systems", "author": "Donella Meadows", "price": 19.95}
    response = client.post("/books", json={**new, "isbn": "9781603580557", "tags": ["systems"]})
    assert response.status_code == 201
    book = response.json()
    assert book == {"id": 6, **new, "isbn": "9781603580557", "tags": ["systems"]}
    assert response.headers["location"] == "/books/6"
    assert client.get(response.headers["location"]).json() == book

    minimal = client.post("/books", json=new).json()
    assert minimal == {"id": 7, **new, "tags": []}
    assert client.get("/books").json()["count"] == 7


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"[1, 2]", b'{"title": "No author", "price": 1}', b"\xff\xfe"],
    ids=["bad-json", "not-object", "missing-field", "not-utf8"],
)
def test_create_book_bad_body_is_400(client: httpx.Client, content: bytes) -> None:
    response = client.post("/books", content=content, headers={"content-type": "application/json"})
    _assert_problem(response, 400)
    assert client.get("/books").json()["count"] == 5


def test_login(client: httpx.Client) -> None:
    token = _login(client)
    assert re.fullmatch(r"[A-Za-z0-9_-]{16,128}", token)
    assert _login(client) != token  # a new random token each time


@pytest.mark.parametrize(
    "credentials",
    [{"username": "reader", "password": "wrong"}, {"username": "root", "password": "secret"}],
)
def test_login_wrong_credentials_is_401(client: httpx.Client, credentials: dict) -> None:
    _assert_problem(client.post("/login", json=credentials), 401)


def test_login_bad_body_is_400(client: httpx.Client) -> None:
    _assert_problem(client.post("/login", json={"username": "reader"}), 400)
    _assert_problem(client.post("/login", json={"username": "reader", "password": 1}), 400)


def test_delete_needs_a_token(client: httpx.Client) -> None:
    for headers in (
        {},
        {"Authorization": "Basic cmVhZGVyOnNlY3JldA=="},
        {"Authorization": "Bearer"},
    ):
        response = client.delete("/books/1", headers=headers)
        _assert_problem(response, 401)
        assert response.headers["www-authenticate"].startswith("Bearer")

    response = client.delete("/books/1", headers={"Authorization": "Bearer made-up-token"})
    _assert_problem(response, 401)
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert client.get("/books/1").status_code == 200


def test_delete_with_token(client: httpx.Client) -> None:
    auth = {"Authorization": f"Bearer {_login(client)}"}
    response = client.delete("/books/1", headers=auth)
    assert response.status_code == 204
    assert response.content == b""
    _assert_problem(client.get("/books/1"), 404)
    _assert_problem(client.delete("/books/1", headers=auth), 404)
    assert client.get("/books").json()["count"] == 4


# --- serve() -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["asyncio", "uvloop"])
def test_serve_in_the_main_thread_leaves_signals_alone(name: str) -> None:
    async def main() -> None:
        # (asyncio.Runner has put in its own SIGINT handler by now.)
        before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        demo = await serve()
        server, port = demo  # a named tuple
        assert port == demo.port > 0
        assert server.started
        assert demo.url == f"http://127.0.0.1:{port}"
        async with demo, httpx.AsyncClient(base_url=demo.url) as http:
            assert (await http.get("/health")).json() == {"status": "ok"}
            assert {sig: signal.getsignal(sig) for sig in before} == before
        with pytest.raises(httpx.ConnectError):
            async with httpx.AsyncClient(base_url=demo.url) as http:
                await http.get("/health")
        await demo.close()  # idempotent
        assert {sig: signal.getsignal(sig) for sig in before} == before

    with asyncio.Runner(loop_factory=_loop_factory(name)) as runner:
        runner.run(main())


def test_each_server_has_its_own_state() -> None:
    async def main() -> None:
        async with await serve() as one, await serve() as two:
            assert one.port != two.port
            async with httpx.AsyncClient() as http:
                new = {"title": "Only in one", "author": "A", "price": 1}
                assert (await http.post(f"{one.url}/books", json=new)).status_code == 201
                assert (await http.get(f"{one.url}/books")).json()["count"] == 6
                assert (await http.get(f"{two.url}/books")).json()["count"] == 5

    asyncio.run(main())


def test_serve_raises_when_the_port_is_taken() -> None:
    async def main() -> None:
        async with await serve() as demo:
            with pytest.raises(OSError):
                await serve(port=demo.port)

    asyncio.run(main())


# --- the OpenAPI document ------------------------------------------------------------------


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    with spec_path().open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def _app_operations() -> set[tuple[str, str]]:
    operations = set()
    for route in build_app().routes:
        assert isinstance(route, Route)
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)  # "{id:int}" -> "{id}"
        # Endpoints are HTTPEndpoint classes: one method per handler (HEAD comes with GET).
        methods = {m for m in HTTP_METHODS if m != "head" and hasattr(route.endpoint, m)}
        assert methods, route.path
        operations |= {(method, path) for method in methods}
    return operations


def _spec_operations(spec: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method, path)
        for path, item in spec["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


def test_spec_is_openapi_3_1(spec: dict[str, Any]) -> None:
    assert spec_path().name == "openapi.yaml"
    assert re.fullmatch(r"3\.1\.\d+", spec["openapi"])
    assert spec["servers"] == [{"url": "/"}]
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": spec["components"]["securitySchemes"]["bearerAuth"]["description"],
    }


def test_spec_and_app_have_the_same_operations(spec: dict[str, Any]) -> None:
    assert _spec_operations(spec) == _app_operations()


def test_spec_security_and_operation_ids(spec: dict[str, Any]) -> None:
    ids = []
    for method, path in _spec_operations(spec):
        operation = spec["paths"][path][method]
        ids.append(operation["operationId"])
        expected = [{"bearerAuth": []}] if method == "delete" else []
        assert operation["security"] == expected, (method, path)
    assert len(set(ids)) == len(ids)


def test_spec_is_valid_openapi(spec: dict[str, Any]) -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(spec)


def test_responses_match_the_spec_schemas(client: httpx.Client, spec: dict[str, Any]) -> None:
    jsonschema = pytest.importorskip("jsonschema")

    def check(response: httpx.Response, schema: str) -> None:
        # The whole document is the root, so "#/components/schemas/..." refs resolve.
        document = {**spec, "$ref": f"#/components/schemas/{schema}"}
        jsonschema.Draft202012Validator(document).validate(response.json())

    check(client.get("/books"), "BookList")
    check(client.get("/books/1"), "Book")
    check(client.post("/books", json={"title": "T", "author": "A", "price": 0}), "Book")
    check(client.post("/login", json={"username": "reader", "password": "secret"}), "Token")
    check(client.get("/books/999"), "Problem")
    check(client.post("/login", json={}), "Problem")
    for name, schema in spec["components"]["schemas"].items():
        for example in schema.get("examples", []):
            document = {**spec, "$ref": f"#/components/schemas/{name}"}
            jsonschema.Draft202012Validator(document).validate(example)
