"""Loading an OpenAPI document: every file its references reach, $ref resolution, and one
``file: /pointer: reason`` line per problem."""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import pytest

from apiward.errors import SpecError
from apiward.openapi import document
from apiward.openapi.document import SpecDocument, load_spec, servers_base_paths

SHARED_SPECS = Path(__file__).resolve().parents[4] / "shared" / "specs"
HEAD = 'openapi: 3.0.3\ninfo: {title: t, version: "1"}\n'


@pytest.fixture
def here(tmp_path, monkeypatch) -> Path:
    """Work in tmp_path, so messages name files as the user typed them."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        head = HEAD if text.startswith(HEAD) else ""
        path.write_text(head + textwrap.dedent(text[len(head):]))


def problems(name: str = "api.yaml") -> list[str]:
    with pytest.raises(SpecError) as caught:
        load_spec(Path(name))
    assert caught.value.source == name
    return caught.value.problems


MULTI = {
    "api.yaml": HEAD + """\
        paths:
          /pets/{id}:
            $ref: paths/pet.yaml
          /owners:
            get:
              parameters:
                - $ref: "common.yaml#/components/parameters/Limit"
              responses:
                "200":
                  description: ok
                  content:
                    application/json:
                      schema: {$ref: "./schemas/owner.json"}
        """,
    "common.yaml": """\
        components:
          parameters:
            Limit: {name: limit, in: query, schema: {type: integer, minimum: 1}}
            Id: {name: id, in: path, required: true, schema: {type: string}}
        """,
    "paths/pet.yaml": """\
        parameters:
          - $ref: "../common.yaml#/components/parameters/Id"
        get:
          responses:
            "200":
              description: ok
              content:
                application/json:
                  schema: {$ref: "../schemas/pet.yaml"}
        """,
    "schemas/pet.yaml": """\
        type: object
        properties:
          owner: {$ref: "owner.json"}
          parent: {$ref: "#"}
        """,
    "schemas/owner.json": json.dumps({
        "type": "object",
        "properties": {"pets": {"type": "array", "items": {"$ref": "pet.yaml"}}},
    }),
}


def test_every_referenced_file_is_loaded_by_its_uri(here: Path) -> None:
    write(here, MULTI)
    spec = load_spec(Path("api.yaml"))
    assert spec.uri == (here / "api.yaml").as_uri()
    assert spec.version == "3.0"
    assert set(spec.documents) == {(here / n).as_uri() for n in MULTI}
    assert spec.root is spec.documents[spec.uri]


def test_resolve_follows_refs_relative_to_the_file_holding_them(here: Path) -> None:
    write(here, MULTI)
    spec = load_spec(Path("api.yaml"))
    item, base = spec.resolve(spec.root["paths"]["/pets/{id}"], spec.uri)
    assert base == (here / "paths/pet.yaml").as_uri()
    param, param_base = spec.resolve(item["parameters"][0], base)
    assert param["name"] == "id" and param_base == (here / "common.yaml").as_uri()
    media = item["get"]["responses"]["200"]["content"]["application/json"]
    pet, pet_base = spec.resolve(media["schema"], base)
    assert pet_base == (here / "schemas/pet.yaml").as_uri()
    assert spec.resolve(pet["properties"]["parent"], pet_base) == (pet, pet_base)  # "#"
    owner, owner_base = spec.resolve(pet["properties"]["owner"], pet_base)
    assert spec.resolve(owner["properties"]["pets"]["items"], owner_base) == (pet, pet_base)


def test_resolve_unescapes_pointers_and_remembers_answers(here: Path) -> None:
    write(here, {"api.yaml": HEAD + """\
        paths: {}
        components:
          schemas:
            a/b: {type: string}
            t~x: {type: integer}
            sp ace: {type: boolean}
            chain: {$ref: "#/components/schemas/a~1b"}
        """})
    spec = load_spec(Path("api.yaml"))
    schemas = spec.root["components"]["schemas"]
    assert spec.resolve({"$ref": "#/components/schemas/a~1b"}, spec.uri)[0] == {"type": "string"}
    assert spec.resolve({"$ref": "#/components/schemas/t~0x"}, spec.uri)[0] == {"type": "integer"}
    assert spec.resolve({"$ref": "#/components/schemas/sp%20ace"}, spec.uri)[0] == {
        "type": "boolean"}
    assert spec.resolve(schemas["chain"], spec.uri)[0] is schemas["a/b"]
    assert spec.resolve({"type": "x"}, spec.uri) == ({"type": "x"}, spec.uri)
    assert spec.resolve(5, spec.uri) == (5, spec.uri)
    first = spec.resolve(schemas["chain"], spec.uri)
    assert spec.resolve(schemas["chain"], spec.uri)[0] is first[0]
    with pytest.raises(SpecError, match=r"no 'Pett' in /components/schemas"):
        spec.resolve({"$ref": "#/components/schemas/Pett"}, spec.uri)


def test_resolve_is_cheap(here: Path) -> None:
    write(here, MULTI)
    spec = load_spec(Path("api.yaml"))
    ref = spec.root["paths"]["/owners"]["get"]["parameters"][0]
    spec.resolve(ref, spec.uri)
    per_call = min(_timings(lambda: spec.resolve(ref, spec.uri)))
    assert per_call < 20e-6  # ~0.3 µs here


def _timings(call, number: int = 2000) -> list[float]:
    out = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(number):
            call()
        out.append((time.perf_counter() - started) / number)
    return out


def test_schema_cycles_through_properties_load(here: Path) -> None:
    write(here, {"api.yaml": HEAD + """\
        paths: {}
        components:
          schemas:
            Node:
              type: object
              properties:
                next: {$ref: "#/components/schemas/Node"}
                other: {$ref: "b.yaml"}
        """, "b.yaml": "properties:\n  back: {$ref: 'api.yaml#/components/schemas/Node'}\n"})
    spec = load_spec(Path("api.yaml"))
    assert len(spec.documents) == 2


def test_reference_cycles_that_never_reach_a_value_are_refused(here: Path) -> None:
    write(here, {"api.yaml": HEAD + """\
        paths: {}
        components:
          schemas:
            A: {$ref: "other.yaml#/B"}
        """, "other.yaml": "B: {$ref: 'api.yaml#/components/schemas/A'}\n"})
    found = problems()
    assert len(found) == 1
    assert "cycle" in found[0] and "other.yaml#/B" in found[0]


def test_self_reference_is_a_cycle(here: Path) -> None:
    write(here, {"api.yaml": HEAD + "paths: {}\ncomponents:\n  schemas:\n"
                 "    A: {$ref: '#/components/schemas/A'}\n"})
    assert "cycle" in problems()[0]


@pytest.mark.parametrize(("ref", "says"), [
    ("https://example.com/pet.yaml", "not fetched; save the file next to the spec"),
    ("http://example.com/pet.yaml#/Pet", "not fetched"),
    ("//example.com/pet.yaml", "only relative file references"),
    ("urn:uuid:1234", "only relative file references"),
    ("pet.yaml?x=1", "query"),
    ("#Pet", "plain-name fragments"),
    ("missing.yaml", "missing.yaml does not exist"),
    ("sub", "sub is a directory"),
    ("#/components/schemas/Pett", "(no 'Pett' in /components/schemas); did you mean 'Pet'?"),
    ("#/components/schemas/Pet/properties/x", "no 'properties' in /components/schemas/Pet"),
    ("#/paths/5", "no '5' in /paths"),
])
def test_references_that_name_nothing_are_refused_at_their_site(here: Path, ref: str,
                                                                 says: str) -> None:
    (here / "sub").mkdir()
    write(here, {"api.yaml": HEAD + f"""\
        paths: {{}}
        components:
          schemas:
            Pet: {{type: string}}
            User:
              properties:
                pet: {{$ref: "{ref}"}}
        """})
    [line] = problems()
    assert line.startswith("api.yaml: /components/schemas/User/properties/pet: $ref ")
    assert says in line


def test_references_inside_examples_and_extensions_are_data(here: Path) -> None:
    write(here, {"api.yaml": HEAD + """\
        paths: {}
        x-tools: {$ref: "https://example.com/not-fetched"}
        components:
          schemas:
            Pet:
              type: object
              example: {$ref: "https://example.com/not-a-reference"}
              enum: [{$ref: "nope.yaml"}]
        """})
    assert load_spec(Path("api.yaml")).root["x-tools"] == {"$ref": "https://example.com/not-fetched"}


def test_a_broken_referenced_file_is_named_with_its_line(here: Path) -> None:
    write(here, {"api.yaml": HEAD + "paths: {}\ncomponents:\n  schemas:\n"
                 "    A: {$ref: 'sub/b.yaml'}\n",
                 "sub/b.yaml": "type: object\nproperties: [\n"})
    [line] = problems()
    assert line.startswith("sub/b.yaml:") and "invalid YAML" in line


def test_yaml_is_read_as_json_would_have_it(here: Path) -> None:
    write(here, {"api.yaml": HEAD + """\
        paths:
          /a:
            get:
              responses:
                200:
                  description: ok
                  content:
                    application/json:
                      schema: {type: string, format: date, example: 2020-01-02}
        """})
    spec = load_spec(Path("api.yaml"))
    response = spec.root["paths"]["/a"]["get"]["responses"]["200"]
    assert response["content"]["application/json"]["schema"]["example"] == "2020-01-02"


def test_yaml_aliases_that_loop_are_refused(here: Path) -> None:
    write(here, {"api.yaml": HEAD + "paths: {}\ncomponents:\n  schemas:\n"
                 "    A: {$ref: 'loop.yaml'}\n", "loop.yaml": "a: &x\n  b: *x\n"})
    [line] = problems()
    assert line.startswith("loop.yaml: /a/b:") and "alias refers to a node that contains it" in line


def test_yaml_aliases_that_explode_are_refused(here: Path, monkeypatch) -> None:
    levels = ["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 9)]
    write(here, {"api.yaml": HEAD + "paths: {}\nx-bomb:\n" +
                 "".join(f"  {line}\n" for line in levels)})
    started = time.perf_counter()
    [line] = problems()
    assert "nodes once YAML aliases are expanded" in line
    assert time.perf_counter() - started < 2


def test_structure_problems_are_one_short_line_each(here: Path) -> None:
    long_text = "x" * 3000
    write(here, {"api.yaml": HEAD + f"""\
        paths:
          /pets:
            get:
              paramters: []
              parameters:
                - {{name: limit, in: qwery, schema: {{type: integer}}}}
                - {{name: q, in: query, description: "{long_text}"}}
              responses:
                "200": {{content: {{}}}}
        """})
    found = problems()
    assert "api.yaml: /paths/~1pets/get: unknown key 'paramters'" in found
    assert ('api.yaml: /paths/~1pets/get/parameters/0/in: must be one of "path", "query", '
            '"header", "cookie"') in found
    assert "api.yaml: /paths/~1pets/get/parameters/1: needs one of 'schema' or 'content'" in found
    assert "api.yaml: /paths/~1pets/get/responses/200: missing required key 'description'" in found
    assert all(len(line) < 200 for line in found)


def test_structure_problems_in_a_referenced_file_name_that_file(here: Path) -> None:
    write(here, MULTI)
    (here / "common.yaml").write_text(
        "components:\n  parameters:\n    Limit: {name: limit, in: query, "
        "schema: {type: integer, minimum: '1'}}\n    Id: {name: id, in: path, schema: {}}\n")
    assert problems() == [
        "common.yaml: /components/parameters/Id: missing required key 'required'",
        'common.yaml: /components/parameters/Limit/schema/minimum: expected number, got the '
        'string "1"',
    ]


def test_semantic_problems_are_located_too(here: Path) -> None:
    write(here, {"api.yaml": HEAD + """\
        paths:
          /pets/{id}:
            get:
              operationId: pets
              responses: {"200": {description: ok}}
          /cats:
            get:
              operationId: pets
              responses: {"200": {description: ok}}
        components:
          schemas:
            Tag: {$ref: "tag.yaml"}
        """, "tag.yaml": "type: string\ndefault: 3\n"})
    found = problems()
    assert "tag.yaml: /default: 3 is not of type 'string'" in found
    assert any(line.startswith("api.yaml: /paths/~1pets~1{id}/get: Path parameter 'id'")
               for line in found)
    assert any(line.startswith("api.yaml: /paths/~1cats/get: Operation ID 'pets'")
               for line in found)


def test_many_problems_are_capped(here: Path) -> None:
    paths = "".join(f"  /p{i}: {{get: {{responses: {{'200': {{}}}}}}}}\n" for i in range(80))
    write(here, {"api.yaml": HEAD + "paths:\n" + paths})
    found = problems()
    assert len(found) == document.MAX_PROBLEMS + 1
    assert found[-1] == "... and 30 more problems"


def test_openapi_31_documents_load(here: Path) -> None:
    write(here, {"api.yaml": """\
        openapi: 3.1.0
        info: {title: t, version: "1"}
        paths:
          /a: {$ref: "items.yaml#/a"}
        webhooks:
          ping: {$ref: "items.yaml#/a"}
        """, "items.yaml": """\
        a:
          get:
            responses:
              "200":
                description: ok
                content:
                  application/json:
                    schema: {type: [string, "null"], minLength: 1}
        """})
    spec = load_spec(Path("api.yaml"))
    assert spec.version == "3.1"
    item, base = spec.resolve(spec.root["paths"]["/a"], spec.uri)
    assert base.endswith("/items.yaml") and "get" in item


def test_openapi_31_structure_problems_use_its_schema(here: Path) -> None:
    write(here, {"api.yaml": """\
        openapi: 3.1.0
        info: {title: t, version: "1"}
        paths:
          /a: {get: {responses: {"200": {description: ok}}, paramters: []}}
        """})
    assert problems() == ["api.yaml: /paths/~1a/get: unknown key 'paramters'"]


def test_root_syntax_errors_come_from_the_config_loader(here: Path) -> None:
    write(here, {"api.yaml": "openapi: 3.0.3\npaths: [\n"})
    [line] = problems()
    assert line.startswith("api.yaml:") and "invalid YAML" in line


@pytest.mark.skipif(not SHARED_SPECS.is_dir(), reason="no shared specs")
@pytest.mark.parametrize("name", sorted(p.name for p in SHARED_SPECS.glob("*.*")
                                        if p.suffix in (".json", ".yaml"))
                         if SHARED_SPECS.is_dir() else [])
def test_real_world_specs_load_quickly(name: str) -> None:
    load_spec(SHARED_SPECS / name)  # imports and caches warmed
    started = time.perf_counter()
    spec = load_spec(SHARED_SPECS / name)
    assert time.perf_counter() - started < 1.0  # kratos (400 KB): ~0.12 s here
    assert spec.root["paths"]


# --- servers -----------------------------------------------------------------------------


@pytest.mark.parametrize(("servers", "bases"), [
    (None, [""]),
    ([], [""]),
    ([{"url": "/"}], [""]),
    ([{"url": "https://api.example.com"}], [""]),
    ([{"url": "https://api.example.com/v1/"}], ["/v1"]),
    ([{"url": "//api.example.com/v1?x=1"}], ["/v1"]),
    ([{"url": "v1"}], ["/v1"]),
    ([{"url": "./api//v2/"}], ["/api/v2"]),
    ([{"url": "/v1"}, {"url": "https://x.example.com/v1"}, {"url": "/v2"}], ["/v1", "/v2"]),
    ([{"url": "https://{region}.example.com/{base}",
       "variables": {"region": {"default": "eu", "enum": ["eu", "us"]},
                     "base": {"default": "v2", "enum": ["v1", "v2"]}}}], ["/v2", "/v1"]),
    ([{"url": "/{p}", "variables": {"p": {"default": "api/v3"}}}], ["/api/v3"]),
])
def test_servers_base_paths(servers, bases) -> None:
    assert servers_base_paths({"servers": servers} if servers is not None else {}) == bases


def test_servers_of_a_path_item_override_the_inherited_ones() -> None:
    assert servers_base_paths({"get": {}}, ["/v1"]) == ["/v1"]
    assert servers_base_paths({"servers": [{"url": "/admin"}]}, ["/v1"]) == ["/admin"]


def test_server_variables_without_a_definition_are_refused() -> None:
    with pytest.raises(ValueError, match=r"uses \{v\}"):
        servers_base_paths({"servers": [{"url": "/{v}"}]})


def test_server_variable_combinations_are_bounded() -> None:
    variables = {f"v{i}": {"default": "a", "enum": [str(n) for n in range(10)]}
                 for i in range(6)}
    url = "/" + "/".join(f"{{v{i}}}" for i in range(6))
    assert servers_base_paths({"servers": [{"url": url, "variables": variables}]}) == [
        "/a/a/a/a/a/a"]


def test_servers_base_paths_takes_a_spec_document(here: Path) -> None:
    write(here, {"api.yaml": HEAD + "servers: [{url: 'https://h.example/api/'}]\npaths: {}\n"})
    spec = load_spec(Path("api.yaml"))
    assert isinstance(spec, SpecDocument)
    assert servers_base_paths(spec) == ["/api"]
