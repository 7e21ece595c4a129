"""conch.build.parser against BuildKit's parser conformance files, plus heredocs and errors.

The data is read at test time from tests/data/buildkit/ (the repo copy) or, failing that,
from the workspace's ../shared/conformance/buildkit-parser/ (see that README for the
format). Each positive case compares ``dump(parse(Dockerfile)) + "\\n"`` with BuildKit's
``result`` file byte for byte, as BuildKit's TestParseCases does.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conch.build.parser import DockerfileParseError, Instruction, dump, go_quote, parse

_HERE = Path(__file__).resolve()
_CANDIDATES = (
    _HERE.parents[1] / "data" / "buildkit",
    _HERE.parents[3] / "shared" / "conformance" / "buildkit-parser",
)
DATA = next((p / "parser" for p in _CANDIDATES if (p / "parser").is_dir()), None)
needs_data = pytest.mark.skipif(
    DATA is None, reason=f"BuildKit conformance data not found in {[str(p) for p in _CANDIDATES]}")


def _cases(kind: str) -> list[str]:
    return sorted(p.name for p in (DATA / kind).iterdir()) if DATA else []


def _read(path: Path) -> str:
    # Go reads bytes; every file here is UTF-8. newline="" keeps "\r" for the parser.
    return path.read_bytes().decode("utf-8")


@needs_data
@pytest.mark.parametrize("case", _cases("testfiles"))
def test_positive_case_matches_buildkit_dump(case):
    folder = DATA / "testfiles" / case
    result = parse(_read(folder / "Dockerfile"))
    assert dump(result) + "\n" == _read(folder / "result")


@needs_data
@pytest.mark.parametrize("case", _cases("testfiles-negative"))
def test_negative_case_fails(case):
    with pytest.raises(DockerfileParseError):
        parse(_read(DATA / "testfiles-negative" / case / "Dockerfile"))


@needs_data
def test_case_counts():
    assert len(_cases("testfiles")) == 33
    assert len(_cases("testfiles-negative")) == 4


@needs_data
def test_line_numbers():
    # TestParseIncludesLineNumbers: root spans 5..31; children (5,5), (11,12), (17,31).
    df = parse(_read(DATA / "testfile-line" / "Dockerfile"))
    spans = [(i.start_line, i.end_line) for i in df.instructions]
    assert spans == [(5, 5), (11, 12), (17, 31)]
    assert (spans[0][0], spans[-1][1]) == (5, 31)


def test_instruction_shapes():
    df = parse('FROM --platform=linux/amd64 base AS build\n'
               'COPY --from=build --chown=1:1 ["a b", "/c"]\n'
               'ENV A=1 B="two words"\n'
               'ONBUILD RUN --mount=type=cache,target=/x make\n'
               'HEALTHCHECK --interval=5s CMD ["curl", "-f", "x"]\n')
    frm, copy, env, onbuild, health = df.instructions
    assert frm == Instruction(name="from", flags=("--platform=linux/amd64",),
                              args=("base", "AS", "build"), original=frm.original,
                              start_line=1, end_line=1)
    assert (copy.flags, copy.args, copy.json_form) == (
        ("--from=build", "--chown=1:1"), ("a b", "/c"), True)
    assert env.args == ("A", "1", "=", "B", '"two words"', "=")
    assert onbuild.args == () and onbuild.next.name == "run"
    assert onbuild.next.flags == ("--mount=type=cache,target=/x",)
    assert onbuild.next.args == ("make",)
    assert (health.args, health.json_form) == (("CMD", "curl", "-f", "x"), True)
    assert df.escape == "\\" and df.syntax is None


def test_original_joins_continuations_and_drops_comment_lines():
    df = parse("FROM a\nRUN echo 1 \\\n# note\n    && echo 2\n")
    run = df.instructions[1]
    assert run.original == "RUN echo 1     && echo 2"
    assert (run.start_line, run.end_line) == (2, 4)


def test_directives():
    df = parse("# syntax=docker/dockerfile:1.7\n# escape=`\n# check=skip=all\nFROM a\n")
    assert df.syntax == "docker/dockerfile:1.7"
    assert df.escape == "`"
    assert df.directives == {"syntax": "docker/dockerfile:1.7", "escape": "`", "check": "skip=all"}
    # Not at the top (after a blank line): an ordinary comment.
    assert parse("\n# escape=`\nFROM a\n").escape == "\\"


@pytest.mark.parametrize("text,line,message", [
    ("FROM a\n\nENV PATH\n", 3, "ENV must have two arguments"),
    ("FROM a\nENV A=1 B\n", 2, "can't find = in 'B'"),
    ('FROM a\nCMD ["a", 1]\n', 2, "arrays must be comprised of strings only"),
    ("# escape=x\nFROM a\n", 1, "invalid escape token"),
    ("# escape=\\\n# escape=`\nFROM a\n", 2, "only one escape parser directive"),
    ("", 0, "file with no instructions"),
    ("# just a comment\n\n", 2, "file with no instructions"),
    ("FROM a\nRUN <<EOF\necho hi\n", 2, "unterminated heredoc"),
])
def test_errors_name_the_line(text, line, message):
    with pytest.raises(DockerfileParseError, match=message) as info:
        parse(text)
    assert info.value.line == line
    assert str(info.value).startswith(f"dockerfile parse error on line {line}: ")


def test_heredocs():
    text = ("FROM a\n"
            "RUN <<EOF\n"
            "echo $HOME\n"
            "EOF\n"
            "COPY <<-'CONF' 3<<X /etc/\n"
            "\tquoted $x\n"
            "\tCONF\n"
            "x\n"
            "X\n"
            'RUN ["cat", "<<EOF"]\n')
    df = parse(text)
    run, copy, exec_form = df.instructions[1:]
    assert run.args == ("<<EOF",)
    assert [(h.name, h.content, h.expand, h.chomp) for h in run.heredocs] == [
        ("EOF", "echo $HOME\n", True, False)]
    assert (run.start_line, run.end_line) == (2, 4)
    assert [(h.name, h.file_descriptor, h.content, h.expand, h.chomp) for h in copy.heredocs] == [
        ("CONF", 0, "\tquoted $x\n", False, True), ("X", 3, "x\n", True, False)]
    assert exec_form.heredocs == () and exec_form.start_line == 10


def test_crlf_and_bom():
    df = parse("\ufeffFROM a\r\nRUN echo \\\r\n  hi\r\n")
    assert dump(df) == '(from "a")\n(run "echo   hi")'


def test_unknown_instruction_keeps_buildkit_shape():
    # BuildKit's parseIgnore leaves one empty argument; the builder rejects the name later.
    assert dump(parse("FROM a\nFROBNICATE x y\n")) == '(from "a")\n(frobnicate "")'


@pytest.mark.parametrize("value,quoted", [
    ('a"b\\c', '"a\\"b\\\\c"'),
    ("\x00\x07\x1b\x7f", '"\\x00\\a\\x1b\\x7f"'),
    ("♥ é", '"♥ é"'),
    ("\u200b\u00ad", '"\\u200b\\u00ad"'),
    ("\U0001F600\U000E0001", '"\U0001F600\\U000e0001"'),
])
def test_go_quote(value, quoted):
    assert go_quote(value) == quoted
