"""One item of a pull or push stream: docker's jsonmessage status (the API adds the
progress bar text). Its own module so that the service and the pull and push steps that
yield it all import it from below."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True, kw_only=True)
class Progress:
    status: str = ""
    id: str = ""
    current: int | None = None
    total: int | None = None
    aux: dict[str, Any] | None = None
