"""Request bodies decoded as dockerd decodes them: JSON into typed Go structs.

dockerd never answers a malformed body with a 500: ``encoding/json`` refuses it and the
router turns that into a 400 (moby ``runconfig.loadJSON``: ``invalid JSON: <Go's
error>``). conch's routes read plain dicts, so a string where an int belongs used to
reach ``int("abc")`` deep in a handler and became a 500. :func:`decode` does the type
check up front, against a small schema of the Docker types each route reads, and words
its refusals as Go does::

    invalid JSON: json: cannot unmarshal string into Go struct field
        CreateRequest.HostConfig.Memory of type int64

Schemas are plain data: a Go type name (``"string"``, ``"int64"``, ``"uint16"``,
``"bool"``, ``"any"``), ``("slice", T)``, ``("map", T)``, ``("strslice",)`` (Docker's
string-or-list), or a :class:`Struct` naming its fields. Unknown fields pass (Go ignores
them); ``null`` is always accepted (Go leaves the zero value). Only types are checked
here; meaning (a restart policy's name, a port's syntax) stays with the route.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from conch.errors import InvalidArgument

_INTS = {"int": (-(1 << 63), (1 << 63) - 1), "int64": (-(1 << 63), (1 << 63) - 1),
         "int32": (-(1 << 31), (1 << 31) - 1), "uint": (0, (1 << 64) - 1),
         "uint64": (0, (1 << 64) - 1), "uint32": (0, (1 << 32) - 1), "uint16": (0, (1 << 16) - 1),
         "uint8": (0, 255)}


@dataclass(frozen=True)
class Struct:
    name: str
    fields: dict[str, Any] = field(default_factory=dict)


def _json_kind(value: Any) -> str:
    """Go's name for a JSON value's kind in unmarshal errors."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return f"number {json.dumps(value)}"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _type_name(t: Any) -> str:
    if isinstance(t, Struct):
        return t.name
    if isinstance(t, tuple):
        if t[0] == "slice":
            return "[]" + _type_name(t[1])
        if t[0] == "map":
            return "map[string]" + _type_name(t[1])
        if t[0] == "array2":
            return "[2]" + _type_name(t[1])
        return "strslice.StrSlice"
    return t


def _refuse(value: Any, t: Any, path: str) -> InvalidArgument:
    kind = _json_kind(value)
    where = f"Go struct field {path}" if "." in path else f"Go value"
    return InvalidArgument(f"invalid JSON: json: cannot unmarshal {kind} into {where} of type "
                           f"{_type_name(t)}")


def check(value: Any, t: Any, path: str) -> None:
    """Raise InvalidArgument (Go's wording) if ``value`` cannot decode into ``t``."""
    if value is None or t == "any":
        return
    if isinstance(t, Struct):
        if not isinstance(value, dict):
            raise _refuse(value, t, path)
        for key, sub in t.fields.items():
            if key in value:
                check(value[key], sub, f"{path}.{key}")
        return
    if isinstance(t, tuple):
        kind = t[0]
        if kind == "strslice":  # docker's StrSlice: a string or a list of strings
            if isinstance(value, str):
                return
            if not isinstance(value, list):
                raise _refuse(value, ("slice", "string"), path)
            for v in value:
                if not isinstance(v, str):
                    raise _refuse(v, "string", path)
            return
        if kind in ("slice", "array2"):
            if not isinstance(value, list):
                raise _refuse(value, t, path)
            if kind == "array2" and len(value) > 2:
                raise InvalidArgument(f"invalid JSON: json: cannot unmarshal array into Go struct "
                                      f"field {path} of type {_type_name(t)}")
            for v in value:
                check(v, t[1], path)
            return
        if kind == "map":
            if not isinstance(value, dict):
                raise _refuse(value, t, path)
            for v in value.values():
                check(v, t[1], path)
            return
    if t == "string":
        if not isinstance(value, str):
            raise _refuse(value, t, path)
        return
    if t == "bool":
        if not isinstance(value, bool):
            raise _refuse(value, t, path)
        return
    if t in _INTS:
        lo, hi = _INTS[t]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _refuse(value, t, path)
        if isinstance(value, float) and not value.is_integer() or not lo <= value <= hi:
            raise _refuse(value, t, path)
        return
    if t == "float64":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _refuse(value, t, path)
        return
    if t == "object":  # struct{} values (ExposedPorts, Volumes)
        if not isinstance(value, dict):
            raise _refuse(value, "struct {}", path)


def parse_json(raw: bytes, *, empty: Any = None) -> Any:
    """The body as JSON; ``empty`` for a blank body (None: refused as dockerd does)."""
    if not raw.strip():
        if empty is None:
            raise InvalidArgument("invalid JSON: got EOF while reading request body")
        return empty
    try:
        return json.loads(raw)
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"invalid JSON: invalid character in request body: {exc.reason}") from exc
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"invalid JSON: {_go_syntax_error(raw, exc)}") from exc
    except RecursionError:
        # nesting deeper than Python's parser goes (Go's encoding/json stops at 10000
        # with this error): a 400 as dockerd's, not a 500
        raise InvalidArgument("invalid JSON: exceeded max depth") from None


def _go_syntax_error(raw: bytes, exc: json.JSONDecodeError) -> str:
    """Go's ``encoding/json`` SyntaxError text for the common cases."""
    text = exc.doc
    if exc.pos >= len(text.rstrip()):
        return "unexpected EOF"
    ch = text[exc.pos]
    if exc.msg.startswith("Expecting value"):
        return f"invalid character {ch!r} looking for beginning of value"
    if exc.msg.startswith("Extra data"):
        return f"invalid character {ch!r} after top-level value"
    if exc.msg.startswith("Expecting property name"):
        return f"invalid character {ch!r} looking for beginning of object key string"
    if exc.msg.startswith("Expecting ',' delimiter") or exc.msg.startswith("Expecting ':' delimiter"):
        return f"invalid character {ch!r} after object key:value pair"
    return f"invalid character {ch!r} ({exc.msg})"


def decode(raw: bytes, schema: Struct, *, empty: Any = None) -> Any:
    """``raw`` parsed and type-checked against ``schema`` (an object is required)."""
    value = parse_json(raw, empty=empty)
    if value is empty and not raw.strip():
        return value
    if not isinstance(value, dict):
        raise InvalidArgument(f"invalid JSON: json: cannot unmarshal {_json_kind(value)} into Go "
                              f"value of type {schema.name}")
    check(value, schema, schema.name)
    return value


# --- Docker's types, as much of them as conch reads -------------------------------------

_S, _I, _B = "string", "int64", "bool"
_STRS = ("slice", "string")
_SMAP = ("map", "string")

ENDPOINT_SETTINGS = Struct("EndpointSettings", {
    "IPAMConfig": Struct("EndpointIPAMConfig", {"IPv4Address": _S, "IPv6Address": _S,
                                                "LinkLocalIPs": _STRS}),
    "Links": _STRS, "Aliases": _STRS, "DriverOpts": _SMAP, "MacAddress": _S, "NetworkID": _S,
    "EndpointID": _S, "Gateway": _S, "IPAddress": _S, "IPPrefixLen": "int", "DNSNames": _STRS,
    "GwPriority": "int",
})

_HEALTH = Struct("HealthConfig", {"Test": _STRS, "Interval": _I, "Timeout": _I, "StartPeriod": _I,
                                  "StartInterval": _I, "Retries": "int"})

CONFIG_FIELDS: dict[str, Any] = {
    "Hostname": _S, "Domainname": _S, "User": _S, "AttachStdin": _B, "AttachStdout": _B,
    "AttachStderr": _B, "ExposedPorts": ("map", "object"), "Tty": _B, "OpenStdin": _B,
    "StdinOnce": _B, "Env": _STRS, "Cmd": ("strslice",), "Healthcheck": _HEALTH,
    "ArgsEscaped": _B, "Image": _S, "Volumes": ("map", "object"), "WorkingDir": _S,
    "Entrypoint": ("strslice",), "NetworkDisabled": _B, "MacAddress": _S, "OnBuild": _STRS,
    "Labels": _SMAP, "StopSignal": _S, "StopTimeout": "int", "Shell": ("strslice",),
}

_WEIGHT_DEVICE = Struct("WeightDevice", {"Path": _S, "Weight": "uint16"})
_THROTTLE_DEVICE = Struct("ThrottleDevice", {"Path": _S, "Rate": "uint64"})

RESOURCES_FIELDS: dict[str, Any] = {
    "CpuShares": _I, "Memory": _I, "NanoCpus": _I, "CgroupParent": _S, "BlkioWeight": "uint16",
    "BlkioWeightDevice": ("slice", _WEIGHT_DEVICE),
    "BlkioDeviceReadBps": ("slice", _THROTTLE_DEVICE),
    "BlkioDeviceWriteBps": ("slice", _THROTTLE_DEVICE),
    "BlkioDeviceReadIOps": ("slice", _THROTTLE_DEVICE),
    "BlkioDeviceWriteIOps": ("slice", _THROTTLE_DEVICE),
    "CpuPeriod": _I, "CpuQuota": _I, "CpuRealtimePeriod": _I, "CpuRealtimeRuntime": _I,
    "CpusetCpus": _S, "CpusetMems": _S,
    "Devices": ("slice", Struct("DeviceMapping", {"PathOnHost": _S, "PathInContainer": _S,
                                                  "CgroupPermissions": _S})),
    "DeviceCgroupRules": _STRS, "DeviceRequests": ("slice", "any"), "KernelMemory": _I,
    "KernelMemoryTCP": _I, "MemoryReservation": _I, "MemorySwap": _I, "MemorySwappiness": _I,
    "OomKillDisable": _B, "PidsLimit": _I,
    "Ulimits": ("slice", Struct("Ulimit", {"Name": _S, "Hard": _I, "Soft": _I})),
    "CpuCount": _I, "CpuPercent": _I, "IOMaximumIOps": "uint64", "IOMaximumBandwidth": "uint64",
}

RESTART_POLICY = Struct("RestartPolicy", {"Name": _S, "MaximumRetryCount": "int"})

MOUNT = Struct("Mount", {
    "Type": _S, "Source": _S, "Target": _S, "ReadOnly": _B, "Consistency": _S,
    "BindOptions": Struct("BindOptions", {"Propagation": _S, "NonRecursive": _B,
                                          "CreateMountpoint": _B, "ReadOnlyNonRecursive": _B,
                                          "ReadOnlyForceRecursive": _B}),
    "VolumeOptions": Struct("VolumeOptions", {
        "NoCopy": _B, "Labels": _SMAP, "Subpath": _S,
        "DriverConfig": Struct("Driver", {"Name": _S, "Options": _SMAP})}),
    "TmpfsOptions": Struct("TmpfsOptions", {"SizeBytes": _I, "Mode": "uint32",
                                            "Options": ("slice", _STRS)}),
})

HOST_CONFIG = Struct("HostConfig", {
    **RESOURCES_FIELDS,
    "Binds": _STRS, "ContainerIDFile": _S,
    "LogConfig": Struct("LogConfig", {"Type": _S, "Config": _SMAP}),
    "NetworkMode": _S,
    "PortBindings": ("map", ("slice", Struct("PortBinding", {"HostIp": _S, "HostPort": _S}))),
    "RestartPolicy": RESTART_POLICY, "AutoRemove": _B, "VolumeDriver": _S, "VolumesFrom": _STRS,
    "ConsoleSize": ("array2", "uint"), "Annotations": _SMAP, "CapAdd": ("strslice",),
    "CapDrop": ("strslice",), "CgroupnsMode": _S, "Dns": _STRS, "DnsOptions": _STRS,
    "DnsSearch": _STRS, "ExtraHosts": _STRS, "GroupAdd": _STRS, "IpcMode": _S, "Cgroup": _S,
    "Links": _STRS, "OomScoreAdj": "int", "PidMode": _S, "Privileged": _B,
    "PublishAllPorts": _B, "ReadonlyRootfs": _B, "SecurityOpt": _STRS, "StorageOpt": _SMAP,
    "Tmpfs": _SMAP, "UTSMode": _S, "UsernsMode": _S, "ShmSize": _I, "Sysctls": _SMAP,
    "Runtime": _S, "Isolation": _S, "Mounts": ("slice", MOUNT), "MaskedPaths": _STRS,
    "ReadonlyPaths": _STRS, "Init": _B,
})

CREATE_REQUEST = Struct("CreateRequest", {
    **CONFIG_FIELDS,
    "HostConfig": HOST_CONFIG,
    "NetworkingConfig": Struct("NetworkingConfig", {
        "EndpointsConfig": ("map", ENDPOINT_SETTINGS)}),
})

UPDATE_CONFIG = Struct("UpdateConfig", {**RESOURCES_FIELDS, "RestartPolicy": RESTART_POLICY})

EXEC_CONFIG = Struct("ExecOptions", {
    "User": _S, "Privileged": _B, "Tty": _B, "ConsoleSize": ("array2", "uint"),
    "AttachStdin": _B, "AttachStderr": _B, "AttachStdout": _B, "Detach": _B, "DetachKeys": _S,
    "Env": _STRS, "WorkingDir": _S, "Cmd": ("strslice",),
})

EXEC_START = Struct("ExecStartOptions", {"Detach": _B, "Tty": _B, "ConsoleSize": ("array2", "uint")})

NETWORK_CREATE = Struct("CreateRequest", {
    "Name": _S, "CheckDuplicate": _B, "Driver": _S, "Scope": _S, "EnableIPv4": _B,
    "EnableIPv6": _B,
    "IPAM": Struct("IPAM", {"Driver": _S, "Options": _SMAP, "Config": ("slice", Struct(
        "IPAMConfig", {"Subnet": _S, "IPRange": _S, "Gateway": _S,
                       "AuxiliaryAddresses": _SMAP}))}),
    "Internal": _B, "Attachable": _B, "Ingress": _B, "ConfigOnly": _B,
    "ConfigFrom": Struct("ConfigReference", {"Network": _S}), "Options": _SMAP, "Labels": _SMAP,
})

NETWORK_CONNECT = Struct("ConnectOptions", {"Container": _S, "EndpointConfig": ENDPOINT_SETTINGS})
NETWORK_DISCONNECT = Struct("DisconnectOptions", {"Container": _S, "Force": _B})

VOLUME_CREATE = Struct("CreateOptions", {"Name": _S, "Driver": _S, "DriverOpts": _SMAP,
                                         "Labels": _SMAP, "ClusterVolumeSpec": "any"})

AUTH_CONFIG = Struct("AuthConfig", {k: _S for k in ("username", "password", "auth", "email",
                                                    "serveraddress", "identitytoken",
                                                    "registrytoken")})

COMMIT_CONFIG = Struct("Config", dict(CONFIG_FIELDS))


# --- dockerd's checks of decoded resources (daemon_unix.go verifyPlatformContainerResources)

_MIN_MEMORY = 6 * 1024 * 1024
_PID_MAX_LIMIT = 4 * 1024 * 1024  # the kernel's PID_MAX_LIMIT: pids.max refuses more


def verify_resources(r: dict, *, update: bool = False) -> None:
    """Refuse (400, moby's words) what the kernel would refuse later as a 500."""
    memory = r.get("Memory") or 0
    swap = r.get("MemorySwap") or 0
    reservation = r.get("MemoryReservation") or 0
    if memory and memory < _MIN_MEMORY:
        raise InvalidArgument("Minimum memory limit allowed is 6MB")
    if swap > 0 and memory > 0 and swap < memory:
        raise InvalidArgument("Minimum memoryswap limit should be larger than memory limit, "
                              "see usage")
    if swap > 0 and memory == 0 and not update:
        raise InvalidArgument("You should always set the Memory limit when using Memoryswap "
                              "limit, see usage")
    swappiness = r.get("MemorySwappiness")
    if swappiness is not None and swappiness != -1 and not 0 <= swappiness <= 100:
        raise InvalidArgument(f"Invalid value: {swappiness}, valid memory swappiness range is 0-100")
    if reservation and reservation < _MIN_MEMORY:
        raise InvalidArgument("Minimum memory reservation allowed is 6MB")
    if memory > 0 and reservation > 0 and memory < reservation:
        raise InvalidArgument("Minimum memory limit can not be less than memory reservation "
                              "limit, see usage")
    nano = r.get("NanoCpus") or 0
    period, quota = r.get("CpuPeriod") or 0, r.get("CpuQuota") or 0
    if nano > 0 and period > 0:
        raise InvalidArgument("Conflicting options: Nano CPUs and CPU Period cannot both be set")
    if nano > 0 and quota > 0:
        raise InvalidArgument("Conflicting options: Nano CPUs and CPU Quota cannot both be set")
    ncpu = os.cpu_count() or 1
    if nano < 0 or nano > ncpu * 10**9:
        raise InvalidArgument(f"Range of CPUs is from 0.01 to {ncpu}.00, as there are only "
                              f"{ncpu} CPUs available")
    if period and not 1000 <= period <= 1_000_000:
        raise InvalidArgument("CPU cfs period can not be less than 1ms (i.e. 1000) or larger "
                              "than 1s (i.e. 1000000)")
    if 0 < quota < 1000:
        raise InvalidArgument("CPU cfs quota can not be less than 1ms (i.e. 1000)")
    if (r.get("CpuShares") or 0) < 0:
        raise InvalidArgument(f"invalid CPU shares ({r['CpuShares']}): value must be a "
                              "positive integer")
    if (r.get("PidsLimit") or 0) > _PID_MAX_LIMIT:
        raise InvalidArgument(f"invalid PIDs limit {r['PidsLimit']}: the kernel allows at most "
                              f"{_PID_MAX_LIMIT}")
    if (r.get("BlkioWeight") or 0) and not 10 <= r["BlkioWeight"] <= 1000:
        raise InvalidArgument("Range of blkio weight is from 10 to 1000")
