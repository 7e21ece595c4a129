"""Tables, --format templates and docker's human units."""

import pytest

from conch.cli import format as fmt


@pytest.mark.parametrize("n,expect", [
    (0, "0B"), (999, "999B"), (1000, "1kB"), (1234, "1.23kB"), (4_260_000, "4.26MB"),
    (4_264_999, "4.26MB"), (1_500_000_000, "1.5GB"), (5e12, "5TB"),
])
def test_human_size(n, expect):
    assert fmt.human_size(n) == expect


def test_bytes_size():
    assert fmt.bytes_size(1536 * 1024) == "1.5MiB"
    assert fmt.bytes_size(2 * 1024 ** 3) == "2GiB"
    assert fmt.bytes_size(100) == "100B"


@pytest.mark.parametrize("secs,expect", [
    (0.2, "Less than a second"), (1, "1 second"), (5, "5 seconds"), (59, "59 seconds"),
    (60, "About a minute"), (150, "2 minutes"), (3600, "About an hour"), (3 * 3600, "3 hours"),
    (3 * 86400, "3 days"), (20 * 86400, "2 weeks"), (90 * 86400, "3 months"),
    (3 * 365 * 86400, "3 years"),
])
def test_human_duration(secs, expect):
    assert fmt.human_duration(secs) == expect


def test_ellipsis_and_trunc_id():
    assert fmt.ellipsis("short", 20) == "short"
    assert fmt.ellipsis("a" * 30, 20) == "a" * 19 + "…"
    assert fmt.trunc_id("sha256:" + "ab" * 32) == "abababababab"


def test_tabwriter_matches_go():
    # minwidth 10, padding 3; the last column is not padded
    out = fmt.tabwrite([["CONTAINER ID", "IMAGE", "NAMES"], ["abc", "busybox:latest", "x"]])
    assert out == ("CONTAINER ID   IMAGE            NAMES\n"
                   "abc            busybox:latest   x\n")


OBJ = {"State": {"Status": "running", "Pid": 42, "Running": True},
       "Mounts": [], "Config": {"Env": ["A=1", "B=2"], "Labels": {"k": "v<"}},
       "NetworkSettings": {"IPAddress": "172.17.0.2"}, "Name": "/web"}


@pytest.mark.parametrize("template,expect", [
    ("{{.State.Status}}", "running"),
    ("{{.State.Pid}}", "42"),
    ("{{.State.Running}}", "true"),
    ("{{json .Mounts}}", "[]"),
    ("{{.NetworkSettings.IPAddress}}", "172.17.0.2"),
    ("{{.Config.Env}}", "[A=1 B=2]"),
    ("{{.Config.Labels}}", "map[k:v<]"),
    ("{{json .Config.Labels}}", '{"k":"v\\u003c"}'),
    ("{{index .Config.Labels \"k\"}}", "v<"),
    ("{{.Name | upper}}", "/WEB"),
    ("{{lower .State.Status}} {{upper .State.Status}}", "running RUNNING"),
    ("{{.Nope}}", "<no value>"),
    ("{{ .State.Status }}!", "running!"),
])
def test_templates_on_json(template, expect):
    assert fmt.Template(template).render(OBJ) == expect


def test_json_dot():
    assert fmt.Template("{{json .}}").render({"a": 1}) == '{"a":1}'


def test_unknown_function_is_an_error():
    with pytest.raises(fmt.TemplateError):
        fmt.Template("{{bogus .X}}").render({})


def test_render_table_with_headers_and_escapes():
    rows = [fmt.Row(ID="abc", Names="web"), fmt.Row(ID="defghijklmnop", Names="db")]
    out = fmt.render("table {{.ID}}\\t{{.Names}}", rows, {"ID": "CONTAINER ID", "Names": "NAMES"})
    assert out.splitlines() == ["CONTAINER ID    NAMES", "abc             web",
                                "defghijklmnop   db"]


def test_render_plain_and_json_shorthand():
    rows = [fmt.Row(ID="a"), fmt.Row(ID="b")]
    assert fmt.render("{{.ID}}", rows) == "a\nb\n"
    assert fmt.render("json", [fmt.Row(ID="a")]) == '{"ID":"a"}\n'


def test_row_methods_and_unknown_field():
    row = fmt.Row(ID="a", methods={"Label": lambda k: {"x": "1"}.get(k, "")})
    assert fmt.Template('{{.Label "x"}}').render(row) == "1"
    with pytest.raises(fmt.TemplateError):
        fmt.Template("{{.Bogus}}").render(row)


def test_go_json_indent_like_marshalindent():
    assert fmt.go_json([{"a": "<"}], indent=4) == '[\n    {\n        "a": "\\u003c"\n    }\n]'
