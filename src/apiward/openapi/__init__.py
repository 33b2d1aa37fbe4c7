"""Loading and compiling OpenAPI 3.0/3.1: path matcher, parameter deserialisers, body
validators. Everything here is compiled once at load; the request path only calls it."""
