"""The Go text/template engine (conch.cli.gotemplate) on plain data: a table of templates
and what Go's text/template (with the docker CLI's functions) prints for them, or the error
it reports. Expectations come from Go 1.24 / docker 28.2 (tests/compat/test_docker_cli_format.py
checks the same engine against the real docker CLI)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import conch
from conch.cli.gotemplate import ExecError, ParseError, Template
from conch.cli.gotemplate import typed as T
from conch.cli.gotemplate.gofmt import fmt_float_g, go_quote, sprint, sprintf, sprintln

DATA = {
    "Name": "web", "Num": 3, "Zero": 0, "F": 1.5, "T": True, "Fa": False, "Null": None,
    "Empty": "", "L": ["a", "b", "c"], "E": [], "M": {"b": "2", "a": "1", "c": "3"}, "EM": {},
    "Nested": {"Inner": {"Leaf": "x"}}, "Nums": [3, 1, 2],
}

OK = [
    # text, fields, printing
    ("plain", "plain"), ("{{.Name}}", "web"), ("{{.Num}}", "3"), ("{{.F}}", "1.5"),
    ("{{.T}} {{.Fa}}", "true false"), ("{{.Null}}", "<no value>"), ("{{.Missing}}", "<no value>"),
    ("{{.L}}", "[a b c]"), ("{{.E}}", "[]"), ("{{.M}}", "map[a:1 b:2 c:3]"), ("{{.EM}}", "map[]"),
    ("{{.Nested.Inner.Leaf}}", "x"), ("{{.Missing.Deeper}}", "<no value>"), ("{{.}}", None),
    # trim markers and comments
    ("a  {{- .Name -}}  b", "awebb"), ("{{- /* c */ -}} x", "x"), ("{{/* c */}}", ""),
    ("a {{- 3}}", "a3"), ("{{3 -}} b", "3b"), ("{{-3}}", "-3"),
    # if / else if / else / with / range
    ("{{if .T}}y{{else}}n{{end}}", "y"), ("{{if .Fa}}y{{else if .Num}}n{{end}}", "n"),
    ("{{if .E}}y{{else}}empty{{end}}", "empty"), ("{{if .EM}}y{{else}}e{{end}}", "e"),
    ("{{if .Zero}}y{{else}}0{{end}}", "0"), ("{{if .Empty}}y{{else}}''{{end}}", "''"),
    ("{{if .Missing}}y{{else}}m{{end}}", "m"), ("{{if .Null}}y{{else}}nil{{end}}", "nil"),
    ("{{with .Nested.Inner}}{{.Leaf}}{{end}}", "x"), ("{{with .E}}x{{else}}none{{end}}", "none"),
    ("{{with .Zero}}x{{else with .Num}}{{.}}{{end}}", "3"),
    ("{{range .L}}{{.}},{{end}}", "a,b,c,"), ("{{range $i, $v := .L}}{{$i}}{{$v}}{{end}}", "0a1b2c"),
    ("{{range $k, $v := .M}}{{$k}}={{$v}};{{end}}", "a=1;b=2;c=3;"),
    ("{{range .E}}x{{else}}none{{end}}", "none"), ("{{range .Missing}}x{{end}}.", "."),
    ("{{range $v := .L}}{{$v}}{{end}}", "abc"), ("{{range 3}}{{.}}{{end}}", "012"),
    ("{{range .L}}{{if eq . \"b\"}}{{break}}{{end}}{{.}}{{end}}", "a"),
    ("{{range .L}}{{if eq . \"b\"}}{{continue}}{{end}}{{.}}{{end}}", "ac"),
    # variables
    ("{{$x := .Name}}{{$x}}", "web"), ("{{$x := 1}}{{if .T}}{{$x = 2}}{{end}}{{$x}}", "2"),
    ("{{range .L}}{{$.Name}}{{end}}", "webwebweb"), ("{{with .Nested}}{{$.Num}}{{end}}", "3"),
    # parentheses, pipelines, chains
    ("{{(index .M \"a\")}}", "1"), ("{{(.Nested.Inner).Leaf}}", "x"), ("{{.Name | printf \"%q\"}}", '"web"'),
    ("{{.Name | printf \"%s-%s\" \"x\"}}", "x-web"), ("{{.Num | printf \"%d\" | printf \"<%s>\"}}", "<3>"),
    # define / template / block
    ("{{define \"T\"}}[{{.}}]{{end}}{{template \"T\" .Name}}", "[web]"),
    ("{{block \"B\" .Num}}<{{.}}>{{end}}", "<3>"), ("{{define \"T\"}}x{{end}}{{template \"T\"}}", "x"),
    # literals
    ("{{\"s\"}} {{`r`}} {{1}} {{1.5}} {{true}} {{'a'}} {{0x1F}} {{1e3}} {{0o17}} {{1_000}}",
     "s r 1 1.5 true 97 31 1000 15 1000"),
    # builtins
    ("{{and 1 0 2}} {{and 1 2}} {{or 0 \"\"}} {{or 0 5}} {{not 0}} {{not .L}}", "0 2  5 true false"),
    ("{{len .L}} {{len .M}} {{len .Name}} {{len .E}}", "3 3 3 0"),
    ("{{index .L 1}} {{index .M \"c\"}} {{index .Nested \"Inner\" \"Leaf\"}}", "b 3 x"),
    ("{{index .M \"zz\"}}", "<no value>"), ("{{slice .L 1}} {{slice .L 1 2}} {{slice .Name 1}}", "[b c] [b] eb"),
    ("{{print 1 2 \"a\" \"b\" 3}}", "1 2ab3"), ("{{println 1 \"a\"}}", "1 a\n"),
    ("{{printf \"%d|%5d|%-5d|%05d|%x|%X|%o|%b|%c|%U\" 7 7 7 7 255 255 8 5 65 65}}",
     "7|    7|7    |00007|ff|FF|10|101|A|U+0041"),
    ("{{printf \"%s|%q|%v|%10s|%-4s|%.2s|%x\" .Name .Name .Name .Name .Name .Name .Name}}",
     'web|"web"|web|       web|web |we|776562'),
    ("{{printf \"%t %v %T %T %T %T\" .T .L .Num .F .M .L}}",
     "true [a b c] int float64 map[string]interface {} []interface {}"),
    ("{{printf \"%.2f|%e|%g|%6.1f\" 3.14159 1234.5 0.000012 2.25}}", "3.14|1.234500e+03|1.2e-05|   2.2"),
    ("{{printf \"%d %s\" \"x\" 5}}", "%!d(string=x) %!s(int=5)"), ("{{printf \"%d\"}}", "%!d(MISSING)"),
    ("{{printf \"%d\" 1 2}}", "1%!(EXTRA int=2)"), ("{{printf \"%z\" 1}}", "%!z(int=1)"),
    ("{{printf \"%v\" .Null}}", "<nil>"), ("{{printf \"%q\" .L}}", '["a" "b" "c"]'), ("{{printf \"%%\"}}", "%"),
    ("{{html \"<a>&'\\\"\"}}", "&lt;a&gt;&amp;&#39;&#34;"), ("{{js \"a'b\\\"<>\"}}", "a\\'b\\\"\\u003C\\u003E"),
    ("{{urlquery \"a b&c\"}}", "a+b%26c"),
    ("{{eq .Name \"web\"}} {{eq .Num 3}} {{eq .Num 1 2 3}} {{ne .Name \"x\"}}", "true true true true"),
    ("{{lt 1 2}} {{le 2 2}} {{gt 1 2}} {{ge 2 3}} {{lt \"a\" \"b\"}} {{lt 1.5 2.5}}", "true true false false true true"),
    ("{{eq .Missing \"x\"}}", "false"),
    # the docker CLI's functions
    ("{{json .M}}", '{"a":"1","b":"2","c":"3"}'), ("{{json .L}}", '["a","b","c"]'), ("{{json .Null}}", "null"),
    ("{{json \"<&>\"}}", '"\\u003c\\u0026\\u003e"'), ("{{json .F}}", "1.5"),
    ("{{join (split \"a,b,c\" \",\") \"+\"}}", "a+b+c"), ("{{split \"a,b\" \",\"}}", "[a b]"),
    ("{{lower \"AbC\"}} {{upper \"AbC\"}} {{title \"hello wORLD-x y_z\"}}", "abc ABC Hello WORLD-X Y_z"),
    ("{{pad \"x\" 2 1}}|", "  x |"), ("{{truncate \"abcdef\" 3}} {{truncate \"ab\" 5}}", "abc ab"),
]

ERR = [
    # parse errors: Go's text, with the line
    ("{{x}}", 'template: :1: function "x" not defined'),
    ("{{range}}", "template: :1: missing value for range"),
    ("{{if .T}}", "template: :1: unexpected EOF"),
    ("{{end}}", "template: :1: unexpected {{end}}"),
    ("{{else}}", "template: :1: unexpected {{else}}"),
    ("{{.Name", "template: :1: unclosed action"),
    ("{{\"abc}}", "template: :1: unterminated quoted string"),
    ("{{`abc}}", "template: :1: unterminated raw quoted string"),
    ("{{.Name | 1}}", "template: :1: non executable command in pipeline stage 2"),
    ("{{$nope}}", 'template: :1: undefined variable "$nope"'),
    ("{{(.Name}}", "template: :1: unclosed left paren"),
    ("{{.Name)}}", "template: :1: unexpected right paren"),
    ("{{break}}", "template: :1: {{break}} outside {{range}}"),
    ("{{.Name!}}", "template: :1: bad character U+0021 '!'"),
    ("{{3x}}", 'template: :1: bad number syntax: "3x"'),
    ("{{/* open", "template: :1: unclosed comment"),
    ("a\n{{x}}", 'template: :2: function "x" not defined'),
    ("{{range $a, $b, $c := .L}}{{end}}", "template: :1: too many declarations in range"),
    ("{{.X..}}", "template: :1: unexpected <.> in operand"), ("{{true.X}}", 'template: :1: unexpected . after term "true"'),
    ("{{1.X}}", 'template: :1: bad number syntax: "1.X"'), ("{{..X}}", 'template: :1: unexpected . after term "."'),
    # execution errors: Go's text, with line:column and the node
    ("{{.Name.Foo}}", 'template: :1:7: executing "" at <.Name.Foo>: can\'t evaluate field Foo in type interface {}'),
    ("{{.Null.Foo}}", 'template: :1:7: executing "" at <.Null.Foo>: nil pointer evaluating interface {}.Foo'),
    ("{{index .L 5}}", 'template: :1:2: executing "" at <index .L 5>: error calling index: index out of range: 5'),
    ("{{index .M 1}}", 'template: :1:2: executing "" at <index .M 1>: error calling index: value has type int; should be string'),
    ("{{len .Num}}", 'template: :1:2: executing "" at <len .Num>: error calling len: len of type int'),
    ("{{range .Name}}{{end}}", 'template: :1:8: executing "" at <.Name>: range can\'t iterate over web'),
    ("{{upper 1}}", 'template: :1:8: executing "" at <1>: expected string; found 1'),
    ("{{join .L \",\"}}", 'template: :1:7: executing "" at <.L>: wrong type for value; expected []string; got []interface {}'),
    ("{{lt .Name 1}}", 'template: :1:2: executing "" at <lt .Name 1>: error calling lt: incompatible types for comparison'),
    ("{{eq}}", 'template: :1:2: executing "" at <eq>: wrong number of args for eq: want at least 1 got 0'),
    ("{{.Name 1}}", 'template: :1:2: executing "" at <.Name>: Name is not a method but has arguments'),
    ("{{1 2}}", 'template: :1:2: executing "" at <1>: can\'t give argument to non-function 1'),
    ("{{nil}}", 'template: :1:2: executing "" at <nil>: nil is not a command'),
    ("{{template \"T\"}}", 'template: :1:11: executing "" at <{{template "T"}}>: template "T" not defined'),
]


@pytest.mark.parametrize("text,want", [c for c in OK if c[1] is not None], ids=lambda v: str(v)[:40])
def test_renders_as_go(text, want):
    assert Template(text).execute(DATA) == want


@pytest.mark.parametrize("text,want", ERR, ids=lambda v: str(v)[:40])
def test_errors_as_go(text, want):
    with pytest.raises((ParseError, ExecError)) as info:
        Template(text).execute(DATA)
    assert str(info.value) == want


def test_missingkey_error_and_template_name():
    with pytest.raises(ExecError) as info:
        Template("{{.Nope}}").execute(DATA, missingkey="error")
    assert str(info.value) == 'template: :1:2: executing "" at <.Nope>: map has no entry for key "Nope"'
    with pytest.raises(ParseError) as info:
        Template("{{x}}", name="version")
    assert str(info.value) == 'template: version:1: function "x" not defined'


def test_partial_output_is_kept_on_error():
    with pytest.raises(ExecError) as info:
        Template("ok {{.Name}} {{.Name.X}}").execute(DATA)
    assert info.value.partial == "ok web "


def test_typed_structs_behave_as_docker_types():
    c = T.typed({"Id": "abc", "State": {"Status": "running", "Pid": 7}, "Config": {
        "Labels": {"b": "2", "a": "1"}, "Cmd": ["sleep", "1"], "Env": None}}, T.KINDS["container"])
    run = lambda t: Template(t).execute(c)  # noqa: E731
    assert run("{{.State.Status}} {{.State.Pid}} {{.State.Health}}") == "running 7 <nil>"
    assert run("{{printf \"%T %T %T %T\" .State .State.Pid .Config.Cmd .Config.Labels}}") == \
        "*container.State int strslice.StrSlice map[string]string"
    assert run("{{.Config.Labels.zz}}|{{index .Config.Labels \"zz\"}}|{{.Config.Labels}}") == "<no value>||map[a:1 b:2]"
    assert run("{{join .Config.Cmd \" \"}} {{.Config.Env}} {{json .Config.Env}}") == "sleep 1 [] null"
    assert run("{{.State}}") == "{running false false false false false 7 0    <nil>}"
    assert run("{{range $k, $v := .Config.Labels}}{{$k}}{{end}}") == "ab"
    with pytest.raises(ExecError, match="can't evaluate field Nope in type \\*container.State"):
        run("{{.State.Nope}}")
    with pytest.raises(ExecError, match="nil pointer evaluating \\*container.Health.Status"):
        run("{{.State.Health.Status}}")
    raw = T.raw({"RestartCount": 0, "Args": [1]})
    assert Template("{{printf \"%T %T\" .RestartCount .Args}}").execute(raw) == "json.Number []interface {}"


@pytest.mark.parametrize("f,want", [(1.5, "1.5"), (1e8, "1e+08"), (123456.0, "123456"), (1234567.0, "1.234567e+06"),
                                    (0.0001, "0.0001"), (0.00001, "1e-05"), (1e21, "1e+21"), (-2.5, "-2.5"), (0.0, "0")])
def test_float_v_as_go(f, want):
    assert fmt_float_g(f) == want


def test_fmt_helpers():
    assert go_quote('a"b\\\n\x01é') == '"a\\"b\\\\\\n\\x01é"'
    assert sprint("a", 1, 2, "b") == "a1 2b"
    assert sprintln("a", 1) == "a 1\n"
    assert sprintf("%-3d|%+d|% d", 1, 2, 3) == "1  |+2| 3"


def test_json_time_and_struct_order():
    n = T.typed({"Name": "n", "Id": "x", "Created": "2026-12-06T02:20:15.069594860Z", "Labels": {"b": "", "a": ""}},
                T.KINDS["network"])
    assert Template("{{.Created}}").execute(n) == "2026-12-06 02:20:15.06959486 +0000 UTC"
    # a struct is written whole in its order (zero values for what the API left out), maps sorted
    assert Template("{{json .}}").execute(n) == (
        '{"Name":"n","Id":"x","Created":"2026-12-06T02:20:15.06959486Z","Scope":"","Driver":"",'
        '"EnableIPv4":false,"EnableIPv6":false,"IPAM":{"Driver":"","Options":null,"Config":null},'
        '"Internal":false,"Attachable":false,"Ingress":false,"ConfigFrom":{"Network":""},'
        '"ConfigOnly":false,"Containers":null,"Options":null,"Labels":{"a":"","b":""}}')


REPO = os.path.dirname(os.path.dirname(os.path.abspath(conch.__file__)))
_PROBE = """
import sys
sys.path.insert(0, {repo!r})
from conch.cli.main import main

class Stub:
    def get(self, *a, **k):
        return []

main({argv!r}, client=Stub())
print(" ".join(m for m in sys.modules if m.startswith("conch.cli.gotemplate")))
"""


@pytest.mark.parametrize("argv,loaded", [
    (["ps"], False), (["ps", "-a", "--format", "{{.ID}}\t{{.Names}}"], False),
    (["ps", "--format", "{{json .}}"], True), (["ps", "--format", "{{range .}}"], True),
])
def test_engine_loaded_only_for_templates_that_need_it(argv, loaded):
    p = subprocess.run([sys.executable, "-I", "-S", "-c", _PROBE.format(repo=REPO, argv=argv)],
                       capture_output=True, text=True, timeout=60)
    assert bool(p.stdout.split("\n")[-2].strip()) is loaded, p.stdout + p.stderr
