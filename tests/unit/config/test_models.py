"""The config schema: defaults, strictness everywhere, and the checks' own configs."""

from __future__ import annotations

import copy
import ipaddress

import pytest
from pydantic import ValidationError

from apiward.config.models import Config, parse_hostport
from apiward.pipeline.checks import ipfilter, methods

MINIMAL = {"apis": [{"upstream": {"url": "http://127.0.0.1:9000"}}]}


def make(**top) -> dict:
    data = copy.deepcopy(MINIMAL)
    data.update(top)
    return data


def errors_of(data: dict) -> list[dict]:
    with pytest.raises(ValidationError) as caught:
        Config.model_validate(data)
    return caught.value.errors()


def test_defaults():
    config = Config.model_validate(MINIMAL)
    assert config.listen == "127.0.0.1:8080"
    assert config.workers == 1
    assert config.shutdown_timeout == 30.0
    assert config.trusted_proxies == []
    assert config.request_id_header == "X-Request-ID"
    assert config.limits.body_size == 1024 * 1024
    assert config.limits.header_size == 16 * 1024
    assert config.limits.header_timeout == 10.0
    assert config.paths.empty_segments == "reject"
    assert config.events.file is None and config.events.stdout is True
    api = config.apis[0]
    assert api.name == "default"
    assert api.mode == "block"
    assert api.spec is None
    assert api.match.path_prefix == "/" and api.match.host is None
    assert api.upstream.pool.max_idle == 64
    assert api.checks.methods is None and api.checks.ipfilter is None


def test_units_inside_the_models():
    config = Config.model_validate(
        make(limits={"body_size": "2MiB", "body_timeout": "1m30s"}, shutdown_timeout="250ms")
    )
    assert config.limits.body_size == 2 * 1024 * 1024
    assert config.limits.body_timeout == 90.0
    assert config.shutdown_timeout == 0.25


def test_apis_are_required_and_not_empty():
    assert [e["type"] for e in errors_of({})] == ["missing"]
    assert [e["type"] for e in errors_of({"apis": []})] == ["too_short"]


@pytest.mark.parametrize(
    "where",
    [
        (),
        ("limits",),
        ("paths",),
        ("events",),
        ("apis", 0),
        ("apis", 0, "match"),
        ("apis", 0, "upstream"),
        ("apis", 0, "upstream", "pool"),
        ("apis", 0, "checks"),
        ("apis", 0, "checks", "methods"),
        ("apis", 0, "checks", "ipfilter"),
    ],
)
def test_unknown_keys_are_refused_at_every_level(where):
    data = make(
        limits={}, paths={}, events={},
        apis=[{"upstream": {"url": "http://a", "pool": {}}, "match": {},
               "checks": {"methods": {}, "ipfilter": {}}}],
    )
    node = data
    for part in where:
        node = node[part]
    node["bogus"] = 1
    errors = errors_of(data)
    assert [(e["type"], e["loc"]) for e in errors] == [("extra_forbidden", (*where, "bogus"))]


def test_duplicate_api_names_are_refused():
    api = {"name": "shop", "upstream": {"url": "http://a"}}
    errors = errors_of({"apis": [api, dict(api), {**api, "name": "other"}]})
    assert errors[0]["loc"] == ("apis",)
    assert "repeated: shop" in errors[0]["msg"]


def test_two_apis_need_distinct_names_even_by_default():
    errors = errors_of({"apis": [{"upstream": {"url": "http://a"}}] * 2})
    assert "repeated: default" in errors[0]["msg"]


@pytest.mark.parametrize("listen", ["8080", "localhost", "host:99999", "host:http", "host:", 8080])
def test_bad_listen(listen):
    errors = errors_of(make(listen=listen))
    assert errors[0]["loc"] == ("listen",)


@pytest.mark.parametrize(
    ("listen", "expected"),
    [("127.0.0.1:8080", ("127.0.0.1", 8080)), ("[::1]:443", ("::1", 443)),
     (":8080", ("0.0.0.0", 8080)), ("example.com:0", ("example.com", 0))],
)
def test_good_listen(listen, expected):
    assert Config.model_validate(make(listen=listen)).listen == listen
    assert parse_hostport(listen) == expected


@pytest.mark.parametrize("workers", [0, 257, "many"])
def test_bad_workers(workers):
    assert errors_of(make(workers=workers))[0]["loc"] == ("workers",)


@pytest.mark.parametrize(
    "url", ["https://a", "ftp://a", "a:9000", "http://", "http://a?x=1", "http://a#f", "http://a:99999"]
)
def test_bad_upstream_urls(url):
    errors = errors_of({"apis": [{"upstream": {"url": url}}]})
    assert errors[0]["loc"] == ("apis", 0, "upstream", "url")


def test_upstream_url_parts():
    config = Config.model_validate({"apis": [{"upstream": {"url": "http://backend:9000/v1/"}}]})
    upstream = config.apis[0].upstream
    assert upstream.url == "http://backend:9000/v1"
    assert (upstream.host, upstream.port, upstream.base_path) == ("backend", 9000, "/v1")


def test_bad_mode_and_path_prefix():
    errors = errors_of({"apis": [{"upstream": {"url": "http://a"}, "mode": "enforce",
                                  "match": {"path_prefix": "api"}}]})
    assert {e["loc"] for e in errors} == {("apis", 0, "mode"), ("apis", 0, "match", "path_prefix")}


def test_trusted_proxies_are_networks():
    config = Config.model_validate(make(trusted_proxies=["10.0.0.0/8", "::1"]))
    assert config.trusted_proxies == [
        ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128")
    ]


# -- the two checks' configs, as joined into apis[].checks ---------------------------------


def with_checks(**checks) -> dict:
    return {"apis": [{"upstream": {"url": "http://a"}, "checks": checks}]}


def test_methods_allow_list_is_upper_cased():
    config = Config.model_validate(with_checks(methods={"allow": ["get", "Post"], "mode": "log"}))
    assert config.apis[0].checks.methods.allow == ["GET", "POST"]
    assert config.apis[0].checks.methods.mode == "log"


def test_methods_defaults():
    assert "GET" in methods.Config().allow
    assert methods.Config().mode is None


@pytest.mark.parametrize("bad", [["G T"], ["GET", "P0ST"], ["ÄPFEL"], []])
def test_invalid_methods_are_refused(bad):
    errors = errors_of(with_checks(methods={"allow": bad}))
    assert errors[0]["loc"] == ("apis", 0, "checks", "methods", "allow")


def test_ipfilter_networks_are_parsed():
    config = Config.model_validate(
        with_checks(ipfilter={"allow": ["10.0.0.0/8", "2001:db8::/32"], "deny": ["10.1.2.3"]})
    )
    rules = config.apis[0].checks.ipfilter
    assert rules.allow == [
        ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8::/32")
    ]
    assert rules.deny == [ipaddress.ip_network("10.1.2.3/32")]


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "nonsense", "10.0.0.1/8", "300.0.0.0/8", ""])
def test_bad_cidrs_are_refused(bad):
    errors = errors_of(with_checks(ipfilter={"deny": ["10.0.0.0/8", bad]}))
    assert {e["loc"][:6] for e in errors} == {("apis", 0, "checks", "ipfilter", "deny", 1)}


def test_check_configs_refuse_unknown_checks_and_modes():
    errors = errors_of(with_checks(firewall={}, methods={"mode": "maybe"}))
    assert {(e["type"], e["loc"][-1]) for e in errors} == {
        ("extra_forbidden", "firewall"), ("literal_error", "mode")
    }


def test_check_modules_config_classes_are_strict():
    with pytest.raises(ValidationError):
        ipfilter.Config.model_validate({"allow": [], "typo": 1})
