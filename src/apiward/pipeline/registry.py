"""Every check apiward knows, in the order they run: cheap refusals first.

A new defence is one module in ``checks/`` and one entry here; its ``Config`` joins the
YAML schema (``apis[].checks.<name>``) from this tuple.
"""

from __future__ import annotations

from apiward.pipeline.checks import identity, ipfilter, methods, ratelimit, route, schema

CHECKS = (ipfilter, methods, route, identity, schema, ratelimit)
