"""conch.engine.build.buildkit_syntax and the stage graph, without a daemon: RUN --mount
parsing (BuildKit's keys and defaults), heredoc commands, --chmod, and which stages a
target needs."""

from __future__ import annotations

import pytest

from conch.build.parser import parse
from conch.build.shell import Lexer
from conch.engine.build import buildkit_syntax as bks
from conch.errors import InvalidArgument


def test_run_mounts_defaults_and_keys():
    cache, bind, tmp, secret = bks.run_mounts(
        ["type=cache,target=/root/.cache,id=pip,mode=0700,uid=1000",
         "source=src,dst=mnt",  # type defaults to bind; relative target under WORKDIR
         "type=tmpfs,destination=/scratch,size=1048576",
         "type=secret,id=tok,required"], "/app")
    assert (cache.type, cache.target, cache.id, cache.mode, cache.uid, cache.readonly) == \
        ("cache", "/root/.cache", "pip", 0o700, 1000, False)
    assert (bind.type, bind.source, bind.target, bind.readonly) == ("bind", "src", "/app/mnt", True)
    assert bks.run_mounts(["type=bind,target=/m,rw"], "/")[0].readonly is False
    assert (tmp.type, tmp.size) == ("tmpfs", 1048576)
    assert (secret.target, secret.required, secret.readonly) == ("/run/secrets/tok", True, True)


@pytest.mark.parametrize("flag, words", [
    ("type=nfs,target=/x", 'unsupported mount type "nfs"'),
    ("type=cache", "mount destination is required"),
    ("type=cache,target=/x,colour=red", "unexpected key 'colour'"),
    ("type=ssh", "SSH agent"),
])
def test_run_mounts_errors(flag, words):
    with pytest.raises(InvalidArgument, match=words):
        bks.run_mounts([flag], "/")


def _one(text: str):
    return parse(text).instructions[-1]


def test_heredoc_commands():
    sh = ("/bin/sh", "-c")
    run = _one("FROM busybox\nRUN <<EOF\necho a\necho b\nEOF\n")
    assert bks.heredoc_command(tuple(run.args), run.heredocs, sh) == ("/bin/sh", "-c", "echo a\necho b\n")
    piped = _one("FROM busybox\nRUN cat > /f <<EOF\nhi\nEOF\n")
    assert bks.heredoc_command(tuple(piped.args), piped.heredocs, sh) == \
        ("/bin/sh", "-c", "cat > /f <<EOF\nhi\nEOF\n")
    shebang = _one("FROM busybox\nRUN <<EOF\n#!/usr/bin/env python3\nprint(1)\nEOF\n")
    cmd = bks.heredoc_command(tuple(shebang.args), shebang.heredocs, sh)[2]
    assert "#!/usr/bin/env python3\nprint(1)\n" in cmd and 'chmod +x "$f"' in cmd


def test_heredoc_files_expand_unless_quoted(tmp_path):
    copy = _one("FROM busybox\nCOPY <<A <<'B' /dst/\nhello $WHO\nA\nraw $WHO\nB\n")
    bks.heredoc_files(tmp_path, copy.heredocs, {"WHO": "world"})
    assert (tmp_path / "A").read_text() == "hello world\n"
    assert (tmp_path / "B").read_text() == "raw $WHO\n"
    assert bks.is_heredoc_source("<<'B'", copy.heredocs) == "B"
    assert bks.is_heredoc_source("<<C", copy.heredocs) is None


def test_parse_chmod():
    assert bks.parse_chmod("755") == 0o755 and bks.parse_chmod("0640") == 0o640
    assert bks.parse_chmod("") is None
    with pytest.raises(InvalidArgument, match="octal"):
        bks.parse_chmod("u+x")


def test_needed_stages_skip_what_the_target_does_not_use():
    from conch.engine.build.stages import needed_stages, split_stages

    df = parse("ARG BASE=busybox\n"
               "FROM busybox AS unused\nRUN false\n"
               "FROM ${BASE} AS a\n"
               "FROM busybox AS b\nRUN --mount=type=bind,from=a,target=/a true\n"
               "FROM busybox AS c\n"
               "FROM b\nCOPY --from=3 /x /x\n")
    _, stages = split_stages(df.instructions)
    assert needed_stages(stages, Lexer(df.escape), {"BASE": "busybox"}) == [1, 2, 3, 4]
