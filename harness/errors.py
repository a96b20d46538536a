"""The exception tree. The CLI and the pytest plugin turn these into messages and exit codes
at one place each; nothing else prints a traceback for a user's mistake.

    HarnessError                base; never raised itself
    ├── InputError              a file or argument the user gave is wrong        -> exit 2
    ├── EnvironmentProblem      the machine lacks something (engine, image, ...) -> exit 2
    └── ExpectationFailed       the scenario ran, its expectations did not hold  -> exit 1
"""

from __future__ import annotations

__all__ = [
    "EnvironmentProblem",
    "ExpectationFailed",
    "HarnessError",
    "ImageMissing",
    "InputError",
    "Location",
    "excerpt",
]

from dataclasses import dataclass
from typing import Any

from harness.limits import MAX_EXCERPT_CHARS


def excerpt(value: Any, limit: int = MAX_EXCERPT_CHARS) -> str:
    """`repr(value)` cut to `limit` characters: an error quotes what it is about, never a whole
    file that was named where a path or a small value belonged."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


@dataclass(frozen=True)
class Location:
    """Where in a user's file a problem is: 1-based line and column, like editors show."""

    path: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        if self.line is None:
            return self.path
        if self.column is None:
            return f"{self.path}:{self.line}"
        return f"{self.path}:{self.line}:{self.column}"


class HarnessError(Exception):
    exit_code = 2


class InputError(HarnessError):
    """`path:LINE:COL: key.path: problem; fix`: what is wrong, where, and what to do."""

    def __init__(
        self,
        problem: str,
        *,
        location: Location | None = None,
        key_path: str = "",
        fix: str = "",
    ) -> None:
        # The last guard against echoing a file: a problem is a sentence, not a document.
        self.problem = problem if len(problem) <= 500 else problem[:499] + "…"
        self.location = location
        self.key_path = key_path
        self.fix = fix
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = []
        if self.location is not None:
            parts.append(str(self.location))
        if self.key_path:
            parts.append(self.key_path)
        message = self.problem if not self.fix else f"{self.problem}; {self.fix}"
        parts.append(message)
        return ": ".join(parts)


class EnvironmentProblem(HarnessError):
    """Something outside the user's files is missing; the message says how to fix it."""


class ImageMissing(EnvironmentProblem):
    """A workload image is not in the local engine (and none is pulled from a registry)."""

    def __init__(self, image: str, fix: str, what: str | None = None) -> None:
        # `what` names the image's role, e.g. "the image X of the client"
        super().__init__(f"{what or f'the workload image {image}'} is missing; {fix}")
        self.image = image


class ExpectationFailed(HarnessError):
    exit_code = 1
