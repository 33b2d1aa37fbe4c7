"""compile_spec: every problem with a document is a SpecError, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from apiward.errors import SpecError
from apiward.openapi import compiler
from apiward.openapi.compiler import UNBOUNDED, compile_spec
from apiward.openapi.document import load_spec
from apiward.openapi.limits import operation_limits


def _ref_chain(tmp_path: Path, link: str, depth: int = 400) -> Path:
    """Each schema shallow, so validation passes; following the $refs is deep."""
    schemas = {}
    for i in range(depth):
        ref = {"$ref": f"#/components/schemas/S{i + 1}"}
        schemas[f"S{i}"] = ({"allOf": [ref]} if link == "allOf"
                            else {"type": "object", "properties": {"a": ref}})
    schemas[f"S{depth}"] = {"type": "string", "maxLength": 3}
    doc = {"openapi": "3.1.0", "info": {"title": "t", "version": "1"},
           "paths": {"/a": {"post": {
               "requestBody": {"content": {"application/json": {
                   "schema": {"$ref": "#/components/schemas/S0"}}}},
               "responses": {"200": {"description": "ok"}}}}},
           "components": {"schemas": schemas}}
    path = tmp_path / "openapi.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize("link", ["allOf", "properties"])
def test_a_long_ref_chain_compiles_without_a_derived_limit(tmp_path: Path, link: str) -> None:
    path = _ref_chain(tmp_path, link)
    (limits,) = operation_limits(load_spec(path))  # as `apiward check --spec` reads it
    assert limits.limits.body_bytes is None
    assert "nests too deeply" in (limits.limits.unbounded or "")
    operation = compile_spec(path).operations[0]
    assert operation.body_limit == UNBOUNDED


def test_running_out_of_stack_while_compiling_is_a_spec_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def too_deep(*_: object) -> None:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(compiler, "CompiledSpec", too_deep)
    with pytest.raises(SpecError, match="nest too deeply"):
        compile_spec(_ref_chain(tmp_path, "allOf", depth=2))
