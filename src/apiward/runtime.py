"""Runtime: everything compiled from one config, swapped atomically on reload.

The data plane reads plain attributes from here; nothing on the request path parses
configuration.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import os
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

from apiward.config.models import Api, Config, parse_hostport
from apiward.errors import ConfigError
from apiward.events.log import EventLog
from apiward.pipeline.check import Check, Deps
from apiward.pipeline.registry import CHECKS
from apiward.server.pool import UpstreamPool
from apiward.server.tls import ClientCert, server_context
from apiward.wire.headers import HOP_BY_HOP, NOTED, SET_BY_GATEWAY, FieldTable
from apiward.wire.target import Target

if TYPE_CHECKING:
    from apiward.openapi.compiler import CompiledSpec

log = logging.getLogger("apiward")

TARGET_CACHE = 4096
CLIENT_CERT_CACHE = 1024
TARGET_CACHE_BYTES = 512


@dataclass(slots=True)
class CompiledApi:
    """One API: how calls are matched to it, its checks, and its upstream pool."""

    name: str
    host: str | None
    host_suffix: str | None
    path_prefix: str
    path_dir: str  # the prefix with one "/" after it: prefixes match whole segments
    head_checks: tuple[Check, ...]
    body_checks: tuple[Check, ...]
    response_checks: tuple[Check, ...]
    pool: UpstreamPool
    base_path: str
    upstream_host: bytes
    preserve_host: bool
    response_timeout: float
    request_buffering: bool
    periodic: tuple[Callable[[], Awaitable[None]], ...] = ()
    closers: tuple[Callable[[], Awaitable[None]], ...] = ()
    after_checks: tuple[Check, ...] = ()  # told how each call ended
    spec_templates: frozenset[tuple[str, str]] = frozenset()  # (METHOD, template) declared
    shedder: Any = None  # server.shedding.Shedder: the cap on calls in flight upstream
    priorities: Any = None  # its endpoint priorities (server.shedding.Priorities)
    deferring: Check | None = None  # the head check whose verdict may come later

    def matches(self, host: str, path: str) -> bool:
        if self.host is not None and host != self.host:
            return False
        if self.host_suffix is not None and not host.endswith(self.host_suffix):
            return False
        prefix = self.path_prefix
        return prefix == "/" or path == prefix or path.startswith(self.path_dir)


def compile_checks(api: Api, deps: Deps) -> tuple[Check, ...]:
    checks = []
    for module in CHECKS:
        check_config = getattr(api.checks, module.NAME)
        if check_config is not None:
            check = module.build(check_config, check_config.mode or api.mode, deps)
            checks.append(dataclasses.replace(check, on_error=check_config.on_error))
    return tuple(checks)


_SPECS: dict[tuple[Path, bool], tuple[tuple[tuple[int, int], ...], CompiledSpec]] = {}


def load_compiled_spec(name: str, path: Path, strict_query: bool) -> CompiledSpec:
    """The compiled spec at ``path``, compiled again only when one of its files changed:
    ``run`` checks the config before serving, workers inherit it through fork, and a
    reload that leaves the spec alone does not pay for it (or log it) twice."""
    key = (path, strict_query)
    found = _SPECS.get(key)
    if found is not None and found[0] == _stamps(found[1]):
        return found[1]
    from apiward.openapi.compiler import compile_spec  # only for APIs with a spec

    spec = compile_spec(path, strict_query)
    _SPECS[key] = (_stamps(spec), spec)
    report_spec(name, path, spec)
    return spec


def _stamps(spec: CompiledSpec) -> tuple[tuple[int, int], ...]:
    stamps = []
    for uri in spec.spec.documents:
        try:
            stat = Path(url2pathname(urlsplit(uri).path)).stat()
        except OSError:
            return ()
        stamps.append((stat.st_mtime_ns, stat.st_size))
    return tuple(stamps)


def _close_soon(closer: Callable[[], Awaitable[None]]) -> None:
    """Run an async close now (no loop here) or on the running loop (a reload's swap)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(_quietly(closer))
        return
    task = loop.create_task(_quietly(closer))
    _CLOSING.add(task)
    task.add_done_callback(_CLOSING.discard)


_CLOSING: set[asyncio.Task[None]] = set()


async def _quietly(closer: Callable[[], Awaitable[None]]) -> None:
    try:
        await closer()
    except Exception:
        log.exception("closing a retired runtime's store failed")


def _single_ca(bundle: Path | None) -> Any:
    """The client CA when the bundle holds one: then a CRL it did not sign is refused."""
    if bundle is None:
        return None
    from cryptography import x509

    try:
        found = x509.load_pem_x509_certificates(bundle.read_bytes())
    except (OSError, ValueError):
        return None  # the TLS context reports the bundle's problem precisely
    return found[0] if len(found) == 1 else None


def report_spec(name: str, path: Path, spec: CompiledSpec) -> None:
    """What compiling and linting the spec noticed: one log line each for what was worked
    around, one summary line for the lint (``apiward check --spec`` lists it all)."""
    for warning in spec.warnings:
        log.warning("api %r: %s", name, warning)
    from apiward.openapi.lint import lint

    found = Counter(warning.code for warning in lint(spec.spec))
    if found:
        counts = ", ".join(f"{count} {code}" for code, count in found.most_common())
        log.info("api %r: %s: %d lint warnings (%s); see apiward check --spec %s",
                 name, path.name, found.total(), counts, path)


_RECORDER: list[Any] = []  # (store, pid, Recorder) of this process: it outlives a reload


def recorder_for(config: Config, apis: list[CompiledApi]) -> Any:
    """The process's inventory recorder (kept across reloads while the store is the same,
    so the counts go on), or None when the config records nothing."""
    setting = config.inventory
    if setting is None:
        return None
    store = str(setting.store)
    spec_templates = {api.name: api.spec_templates for api in apis}
    if _RECORDER and _RECORDER[0][:2] == (store, os.getpid()):  # (not a parent's: a store
        recorder = _RECORDER[0][2]  # opened before fork is not used after it)
        recorder.inventory.spec_templates = spec_templates
        recorder.save_interval = setting.save_interval
        return recorder
    from apiward.events.recorder import Recorder
    from apiward.state.store import StoreError, open_store

    try:
        opened = open_store(store)
    except StoreError as error:
        raise ConfigError([f"inventory.store ({store}): {error}"]) from None
    recorder = Recorder(opened, spec_templates, save_interval=setting.save_interval,
                        max_endpoints=setting.max_endpoints)
    _RECORDER[:] = [(store, os.getpid(), recorder)]
    return recorder


def declared_header_names(config: Config) -> frozenset[bytes]:
    """Header names with ``_`` that an API declares (its spec's header parameters and
    apiKey schemes, the identity check's ``api_keys.header``): kept, not dropped."""
    names = set()
    for api in config.apis:
        identity = api.checks.identity
        if identity is not None:
            names.update(scheme.api_keys.header for scheme in identity.schemes.values()
                         if scheme.api_keys is not None and scheme.api_keys.header)
        if api.spec is None:
            continue
        schema = api.checks.schema
        strict = schema is not None and schema.undeclared_query == "block"
        spec = load_compiled_spec(api.name, api.spec, strict)
        for entry in spec.entries.values():
            for operation in entry.operations.values():
                names.update(rule.name for rule in operation.parameters.rules
                             if rule.location == "header")
                for requirement in operation.security or ():
                    names.update(scheme.param for scheme, _ in requirement.schemes
                                 if scheme.kind == "apiKey" and scheme.location == "header")
    return frozenset(name.lower().encode("latin-1") for name in names if "_" in name)


def compile_api(api: Api) -> CompiledApi:
    spec = None
    if api.spec is not None:
        schema_config = api.checks.schema
        strict_query = schema_config is not None and schema_config.undeclared_query == "block"
        spec = load_compiled_spec(api.name, api.spec, strict_query)
    deps = Deps(api.name, spec)
    checks = compile_checks(api, deps)
    host = api.match.host.lower() if api.match.host else None
    suffix = None
    if host and host.startswith("*."):
        host, suffix = None, host[1:]
    upstream = api.upstream
    shedder = priorities = None
    if api.load_shedding is not None:
        from apiward.server.shedding import Shedder, compile_priorities

        shedder = Shedder(api.load_shedding)
        priorities = compile_priorities(api.load_shedding)
    default_port = upstream.port == 80
    upstream_host = upstream.host if default_port else f"{upstream.host}:{upstream.port}"
    return CompiledApi(
        name=api.name,
        host=host,
        host_suffix=suffix,
        path_prefix=api.match.path_prefix,
        path_dir=api.match.path_prefix.rstrip("/") + "/",
        head_checks=checks,
        body_checks=tuple(c for c in checks if c.run_body is not None),
        response_checks=tuple(c for c in checks if c.run_response is not None),
        after_checks=tuple(c for c in checks if c.run_after is not None),
        deferring=next((c for c in checks if c.defers), None),
        shedder=shedder,
        priorities=priorities,
        spec_templates=frozenset(
            (method, entry.template) for entry in spec.entries.values()
            for method in entry.operations) if spec is not None else frozenset(),
        pool=UpstreamPool(
            upstream.host,
            upstream.port,
            max_idle=upstream.pool.max_idle,
            max_total=upstream.pool.max_total,
            idle_timeout=upstream.pool.idle_timeout,
            connect_timeout=upstream.connect_timeout,
        ),
        base_path=upstream.base_path,
        upstream_host=upstream_host.encode("idna"),
        preserve_host=upstream.preserve_host,
        response_timeout=upstream.response_timeout,
        request_buffering=upstream.request_buffering,
        periodic=tuple(deps.periodic),
        closers=tuple(deps.closers),
    )


class Runtime:
    """The compiled config. Attributes are read directly by the server for speed."""

    def __init__(self, config: Config, source: Path | None = None) -> None:
        self.config = config
        self.source = source
        self.listen = parse_hostport(config.listen)
        limits = config.limits
        self.header_size = limits.header_size
        self.header_count = limits.header_count
        self.target_length = limits.target_length
        self.body_size = limits.body_size
        self.chunk_line_size = limits.chunk_line_size
        self.chunk_extensions_size = limits.chunk_extensions_size
        self.header_timeout = limits.header_timeout
        self.body_timeout = limits.body_timeout
        self.min_body_rate = limits.min_body_rate
        self.keepalive_timeout = limits.keepalive_timeout
        self.send_timeout = limits.send_timeout
        self.max_connections = limits.max_connections
        self.max_connections_per_ip = limits.max_connections_per_ip
        self.allow_non_ascii = config.paths.allow_non_ascii
        self.merge_empty_segments = config.paths.empty_segments == "merge"
        self.trusted_proxies = tuple(config.trusted_proxies)
        self.request_id_header = config.request_id_header.encode("latin-1")
        self.request_id_lname = self.request_id_header.lower()
        self.apis = [compile_api(api) for api in config.apis]
        self.request_fields = FieldTable(
            HOP_BY_HOP | SET_BY_GATEWAY | NOTED | {self.request_id_lname},
            config.headers.underscores, declared_header_names(config),
        )
        self.response_fields = FieldTable(HOP_BY_HOP | {self.request_id_lname})
        self.periodic = [job for api in self.apis for job in api.periodic]
        for api in self.apis:
            api.pool.response_fields = self.response_fields
        single = self.apis[0]
        self.only_api = (
            single
            if len(self.apis) == 1 and single.host is None and single.host_suffix is None
            and single.path_prefix == "/"
            else None
        )
        # Most specific first: exact host, then wildcard, then any; longer prefixes first.
        self._routes = sorted(
            self.apis,
            key=lambda a: (a.host is None, a.host_suffix is None, -len(a.path_prefix)),
        )
        self.tls_context = server_context(config.tls) if config.tls is not None else None
        crl = config.tls.crl if config.tls is not None else None
        self.crl = None
        if crl is not None:
            from apiward.identity.certs import CrlError, CrlWatcher  # client certs only

            try:
                self.crl = CrlWatcher(crl, _single_ca(config.tls.client_ca))
            except CrlError as error:
                raise ConfigError(f"tls.crl ({crl}): {error}") from None
        self._client_certs: dict[bytes, ClientCert] = {}
        self.events = EventLog(config.events.file, config.events.stdout)
        self.recorder = recorder_for(config, self.apis)  # folded by the gateway's sweeper
        # Normalised targets by raw bytes: a hot endpoint is normalised once. Only plain
        # origin-form targets are kept (they mean the same for every method), short ones,
        # and at most TARGET_CACHE of them: a flood of distinct targets only empties it.
        self.targets: dict[bytes, Target] = {}

    def route(self, host: str, path: str) -> CompiledApi | None:
        """The API serving ``host`` (lower-case, port removed) and ``path``."""
        if self.only_api is not None:
            return self.only_api
        for api in self._routes:
            if api.matches(host, path):
                return api
        return None

    def remember_target(self, raw: bytes, target: Target) -> None:
        if target.verbatim and target.path != "*" and len(raw) <= TARGET_CACHE_BYTES:
            if len(self.targets) >= TARGET_CACHE:
                self.targets.clear()
            self.targets[raw] = target

    def client_cert(self, der: bytes) -> ClientCert:
        """A verified peer certificate's facts (cached by its bytes: clients reconnect with
        the same one), and whether the CRL, as it is now, revokes it."""
        cert = self._client_certs.get(der)
        if cert is None:
            from apiward.identity.certs import cert_facts, header_value

            facts = cert_facts(der)
            cert = ClientCert(header_value(facts.subject),
                              tuple(header_value(san) for san in facts.sans),
                              facts.serial, facts.fingerprint)
            if len(self._client_certs) >= CLIENT_CERT_CACHE:
                self._client_certs.clear()
            self._client_certs[der] = cert
        if self.crl is not None and self.crl.current().is_revoked(int(cert.serial, 16)):
            return dataclasses.replace(cert, revoked=True)
        return cert

    def is_trusted_proxy(self, ip: str) -> bool:
        if not self.trusted_proxies:
            return False
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in net for net in self.trusted_proxies)

    def close(self) -> None:
        """Retire this runtime: idle upstream connections closed, events flushed."""
        for api in self.apis:
            api.pool.close()
            for closer in api.closers:
                _close_soon(closer)
        self.events.close()
