"""Loading and compiling OpenAPI 3.0/3.1: path matcher, parameter deserialisers, body
validators. Everything here is compiled once at load; the request path only calls it."""

UNBOUNDED = 1 << 62
"""An operation's body limit when its schema bounds nothing (the global limit applies);
here, not in compiler.py, so the checks can compare with it without loading jsonschema-rs."""
