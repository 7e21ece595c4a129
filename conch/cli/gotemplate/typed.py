"""``typed_inspect``: inspect JSON as the docker CLI's Go structs see it, and Go's JSON.

The docker CLI decodes an inspect response into its API structs and runs the template on
them first; on an execution error it runs it again on the raw JSON (``map[string]interface
{}``, numbers as ``json.Number``, ``missingkey=error``) and reports that second error
(docker/cli cli/command/inspect/inspector.go). :func:`typed` builds the first view from
:data:`SCHEMAS` (field order and Go types of docker 28's api/types); a nested object with
no schema is a struct of the fields it has. :func:`raw` builds the second.
"""

from __future__ import annotations

from conch.cli.gotemplate.values import (NOVALUE, GoFloat, GoInt, GoMap, GoSlice, GoStr, NilPtr,
                                         Struct)

# Go type -> "Field[=jsonKey]:type ..." in declaration order (embedded structs flattened).
_SPEC = {
    "container.InspectResponse": "[ContainerJSONBase Id:string Created:string Path:string Args:[]string "
        "State:*container.State Image:string ResolvConfPath:string HostnamePath:string "
        "HostsPath:string LogPath:string Name:string "
        "RestartCount:int Driver:string Platform:string MountLabel:string ProcessLabel:string "
        "AppArmorProfile:string ExecIDs:[]string HostConfig:*container.HostConfig "
        "GraphDriver:storage.DriverData SizeRw?:*int64 SizeRootFs?:*int64 ] "
        "Mounts:[]container.MountPoint Config:*container.Config "
        "NetworkSettings:*container.NetworkSettings ImageManifestDescriptor?:*v1.Descriptor",
    "container.HostConfig": "Binds:[]string ContainerIDFile:string LogConfig:container.LogConfig "
        "NetworkMode:container.NetworkMode PortBindings:nat.PortMap "
        "RestartPolicy:container.RestartPolicy AutoRemove:bool VolumeDriver:string "
        "VolumesFrom:[]string ConsoleSize:[2]uint Annotations?:map[string]string "
        "CapAdd:strslice.StrSlice CapDrop:strslice.StrSlice CgroupnsMode:container.CgroupnsMode "
        "DNS=Dns:[]string DNSOptions=DnsOptions:[]string DNSSearch=DnsSearch:[]string "
        "ExtraHosts:[]string GroupAdd:[]string IpcMode:container.IpcMode Cgroup:container.CgroupSpec "
        "Links:[]string OomScoreAdj:int PidMode:container.PidMode Privileged:bool "
        "PublishAllPorts:bool ReadonlyRootfs:bool SecurityOpt:[]string StorageOpt?:map[string]string "
        "Tmpfs?:map[string]string UTSMode:container.UTSMode UsernsMode:container.UsernsMode "
        "ShmSize:int64 Sysctls?:map[string]string Runtime?:string Isolation:container.Isolation "
        "[Resources CPUShares=CpuShares:int64 Memory:int64 NanoCPUs=NanoCpus:int64 CgroupParent:string "
        "BlkioWeight:uint16 BlkioWeightDevice:[]*blkiodev.WeightDevice "
        "BlkioDeviceReadBps:[]*blkiodev.ThrottleDevice BlkioDeviceWriteBps:[]*blkiodev.ThrottleDevice "
        "BlkioDeviceReadIOps:[]*blkiodev.ThrottleDevice BlkioDeviceWriteIOps:[]*blkiodev.ThrottleDevice "
        "CPUPeriod=CpuPeriod:int64 CPUQuota=CpuQuota:int64 CPURealtimePeriod=CpuRealtimePeriod:int64 "
        "CPURealtimeRuntime=CpuRealtimeRuntime:int64 CpusetCpus:string CpusetMems:string "
        "Devices:[]container.DeviceMapping DeviceCgroupRules:[]string "
        "DeviceRequests:[]container.DeviceRequest KernelMemory?:int64 KernelMemoryTCP?:int64 "
        "MemoryReservation:int64 MemorySwap:int64 MemorySwappiness:*int64 OomKillDisable:*bool "
        "PidsLimit:*int64 Ulimits:[]*units.Ulimit CPUCount=CpuCount:int64 CPUPercent=CpuPercent:int64 "
        "IOMaximumIOps:uint64 IOMaximumBandwidth:uint64 ] Mounts?:[]mount.Mount MaskedPaths:[]string "
        "ReadonlyPaths:[]string Init?:*bool",
    "container.LogConfig": "Type:string Config:map[string]string",
    "container.RestartPolicy": "Name:container.RestartPolicyMode MaximumRetryCount:int",
    "container.State": "Status:string Running:bool Paused:bool Restarting:bool OOMKilled:bool "
        "Dead:bool Pid:int ExitCode:int Error:string StartedAt:string FinishedAt:string "
        "Health?:*container.Health",
    "container.Health": "Status:string FailingStreak:int Log:[]*container.HealthcheckResult",
    "container.Config": "Hostname:string Domainname:string User:string AttachStdin:bool "
        "AttachStdout:bool AttachStderr:bool ExposedPorts?:nat.PortSet Tty:bool OpenStdin:bool "
        "StdinOnce:bool Env:[]string Cmd:strslice.StrSlice Healthcheck?:*container.HealthConfig "
        "ArgsEscaped?:bool Image:string Volumes:map[string]struct{} WorkingDir:string "
        "Entrypoint:strslice.StrSlice NetworkDisabled?:bool MacAddress?:string OnBuild:[]string "
        "Labels:map[string]string StopSignal?:string StopTimeout?:*int Shell?:strslice.StrSlice",
    "container.NetworkSettings": "[NetworkSettingsBase Bridge:string SandboxID:string SandboxKey:string "
        "Ports:nat.PortMap HairpinMode:bool LinkLocalIPv6Address:string "
        "LinkLocalIPv6PrefixLen:int SecondaryIPAddresses:[]network.Address "
        "SecondaryIPv6Addresses:[]network.Address ] [DefaultNetworkSettings EndpointID:string Gateway:string "
        "GlobalIPv6Address:string GlobalIPv6PrefixLen:int IPAddress:string IPPrefixLen:int "
        "IPv6Gateway:string MacAddress:string ] Networks:map[string]*network.EndpointSettings",
    "network.EndpointSettings": "IPAMConfig:*network.EndpointIPAMConfig Links:[]string "
        "Aliases:[]string MacAddress:string DriverOpts:map[string]string GwPriority:int "
        "NetworkID:string EndpointID:string Gateway:string IPAddress:string IPPrefixLen:int "
        "IPv6Gateway:string GlobalIPv6Address:string GlobalIPv6PrefixLen:int DNSNames:[]string",
    "nat.PortBinding": "HostIP=HostIp:string HostPort:string",
    "container.MountPoint": "Type?:mount.Type Name?:string Source:string Destination:string "
        "Driver?:string Mode:string RW:bool Propagation:mount.Propagation",
    "storage.DriverData": "Data:map[string]string Name:string",
    "image.InspectResponse": "ID=Id:string RepoTags:[]string RepoDigests:[]string "
        "Parent:string Comment:string Created?:string Container?:string "
        "ContainerConfig?:*container.Config DockerVersion:string Author:string "
        "Config:*v1.DockerOCIImageConfig Architecture:string Variant?:string Os:string "
        "OsVersion?:string Size:int64 VirtualSize?:int64 GraphDriver:storage.DriverData "
        "RootFS:image.RootFS Metadata:image.Metadata Descriptor?:*v1.Descriptor "
        "Manifests?:[]image.ManifestSummary",
    "v1.DockerOCIImageConfig": "[ImageConfig User:string ExposedPorts:map[string]struct{} "
        "Env:[]string Entrypoint:[]string Cmd:[]string Volumes:map[string]struct{} "
        "WorkingDir:string Labels:map[string]string StopSignal:string ArgsEscaped:bool ] "
        "[DockerOCIImageConfigExt Healthcheck:*v1.HealthcheckConfig OnBuild:[]string "
        "Shell:[]string ]",
    "image.RootFS": "Type:string Layers:[]string",
    "image.Metadata": "LastTagTime:time.Time",
    "network.Inspect": "Name:string ID=Id:string Created:time.Time Scope:string "
        "Driver:string EnableIPv4:bool EnableIPv6:bool IPAM:network.IPAM Internal:bool "
        "Attachable:bool Ingress:bool ConfigFrom:network.ConfigReference ConfigOnly:bool "
        "Containers:map[string]network.EndpointResource Options:map[string]string "
        "Labels:map[string]string Peers?:[]network.PeerInfo Services?:map[string]network.ServiceInfo",
    "network.IPAM": "Driver:string Options:map[string]string Config:[]network.IPAMConfig",
    "network.IPAMConfig": "Subnet?:string IPRange?:string Gateway?:string "
        "AuxAddress=AuxiliaryAddresses?:map[string]string",
    "network.ConfigReference": "Network:string",
    "network.EndpointResource": "Name:string EndpointID:string MacAddress:string "
        "IPv4Address:string IPv6Address:string",
    "volume.Volume": "ClusterVolume?:*volume.ClusterVolume CreatedAt?:string Driver:string "
        "Labels:map[string]string Mountpoint:string Name:string Options:map[string]string "
        "Scope:string Status?:map[string]interface{} UsageData?:*volume.UsageData",
    "volume.UsageData": "RefCount:int64 Size:int64",
    "system.versionInfo": "Client:system.clientVersion Server:*types.Version",
    "types.Version": "Platform:types.PlatformName Components:[]types.ComponentVersion "
        "Version:string APIVersion=ApiVersion:string MinAPIVersion?:string GitCommit:string "
        "GoVersion:string Os:string Arch:string KernelVersion?:string Experimental?:bool "
        "BuildTime?:string",
    "types.ComponentVersion": "Name:string Version:string Details?:map[string]string",
    "types.PlatformName": "Name:string",
    "events.Message": "Status=status:string ID=id:string From=from:string Type:events.Type "
        "Action:events.Action Actor:events.Actor Scope=scope:string Time=time:int64 "
        "TimeNano=timeNano:int64",
    "events.Actor": "ID:string Attributes:map[string]string",
}

# structs whose every field is `json:",omitempty"` (the OCI image config)
_OMITEMPTY = {"v1.DockerOCIImageConfig"}

# structs whose schema here is every field docker 28 has: json writes the ones the API
# left out too (as Go writes a struct: all but the omitempty ones)
_COMPLETE = {"network.EndpointSettings", "container.State", "container.MountPoint", "container.HostConfig",
             "container.InspectResponse", "container.Config", "container.NetworkSettings",
             "image.InspectResponse", "network.Inspect", "volume.Volume", "storage.DriverData",
             "image.RootFS", "image.Metadata", "network.IPAM", "network.ConfigReference",
             "container.LogConfig", "container.RestartPolicy",
             "nat.PortBinding", "network.IPAMConfig", "network.EndpointResource"}

# named types -> their underlying type
_NAMED = {"strslice.StrSlice": "[]string", "nat.PortSet": "map[nat.Port]struct {}",
          "nat.PortMap": "map[nat.Port][]nat.PortBinding"}
_STRINGS = {"string", "nat.Port", "mount.Type", "mount.Propagation", "events.Type", "events.Action",
            "container.NetworkMode", "container.CgroupnsMode", "container.IpcMode", "container.CgroupSpec",
            "container.PidMode", "container.UTSMode", "container.UsernsMode", "container.Isolation",
            "container.RestartPolicyMode"}
_INTS = {"int", "int64", "uint64", "int32", "uint32", "uint16", "uint8", "int8", "int16", "uint"}

_schemas: dict | None = None
_omitempty: set[tuple[str, str]] = set()  # (struct, field) written only when not empty
_groups: dict[str, list[tuple[str | None, list[str]]]] = {}  # structs with embedded ones


def struct_groups(t: str):
    """[(embedded struct name or None, its field names)] for a struct that embeds others
    (fmt prints each embedded one as a nested {...}); None for a flat one."""
    _schema(t)
    return _groups.get(t)

# the top-level type of each inspect kind
KINDS = {"container": "container.InspectResponse", "image": "image.InspectResponse",
         "network": "network.Inspect", "volume": "volume.Volume"}


def _schema(t: str):
    global _schemas
    if _schemas is None:
        _schemas = {}
        for name, spec in _SPEC.items():
            fields = []
            groups: list[tuple[str | None, list[str]]] = [(None, [])]
            for word in spec.split():
                if word.startswith("["):  # an embedded struct's fields, printed as {...}
                    groups.append((word[1:], []))
                    continue
                if word == "]":
                    groups.append((None, []))
                    continue
                fj, _, ft = word.partition(":")
                # the spec writes struct{} and interface{} without Go's space (split on spaces)
                ft = ft.replace("struct{}", "struct {}").replace("interface{}", "interface {}")
                groups[-1][1].append(fj.rstrip("?").partition("=")[0])
                if fj.endswith("?"):  # `json:",omitempty"`
                    fj = fj[:-1]
                    _omitempty.add((name, fj.partition("=")[0]))
                f, _, j = fj.partition("=")
                fields.append((f, j or f, ft))
            _schemas[name] = fields
            if any(g for g, _ in groups):
                _groups[name] = [(g, fs) for g, fs in groups if fs]
    return _schemas.get(t)


def _split_map(t: str) -> tuple[str, str]:
    depth = 0
    for i, c in enumerate(t):
        if c == "[":
            depth += 1
        elif c == "]":
            depth -= 1
            if depth == 0:
                return t[4:i], t[i + 1:]
    return "string", "interface {}"


def zero(t: str):
    u = _NAMED.get(t, t)
    if t in _STRINGS:
        return "" if t == "string" else GoStr("", t)
    if t in _INTS:
        return GoInt(0, t)
    if t == "bool":
        return False
    if t in ("float64", "float32"):
        return GoFloat(0.0, t)
    if t == "time.Time":
        return GoStr("0001-01-01 00:00:00 +0000 UTC", t)
    if u.startswith("[2]"):  # a Go array: never nil
        return GoSlice((zero(u[3:]), zero(u[3:])), t)
    if u.startswith("[]"):
        return GoSlice((), t, nil=True)
    if u.startswith("map["):
        return GoMap((), t, nil=True, zero=zero(_split_map(u)[1]))
    if t.startswith("*"):
        s = _schema(t[1:])
        return NilPtr(t, tuple(f for f, _, _ in s) if s else ())
    if t == "struct {}":
        return Struct(t, {})
    if t == "interface {}":
        return None
    s = _schema(t)
    if s is not None:
        return Struct(t, {f: zero(ft) for f, _, ft in s}, raw={})
    return Struct(t, {}, raw={})


def typed(v, t: str):
    """``v`` (decoded JSON) as a value of Go type ``t``."""
    if v is None:
        return zero(t)
    u = _NAMED.get(t, t)
    if t == "interface {}":
        return _iface(v)
    if t in _STRINGS:
        return str(v) if t == "string" else GoStr(str(v), t)
    if t in _INTS:
        return GoInt(int(v), t) if isinstance(v, (int, float)) and not isinstance(v, bool) else zero(t)
    if t == "bool":
        return bool(v)
    if t in ("float64", "float32"):
        return GoFloat(float(v), t)
    if t == "time.Time":
        g = GoStr(go_time(str(v)), t)
        g.rfc3339 = str(v)  # what json.Marshal writes back
        return g
    if u.startswith("[2]"):
        return GoSlice((typed(x, u[3:]) for x in v), t) if isinstance(v, list) and len(v) == 2 else zero(t)
    if u.startswith("[]"):
        if not isinstance(v, list):
            return zero(t)
        return GoSlice((typed(x, u[2:]) for x in v), t)
    if u.startswith("map["):
        if not isinstance(v, dict):
            return zero(t)
        vt = _split_map(u)[1]
        return GoMap(((k, typed(x, vt)) for k, x in v.items()), t, zero=zero(vt))
    if t.startswith("*"):
        if t[1:] in _INTS:
            return GoInt(int(v), t) if isinstance(v, int) else zero(t)
        s = typed(v, t[1:])
        if isinstance(s, Struct):
            s.ptr = True
        return s
    if t == "struct {}":
        return Struct(t, {})
    if not isinstance(v, dict):
        return zero(t)
    s = _schema(t)
    if s is None:  # a struct we hold no schema for: the fields it has
        return Struct(t, {k: _infer(x, k) for k, x in v.items()}, raw=v)
    return Struct(t, {f: typed(v.get(j), ft) for f, j, ft in s}, raw=v)


def _infer(v, name: str = ""):
    if isinstance(v, dict):
        if v and all(k[:1].isupper() for k in v):
            return Struct("struct", {k: _infer(x, k) for k, x in v.items()}, raw=v)
        return GoMap(((k, _iface(x)) for k, x in v.items()), "map[string]string"
                     if all(isinstance(x, str) for x in v.values()) else "map[string]interface {}")
    if isinstance(v, list):
        if all(isinstance(x, str) for x in v):
            return GoSlice(v, "[]string")
        return GoSlice((_infer(x) for x in v), "[]interface {}")
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, int):
        return GoInt(v, _INT64.get(name, "int"))
    if isinstance(v, float):
        return GoFloat(v)
    return v


# integer fields of the structs held no schema here that are not Go `int` (docker 28's
# system.Info, container.HostConfig/Resources, image and volume sizes)
_INT64 = {**dict.fromkeys((
    "MemTotal", "Memory", "MemorySwap", "MemoryReservation", "NanoCpus", "CpuShares",
    "CpuPeriod", "CpuQuota", "CpuRealtimePeriod", "CpuRealtimeRuntime", "CpuCount", "CpuPercent",
    "ShmSize", "KernelMemory", "KernelMemoryTCP", "Size", "SizeRw", "SizeRootFs", "VirtualSize",
    "SharedSize", "RefCount", "Created", "LayersSize", "PidsLimit", "time", "timeNano"), "int64"),
    "BlkioWeight": "uint16", "IOMaximumIOps": "uint64", "IOMaximumBandwidth": "uint64"}


def _iface(v):
    """JSON decoded into interface{} by encoding/json: numbers are float64."""
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, list):
        return [_iface(x) for x in v]
    if isinstance(v, dict):
        return {k: _iface(x) for k, x in v.items()}
    return v


def raw(v):
    """JSON as docker's fallback decodes it (``dec.UseNumber()``): numbers are json.Number."""
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, (int, float)):
        return GoStr(str(v) if isinstance(v, int) else _json_number(v), "json.Number")
    if isinstance(v, list):
        return [raw(x) for x in v]
    if isinstance(v, dict):
        return {k: raw(x) for k, x in v.items()}
    return v


def _json_number(f: float) -> str:
    return str(int(f)) if f.is_integer() and abs(f) < 1e21 else repr(f)


def _rfc3339nano(s: str) -> str:
    """time.Time's MarshalJSON: RFC 3339 with the fraction's trailing zeros dropped."""
    if "." not in s:
        return s
    head, _, rest = s.partition(".")
    k = 0
    while k < len(rest) and rest[k].isdigit():
        k += 1
    frac = rest[:k].rstrip("0")
    return head + ("." + frac if frac else "") + rest[k:]


def go_time(s: str) -> str:
    """RFC 3339 (as the API sends times) to Go's ``Time.String()``."""
    if "T" not in s:
        return s
    date, _, rest = s.partition("T")
    if rest.endswith("Z"):
        clock, zone = rest[:-1], "+0000 UTC"
    else:
        k = max(rest.rfind("+"), rest.rfind("-"))
        clock, off = rest[:k], rest[k:].replace(":", "")
        zone = f"{off} {off}"
    hms, _, frac = clock.partition(".")
    frac = frac.rstrip("0")
    return f"{date} {hms}{'.' + frac if frac else ''} {zone}"


# -- json -------------------------------------------------------------------------------


def to_json_value(v):
    """The data ``json.Marshal`` sees."""
    if v is NOVALUE or v is None or isinstance(v, NilPtr):
        return None
    if isinstance(v, Struct):
        # a struct keeps its field order (the API's key order); Go drops keys it has no
        # field for, and writes nested maps sorted
        out = _Ordered()
        sch = _schema(v.gotype)
        if sch is None:
            for k, x in v.fields.items():
                out[k] = to_json_value(x)
            return out
        raw = v.raw or {}
        every_omitempty = v.gotype in _OMITEMPTY
        complete = v.gotype in _COMPLETE
        for f, j, ft in sch:  # the struct's order; a field the API left out is omitempty
            if j in raw or (complete and (v.gotype, f) not in _omitempty):
                x = to_json_value(v.fields[f])
                if (every_omitempty or (v.gotype, f) in _omitempty) and (x is None or (
                        not ft.startswith("*") and (x == "" or x is False or x == 0 or x == [] or x == {}))):
                    continue  # omitempty: a pointer only when nil, a value when zero or empty
                out[j] = x
        return out
    if isinstance(v, GoSlice) and v.nil:
        return None
    if isinstance(v, GoMap) and v.nil:
        return None
    if hasattr(v, "go_json"):
        return to_json_value(v.go_json())
    if isinstance(v, GoStr) and v.gotype == "time.Time":
        return _rfc3339nano(getattr(v, "rfc3339", "0001-01-01T00:00:00Z"))
    if isinstance(v, GoStr) and v.gotype == "json.Number":
        return _Number(v)
    if isinstance(v, dict):
        return {k: to_json_value(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [to_json_value(x) for x in v]
    if isinstance(v, GoInt):
        return int(v)
    if isinstance(v, GoStr):
        return str(v)
    return v


class _Number(str):
    pass


def marshal(v) -> str:
    """docker's ``json`` template function: Go's json.Marshal (HTML characters escaped,
    map keys sorted, floats as Go writes them)."""
    out: list[str] = []
    _enc(to_json_value(v), out)
    return "".join(out)


def _enc(v, out):
    if v is None:
        out.append("null")
    elif v is True:
        out.append("true")
    elif v is False:
        out.append("false")
    elif isinstance(v, _Number):
        out.append(str(v))
    elif isinstance(v, str):
        out.append(_json_str(v))
    elif isinstance(v, int):
        out.append(str(int(v)))
    elif isinstance(v, float):
        out.append(_json_float(v))
    elif isinstance(v, dict):
        out.append("{")
        first = True
        keys = list(v) if type(v) is _Ordered else sorted(v)
        for k in keys:
            if not first:
                out.append(",")
            first = False
            out.append(_json_str(str(k)))
            out.append(":")
            _enc(v[k], out)
        out.append("}")
    elif isinstance(v, (list, tuple)):
        out.append("[")
        for i, x in enumerate(v):
            if i:
                out.append(",")
            _enc(x, out)
        out.append("]")
    else:
        out.append(_json_str(str(v)))


class _Ordered(dict):
    """A struct's fields for json: written in order (a Go map is written sorted)."""


def _json_str(s: str) -> str:
    out = ['"']
    for c in s:
        o = ord(c)
        if c == '"':
            out.append('\\"')
        elif c == "\\":
            out.append("\\\\")
        elif c == "\n":
            out.append("\\n")
        elif c == "\r":
            out.append("\\r")
        elif c == "\t":
            out.append("\\t")
        elif o < 0x20 or c in "<>&" or o in (0x2028, 0x2029):
            out.append(f"\\u{o:04x}")
        elif 0xDC80 <= o <= 0xDCFF:
            out.append("\\ufffd")
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


def _json_float(f: float) -> str:
    # encoding/json: 'f' format unless the exponent is < -6 or >= 21, then 'e' (e-07)
    if f != f or f in (float("inf"), float("-inf")):
        return "null"
    if f.is_integer() and abs(f) < 1e21:
        return str(int(f))
    a = abs(f)
    if a < 1e-6 or a >= 1e21:
        s = repr(f)
        mant, _, exp = s.partition("e")
        e = int(exp)
        return f"{mant}e{'-' if e < 0 else '+'}{abs(e):02d}"
    return repr(f)
