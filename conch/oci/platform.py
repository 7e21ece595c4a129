"""Platforms (os/architecture/variant) and how an image index is matched against one.

The value type mirrors the image-spec ``platform`` object (``os``, ``architecture``,
``variant``, ``os.version``, ``os.features``; unknown keys such as Docker's deprecated
``features`` are kept). Parsing, normalisation and matching follow containerd's
``platforms`` package, which is what dockerd uses:

* :func:`normalize` maps aliases (``x86_64`` -> ``amd64``, ``aarch64`` -> ``arm64``,
  ``armhf`` -> ``arm/v7``...) and drops variants that mean "the default" (``amd64/v1``,
  ``arm64/v8``), so ``linux/arm64`` and ``linux/arm64/v8`` match each other.
* :func:`only` is containerd's ``platforms.Only``: the platform itself, then what it can
  also run, best first (``amd64/v3`` -> v2, v1, then ``386``; ``arm64`` -> ``arm/v8``
  down to ``arm/v5``; ``arm/v7`` -> v6, v5).
* :func:`default` is ``Only(host_platform())``.

Pure data: :func:`host_platform` reads ``os.uname()`` unless told the machine.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping, Protocol

from conch.errors import InvalidArgument

_KNOWN_OS = frozenset(
    "aix android darwin dragonfly freebsd hurd illumos ios js linux nacl netbsd openbsd "
    "plan9 solaris wasip1 windows zos".split()
)
_KNOWN_ARCH = frozenset(
    "386 amd64 amd64p32 arm armbe arm64 arm64be loong64 mips mipsle mips64 mips64le "
    "mips64p32 mips64p32le ppc ppc64 ppc64le riscv riscv64 s390 s390x sparc sparc64 wasm".split()
)
# uname -m -> (GOARCH, variant)
_MACHINES: dict[str, tuple[str, str]] = {
    "x86_64": ("amd64", ""),
    "amd64": ("amd64", ""),
    "aarch64": ("arm64", "v8"),
    "arm64": ("arm64", "v8"),
    "armv8l": ("arm", "v8"),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "armv5tel": ("arm", "v5"),
    "i386": ("386", ""),
    "i586": ("386", ""),
    "i686": ("386", ""),
    "ppc64le": ("ppc64le", ""),
    "ppc64": ("ppc64", ""),
    "s390x": ("s390x", ""),
    "riscv64": ("riscv64", ""),
    "mips64": ("mips64", ""),
    "loongarch64": ("loong64", ""),
}
_COMPONENT = re.compile(r"[A-Za-z0-9_.-]+")
_OS_WITH_VERSION = re.compile(r"([A-Za-z0-9_-]+)(?:\(([A-Za-z0-9_.-]*)\))?")

_KEYS = ("architecture", "os", "os.version", "os.features", "variant")


@dataclass(frozen=True, slots=True, kw_only=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""
    os_version: str = ""
    os_features: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Platform:
        if not isinstance(d, Mapping):
            raise InvalidArgument(f"platform must be an object, got {type(d).__name__}")
        os_ = _str(d, "os", required=True)
        arch = _str(d, "architecture", required=True)
        features = d.get("os.features")
        if features is None:
            features = []
        if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
            raise InvalidArgument("platform os.features must be a list of strings")
        return cls(
            os=os_,
            architecture=arch,
            variant=_str(d, "variant"),
            os_version=_str(d, "os.version"),
            os_features=tuple(features),
            extra={k: v for k, v in d.items() if k not in _KEYS},
        )

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.os_version:
            d["os.version"] = self.os_version
        if self.os_features:
            d["os.features"] = list(self.os_features)
        if self.variant:
            d["variant"] = self.variant
        d.update(self.extra)
        return d

    @classmethod
    def parse(cls, specifier: str) -> Platform:
        """Parse ``os``, ``arch``, ``os/arch``, ``os/arch/variant`` or ``os(version)/arch``.

        Like containerd's ``platforms.Parse``: a lone component is an OS if known (the
        architecture is then the host's) or else an architecture (the OS is linux).
        """
        if "*" in specifier:
            raise InvalidArgument(f"{specifier!r}: wildcards not yet supported")
        parts = specifier.split("/", 3)
        os_part = _OS_WITH_VERSION.fullmatch(parts[0])
        if os_part is None:
            raise InvalidArgument(f"{parts[0]!r} is an invalid component of {specifier!r}")
        for part in parts[1:]:
            if _COMPONENT.fullmatch(part) is None:
                raise InvalidArgument(f"{part!r} is an invalid component of {specifier!r}")
        os_name, os_version = normalize_os(os_part.group(1)), os_part.group(2) or ""
        if len(parts) == 1:
            if os_name in _KNOWN_OS:
                host = host_platform()
                return cls(os=os_name, architecture=host.architecture, variant=host.variant,
                           os_version=os_version)
            arch, variant = normalize_arch(parts[0], "")
            if arch == "arm" and variant == "v7":
                variant = ""
            if arch not in _KNOWN_ARCH:
                raise InvalidArgument(f"{specifier!r}: unknown operating system or architecture")
            return cls(os="linux", architecture=arch, variant=variant)
        if len(parts) == 2:
            arch, variant = normalize_arch(parts[1], "")
            if arch == "arm" and variant == "v7":
                variant = ""
            return cls(os=os_name, architecture=arch, variant=variant, os_version=os_version)
        if len(parts) == 3:
            arch, variant = normalize_arch(parts[1], parts[2])
            if arch == "arm64" and variant == "":
                variant = "v8"  # an explicit variant is kept for display
            return cls(os=os_name, architecture=arch, variant=variant, os_version=os_version)
        raise InvalidArgument(f"{specifier!r}: cannot parse platform specifier")

    def __str__(self) -> str:
        head = f"{self.os}({self.os_version})" if self.os_version else self.os
        return "/".join(p for p in (head, self.architecture, self.variant) if p)


def normalize_os(os_name: str) -> str:
    os_name = os_name.lower()
    return "darwin" if os_name == "macos" else os_name


def normalize_arch(arch: str, variant: str) -> tuple[str, str]:
    """containerd's ``normalizeArch``: canonical GOARCH and variant."""
    arch, variant = arch.lower(), variant.lower()
    if arch == "i386":
        return "386", ""
    if arch in ("x86_64", "x86-64", "amd64"):
        return "amd64", "" if variant == "v1" else variant
    if arch in ("aarch64", "arm64"):
        if variant in ("8", "v8", "v8.0"):
            variant = ""
        elif variant in ("9", "9.0", "v9.0"):
            variant = "v9"
        return "arm64", variant
    if arch == "armhf":
        return "arm", "v7"
    if arch == "armel":
        return "arm", "v6"
    if arch == "arm":
        if variant in ("", "7"):
            variant = "v7"
        elif variant in ("5", "6", "8"):
            variant = "v" + variant
        return "arm", variant
    return arch, variant


def normalize(p: Platform) -> Platform:
    arch, variant = normalize_arch(p.architecture, p.variant)
    return replace(p, os=normalize_os(p.os), architecture=arch, variant=variant)


def host_platform(machine: str | None = None) -> Platform:
    """The platform this process runs on (``linux/amd64``, ``linux/arm64/v8``...)."""
    if machine is None:
        machine = os.uname().machine
    arch, variant = _MACHINES.get(machine, (machine.lower(), ""))
    return Platform(os="linux", architecture=arch, variant=variant)


class PlatformMatcher(Protocol):
    def match(self, platform: Platform) -> bool: ...

    def less(self, a: Platform, b: Platform) -> bool: ...


class Ordered:
    """Matches any of ``platforms``; earlier ones are preferred (containerd ``Ordered``)."""

    __slots__ = ("_keys",)

    def __init__(self, platforms: Iterable[Platform]) -> None:
        self._keys = tuple(_key(p) for p in platforms)

    def rank(self, platform: Platform) -> int:
        """Position of the first acceptable platform that ``platform`` is; len() if none."""
        key = _key(platform)
        for i, k in enumerate(self._keys):
            if k == key:
                return i
        return len(self._keys)

    def match(self, platform: Platform) -> bool:
        return self.rank(platform) < len(self._keys)

    def less(self, a: Platform, b: Platform) -> bool:
        return self.rank(a) < self.rank(b)

    def __repr__(self) -> str:
        return f"Ordered({['/'.join(k for k in key if k) for key in self._keys]})"


def only_strict(platform: Platform) -> Ordered:
    return Ordered([platform])


def only(platform: Platform) -> Ordered:
    return Ordered(_vector(normalize(platform)))


def default() -> Ordered:
    return only(host_platform())


def _vector(p: Platform) -> list[Platform]:
    """containerd ``platformVector``: ``p`` then the platforms it can also run."""
    out = [p]
    if p.architecture == "amd64":
        level = _variant_number(p.variant)
        for v in range(level - 1, 0, -1) if level > 1 else ():
            out.append(replace(p, variant="" if v == 1 else f"v{v}"))
        out.append(replace(p, architecture="386", variant=""))
    elif p.architecture == "arm":
        level = _variant_number(p.variant)
        for v in range(level - 1, 4, -1) if level > 5 else ():
            out.append(replace(p, variant=f"v{v}"))
    elif p.architecture == "arm64":
        out.extend(_vector(replace(p, architecture="arm", variant=p.variant or "v8")))
    return out


def _variant_number(variant: str) -> int:
    try:
        return int(variant.removeprefix("v"))
    except ValueError:
        return 0


def _key(p: Platform) -> tuple[str, str, str]:
    n = normalize(p)
    return (n.os, n.architecture, n.variant)


def _str(d: Mapping[str, Any], key: str, *, required: bool = False) -> str:
    v = d.get(key)
    if v is None:
        if required:
            raise InvalidArgument(f"platform {key} is required")
        return ""
    if not isinstance(v, str):
        raise InvalidArgument(f"platform {key} must be a string, got {type(v).__name__}")
    return v
