"""Request: the immutable view of one call that every check judges.

Built once by the server from the parsed head. ``path`` is the normalised path, exactly
what is forwarded upstream; ``query`` the raw query string (without ``?``); ``has_body``
whether the framing announced a body (judged before it is read); ``body`` holds it in
the body stage.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from apiward.wire.headers import Headers


class Request:
    __slots__ = (
        "_query_params",
        "body",
        "client_ip",
        "has_body",
        "headers",
        "host",
        "http_version",
        "method",
        "path",
        "query",
        "request_id",
        "tls",
    )

    def __init__(
        self,
        method: str,
        path: str,
        query: str,
        headers: Headers,
        client_ip: str,
        request_id: str,
        host: str = "",
        http_version: str = "1.1",
        tls: object | None = None,
        body: bytes | None = None,
        has_body: bool = False,
    ) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.client_ip = client_ip
        self.request_id = request_id
        self.host = host
        self.http_version = http_version
        self.tls = tls
        self.body = body
        self.has_body = has_body  # framed with a body (Content-Length > 0 or chunked)
        self._query_params: dict[str, list[str]] | None = None

    @property
    def query_params(self) -> dict[str, list[str]]:
        """The query as a multi-dict (name -> every value in order), parsed on first use."""
        if self._query_params is None:
            params: dict[str, list[str]] = {}
            for name, value in parse_qsl(self.query, keep_blank_values=True):
                params.setdefault(name, []).append(value)
            self._query_params = params
        return self._query_params

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.path} id={self.request_id}>"
