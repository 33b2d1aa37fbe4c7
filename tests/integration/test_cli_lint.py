"""``apiward check`` on specs: lint warnings and derived body limits, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

BIN = Path(sys.executable).parent / "apiward"
ENV = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
SHARED_SPECS = Path(__file__).resolve().parents[3] / "shared" / "specs"

BOOK = {"type": "object", "additionalProperties": False, "required": ["title"],
        "properties": {"title": {"type": "string", "maxLength": 100},
                       "tags": {"type": "array", "maxItems": 5,
                                "items": {"type": "string", "maxLength": 20}}}}
SPEC = {
    "openapi": "3.0.3",
    "info": {"title": "books", "version": "1"},
    "paths": {
        "/books": {"post": {
            "requestBody": {"content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Book"}}}},
            "responses": {"201": {"description": "created"}}}},
        "/books/{id}": {"get": {
            "parameters": [{"name": "id", "in": "path", "required": True,
                            "schema": {"type": "string"}}],
            "responses": {"200": {"description": "ok"}}}},
        "/books/latest": {"get": {"responses": {"200": {"description": "ok"}}}},
    },
    "components": {"schemas": {"Book": BOOK}},
}


def apiward(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN), *args], capture_output=True, text=True, timeout=60,
                          env=ENV, cwd=cwd)


def assert_no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stdout + result.stderr


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "openapi.yaml"
    path.write_text(yaml.safe_dump(SPEC, sort_keys=False))
    return path


def test_check_spec_prints_warnings_and_limits(spec: Path) -> None:
    result = apiward("check", "--spec", str(spec))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "is a valid OpenAPI 3.0 document" in lines[0]
    assert any(line.strip().startswith(
        "/paths/~1books~1{id}/get/parameters/0/schema: string without maxLength")
        for line in lines)
    assert any(line.strip().startswith("/paths/~1books~1latest: also matches /books/{id}")
               for line in lines)
    assert "  POST /books: body ≤ 3.6 KiB, JSON depth ≤ 2" in lines
    assert any("1 of 1 request body bounded" in line for line in lines)


def test_check_spec_json(spec: Path) -> None:
    result = apiward("check", "--spec", str(spec), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["version"] == "3.0"
    codes = [(w["pointer"], w["code"]) for w in report["warnings"]]
    assert codes == [("/paths/~1books~1latest", "shadowed_path"),
                     ("/paths/~1books~1{id}/get/parameters/0/schema", "unbounded_string")]
    (body,) = report["limits"]
    assert body["method"] == "POST" and body["path"] == "/books"
    assert body["media_type"] == "application/json"
    assert body["body_bytes"] == 3648  # worked out in test_openapi_limits' terms
    assert body["json_depth"] == 2 and body["unbounded"] is None


def test_check_unbounded_body_says_why(spec: Path) -> None:
    data = yaml.safe_load(spec.read_text())
    del data["components"]["schemas"]["Book"]["properties"]["tags"]["maxItems"]
    spec.write_text(yaml.safe_dump(data))
    result = apiward("check", "--spec", str(spec), "--json")
    assert result.returncode == 0, result.stderr
    (body,) = json.loads(result.stdout)["limits"]
    assert body["body_bytes"] is None and body["json_depth"] is None
    assert body["unbounded"] == ("/components/schemas/Book/properties/tags: "
                                 "array without maxItems")
    text = apiward("check", "--spec", str(spec)).stdout
    assert "0 of 1 request body bounded (the others keep the global limits)" in text
    assert ("  POST /books: not derived: /components/schemas/Book/properties/tags: array "
            "without maxItems") in text.splitlines()


def test_check_invalid_spec_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump({**SPEC, "paths": {"/x": {"get": {"responses": 7}}}}))
    for extra in ((), ("--json",)):
        result = apiward("check", "--spec", str(path), *extra)
        assert result.returncode == 2
        assert_no_traceback(result)
        assert "broken.yaml" in result.stdout + result.stderr
    assert json.loads(result.stdout)["ok"] is False


def test_check_needs_something_to_check() -> None:
    result = apiward("check")
    assert result.returncode == 2
    assert_no_traceback(result)
    assert "--spec" in result.stderr


def test_check_config_lints_each_api_spec(spec: Path, tmp_path: Path) -> None:
    config = tmp_path / "apiward.yaml"
    config.write_text(yaml.safe_dump({"listen": "127.0.0.1:0", "apis": [
        {"name": "books", "upstream": {"url": "http://127.0.0.1:9"}, "spec": spec.name},
        {"name": "plain", "upstream": {"url": "http://127.0.0.1:9"},
         "match": {"path_prefix": "/plain"}},
    ]}))
    result = apiward("check", "--config", str(config), "--json")
    assert result.returncode == 0, result.stderr
    books, plain = json.loads(result.stdout)["apis"]
    assert len(books["warnings"]) == 2 and books["limits"][0]["json_depth"] == 2
    assert "warnings" not in plain
    text = apiward("check", "--config", config.name, cwd=tmp_path).stdout
    assert "api books" in text and "    2 warnings:" in text
    assert "      POST /books: body ≤ 3.6 KiB, JSON depth ≤ 2" in text.splitlines()


def test_check_run_flags(spec: Path) -> None:
    result = apiward("check", "--upstream", "http://127.0.0.1:9", "--spec", str(spec),
                     "--json")
    assert result.returncode == 0, result.stderr
    (api,) = json.loads(result.stdout)["apis"]
    assert api["upstream"] == "http://127.0.0.1:9" and len(api["warnings"]) == 2


@pytest.mark.skipif(not SHARED_SPECS.is_dir(), reason="no shared specs")
@pytest.mark.parametrize("name", ["ory-kratos-3.0.json", "redocly-museum-3.1.yaml",
                                  "swagger-petstore-3.0.yaml",
                                  "oai-petstore-expanded-3.0.yaml"])
def test_check_real_specs(name: str) -> None:
    start = time.perf_counter()
    result = apiward("check", "--spec", str(SHARED_SPECS / name), "--json")
    elapsed = time.perf_counter() - start
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["warnings"] and report["limits"]
    assert elapsed < 10, f"check took {elapsed:.1f}s"
