"""The configuration schema: pydantic models, unknown keys refused everywhere."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from apiward.config.units import Duration, Network, Size
from apiward.pipeline.check import Mode
from apiward.pipeline.registry import CHECKS


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def parse_hostport(value: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port); raises ValueError in plain words."""
    if not isinstance(value, str) or ":" not in value:
        raise ValueError(f'expected "host:port" like "127.0.0.1:8080", got {value!r}')
    host, _, port_text = value.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"expected a port number 0-65535, got {port_text!r}")
    return host, int(port_text)


class Limits(Strict):
    header_size: Size = 16 * 1024
    header_count: int = Field(100, ge=1)
    target_length: Size = 8 * 1024
    body_size: Size = 1024 * 1024
    # A chunked body's chunk-size lines (RFC 9112 §7.1.1): the longest one, size digits,
    # extensions and CRLF; and the extension bytes of all of a body's lines together.
    chunk_line_size: Size = Field(4 * 1024, ge=3)
    chunk_extensions_size: Size = 16 * 1024
    header_timeout: Duration = 10.0
    body_timeout: Duration = 30.0
    # The average rate a body must keep after its first body_timeout: a body may take
    # body_timeout + size / min_body_rate in all (slow POST / R.U.D.Y.). 0: no minimum.
    min_body_rate: Size = 1024
    keepalive_timeout: Duration = 60.0
    send_timeout: Duration = 60.0
    max_connections: int = Field(10_000, ge=1)
    max_connections_per_ip: int = Field(0, ge=0, description="0: no per-address limit")


class PathRules(Strict):
    allow_non_ascii: bool = False
    empty_segments: Literal["reject", "merge"] = "reject"


class HeaderRules(Strict):
    # A field name with "_": CGI/WSGI-style servers read X_Y and X-Y as one variable, so
    # it is dropped (no check sees it, the upstream does not get it) or refused (400).
    underscores: Literal["drop", "reject"] = "drop"


class Pool(Strict):
    max_idle: int = Field(64, ge=0)
    max_total: int = Field(1024, ge=1)
    idle_timeout: Duration = 30.0


class Upstream(Strict):
    url: str
    connect_timeout: Duration = 5.0
    response_timeout: Duration = 60.0
    preserve_host: bool = True
    # Read a request body whole (within limits.body_size) before the upstream connection
    # is used, as nginx does: a slow or cut-short body ties up only the gateway. false:
    # bodies stream through (large uploads), unless a body check reads them anyway.
    request_buffering: bool = True
    pool: Pool = Field(default_factory=Pool)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(
                f'expected an upstream URL like "http://127.0.0.1:9000", got {value!r}'
            )
        if parts.query or parts.fragment:
            raise ValueError("an upstream URL takes no query or fragment")
        parts.port  # noqa: B018 - raises ValueError for a bad port
        return value.rstrip("/")

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 80

    @property
    def base_path(self) -> str:
        return urlsplit(self.url).path.rstrip("/")


class Match(Strict):
    host: str | None = Field(None, description='exact host, or "*.example.com"')
    path_prefix: str = "/"

    @field_validator("path_prefix")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f'a path prefix starts with "/", got {value!r}')
        return value


_ENDPOINT_KEY = re.compile(r"(?:[A-Z]+ )?/[^\s?#]*")


class LoadShedding(Strict):
    """A cap on calls in flight to the API's upstream, per worker process; beyond it a call
    gets 503 with Retry-After. ``adaptive`` moves the cap between min and max with upstream
    latency. ``priorities`` maps ``"METHOD /template"``, ``"/template"`` (any method) or
    ``"*"`` to ``low``, ``normal`` (the default), ``high`` or ``critical``."""

    max_inflight: int = Field(256, ge=1)
    min_inflight: int = Field(4, ge=1, description="<= max_inflight; unset: 4 or max")
    adaptive: bool = True
    tolerance: float = Field(0.5, ge=0, description="how much slower than the baseline "
                             "latency (0.5: 50%) before the cap falls")
    retry_after: Duration = 1.0
    priorities: dict[str, Literal["low", "normal", "high", "critical"]] = Field(
        default_factory=dict)

    @field_validator("priorities")
    @classmethod
    def _endpoint_keys(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [key for key in value if key != "*" and not _ENDPOINT_KEY.fullmatch(key)]
        if bad:
            raise ValueError("; ".join(
                f'{key!r} is not an endpoint: expected "METHOD /path/template" (method in '
                'upper case, one space), "/path/template" (any method) or "*"' for key in bad))
        return value

    @model_validator(mode="after")
    def _min_within_max(self) -> LoadShedding:
        if "min_inflight" not in self.model_fields_set:  # the default yields to a small max
            self.min_inflight = min(self.min_inflight, self.max_inflight)
        if self.min_inflight > self.max_inflight:
            raise ValueError(f"min_inflight ({self.min_inflight}) must be <= max_inflight "
                             f"({self.max_inflight})")
        return self


with warnings.catch_warnings():  # "schema" shadows BaseModel.schema(), a deprecated helper
    warnings.simplefilter("ignore", UserWarning)  # nothing here calls
    ChecksConfig = create_model(  # type: ignore[call-overload]
        "ChecksConfig",
        __base__=Strict,
        **{module.NAME: (module.Config | None, None) for module in CHECKS},
    )


class Api(Strict):
    name: str = "default"
    match: Match = Field(default_factory=Match)
    upstream: Upstream
    spec: Path | None = None
    mode: Mode = "block"
    checks: ChecksConfig = Field(default_factory=ChecksConfig)  # type: ignore[valid-type]
    load_shedding: LoadShedding | None = None  # absent: no cap on calls in flight

    @model_validator(mode="after")
    def _spec_checks(self) -> Api:
        """With a spec, the checks that judge calls by it are on unless configured; without
        one, configuring them is a mistake worth saying."""
        for module in CHECKS:
            if not getattr(module, "NEEDS_SPEC", False):
                continue
            if self.spec is None and getattr(self.checks, module.NAME) is not None:
                raise ValueError(f"checks.{module.NAME} judges calls by the API's OpenAPI "
                                 "description: set spec (or --spec) too")
            if self.spec is not None and getattr(self.checks, module.NAME) is None:
                setattr(self.checks, module.NAME, module.Config())
        return self


class Events(Strict):
    file: Path | None = None
    stdout: bool = True


class InventoryRecording(Strict):
    """Record every call into the endpoint inventory (``apiward inventory`` reads it):
    ``store`` is a SQLite file (relative to the config file) or a redis:// URL, which
    several gateways can feed."""

    store: Path | str = Path("apiward.db")
    save_interval: Duration = 10.0
    max_endpoints: int = Field(2000, ge=10)

    @field_validator("store", mode="before")
    @classmethod
    def _path_or_url(cls, value: object) -> object:
        return value if not isinstance(value, str) or "://" in value else Path(value)


class Tls(Strict):
    """TLS on the listener. ``cert`` may hold the chain after the certificate. With
    ``client_ca``, clients may present certificates: ``required`` refuses a handshake
    without one, ``optional`` leaves it to the checks (e.g. the spec's mutualTLS)."""

    cert: Path
    key: Path
    client_ca: Path | None = None
    client_certs: Literal["none", "optional", "required"] | None = None
    crl: Path | None = None  # revoked client certificates; re-read when it changes
    min_version: Literal["1.2", "1.3"] = "1.2"

    @model_validator(mode="after")
    def _client_settings(self) -> Tls:
        if self.client_certs is None:
            self.client_certs = "optional" if self.client_ca is not None else "none"
        if self.client_certs != "none" and self.client_ca is None:
            raise ValueError(f"client_certs: {self.client_certs} needs client_ca, the CA "
                             "bundle client certificates are verified against")
        if self.crl is not None and self.client_ca is None:
            raise ValueError("crl lists revoked client certificates: set client_ca too")
        return self


class Config(Strict):
    listen: str = "127.0.0.1:8080"
    tls: Tls | None = None
    workers: int = Field(1, ge=1, le=256)
    shutdown_timeout: Duration = 30.0
    trusted_proxies: list[Network] = Field(
        default_factory=list
    )
    request_id_header: str = "X-Request-ID"
    limits: Limits = Field(default_factory=Limits)
    paths: PathRules = Field(default_factory=PathRules)
    headers: HeaderRules = Field(default_factory=HeaderRules)
    events: Events = Field(default_factory=Events)
    inventory: InventoryRecording | None = None  # absent: calls are not recorded
    apis: list[Api] = Field(min_length=1)

    @field_validator("listen")
    @classmethod
    def _hostport(cls, value: str) -> str:
        parse_hostport(value)
        return value

    @field_validator("apis")
    @classmethod
    def _unique_names(cls, value: list[Api]) -> list[Api]:
        names = [api.name for api in value]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"API names must be unique; repeated: {', '.join(dupes)}")
        return value
