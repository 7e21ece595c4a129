"""Issue 17 proof: ``--format`` templates rendered by ``conch`` and by the real docker CLI
(``/usr/local/bin/docker``, which renders client-side) against the same conchd give
byte-identical stdout and stderr and the same exit code.

Every action (if/else if/else, range/else with $k,$v, with/else, break/continue, variables,
assignment, parentheses, define/template/block, comments, trim markers) and every function
(Go's builtins and the docker CLI's json/join/split/lower/upper/title/pad/truncate) is run on
containers, images, networks and volumes (inspect and ls), plus docker's errors for bad
templates (parse and execution) and the typed-then-raw fallback of inspect.
One daemon for the module; the objects are made once. Nothing here prints a Go map docker
iterates unsorted (ps/ls ``.Labels`` with two labels): its order is random in docker; nor
a relative time ("3 seconds ago"), which the two runs may see differently."""

from __future__ import annotations

import pytest

from conch.testing.daemon import DOCKER, daemon_fixture

pytestmark = pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed at /usr/local/bin/docker")

daemon = daemon_fixture("module")

C, I, N, V = "fmt-web", "busybox", "fmt-net", "fmt-vol"


WINDOW: list[str] = []  # --since/--until around the fixture's events (filled by d)


@pytest.fixture(scope="module")
def d(daemon):
    import time

    t0 = int(time.time()) - 1
    daemon.conch("volume", "create", "--label", "tier=db", "--label", "a.b=c d", V, check=True)
    daemon.conch("network", "create", "--label", "env=test", N, check=True)
    daemon.conch("run", "-d", "--name", C, "-l", "app=web", "-l", "b.c=x y", "-e", "FOO=bar",
                 "-e", "EMPTY=", "-p", "127.0.0.1::80", "-v", f"{V}:/data", "--network", N,
                 "busybox", "sleep", "1000", check=True)
    daemon.conch("create", "--name", "fmt-stopped", "busybox", "true", check=True)
    time.sleep(1.1)  # the window's end is a whole second after the last event
    WINDOW[:] = ["--since", str(t0), "--until", str(int(time.time()))]
    yield daemon
    daemon.conch("rm", "-f", C, "fmt-stopped")
    daemon.conch("network", "rm", N)
    daemon.conch("volume", "rm", V)


INSPECT = [
    # fields, maps, slices, pointers, typed values
    "{{.Name}}", "{{.Id}}", "{{.State.Status}}", "{{.State.Running}}", "{{.State.Pid}}",
    "{{.State.ExitCode}}", "{{.State}}", "{{.State.Health}}", "{{.Config.Env}}",
    "{{.Config.Cmd}}", "{{.Config.Labels}}", "{{.Config.Labels.app}}", "{{.Config.Labels.nope}}",
    "{{.Config.Image}}", "{{.Config.Entrypoint}}", "{{.Config.ExposedPorts}}", "{{.RestartCount}}",
    "{{.Path}} {{.Args}}", "{{.HostConfig.NetworkMode}}", "{{.NetworkSettings.Ports}}",
    "{{.Mounts}}", "{{len .Mounts}}", "{{(index .Mounts 0).Name}}", "{{(index .Mounts 0).RW}}",
    "{{range .Mounts}}{{.Type}} {{.Name}} {{.Destination}} {{.RW}}{{end}}",
    "{{.Nope}}", "{{.State.Nope}}", "{{.State.Health.Status}}", "{{.Config.Labels.app.x}}",
    # range / variables
    "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
    "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}:{{$v.IPPrefixLen}} {{end}}",
    "{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}",
    "{{range $i, $e := .Config.Env}}{{$i}}={{$e}} {{end}}",
    "{{range .Config.Env}}[{{.}}]{{else}}none{{end}}",
    "{{range .Config.Volumes}}x{{else}}no volumes{{end}}",
    "{{range $p, $b := .NetworkSettings.Ports}}{{$p}} -> {{(index $b 0).HostIP}}{{end}}",
    "{{range .Config.Env}}{{if eq . \"EMPTY=\"}}{{break}}{{end}}{{.}},{{end}}",
    "{{range .Config.Env}}{{if eq . \"FOO=bar\"}}{{continue}}{{end}}{{.}},{{end}}",
    "{{range 3}}{{.}}{{end}}", "{{range $i := 2}}<{{$i}}>{{end}}",
    "{{$n := .Name}}{{$n}}", "{{$x := 1}}{{range .Config.Env}}{{$x = .}}{{end}}{{$x}}",
    "{{with $.State}}{{$.Name}}{{end}}", "{{range .Config.Env}}{{$.Name}}{{end}}",
    # if / with / else
    "{{if .State.Running}}up{{else}}down{{end}}", "{{if .State.Paused}}p{{else if .State.Running}}r{{else}}x{{end}}",
    "{{if .Config.Labels}}has labels{{end}}", "{{if .Config.Volumes}}v{{else}}nov{{end}}",
    "{{if not .State.Dead}}alive{{end}}", "{{if and .State.Running (not .State.Paused)}}ok{{end}}",
    "{{if or .State.Paused .State.Restarting}}busy{{else}}calm{{end}}",
    "{{with .State}}{{.Status}}/{{.Pid}}{{end}}", "{{with .State.Health}}h{{else}}no health{{end}}",
    "{{with $s := .State.Status}}{{$s}}{{end}}", "{{with .Config.Labels.nope}}x{{else with .Config.Labels.app}}{{.}}{{end}}",
    "{{if .Config.Labels.nope}}x{{else}}missing{{end}}",
    # comparisons
    "{{eq .State.Status \"running\"}}", "{{ne .State.Status \"running\"}}", "{{eq .State.ExitCode 0}}",
    "{{lt .State.Pid 1}} {{le 1 1}} {{gt 2 1}} {{ge 1 2}}", "{{eq .Name \"/x\" \"/fmt-web\"}}",
    "{{lt \"a\" \"b\"}}", "{{eq .State.Pid \"x\"}}", "{{lt .State.Running true}}", "{{eq .Config.Labels.nope \"\"}}",
    # functions
    "{{len .Config.Env}}", "{{len .Config.Labels}}", "{{len .Name}}", "{{len .State.Pid}}",
    "{{index .Config.Labels \"app\"}}", "{{index .Config.Labels \"nope\"}}|", "{{index .Config.Env 0}}",
    "{{index .Config.Env 5}}", "{{index .Config.Env 2}}", "{{index .Config.Labels 1}}",
    "{{slice .Name 1}}", "{{slice .Name 1 4}}", "{{slice .Config.Env 1}}", "{{slice .Name 9 1}}",
    "{{print .Name 1 2 \"a\" true}}", "{{println .Name .State.Pid}}", "{{print}}",
    "{{printf \"%s|%v|%d|%t\" .Name .Config.Env .State.ExitCode .State.Running}}",
    "{{printf \"%q\" .Name}}", "{{printf \"%10s|%-10s|\" .State.Status .State.Status}}",
    "{{printf \"%x %X %o %b\" 255 255 8 5}}", "{{printf \"%05d|%+d|%x\" 42 42 \"hi\"}}",
    "{{printf \"%T %T %T %T %T\" .Name .State.Pid .Config.Env .Config.Labels .State}}",
    "{{printf \"%T %T\" .Config.Cmd .NetworkSettings.Ports}}", "{{printf \"%v\" .Config.Labels}}",
    "{{printf \"%d\" .Name}}", "{{printf \"%s\"}}", "{{printf \"%s\" 1 2}}", "{{printf \"%z\" 1}}",
    "{{printf \"%q\" .Config.Env}}", "{{printf \"%.3s\" .Name}}", "{{printf \"%6.2f\" 3.14159}}",
    "{{printf \"%v %v\" 1.5 100000000.0}}", "{{printf \"%t\" .State.Running}}", "{{printf \"%%\"}}",
    "{{.Name | printf \"%q\"}}", "{{.State.Status | upper}}", "{{.State.Status | printf \"%s!\" | upper}}",
    "{{html \"<a href='x'>&\"}}", "{{js \"it's <b>\"}}", "{{urlquery \"a b&c=d\"}}",
    "{{.Name | html}}", "{{not 0}} {{not \"\"}} {{not .Config.Env}}", "{{and 1 2 3}} {{or 0 \"\" 5}}",
    "{{and .Config.Volumes .Name}}|{{or .Config.Volumes .Name}}",
    # docker's functions
    "{{json .State}}", "{{json .Config}}", "{{json .Config.Labels}}", "{{json .Config.Env}}",
    "{{json .Mounts}}", "{{json .NetworkSettings.Ports}}", "{{json .Name}}", "{{json .Config.Volumes}}",
    "{{json .State.Health}}", "{{json .Config.Labels.nope}}",
    "{{join .Config.Env \",\"}}", "{{join .Config.Cmd \" \"}}", "{{split .Name \"-\"}}",
    "{{join (split .Name \"-\") \"+\"}}", "{{lower \"ABC\"}} {{upper .Name}}", "{{title .State.Status}}",
    "{{title \"hello wORLD-foo bar_baz\"}}", "{{pad .State.Status 2 3}}|", "{{truncate .Id 12}}",
    "{{truncate .Name 100}}", "{{upper .State.Pid}}", "{{join .Config.Env 1}}", "{{split .Name}}",
    "{{json}}", "{{len}}",
    # grammar: parentheses, chains, trim, comments, define/template/block, literals
    "{{(index .NetworkSettings.Networks \"fmt-net\").IPPrefixLen}}", "{{(.State).Status}}",
    "{{(print .Name)}}", "{{- .Name -}}  \n  x", "a  {{- .Name}}", "{{.Name -}}   b",
    "{{/* a comment */}}c", "{{- /* trimmed */ -}}  d", "{{define \"T\"}}[{{.}}]{{end}}{{template \"T\" .Name}}",
    "{{block \"B\" .State.Status}}<{{.}}>{{end}}", "{{template \"none\"}}",
    "{{\"q\"}} {{`raw`}} {{1}} {{1.5}} {{true}} {{'a'}} {{0x1F}} {{1e3}}", "{{nil}}",
    "x\\ty\\nz", "{{.Name}}\\t{{.State.Status}}",
    # parse errors
    "{{x}}", "{{range}}", "{{if .Name}}", "{{end}}", "{{else}}", "{{.Name", "{{\"unterminated}}",
    "{{.Name | 1}}", "{{$nope}}", "{{(.Name}}", "{{.Name)}}", "{{range $a, $b, $c := .Config.Env}}{{end}}",
    "{{with}}{{end}}", "{{if}}{{end}}", "{{.Name .State}}", "{{1 2}}", "{{template}}", "{{`x}}",
    "{{/* open", "{{break}}", "{{:=}}", "{{.Name!}}", "{{3x}}", "{{.Name | }}", "{{|}}",
    "{{range .Config.Env}}{{else}}{{else}}{{end}}", "{{$x := 1}}{{$x := }}", "{{.X..}}", "{{true.X}}",
    "{{1.X}}", "{{..X}}", "{{json.Config}}", "{{(json).Config}}", "{{$x := 1}}{{$x.Config}}",
    "{{printf \"%d\" .State}}", "{{printf \"%#v %#v %#v %#v\" .Name 1 true nil}}", "{{printf \"%+v\" .State}}",
    "{{index .NetworkSettings.Ports \"80/tcp\"}}", "{{index .Config.Labels \"nope\"}}|{{index .Config.ExposedPorts \"x\"}}",
    "{{eq .State .State}}", "{{len nil}}", "{{len .Missing}}", "{{truncate .Name -1}}", "{{pad .Name -1 2}}",
    "{{printf \"%v %s\" .State.Health .State.Health}}", "{{print .State.Health}}", "{{print .State}}",
    "{{println .Config.Labels .Config.Env}}", "{{print nil}}", "{{print 1.0 2.5}}",
    "{{printf \"%g %g %v %v %.0f\" 100000.0 1000000.0 1e21 123456789.0 2.5}}",
    "{{printf \"%c|%U|%q\" 0x1F600 0x1F600 0x1F600}}", "{{printf \"%t %s\" 1 nil}}",
    "{{(index (index .NetworkSettings.Ports \"80/tcp\") 0).HostPort}}", "{{range $k, $v := .Config.ExposedPorts}}{{$k}}={{$v}};{{end}}",
    "{{js .Config.Env}}", "{{html .Config.Labels}}", "{{urlquery .Config.Env \"x\"}}", "{{json .HostConfig.PortBindings}}",
    "{{json .GraphDriver}}", "{{split .Config.Labels.nope \",\"}}", "{{join .Config.Labels \",\"}}",
    "{{.NetworkSettings.Networks.nope.IPAddress}}", "{{(index .NetworkSettings.Networks \"nope\").IPAddress}}",
    "{{slice .Name 1 2 3}}", "{{index .Config.Cmd -1}}", "{{not}}", "{{and}}", "{{eq 1.0 1}}", "{{eq \"a\" 1}}",
    "{{.Config}}", "{{printf \"%+v\" .Config}}", "{{.Node}}", "{{printf \"%T\" .Config.Volumes}}", "{{.Mounts}}",
    "{{printf \"%+v\" .Mounts}}", "{{.GraphDriver}}", "{{.NetworkSettings.Ports}}", "{{.Config.Healthcheck}}",
    "{{.ExecIDs}} {{.Args}}", "{{printf \"%T %T %T %T\" .Mounts .GraphDriver .ExecIDs .SizeRw}}",
    "{{printf \"%T\" .NetworkSettings.Networks}}", "{{range .Mounts}}{{printf \"%T %T\" .Type .Propagation}}{{end}}",
    "{{json .}}", "{{json .HostConfig}}", "{{json .NetworkSettings}}", "{{json .GraphDriver}}",
    "{{printf \"%T %T %T %T %T %T\" .HostConfig.NetworkMode .HostConfig.ConsoleSize .HostConfig.IpcMode .HostConfig.Isolation .HostConfig.LogConfig .HostConfig.RestartPolicy}}",
    "{{.HostConfig.Dns}} {{.HostConfig.DNS}} {{.HostConfig.ConsoleSize}} {{.HostConfig.RestartPolicy}}",
    "{{.HostConfig.LogConfig.Type}} {{.HostConfig.Memory}} {{.HostConfig.CpuShares}} {{.HostConfig.CPUShares}}",
    "{{.HostConfig.PortBindings}}", "{{printf \"%+v\" .HostConfig.RestartPolicy}}",
    # execution errors
    "{{.Name.Foo}}", "{{index .Name 1 2}}", "{{index nil 1}}", "{{.State.Pid.X}}",
    "{{range .State}}{{end}}", "{{range .Name}}{{end}}", "{{range $i, $e := 3}}{{end}}",
    "{{nil.X}}", "{{.Name 1}}", "{{call 1}}", "{{template \"T\"}}",
]

IMAGE = ["{{.Id}}", "{{.ID}}", "{{.RepoTags}}", "{{index .RepoTags 0}}", "{{.Os}}/{{.Architecture}}",
         "{{.Size}}", "{{printf \"%T\" .Size}}", "{{.Config.Cmd}}", "{{json .Config}}", "{{json .RootFS}}",
         "{{len .RootFS.Layers}}", "{{range .RootFS.Layers}}{{truncate . 19}} {{end}}", "{{.Nope}}",
         "{{.GraphDriver.Name}}", "{{json .}}", "{{if .Config.Env}}env{{else}}noenv{{end}}",
         "{{.Metadata}}", "{{.Config.Labels}}", "{{with .Config}}{{.Cmd}}{{end}}", "{{.Config}}",
         "{{printf \"%+v\" .Config}}", "{{printf \"%T\" .Config}}", "{{.RootFS}}", "{{.RepoDigests}}",
         "{{.Descriptor}}", "{{.Manifests}}", "{{printf \"%T %T\" .Size .Created}}"]

NETWORK = ["{{.Name}}", "{{.Id}}", "{{.ID}}", "{{.Driver}} {{.Scope}}", "{{.Labels}}", "{{.Labels.env}}",
           "{{.IPAM.Driver}}", "{{range .IPAM.Config}}{{.Subnet}} via {{.Gateway}}{{end}}",
           "{{json .IPAM}}", "{{.Internal}} {{.Attachable}}", "{{json .Labels}}", "{{.Created}}",
           "{{printf \"%T\" .Created}}", "{{len .Containers}}", "{{range .Containers}}{{.Name}}{{end}}",
           "{{.Nope}}", "{{json .}}", "{{.Options}}", "{{.EnableIPv6}}", "{{.IPAM}}", "{{.ConfigFrom}}",
           "{{.Containers}}", "{{.Peers}} {{.Services}}", "{{printf \"%T %T\" .IPAM.Config .Containers}}",
           "{{range .Containers}}{{.}}{{end}}"]

VOLUME = ["{{.Name}}", "{{.Driver}}", "{{.Mountpoint}}", "{{.Labels}}", "{{.Labels.tier}}",
          "{{index .Labels \"a.b\"}}", "{{.Scope}}", "{{json .}}", "{{json .Labels}}", "{{.Options}}",
          "{{.Nope}}", "{{.UsageData}}", "{{.Status}}", "{{range $k, $v := .Labels}}{{$k}}={{$v}},{{end}}",
          "{{.}}", "{{printf \"%+v\" .}}", "{{printf \"%T %T\" .Status .Labels}}", "{{.ClusterVolume}}", "{{.CreatedAt}}"]

LS = [
    (["images"], "{{.Repository}}:{{.Tag}} {{.Size}}"),
    (["images"], "table {{.Repository}}\t{{.Tag}}"), (["images"], "{{.Nope}}"), (["images"], "{{range}}"),
    (["images"], "{{upper .Repository}}"),
    (["network", "ls", "-f", f"name={N}"], "{{.Name}} {{.Driver}} {{.Labels}}"),
    (["network", "ls", "-f", f"name={N}"], "{{.Label \"env\"}}"),
    (["network", "ls", "-f", f"name={N}"], "table {{.Name}}\t{{.Driver}}"),
    (["network", "ls", "-f", f"name={N}"], "{{.Nope}}"), (["network", "ls"], "{{x}}"),
    (["volume", "ls", "-f", f"name={V}"], "{{.Name}} {{.Driver}} {{.Scope}}"),
    (["volume", "ls", "-f", f"name={V}"], "{{.Label \"tier\"}}"),
    (["volume", "ls", "-f", f"name={V}"], "table {{.Name}}\t{{.Driver}}"),
    (["volume", "ls", "-f", f"name={V}"], "{{.Nope}}"),
    (["ps", "-f", f"name={C}"], "{{.Names}} {{.Image}} {{.Command}} {{.State}}"),
    (["ps", "-f", f"name={C}"], "{{.Label \"app\"}}|{{.Label \"b.c\"}}|{{.Label \"no\"}}"),
    (["ps", "-f", f"name={C}"], "table {{.Names}}\t{{.Image}}"),
    (["ps", "-f", f"name={C}"], "{{.Mounts}} {{.Networks}} {{.LocalVolumes}}"),
    (["ps", "-a", "-f", "name=fmt-stopped"], "{{.Names}} {{.State}}"),
    (["ps", "-f", f"name={C}"], "{{if eq .State \"running\"}}{{.Names}} is up{{end}}"),
    (["ps", "-f", f"name={C}"], "{{range split .Image \"y\"}}<{{.}}>{{end}}"),
    (["history", "--no-trunc", I], "{{.CreatedBy}}"), (["history", I], "{{.Size}} {{.Comment}}"),
    (["ps", "-f", f"name={C}"], "table {{.Label \"app\"}}\t{{.Label \"com.x.some-key_y\"}}\t{{.Names}}"),
    (["ps", "-f", f"name={C}"], "table {{json .Names}}\t{{upper .Image}}"),
    (["ps", "-f", f"name={C}"], "table {{lower .Names}} {{pad .ID 1 1}} {{truncate .ID 3}} {{title .Names}}"),
    (["ps", "-f", f"name={C}"], "table {{join (split .Names \",\") \";\"}}|{{printf \"%s\" .Image}}"),
    (["ps", "-f", f"name={C}"], "table {{if eq .Names \"fmt-web\"}}yes{{end}}"),
    (["network", "ls", "-f", f"name={N}"], "table"), (["volume", "ls", "-f", f"name={V}"], "table"),
    (["network", "ls", "-f", f"name={N}"], "table {{.Name}}\t{{.Label \"env\"}}"),
    (["volume", "ls", "-f", f"name={V}"], "table {{.Name}}\t{{.Label \"tier\"}}"),
    (["ps", "-f", f"name={C}"], "{{.Platform}}|{{printf \"%T\" .Platform}}|{{json .Platform}}"),
    (["ps", "-f", f"name={C}"], "table {{.Platform}}\t{{.ID}}\t{{.Size}}\t{{.Ports}}"),
    (["network", "ls", "-f", f"name={N}"], "{{json .}}"), (["network", "ls", "-f", f"name={N}"], "{{.CreatedAt}} {{.IPv4}}"),
    (["volume", "ls", "-f", f"name={V}"], "{{.Availability}} {{.Group}} {{.Status}} {{.Size}} {{.Links}}"),
    (["volume", "ls", "-f", f"name={V}"], "{{.CreatedAt}}"), (["images"], "{{.VirtualSize}} {{.Size}} {{.Digest}}"),
    (["ps", "-f", f"name={C}"], "{{x}}"), (["ps", "-f", f"name={C}"], "{{.Nope}}"),
    (["ps", "-f", f"name={C}"], "{{.Label}}"), (["ps", "-f", f"name={C}"], "{{.Names 1}}"),
    (["ps", "-f", f"name={C}"], "{{json .Names}}"), (["ps", "-f", f"name={C}"], "{{.ID | len}}"),
    (["ps", "-f", "name=nothing-matches"], "{{.Nope}}"), (["ps", "-f", "name=nothing-matches"], "{{range}}"),
    (["ps", "-f", f"name={C}"], "{{printf \"%T\" .}}"),
    (["stats", "--no-stream", C], "{{.Name}}"), (["stats", "--no-stream", C], "{{.Nope}}"),
    (["stats", "--no-stream", C], "table {{.Name}}"), (["stats", "--no-stream", C], "{{range}}"),
    (["history", "--no-trunc", I], "{{.CreatedAt}}|{{.ID}}"), (["history", "--human=false", I], "{{.CreatedSince}} {{.Size}}"),
    (["history", I], "{{.Tags}}"), (["history", I], "{{.Nope}}"), (["history", I], "table {{.CreatedBy}}"), (["history", I], "{{json .Comment}}"),
    (["ps", "-a", "-f", f"name={C}"], "{{.Names}} {{.Size}}"),
    (["system", "df"], "{{.Nope}}"), (["system", "df"], "{{x}}"),
    (["version"], "{{.Server.Version}} {{.Server.ApiVersion}}"), (["version"], "{{.Nope}}"),
    (["version"], "{{x}}"), (["version"], "{{.Server.Version}}\t{{.Server.Os}}\n{{.Server.Arch}}\tx"),
    (["version"], "{{json .Server}}"), (["version"], "{{.Server.Components}}"),
    (["version"], "{{range .Server.Components}}{{.Name}}={{.Version}};{{end}}"),
    (["version"], "{{.Server.Version}}\t{{.Nope}}"), (["version"], "{{.Server.Platform.Name}}"),
    (["info"], "{{printf \"%T %T %T\" .NCPU .MemTotal .Containers}}"), (["info"], "{{.Plugins.Volume}}"),
    (["info"], "{{.Containers}} {{.ContainersRunning}} {{.Images}} {{.NCPU}} {{.OSType}}"),
    (["inspect", "-s", C], "{{printf \"%T %T\" .HostConfig.Memory .HostConfig.ShmSize}}"), (["info"], "{{.Name}} {{.Driver}}"), (["info"], "{{.Nope}}"),
    (["info"], "{{range}}"), (["info"], "{{json .Swarm}}"),
]

EVENTS = ["{{.Type}} {{.Action}} {{.Actor.Attributes.name}}", "{{json .Actor.Attributes}}",
          "{{if eq .Type \"container\"}}{{.Action}}{{end}}", "{{.Nope}}", "{{x}}", "{{.Actor.Nope}}",
          "{{printf \"%T %T %T\" .Time .Type .Actor}}", "{{.Status}}|{{.ID}}|{{.From}}", "{{range}}"]

CASES = ([("inspect", "-f", t, C) for t in INSPECT]
         + [("image", "inspect", "-f", t, I) for t in IMAGE]
         + [("network", "inspect", "-f", t, N) for t in NETWORK]
         + [("volume", "inspect", "-f", t, V) for t in VOLUME]
         + [(*argv, "--format", t) for argv, t in LS]
         + [("inspect", "-f", "{{.Name}}", C, V, "nope-nothing"),
            ("inspect", "-f", "{{.Nope}}", C, I),
            ("container", "inspect", "--format", "{{.State.Status}}", C, "fmt-stopped"),
            ("inspect", "-f", "json", C), ("image", "inspect", "-f", "json", I),
            ("network", "inspect", "-f", "json", N), ("volume", "inspect", "-f", "json", V),
            ("inspect", "-f", "json", N, "nope-nothing", V), ("inspect", "-f", "json", "nope-nothing"),
            ("inspect", "-f", "{{.Nope}}", V), ("inspect", "--type", "volume", "-f", "{{.Nope}}", V),
            ("inspect", "-f", "json", V), ("inspect", "-f", "{{json .}}", V)]
         + [("events", "--filter", f"container={C}", "--format", t) for t in EVENTS])


def _run(d, cli, argv):
    if argv[0] == "events":
        argv = ("events", *WINDOW, *argv[1:])
    p = getattr(d, cli)(*argv, timeout=60)
    return p.returncode, p.stdout, p.stderr.replace("conch", "docker")


def test_enough_cases():
    assert len(CASES) >= 250, len(CASES)


@pytest.mark.parametrize("argv", CASES, ids=lambda a: " ".join(a)[:80])
def test_same_output_as_docker(d, argv):
    want = _run(d, "docker", argv)
    got = _run(d, "conch", argv)
    assert got == want
