"""Image references, parsed and normalised exactly as Docker's distribution/reference.

Grammar (distribution/reference ``regexp.go``)::

    reference       := name [ ":" tag ] [ "@" digest ]
    name            := [domain '/'] remote-name
    domain          := host [':' port-number]
    host            := domain-name | IPv4address | \\[ IPv6address \\]
    domain-name     := domain-component ['.' domain-component]*
    domain-component:= /([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])/
    remote-name     := path-component ['/' path-component]*
    path-component  := alpha-numeric [separator alpha-numeric]*
    alpha-numeric   := /[a-z0-9]+/
    separator       := /[_.]|__|[-]+/
    tag             := /[\\w][\\w.-]{0,127}/
    digest          := algorithm ":" hex   (then validated as an OCI digest)

Normalisation (``ParseNormalizedNamed``, ``splitDockerDomain``): the first path component
is a domain only if it contains ``.`` or ``:``, is ``localhost``, or has an uppercase
letter; otherwise the domain is ``docker.io``. ``index.docker.io`` becomes ``docker.io``
and a single-component docker.io path gets the ``library/`` prefix. A remote name with an
uppercase letter is refused. :meth:`Reference.parse` then adds the ``latest`` tag when the
reference has neither tag nor digest (``TagNameOnly``), as ``docker pull`` does.

:meth:`Reference.familiar` is Docker's short display form (``FamiliarString``):
``docker.io/library/busybox:latest`` -> ``busybox:latest``.

Error texts are Docker's, because users and client tests see them verbatim.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from conch.errors import InvalidArgument
from conch.oci.digest import Digest

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

ERR_INVALID_FORMAT = "invalid reference format"
ERR_TAG_INVALID_FORMAT = "invalid tag format"
ERR_NAME_EMPTY = "repository name must have at least one component"
ERR_NAME_UPPERCASE = "repository name must be lowercase"
ERR_NAME_TOO_LONG = f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|{_IPV6})"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REMOTE_NAME = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_NAME = rf"(?:{_DOMAIN}/)?{_REMOTE_NAME}"

# re.ASCII: Go's \w is [0-9A-Za-z_]; fullmatch: Python's $ would accept a trailing "\n".
_REFERENCE_RE = re.compile(rf"({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?", re.ASCII)
_ANCHORED_NAME_RE = re.compile(rf"(?:({_DOMAIN})/)?({_REMOTE_NAME})", re.ASCII)
_DOMAIN_RE = re.compile(_DOMAIN, re.ASCII)
_REMOTE_NAME_RE = re.compile(_REMOTE_NAME, re.ASCII)
_TAG_RE = re.compile(_TAG, re.ASCII)
_IDENTIFIER_RE = re.compile(r"[a-f0-9]{64}", re.ASCII)

# No valid reference is anywhere near this long; refusing early bounds regex work.
_MAX_INPUT = 4096


def validate_tag(tag: str) -> str:
    if not isinstance(tag, str) or _TAG_RE.fullmatch(tag) is None:
        raise InvalidArgument(f"{ERR_TAG_INVALID_FORMAT}: {tag!r}")
    return tag


def validate_path(path: str) -> str:
    """A repository path as used in registry URLs (``library/busybox``)."""
    if not isinstance(path, str) or _REMOTE_NAME_RE.fullmatch(path) is None:
        raise InvalidArgument(f"{ERR_INVALID_FORMAT}: repository name {path!r}")
    return path


def is_identifier(s: str) -> bool:
    """True for a bare 64-hex image ID, which is never a repository name."""
    return _IDENTIFIER_RE.fullmatch(s) is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class Reference:
    """A fully qualified, named reference: ``domain/path[:tag][@digest]``."""

    domain: str
    path: str
    tag: str = ""
    digest: Digest | None = None

    def __post_init__(self) -> None:
        if _DOMAIN_RE.fullmatch(self.domain) is None:
            raise InvalidArgument(f"{ERR_INVALID_FORMAT}: domain {self.domain!r}")
        validate_path(self.path)
        if len(self.name) > NAME_TOTAL_LENGTH_MAX:
            raise InvalidArgument(ERR_NAME_TOO_LONG)
        if self.tag:
            validate_tag(self.tag)

    @classmethod
    def parse(cls, s: str, *, default_tag: bool = True) -> Reference:
        """Docker's ``ParseNormalizedNamed``, plus ``TagNameOnly`` if ``default_tag``."""
        if not isinstance(s, str):
            raise InvalidArgument(f"{ERR_INVALID_FORMAT}: expected a string")
        if is_identifier(s):
            raise InvalidArgument(
                f"invalid repository name ({s}), cannot specify 64-byte hexadecimal strings"
            )
        domain, remainder = _split_docker_domain(s)
        remote_name = remainder.partition(":")[0]
        if remote_name.lower() != remote_name:
            raise InvalidArgument(
                f"{ERR_INVALID_FORMAT}: repository name ({remote_name}) must be lowercase"
            )
        ref = _parse(f"{domain}/{remainder}")
        if default_tag and not ref.tag and ref.digest is None:
            ref = replace(ref, tag=DEFAULT_TAG)
        return ref

    @property
    def name(self) -> str:
        return f"{self.domain}/{self.path}"

    def familiar_name(self) -> str:
        """``FamiliarName``: the name without docker.io and the library/ prefix."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        if self.path.startswith(OFFICIAL_REPO_PREFIX):
            rest = self.path[len(OFFICIAL_REPO_PREFIX):]
            if "/" not in rest:
                return rest
        return self.path

    def familiar(self) -> str:
        """``FamiliarString``: what ``docker images`` and ``docker ps`` show."""
        return self.familiar_name() + self._suffix()

    def with_tag(self, tag: str) -> Reference:
        return replace(self, tag=validate_tag(tag))

    def with_digest(self, digest: Digest | str) -> Reference:
        if isinstance(digest, str):
            digest = Digest.parse(digest)
        return replace(self, digest=digest)

    def name_only(self) -> Reference:
        return Reference(domain=self.domain, path=self.path)

    def _suffix(self) -> str:
        out = f":{self.tag}" if self.tag else ""
        if self.digest is not None:
            out += f"@{self.digest}"
        return out

    def __str__(self) -> str:
        return self.name + self._suffix()


def _parse(s: str) -> Reference:
    """Docker's ``reference.Parse``, for the domain-prefixed string normalisation built.

    Not normalised itself: ``foo/bar`` has domain ``foo``.
    """
    if len(s) > _MAX_INPUT:
        raise InvalidArgument(ERR_INVALID_FORMAT)
    m = _REFERENCE_RE.fullmatch(s)
    if m is None:
        if s == "":
            raise InvalidArgument(ERR_NAME_EMPTY)
        if _REFERENCE_RE.fullmatch(s.lower()) is not None:
            raise InvalidArgument(ERR_NAME_UPPERCASE)
        raise InvalidArgument(ERR_INVALID_FORMAT)
    name, tag, digest = m.group(1), m.group(2) or "", m.group(3)
    if len(name) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidArgument(ERR_NAME_TOO_LONG)
    nm = _ANCHORED_NAME_RE.fullmatch(name)
    assert nm is not None  # name matched the same sub-pattern above
    domain, path = nm.group(1), nm.group(2)
    if domain is None:
        raise InvalidArgument(f"{ERR_INVALID_FORMAT}: {s!r} has no domain")
    return Reference(
        domain=domain,
        path=path,
        tag=tag,
        digest=None if digest is None else Digest.parse(digest),
    )


def _split_docker_domain(name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    if not sep or (
        "." not in first and ":" not in first and first != "localhost" and first.lower() == first
    ):
        domain, remainder = DEFAULT_DOMAIN, name
    else:
        domain, remainder = first, rest
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_REPO_PREFIX + remainder
    return domain, remainder
