"""apiward: a fast, strict security gateway for HTTP APIs."""

__version__ = "0.1.0"
