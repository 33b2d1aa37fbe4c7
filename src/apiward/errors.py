"""The error tree: every failure a user can cause has a precise type and message.

Errors carry what the boundary that catches them needs (an exit code for the CLI, an HTTP
status for the wire), so no library code calls ``sys.exit`` or formats responses itself.
"""

from __future__ import annotations


class ApiwardError(Exception):
    """Base of every error apiward raises on purpose."""


class ConfigError(ApiwardError):
    """A configuration file (or the flags standing for one) is invalid.

    ``problems`` holds one human line per problem: ``path.to.key (file:line): message``.
    """

    exit_code = 2

    def __init__(self, problems: list[str] | str, source: str | None = None) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = source
        super().__init__("\n".join(self.problems))


class SpecError(ConfigError):
    """An OpenAPI document could not be loaded or is invalid."""


class WireError(ApiwardError):
    """A request broke an HTTP rule; ``status`` is the answer, ``reason`` a stable code."""

    def __init__(self, status: int, reason: str, detail: str = "") -> None:
        self.status = status
        self.reason = reason
        self.request_id = ""  # set once the request it refuses has one
        self.detail = detail or reason.replace("_", " ")
        super().__init__(f"{status} {reason}: {self.detail}")
