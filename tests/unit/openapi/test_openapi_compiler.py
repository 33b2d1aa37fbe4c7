"""compile_spec: every problem with a document is a SpecError, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from apiward.errors import SpecError
from apiward.openapi.compiler import compile_spec


@pytest.mark.parametrize("link", ["allOf", "properties"])
def test_a_long_ref_chain_is_a_spec_error(tmp_path: Path, link: str) -> None:
    """Each schema is shallow, so validation passes; following the $refs is deep."""
    depth = 400
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
    with pytest.raises(SpecError, match="nest too deeply"):
        compile_spec(path)
