"""route: the call must name an endpoint the API's OpenAPI description declares.

An unknown path is 404 (``unknown_endpoint``), a declared path with an undeclared method
405 with ``Allow``. The matched operation becomes ``context.endpoint`` for the checks
after it. On by default when the API has a spec; ``mode: log`` lets unknown endpoints
through and records them.
"""

from __future__ import annotations

from apiward.errors import ConfigError
from apiward.pipeline.check import NO_DEPS, Check, CheckConfig, Deps, Mode
from apiward.pipeline.verdict import ALLOW, Verdict, deny

NAME = "route"
NEEDS_SPEC = True


class Config(CheckConfig):
    pass


UNKNOWN = deny(404, "unknown_endpoint", "the API declares no endpoint at this path")


def build(config: Config, mode: Mode, deps: Deps = NO_DEPS) -> Check:
    spec = deps.spec
    if spec is None:
        raise ConfigError([f"apis ({deps.api_name}).checks.route: needs the API's spec"])
    match = spec.match

    def run(request, context) -> Verdict:
        found = match(request.path)
        if found is None:
            return UNKNOWN
        entry, params = found
        operation = entry.operations.get(request.method)
        if operation is None:
            return entry.not_allowed
        context.endpoint = operation
        context.path_params = params
        return ALLOW

    return Check(NAME, mode, run)
