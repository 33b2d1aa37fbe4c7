"""Loading apiward.yaml: every mistake becomes one line ``key.path (file:line): message``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apiward.config.loader import config_from_flags, load_config, load_spec_document
from apiward.errors import ConfigError, SpecError

SHARED_SPECS = Path(__file__).resolve().parents[4] / "shared" / "specs"
SPEC = """\
openapi: 3.1.0
info: {title: shop, version: "1"}
paths: {}
"""


@pytest.fixture
def here(tmp_path, monkeypatch):
    """Work in tmp_path, so messages name the file as the user typed it: ``apiward.yaml``."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(directory: Path, text: str, name: str = "apiward.yaml") -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def problems(text: str, name: str = "apiward.yaml") -> list[str]:
    write(Path.cwd(), text, name)
    with pytest.raises(ConfigError) as caught:
        load_config(name)
    assert caught.type is ConfigError
    assert caught.value.source == name
    return caught.value.problems


# -- a good file ------------------------------------------------------------------------


FULL = """\
# A complete configuration
listen: "0.0.0.0:8443"
workers: 4
shutdown_timeout: 10s
trusted_proxies: [10.0.0.0/8, "::1"]
request_id_header: X-Trace-ID
limits:
  header_size: 32KiB
  header_count: 50
  target_length: 4 KB
  body_size: 1.5MiB
  header_timeout: 5s
  body_timeout: 1m30s
  keepalive_timeout: 250ms
  max_connections: 500
  max_connections_per_ip: 20
paths:
  allow_non_ascii: true
  empty_segments: merge
events:
  file: logs/events.jsonl
  stdout: false
apis:
  - name: shop
    match: {host: "*.shop.example", path_prefix: /api}
    spec: specs/shop.yaml
    mode: log
    upstream:
      url: http://127.0.0.1:9000/base/
      connect_timeout: 2s
      response_timeout: 30
      preserve_host: false
      pool: {max_idle: 8, max_total: 16, idle_timeout: 1m}
    checks:
      methods: {allow: [get, post], mode: block}
      ipfilter:
        allow: [192.168.0.0/16]
        deny: [192.168.66.6]
  - name: other
    upstream: {url: "http://[::1]:9001"}
"""


def test_a_full_valid_file(here):
    write(here, SPEC, "specs/shop.yaml")
    config = load_config(write(here, FULL))
    assert config.listen == "0.0.0.0:8443"
    assert config.workers == 4
    assert config.shutdown_timeout == 10.0
    assert [str(n) for n in config.trusted_proxies] == ["10.0.0.0/8", "::1/128"]
    assert config.limits.header_size == 32 * 1024
    assert config.limits.target_length == 4000
    assert config.limits.body_size == int(1.5 * 1024 * 1024)
    assert config.limits.body_timeout == 90.0
    assert config.limits.keepalive_timeout == pytest.approx(0.25)
    assert config.paths.empty_segments == "merge"
    assert config.events.file == here / "logs" / "events.jsonl"
    shop, other = config.apis
    assert shop.spec == here / "specs" / "shop.yaml"
    assert shop.mode == "log"
    assert shop.match.host == "*.shop.example"
    assert shop.upstream.url == "http://127.0.0.1:9000/base"
    assert shop.upstream.pool.idle_timeout == 60.0
    assert shop.checks.methods.allow == ["GET", "POST"]
    assert [str(n) for n in shop.checks.ipfilter.deny] == ["192.168.66.6/32"]
    assert other.spec is None and other.upstream.port == 9001


def test_relative_paths_are_resolved_from_the_config_directory(tmp_path, monkeypatch):
    conf_dir = tmp_path / "etc" / "apiward"
    write(conf_dir, SPEC, "openapi.yaml")
    write(conf_dir, "apis: [{spec: openapi.yaml, upstream: {url: 'http://a'}}]\n"
                    "events: {file: ../../var/events.jsonl}\n")
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    config = load_config(os.path.relpath(conf_dir / "apiward.yaml"))
    assert config.apis[0].spec == conf_dir / "openapi.yaml"
    assert config.apis[0].spec.is_absolute()
    assert config.events.file.resolve() == tmp_path / "var" / "events.jsonl"


def test_every_file_setting_is_relative_to_the_config_directory(tmp_path, monkeypatch):
    conf_dir = tmp_path / "etc"
    write(conf_dir, "tls: {cert: s.crt, key: s.key, client_ca: ca.crt, crl: ca.crl}\n"
                    "apis:\n  - upstream: {url: 'http://a'}\n    checks:\n      identity:\n"
                    "        key_store: keys.db\n        schemes:\n"
                    "          b: {jwt: {jwks_file: jwks.json, algorithms: [RS256]}}\n"
                    "  - name: mem\n    match: {path_prefix: /m}\n"
                    "    upstream: {url: 'http://a'}\n"
                    "    checks: {identity: {key_store: 'memory://'}}\n")
    monkeypatch.chdir(tmp_path)
    config = load_config(conf_dir / "apiward.yaml")
    tls = config.tls
    assert (tls.cert, tls.key, tls.client_ca, tls.crl) == tuple(
        conf_dir / name for name in ("s.crt", "s.key", "ca.crt", "ca.crl"))
    identity = config.apis[0].checks.identity
    assert identity.key_store == str(conf_dir / "keys.db")
    assert identity.schemes["b"].jwt.jwks_file == conf_dir / "jwks.json"
    assert config.apis[1].checks.identity.key_store == "memory://"  # a URL stays a URL


def test_absolute_spec_path_is_kept(here, tmp_path_factory):
    spec = write(tmp_path_factory.mktemp("specs"), SPEC, "api.yaml")
    config = load_config(write(here, f"apis: [{{spec: '{spec}', upstream: {{url: 'http://a'}}}}]"))
    assert config.apis[0].spec == spec


def test_a_json_spec_and_a_byte_order_mark(here):
    write(here, json.dumps({"openapi": "3.0.3", "info": {}, "paths": {}}), "api.json")
    path = here / "apiward.yaml"
    path.write_bytes(b"\xef\xbb\xbfapis: [{spec: api.json, upstream: {url: 'http://a'}}]\n")
    assert load_config(path).apis[0].spec == here / "api.json"


def test_yaml_merge_keys_are_not_duplicates(here):
    write(here, """\
apis:
  - name: one
    upstream: &up
      url: http://a
      connect_timeout: 1s
  - name: two
    upstream:
      <<: *up
      url: http://b
""")
    one, two = load_config("apiward.yaml").apis
    assert (one.upstream.url, two.upstream.url) == ("http://a", "http://b")
    assert two.upstream.connect_timeout == 1.0


# -- one line per problem, with the key path and the line ------------------------------


def test_value_error(here):
    assert problems("""\
apis:
  - upstream: {url: "http://a"}
limits:
  header_size: 1KiB
  body_size: lots
""") == ["""limits.body_size (apiward.yaml:5): expected a size like "1MiB", got 'lots'"""]


def test_unknown_key_with_a_suggestion(here):
    assert problems("""\
limits:
  body_sise: 1MiB
apis:
  - upstream: {url: "http://a"}
""") == ['limits.body_sise (apiward.yaml:2): unknown key "body_sise"; did you mean "body_size"?']


def test_unknown_key_without_a_suggestion(here):
    assert problems("""\
apis:
  - upstream: {url: "http://a"}
zzz: 1
""") == ['zzz (apiward.yaml:3): unknown key "zzz"']


def test_unknown_key_under_checks_suggests_from_that_model(here):
    assert problems("""\
apis:
  - upstream: {url: "http://a"}
    checks:
      methods:
        alow: [GET]
      ipfiltr: {}
""") == [
        'apis[0].checks.methods.alow (apiward.yaml:5): unknown key "alow"; did you mean "allow"?',
        'apis[0].checks.ipfiltr (apiward.yaml:6): unknown key "ipfiltr"; did you mean "ipfilter"?',
    ]


def test_missing_key_points_at_its_parent(here):
    assert problems("""\
workers: 2
apis:
  - name: a
    upstream:
      connect_timeout: 1s
""") == ["apis[0].upstream.url (apiward.yaml:4): required key is missing"]


def test_missing_top_level_key(here):
    assert problems("workers: 2\n") == ["apis (apiward.yaml:1): required key is missing"]


def test_type_errors_are_readable(here):
    assert problems("""\
workers: many
paths:
  allow_non_ascii: perhaps
limits:
apis:
  - upstream: {url: "http://a"}
    mode: enforce
""") == [
        "workers (apiward.yaml:1): expected a whole number, got 'many'",
        "paths.allow_non_ascii (apiward.yaml:3): expected true or false, got 'perhaps'",
        "limits (apiward.yaml:4): expected a mapping, got nothing (an empty value)",
        "apis[0].mode (apiward.yaml:7): should be 'block' or 'log', got 'enforce'",
    ]


def test_list_items_have_their_index_and_line(here):
    assert problems("""\
apis:
  - name: one
    upstream: {url: "http://a"}
  - name: two
    upstream:
      url: https://b
trusted_proxies:
  - 10.0.0.0/8
  - 10.0.0.1/8
  - not-a-network
""") == [
        """apis[1].upstream.url (apiward.yaml:6): expected an upstream URL like """
        """"http://127.0.0.1:9000", got 'https://b'""",
        """trusted_proxies[1] (apiward.yaml:9): '10.0.0.1/8' has host bits set; """
        """did you mean "10.0.0.0/8"?""",
        """trusted_proxies[2] (apiward.yaml:10): expected an IP network like "10.0.0.0/8" """
        """or "2001:db8::/32", got 'not-a-network'""",
    ]


def test_list_level_errors(here):
    assert problems("""\
apis:
  - name: shop
    upstream: {url: "http://a"}
  - name: shop
    upstream: {url: "http://b"}
""") == ["apis (apiward.yaml:1): API names must be unique; repeated: shop"]
    assert problems("apis: []\n") == [
        "apis (apiward.yaml:1): List should have at least 1 item, not 0"
    ]


def test_several_errors_at_once_are_several_lines_in_file_order(here):
    lines = problems("""\
listen: nowhere
workers: 0
limits:
  body_size: lots
apis:
  - upstream: {url: "http://a"}
    checks:
      methods: {allow: ["G T"]}
      ipfilter: {deny: [10.0.0.0/33]}
""")
    assert lines == [
        """listen (apiward.yaml:1): expected "host:port" like "127.0.0.1:8080", got 'nowhere'""",
        "workers (apiward.yaml:2): should be greater than or equal to 1, got 0",
        """limits.body_size (apiward.yaml:4): expected a size like "1MiB", got 'lots'""",
        "apis[0].checks.methods.allow (apiward.yaml:8): not an HTTP method: 'G T'",
        """apis[0].checks.ipfilter.deny[0] (apiward.yaml:9): expected an IP network like """
        """"10.0.0.0/8" or "2001:db8::/32", got '10.0.0.0/33'""",
    ]


def test_the_error_message_is_the_lines_joined(here):
    write(here, "workers: 0\nbogus: 1\napis: [{upstream: {url: 'http://a'}}]\n")
    with pytest.raises(ConfigError) as caught:
        load_config("apiward.yaml")
    assert str(caught.value) == "\n".join(caught.value.problems)
    assert len(caught.value.problems) == 2
    assert caught.value.exit_code == 2


# -- YAML problems ------------------------------------------------------------------------


def test_duplicate_keys_name_both_lines(here):
    assert problems("""\
workers: 1
apis:
  - upstream:
      url: http://a
      connect_timeout: 1s
      url: http://b
workers: 2
""") == [
        "apis[0].upstream.url (apiward.yaml:6): duplicate key, first on line 4",
        "workers (apiward.yaml:7): duplicate key, first on line 1",
    ]


def test_duplicate_keys_are_reported_with_validation_errors(here):
    assert problems("""\
workers: 1
workers: 0
apis: [{upstream: {url: "http://a"}}]
""") == [
        "workers (apiward.yaml:2): duplicate key, first on line 1",
        "workers (apiward.yaml:2): should be greater than or equal to 1, got 0",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("listen: a\nlimits: {body_size: 1MiB\n",
         "apiward.yaml:3:1: invalid YAML: expected ',' or '}', but got '<stream end>' "
         "(while parsing a flow mapping started at 2:9)"),
        ("workers: 1\napis: upstream: x\n",
         "apiward.yaml:2:15: invalid YAML: mapping values are not allowed here"),
        ("limits:\n\tbody_size: 1\n",
         "apiward.yaml:2:1: invalid YAML: found character '\\t' that cannot start any token "
         "(while scanning for the next token)"),
        ("apis: *nothing\n", "apiward.yaml:1:7: invalid YAML: found undefined alias 'nothing'"),
        ("workers: 1\nbad: x\x07y\n", "apiward.yaml:2:7: invalid YAML: control character #x0007"),
    ],
)
def test_yaml_syntax_errors_are_one_line_with_line_and_column(here, text, expected):
    assert problems(text) == [expected]


def test_unsafe_tags_are_refused(here):
    [line] = problems("workers: !!python/object/apply:os.system ['true']\n")
    assert line.startswith("apiward.yaml:1:10: invalid YAML: could not determine a constructor")


@pytest.mark.parametrize(
    "text",
    [
        "when: 2001-13-01\n",
        "? [a, b]\n: c\n",
        "apis: " + "[" * 3000 + "]" * 3000 + "\n",
        "a: &a [*a]\napis: [{upstream: {url: 'http://a'}}]\n",
        "--- a\n--- b\n",
    ],
)
def test_odd_yaml_gives_a_config_error(here, text):
    assert len(problems(text)) == 1


# -- the file itself ----------------------------------------------------------------------


def test_missing_file(here):
    with pytest.raises(ConfigError) as caught:
        load_config("nope.yaml")
    assert caught.value.problems == ["nope.yaml: no such file; check the path to the config file"]


def test_a_directory(here):
    (here / "conf").mkdir()
    with pytest.raises(ConfigError, match=r"^conf: is a directory; give the path of the config"):
        load_config("conf")


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (PermissionError(13, "Permission denied"), "permission denied; make the file readable"),
        (OSError(5, "Input/output error"), "cannot read the file: Input/output error"),
    ],
)
def test_unreadable_file(here, monkeypatch, error, expected):
    write(here, "workers: 1\n")

    def refuse(self):
        raise error

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(ConfigError) as caught:
        load_config("apiward.yaml")
    assert caught.value.problems == [f"apiward.yaml: {expected}"]


def test_empty_spec_path(here):
    [line] = problems("apis: [{spec: '', upstream: {url: 'http://a'}}]\n")
    assert line == f"apis[0].spec (apiward.yaml:1): {here}: is a directory; give the path of " \
                   "the OpenAPI file"


def test_not_utf8(here):
    (here / "apiward.yaml").write_bytes(b"listen: caf\xe9:80\n")
    with pytest.raises(ConfigError) as caught:
        load_config("apiward.yaml")
    assert caught.value.problems == [
        "apiward.yaml: not UTF-8 text (bad byte at offset 11); save it as UTF-8"
    ]


@pytest.mark.parametrize("text", ["", "\n  \n"])
def test_empty_file(here, text):
    assert problems(text) == ["apiward.yaml: the file is empty; write the config settings into it"]


def test_only_comments(here):
    [line] = problems("# nothing yet\n")
    assert line.startswith("apiward.yaml: the file has no settings; it must be a mapping")


@pytest.mark.parametrize(("text", "kind"), [("- a\n- b\n", "a list"), ("hello\n", "'hello'")])
def test_top_level_not_a_mapping(here, text, kind):
    [line] = problems(text)
    assert line.startswith(f"apiward.yaml: the file holds {kind} at the top level; it must be")


# -- specs --------------------------------------------------------------------------------


def test_spec_missing(here):
    assert problems("""\
apis:
  - name: shop
    spec: specs/missing.yaml
    upstream: {url: "http://a"}
""") == [
        f"apis[0].spec (apiward.yaml:3): {here / 'specs' / 'missing.yaml'}: no such file; "
        "check the path to the OpenAPI file"
    ]


def test_spec_with_a_yaml_syntax_error(here):
    write(here, "openapi: 3.1.0\ninfo: {title: x\npaths: {}\n", "bad.yaml")
    [line] = problems("apis:\n  - upstream: {url: 'http://a'}\n    spec: bad.yaml\n")
    assert line.startswith(f"apis[0].spec (apiward.yaml:3): {here / 'bad.yaml'}:3:")
    assert "invalid YAML" in line


def test_spec_that_is_not_openapi(here):
    write(here, "swagger: '2.0'\ninfo: {}\n", "swagger.yaml")
    assert problems("""\
apis:
  - name: a
    upstream: {url: "http://a"}
    spec: swagger.yaml
""") == [
        f"apis[0].spec (apiward.yaml:4): {here / 'swagger.yaml'}:1: not an OpenAPI 3.0/3.1 "
        'document: no "openapi" key; Swagger 2.0 is not supported'
    ]


def test_spec_errors_join_the_other_errors_for_every_api(here):
    write(here, "- just a list\n", "list.yaml")
    lines = problems("""\
apis:
  - name: a
    upstream: {url: "http://a"}
    spec: list.yaml
  - name: b
    upstream: {url: "ftp://b"}
    spec: nope.yaml
""")
    assert [line.split(" (")[0] for line in lines] == [
        "apis[0].spec", "apis[1].upstream.url", "apis[1].spec"
    ]
    assert "not an OpenAPI 3.0/3.1 document: the top level is a list, not a mapping" in lines[0]
    assert lines[2].startswith("apis[1].spec (apiward.yaml:7): ")
    assert "no such file" in lines[2]


# -- load_spec_document on its own --------------------------------------------------------


def test_load_spec_document_yaml_and_json(tmp_path):
    assert load_spec_document(write(tmp_path, SPEC, "a.yaml"))["info"]["title"] == "shop"
    doc = {"openapi": "3.0.0", "info": {}, "paths": {"/x": {}}}
    assert load_spec_document(write(tmp_path, json.dumps(doc), "a.json")) == doc


@pytest.mark.parametrize(
    ("text", "name", "expected"),
    [
        ("info: {}\nopenapi: 3.1\n", "a.yaml",
         ':2: not an OpenAPI 3.0/3.1 document: "openapi" is the number 3.1; '
         'write it as a string like "3.1.0"'),
        ("openapi: 2.0.0\n", "a.yaml",
         ":1: not an OpenAPI 3.0/3.1 document: \"openapi\" is '2.0.0'; "
         "apiward reads versions 3.0.x and 3.1.x"),
        ("info: {}\n", "a.yaml", ':1: not an OpenAPI 3.0/3.1 document: no "openapi" key'),
        ("just text\n", "a.yaml",
         ":1: not an OpenAPI 3.0/3.1 document: the top level is 'just text', not a mapping"),
        ('{"openapi": "3.0.0",\n "info": {}\n "paths": {}}', "a.json",
         ":3:2: invalid JSON: Expecting ',' delimiter"),
        ("openapi: 3.0.0\npaths: [\n", "a.yaml", ":3:1: invalid YAML: "),
        ("", "a.yaml", ": the file is empty; write the OpenAPI settings into it"),
    ],
)
def test_load_spec_document_refuses(tmp_path, text, name, expected):
    path = write(tmp_path, text, name)
    with pytest.raises(SpecError) as caught:
        load_spec_document(path)
    [line] = caught.value.problems
    assert line.startswith(f"{path}{expected}")
    assert caught.value.source == str(path)


def test_load_spec_document_missing(tmp_path):
    with pytest.raises(SpecError, match="no such file"):
        load_spec_document(tmp_path / "nope.yaml")


@pytest.mark.skipif(not SHARED_SPECS.is_dir(), reason="no shared specs")
@pytest.mark.parametrize(
    "name",
    [
        "oai-petstore-expanded-3.0.yaml",
        "swagger-petstore-3.0.yaml",
        "redocly-museum-3.1.yaml",
        "ory-kratos-3.0.json",
    ],
)
def test_real_world_specs_parse(name):
    doc = load_spec_document(SHARED_SPECS / name)
    assert doc["openapi"].startswith(("3.0", "3.1")) and doc["paths"]


# -- config_from_flags --------------------------------------------------------------------


def test_flags_make_a_one_api_config(here):
    write(here, SPEC, "openapi.yaml")
    config = config_from_flags(
        listen=":9000", upstream="http://127.0.0.1:8000/", spec="openapi.yaml", mode="log",
        workers=3,
    )
    assert (config.listen, config.workers) == (":9000", 3)
    [api] = config.apis
    assert (api.name, api.mode, api.upstream.url) == ("default", "log", "http://127.0.0.1:8000")
    assert api.spec == here / "openapi.yaml"


def test_flags_defaults():
    config = config_from_flags(listen="127.0.0.1:8080", upstream="http://a")
    assert config.apis[0].spec is None and config.apis[0].mode == "block"
    assert config.workers == 1


def test_bad_flags_are_named_as_flags(here):
    with pytest.raises(ConfigError) as caught:
        config_from_flags(listen="nowhere", upstream="https://a", spec="nope.yaml",
                          mode="enforce", workers=0)
    assert caught.value.source == "command line"
    assert caught.value.problems == [
        "--spec: nope.yaml: no such file; check the path to the OpenAPI file",
        """--listen: expected "host:port" like "127.0.0.1:8080", got 'nowhere'""",
        "--workers: should be greater than or equal to 1, got 0",
        """--upstream: expected an upstream URL like "http://127.0.0.1:9000", got 'https://a'""",
        "--mode: should be 'block' or 'log', got 'enforce'",
    ]


def test_flag_spec_that_is_not_openapi(here):
    write(here, "swagger: '2.0'\n", "old.yaml")
    with pytest.raises(ConfigError, match=r"^--spec: old.yaml:1: not an OpenAPI 3.0/3.1"):
        config_from_flags(listen=":80", upstream="http://a", spec="old.yaml")


# -- nothing but ConfigError ever escapes -------------------------------------------------


YAMLISH = st.sampled_from(list("ab:-[]{}&*!|>'\"#%@`,?\n\t 1.")) | st.characters()


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=YAMLISH, max_size=80))
def test_any_text_gives_a_config_or_a_config_error(tmp_path, text):
    path = tmp_path / "fuzz.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load_config(path)
    except ConfigError as err:
        assert err.problems and all("\n" not in line for line in err.problems)


def test_rate_limit_mistakes_are_each_located(here):
    found = problems("""\
apis:
  - upstream: {url: "http://127.0.0.1:9"}
    checks:
      ratelimit:
        rules:
          - key: cookie
            limits: ["lots", {rate: "5/min", burst: 0}]
          - match: login
            limits: 10/s
        ban: {after: 0}
""")
    assert [line.split(" (")[0] for line in found] == [
        "apis[0].checks.ratelimit.rules[0].key",
        "apis[0].checks.ratelimit.rules[0].limits[0]",
        "apis[0].checks.ratelimit.rules[0].limits[1].burst",
        "apis[0].checks.ratelimit.rules[1].match",
        "apis[0].checks.ratelimit.ban.after",
    ]
    assert "apiward.yaml:7" in found[1] and 'expected a rate like "100/s"' in found[1]
