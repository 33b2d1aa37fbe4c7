"""The schema conformance corpus: where the specs are, the case records, and openapi-core's
judgement of a case (the reference validator of the differential test and of the corpus
filter in ``tests/corpus/generate.py``).

A case is one concrete HTTP request against one spec, stored as one JSON line::

    {"id": "GET /books/{id} p3", "spec": "src/apiward/demo/openapi.yaml",
     "operation": "GET /books/{id}", "method": "GET", "path": "/books/17",
     "query": "", "headers": [["Authorization", "Bearer ..."]], "body": null,
     "body_encoding": null, "kind": "positive", "expect": "2xx-upstream",
     "why": "...", "where": [], "openapi_core": "valid"}

``path`` and ``query`` are exactly what goes on the request line (percent-encoded);
``body`` is text (``body_encoding: "text"``) or base64 (``"base64"``); ``where`` names the
places a negative case breaks the spec (``query.limit``, ``path.id``, ``header.x-token``,
``body``, ``content-type``, ``security``, ``path``, ``method``).
"""

from __future__ import annotations

import base64
import json
import logging
import warnings
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import yaml

REPO = Path(__file__).resolve().parents[2]
CORPUS_DIR = REPO / "tests" / "corpus"
SHARED_SPECS = REPO.parent / "shared" / "specs"

POSITIVE = "positive"
NEGATIVE = "negative"
DISPUTED = "disputed"  # schemathesis and openapi-core disagree: differential test input only
UPSTREAM = "2xx-upstream"
CRASHED = 0  # Judgement.status when openapi-core itself failed: no verdict
HOST_FALLBACK = "http://apiward.test"


@dataclass(frozen=True)
class Spec:
    """One spec of the corpus: ``ref`` is its path relative to the repository root, as
    written in every case; ``name`` names its corpus file ``tests/corpus/<name>.jsonl``."""

    name: str
    ref: str

    @property
    def path(self) -> Path:
        return (REPO / self.ref).resolve()

    @property
    def available(self) -> bool:
        return self.path.is_file()

    @property
    def corpus(self) -> Path:
        return CORPUS_DIR / f"{self.name}.jsonl"

    @property
    def disputed(self) -> Path:
        return CORPUS_DIR / f"{self.name}.disputed.jsonl"

    @cached_property
    def document(self) -> dict[str, Any]:
        return yaml.safe_load(self.path.read_text(encoding="utf-8"))

    @cached_property
    def server_url(self) -> tuple[str, str]:
        """(scheme://host of the first server, or a stand-in; its base path, no trailing /)."""
        servers = self.document.get("servers") or [{"url": "/"}]
        server = servers[0]
        url = server.get("url", "/")
        for name, variable in (server.get("variables") or {}).items():
            url = url.replace("{" + name + "}", str(variable.get("default", "")))
        parts = urlsplit(url)
        host = f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else \
            HOST_FALLBACK
        return host, parts.path.rstrip("/")

    @property
    def base_path(self) -> str:
        return self.server_url[1]


SPECS = (
    Spec("demo", "src/apiward/demo/openapi.yaml"),
    Spec("oai-petstore-expanded-3.0", "../shared/specs/oai-petstore-expanded-3.0.yaml"),
    Spec("swagger-petstore-3.0", "../shared/specs/swagger-petstore-3.0.yaml"),
    Spec("redocly-museum-3.1", "../shared/specs/redocly-museum-3.1.yaml"),
    Spec("ory-kratos-3.0", "../shared/specs/ory-kratos-3.0.json"),
)
SPECS_BY_REF = {spec.ref: spec for spec in SPECS}


@dataclass(frozen=True)
class Case:
    id: str
    spec: str
    operation: str
    method: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]
    body: bytes | None
    kind: str
    expect: str
    why: str
    where: tuple[str, ...]
    openapi_core: str

    @property
    def target(self) -> str:
        return self.path + ("?" + self.query if self.query else "")

    @property
    def expect_status(self) -> int | None:
        """The status the gateway must answer itself; None: the upstream answers."""
        return None if self.expect == UPSTREAM else int(self.expect)

    def header(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    def to_json(self) -> str:
        record = asdict(self)
        record["headers"] = [list(pair) for pair in self.headers]
        record["where"] = list(self.where)
        record["body"], record["body_encoding"] = encode_body(self.body)
        return json.dumps(record, sort_keys=True, ensure_ascii=True)

    @classmethod
    def from_json(cls, line: str) -> Case:
        record = json.loads(line)
        body = decode_body(record.pop("body"), record.pop("body_encoding"))
        headers = tuple((name, value) for name, value in record.pop("headers"))
        where = tuple(record.pop("where"))
        return cls(body=body, headers=headers, where=where, **record)


def encode_body(body: bytes | None) -> tuple[str | None, str | None]:
    if body is None:
        return None, None
    if body.isascii() and all(32 <= b < 127 or b in (9, 10, 13) for b in body):
        return body.decode("ascii"), "text"
    return base64.b64encode(body).decode("ascii"), "base64"


def decode_body(text: str | None, encoding: str | None) -> bytes | None:
    if text is None:
        return None
    return text.encode("ascii") if encoding == "text" else base64.b64decode(text)


def load_cases(spec: Spec, disputed: bool = False) -> list[Case]:
    path = spec.disputed if disputed else spec.corpus
    with path.open(encoding="ascii") as lines:
        return [Case.from_json(line) for line in lines if line.strip()]


# -- openapi-core, the reference ------------------------------------------------------------
@dataclass(frozen=True)
class Judgement:
    """openapi-core's verdict: ``status`` None for valid, else the status its first error
    maps to (404 path, 405 method, 401 security, 415 media type, 400 the rest), or CRASHED
    when openapi-core raised something else (e.g. ValueError on ``application/json;``)."""

    status: int | None
    error: str
    operation: str | None  # "METHOD /template" openapi-core matched, when it found one
    place: str = ""  # where its first error is: "query.limit", "body" ...

    @property
    def valid(self) -> bool:
        return self.status is None

    @property
    def label(self) -> str:
        return "valid" if self.status is None else f"{self.status} {self.error}"


class CoreRequest:
    """The ``openapi_core.protocols.Request`` shape for one case (as werkzeug would present
    it: decoded path, parsed query, headers, cookies)."""

    def __init__(self, host_url: str, case: Case) -> None:
        from openapi_core.datatypes import RequestParameters
        from werkzeug.datastructures import Headers, ImmutableMultiDict
        from werkzeug.http import parse_cookie

        self.host_url = host_url
        self.path = unquote(case.path)
        self.method = case.method.lower()
        cookies: list[tuple[str, str]] = []
        for value in (v for k, v in case.headers if k.lower() == "cookie"):
            cookies += list(parse_cookie(value).items(multi=True))
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(parse_qsl(case.query, keep_blank_values=True)),
            header=Headers(list(case.headers)),
            cookie=ImmutableMultiDict(cookies),
        )
        self.body = case.body
        self.content_type = (case.header("content-type") or "").lower()


class OpenApiCore:
    """openapi-core's request validator for one spec."""

    def __init__(self, spec: Spec) -> None:
        from openapi_core import OpenAPI
        from openapi_core.templating.paths.finders import APICallPathFinder

        # openapi-core logs "valid oneOf schema not found" for every such body: noise here.
        logging.getLogger("openapi_core").setLevel(logging.ERROR)
        self.spec = spec
        self.api = OpenAPI.from_path(spec.path)
        self.finder = APICallPathFinder(self.api.spec)
        self.host_url = spec.server_url[0]

    def judge(self, case: Case) -> Judgement:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Unsupported scheme type" (oauth2 ...)
            return self._judge(case)

    def _judge(self, case: Case) -> Judgement:
        from openapi_core.templating.media_types.exceptions import MediaTypeNotFound
        from openapi_core.templating.paths.exceptions import (
            OperationNotFound,
            PathError,
        )
        from openapi_core.validation.request.exceptions import (
            ParameterValidationError,
            RequestBodyValidationError,
            RequestValidationError,
            SecurityValidationError,
        )

        request = CoreRequest(self.host_url, case)
        operation = None
        try:
            found = self.finder.find(request.method, self.host_url + request.path)
            operation = f"{found.operation.parts[-1].upper()} {found.path.parts[-1]}"
        except PathError:
            pass
        try:
            self.api.validate_request(request)
        except OperationNotFound as err:
            return Judgement(405, type(err).__name__, operation)
        except PathError as err:  # PathNotFound, ServerNotFound
            return Judgement(404, type(err).__name__, operation)
        except SecurityValidationError as err:
            return Judgement(401, type(err).__name__, operation)
        except RequestBodyValidationError as err:
            if isinstance(err.__cause__, MediaTypeNotFound):
                return Judgement(415, "MediaTypeNotFound", operation, "content-type")
            return Judgement(400, type(err).__name__, operation, "body")
        except ParameterValidationError as err:
            name = err.name.lower() if err.location == "header" else err.name
            return Judgement(400, type(err).__name__, operation, f"{err.location}.{name}")
        except RequestValidationError as err:
            return Judgement(400, type(err).__name__, operation)
        except (ValueError, TypeError, KeyError) as err:  # openapi-core's own bugs
            return Judgement(CRASHED, f"crashed ({type(err).__name__})", operation)
        return Judgement(None, "", operation)


# -- replaying cases through the gateway ----------------------------------------------------
@dataclass
class Served:
    """A running gateway for one spec, its upstream and a keep-alive client to it."""

    spec: Spec
    gateway: Any
    upstream: Any
    client: Any


class Farm:
    """One upstream, and one gateway per spec started on first use; the previous spec's
    gateway is stopped then (cases come grouped by spec), the last one on exit."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.served: Served | None = None
        self.upstream: Any = None

    def __enter__(self) -> Farm:
        self.upstream = _quick_upstream().__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop()
        self.upstream.__exit__(*exc)

    def serve(self, spec: Spec) -> Served:
        import httpx

        from support.gateway import GatewayProcess
        from support.proxy_fixtures import gateway_config

        if self.served is not None and self.served.spec == spec:
            return self.served
        self._stop()
        config = gateway_config({"name": spec.name.replace(".", "-"),
                                 "upstream": {"url": self.upstream.url},
                                 "spec": str(spec.path)})
        (self.directory / spec.name).mkdir(exist_ok=True)
        gateway = GatewayProcess(config, self.directory / spec.name)
        gateway.start()
        client = httpx.Client(base_url=gateway.url, timeout=10.0)
        self.served = Served(spec, gateway, self.upstream, client)
        return self.served

    def _stop(self) -> None:
        if self.served is not None:
            self.served.client.close()
            self.served.gateway.stop()
            self.served = None


def _quick_upstream() -> Any:
    """The test upstream with Nagle off: it writes an answer's head and body separately,
    and Nagle would hold the body back for the gateway's delayed ACK (40 ms a call)."""
    import socket

    from support.proxy_fixtures import CountingUpstream

    class QuickUpstream(CountingUpstream):
        def get_request(self) -> tuple[socket.socket, Any]:
            conn, address = super().get_request()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return conn, address

    return QuickUpstream()


def send(client: Any, case: Case) -> Any:
    """The case's request through ``client``, its target sent byte for byte."""
    return client.request(
        case.method, "/", content=case.body,
        headers=[(name, value.encode("latin-1")) for name, value in case.headers],
        extensions={"target": case.target.encode("ascii")},
    )


def echo_of(response: Any) -> dict[str, Any]:
    """What the test upstream says it received (its echo answer)."""
    assert response.headers.get("content-type") == "application/json", response.headers
    return response.json()
