"""Parsing of what arrives in a request line or header: names, tags, digests, ranges.

Pure functions; each raises the :class:`RegistryError` the spec asks for, so handlers can
call them straight on untrusted input.
"""

from __future__ import annotations

import re

from conch.errors import InvalidArgument
from conch.oci.digest import Digest

from .errors import RegistryError

# distribution-spec "Pulling manifests": <name> and <reference> grammars.
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
TAG_RE = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
# docker/distribution limits a repository name to 255 characters (reference.NameTotalLengthMax).
NAME_MAX = 255

_CONTENT_RANGE = re.compile(r"(?:bytes )?(\d+)-(\d+)")
_RANGE = re.compile(r"bytes=(\d+)-(\d*)")


def validate_name(name: str) -> str:
    if len(name) > NAME_MAX or NAME_RE.fullmatch(name) is None:
        raise RegistryError("NAME_INVALID", detail={"name": name[:NAME_MAX + 1]})
    return name


def is_tag(reference: str) -> bool:
    return TAG_RE.fullmatch(reference) is not None


def validate_tag(tag: str) -> str:
    if not is_tag(tag):
        raise RegistryError("TAG_INVALID", f"invalid tag {tag[:200]!r}")
    return tag


def parse_digest(text: str, code: str = "DIGEST_INVALID") -> Digest:
    """A digest from a URL or header; sha256/sha512 only (``conch.oci.digest``)."""
    try:
        return Digest.parse(text)
    except InvalidArgument as exc:
        if "unsupported" in str(exc):
            raise RegistryError("UNSUPPORTED", str(exc)) from exc
        raise RegistryError(code, str(exc)) from exc


def parse_reference(reference: str) -> tuple[Digest | None, str | None]:
    """A manifest reference is a digest (has ':') or a tag: returns ``(digest, tag)``."""
    if ":" in reference:
        return parse_digest(reference), None
    return None, validate_tag(reference)


def parse_content_range(value: str) -> tuple[int, int]:
    """PATCH ``Content-Range: <start>-<end>`` (inclusive; docker also sends ``bytes ``).

    Raises 416 BLOB_UPLOAD_INVALID on anything unparseable or backwards.
    """
    m = _CONTENT_RANGE.fullmatch(value.strip())
    if m is None:
        raise RegistryError("BLOB_UPLOAD_INVALID", f"invalid Content-Range {value[:100]!r}",
                            status=416)
    start, end = int(m.group(1)), int(m.group(2))
    if end < start:
        raise RegistryError("BLOB_UPLOAD_INVALID", f"invalid Content-Range {value[:100]!r}",
                            status=416)
    return start, end


def upload_range(size: int) -> str:
    """The ``Range`` header of an upload status: ``0-<last byte>``, ``0-0`` when empty
    (docker/distribution's convention; clients read the end as the offset minus one)."""
    return f"0-{max(size - 1, 0)}"


def parse_page(query, default_n: int | None = None) -> tuple[int | None, str]:
    """``n`` and ``last`` of tags/list and _catalog. A bad ``n`` is a 400; the spec has no
    code for it (distribution says PAGINATION_NUMBER_INVALID), so UNSUPPORTED carries it."""
    raw = query.get("n")
    n = default_n
    if raw is not None:
        if not raw.isdigit() or len(raw) > 9:
            raise RegistryError("UNSUPPORTED", f"invalid page size n={raw[:20]!r}", status=400)
        n = int(raw)
    return n, query.get("last", "")


def paginate(items: list[str], n: int | None, last: str) -> tuple[list[str], bool]:
    """Items after ``last`` (lexical order), at most ``n``; says whether more follow."""
    items = sorted(items)
    if last:
        items = [i for i in items if i > last]
    if n is None:
        return items, False
    if n == 0:  # distribution-spec 1.1: n=0 asks for an empty list
        return [], False
    return items[:n], len(items) > n
