"""What a build streams and how it fails: :class:`BuildMessage` (docker's classic
builder output, and the final image ID once) and :class:`StepFailed` (a RUN that exited
non-zero, with its exit code).
"""

from __future__ import annotations

from dataclasses import dataclass

from conch.errors import ConchError


@dataclass(frozen=True, slots=True)
class BuildMessage:
    stream: str = ""
    aux_id: str = ""


class StepFailed(ConchError):
    """A RUN step exited non-zero; ``code`` is its exit status (the CLI's exit code)."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def message(text: str) -> BuildMessage:
    return BuildMessage(stream=text)


def short_id(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]
