"""The compiled runtime: routing and the cache of normalised targets."""

from __future__ import annotations

from apiward.config.models import Config
from apiward.runtime import TARGET_CACHE, Runtime
from apiward.wire.target import normalise_target


def runtime(*apis: dict) -> Runtime:
    config = Config.model_validate({"events": {"stdout": False}, "apis": list(apis)})
    return Runtime(config)


def test_only_plain_targets_are_cached_and_the_cache_is_bounded() -> None:
    rt = runtime({"upstream": {"url": "http://127.0.0.1:9"}})
    plain = b"/books/1?x=1"
    rt.remember_target(plain, normalise_target(plain, "GET"))
    assert rt.targets[plain].path == "/books/1"
    normalised = b"/books/./1"  # not verbatim: never cached, always judged afresh
    rt.remember_target(normalised, normalise_target(normalised, "GET"))
    assert normalised not in rt.targets
    rt.remember_target(b"*", normalise_target(b"*", "OPTIONS"))
    assert b"*" not in rt.targets
    for i in range(TARGET_CACHE + 10):
        raw = b"/n/%d" % i
        rt.remember_target(raw, normalise_target(raw, "GET"))
    assert len(rt.targets) <= TARGET_CACHE
    rt.close()


def test_routing_most_specific_first() -> None:
    rt = runtime(
        {"name": "any", "upstream": {"url": "http://127.0.0.1:1"}},
        {"name": "v2", "match": {"path_prefix": "/v2"}, "upstream": {"url": "http://127.0.0.1:2"}},
        {"name": "host", "match": {"host": "api.example"}, "upstream": {"url": "http://127.0.0.1:3"}},
        {"name": "wild", "match": {"host": "*.example"}, "upstream": {"url": "http://127.0.0.1:4"}},
    )
    assert rt.route("other", "/v2/x").name == "v2"
    assert rt.route("other", "/v20").name == "any"  # prefixes match whole segments
    assert rt.route("api.example", "/v2/x").name == "host"
    assert rt.route("b.example", "/x").name == "wild"
    assert rt.route("other", "/x").name == "any"
    rt.close()


def test_a_compiled_spec_is_reused_until_one_of_its_files_changes(tmp_path) -> None:
    from apiward.runtime import load_compiled_spec

    common = tmp_path / "common.yaml"
    common.write_text("Name: {type: string, maxLength: 5}\n")
    root = tmp_path / "openapi.yaml"
    root.write_text(
        "openapi: 3.0.3\ninfo: {title: t, version: '1'}\npaths:\n  /a/{name}:\n    get:\n"
        "      parameters:\n        - {name: name, in: path, required: true,\n"
        "           schema: {$ref: 'common.yaml#/Name'}}\n"
        "      responses: {'200': {description: ok}}\n")
    first = load_compiled_spec("t", root, False)
    assert load_compiled_spec("t", root, False) is first
    assert load_compiled_spec("t", root, True) is not first  # other options, other compile
    common.write_text("Name: {type: string, maxLength: 50}\n")  # only the referenced file
    second = load_compiled_spec("t", root, False)
    assert second is not first
    entry, params = second.match("/a/abcdefgh")
    op = entry.operations["GET"]
    values, problems = op.parameters.extract(params, "", None)
    assert not problems and all(op.validators[id(r)][0].is_valid(v) for r, v in values)
