"""The Check shape shared by every defence, and the base of every check's config."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict

from apiward.pipeline.context import Context
from apiward.pipeline.request import Request
from apiward.pipeline.verdict import Verdict

Mode = Literal["block", "log"]


class CheckConfig(BaseModel):
    """Fields every check accepts. ``mode`` unset means: the API's mode. ``on_error``: what
    a call gets when the check itself fails (raises): refused with 500, or let through."""

    model_config = ConfigDict(extra="forbid")

    mode: Mode | None = None
    on_error: Literal["block", "allow"] = "block"


@dataclass(frozen=True, slots=True)
class Check:
    """A compiled check: ``run(request, context) -> Verdict``.

    ``needs_body`` checks run in the body stage, after the body is read within limits.
    """

    name: str
    mode: Mode
    run: Callable[[Request, Context], Verdict]
    needs_body: bool = False
    on_error: Literal["block", "allow"] = "block"
