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
    """Fields every check accepts. ``mode`` unset means: the API's mode."""

    model_config = ConfigDict(extra="forbid")

    mode: Mode | None = None


@dataclass(frozen=True, slots=True)
class Check:
    """A compiled check: ``run(request, context) -> Verdict``.

    ``needs_body`` checks run in the body stage, after the body is read within limits.
    """

    name: str
    mode: Mode
    run: Callable[[Request, Context], Verdict]
    needs_body: bool = False
