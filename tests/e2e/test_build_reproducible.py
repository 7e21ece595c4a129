"""Reproducible builds (issue 14): with ``SOURCE_DATE_EPOCH`` (the CLI's environment or a
build arg) two ``--no-cache`` builds of the same inputs a second apart give one image ID
-- image, history and layer times clamped, files in a stable order, gzip without mtime.
Without it the two builds differ (their times do), so the test can fail.

One conchd for the module (conch.testing.daemon's; busybox imported); each test removes
its images and checks that nothing is left.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
import time
from pathlib import Path

from conch.testing.build import images_fixture, write_context
from conch.testing.daemon import daemon_fixture, ok

daemon = daemon_fixture("module")
images = images_fixture()

EPOCH = 1_600_000_000  # 2020-09-13T12:26:40Z
DOCKERFILE = (
    "FROM busybox\n"
    "WORKDIR /app\n"
    "COPY a.txt b.txt ./\n"
    "RUN mkdir -p gen && for i in 3 1 2; do echo $i > gen/f$i; done && echo hi > /x\n"
    "ENV K=v\n"
    'CMD ["cat", "/x"]\n'
)


def _context(tmp_path: Path) -> Path:
    return write_context(tmp_path, DOCKERFILE, {"a.txt": "a\n", "b.txt": "b\n"})


def _build(daemon, ctx: Path, tag: str, *args: str, env: dict | None = None) -> str:
    full = {k: v for k, v in daemon.env.items() if k != "SOURCE_DATE_EPOCH"}
    proc = subprocess.run(
        [_conch_bin(), "build", "-q", "--no-cache", "-t", tag, *args, str(ctx)],
        env={**full, **(env or {})}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def _conch_bin() -> str:
    from conch.testing.daemon import BIN

    return str(BIN / "conch")


def _touch_all(ctx: Path) -> None:
    """New mtimes on every context file: the second build's inputs differ only in time."""
    now = time.time() + 5
    for p in ctx.iterdir():
        os.utime(p, (now, now))


def test_source_date_epoch_env_gives_one_image_id(daemon, images, tmp_path):
    ctx = _context(tmp_path)
    images += ["repro-a:1", "repro-a:2"]
    env = {"SOURCE_DATE_EPOCH": str(EPOCH)}
    first = _build(daemon, ctx, "repro-a:1", env=env)
    time.sleep(1.1)
    _touch_all(ctx)
    second = _build(daemon, ctx, "repro-a:2", env=env)
    assert first.startswith("sha256:") and first == second
    info = json.loads(ok(daemon.conch("image", "inspect", "repro-a:1")))[0]
    assert info["Created"] == "2020-09-13T12:26:40Z"
    history = json.loads(ok(daemon.conch("history", "--no-trunc", "--format", "{{json .}}",
                                         "--human=false", "repro-a:1")).splitlines()[0])
    # docker's time.RFC3339 in the CLI's local time ("Z" when that is UTC)
    from datetime import datetime

    assert datetime.fromisoformat(history["CreatedAt"].replace("Z", "+00:00")).timestamp() == EPOCH
    # the layers: no mtime after the epoch, entries in name order
    saved = subprocess.run([_conch_bin(), "save", "repro-a:1"], env=daemon.env,
                           capture_output=True, timeout=120, check=True).stdout
    outer = tarfile.open(fileobj=io.BytesIO(saved))
    manifest = json.load(outer.extractfile("manifest.json"))[0]
    own = manifest["Layers"][-2:]  # COPY's and RUN's (busybox's own layer is its own)
    names_seen = []
    for layer in own:
        with tarfile.open(fileobj=outer.extractfile(layer)) as inner:
            members = inner.getmembers()
        assert members and all(m.mtime <= EPOCH for m in members), [(m.name, m.mtime) for m in members]
        names_seen.append([m.name for m in members])
    assert [n for n in names_seen[1] if n.startswith("app/gen/")] == ["app/gen/f1", "app/gen/f2", "app/gen/f3"]


def test_source_date_epoch_build_arg_and_without(daemon, images, tmp_path):
    ctx = _context(tmp_path)
    images += ["repro-b:1", "repro-b:2", "repro-b:3", "repro-b:4"]
    arg = ("--build-arg", f"SOURCE_DATE_EPOCH={EPOCH}")
    first = _build(daemon, ctx, "repro-b:1", *arg)
    time.sleep(1.1)
    second = _build(daemon, ctx, "repro-b:2", *arg)
    assert first == second
    # without it the builds carry their own times: two IDs (the proof can fail)
    plain1 = _build(daemon, ctx, "repro-b:3")
    time.sleep(1.1)
    plain2 = _build(daemon, ctx, "repro-b:4")
    assert plain1 != plain2 and first not in (plain1, plain2)


def test_steps_keyed_by_content_not_parent_id(daemon, images, tmp_path):
    """A parent made by another instruction to the same files and config (reproducible
    layers) finds the same next step: the cache keys the parent by its content."""
    x, y = tmp_path / "x", tmp_path / "y"
    x.mkdir()
    y.mkdir()
    (x / "Dockerfile").write_text("FROM busybox\nRUN echo a > /a\nRUN echo b > /b\n")
    (y / "Dockerfile").write_text("FROM busybox\nRUN echo a >/a\nRUN echo b > /b\n")
    images += ["repro-c:x", "repro-c:y"]
    env = {"SOURCE_DATE_EPOCH": str(EPOCH)}
    _build(daemon, x, "repro-c:x", env=env)
    full = {k: v for k, v in daemon.env.items() if k != "SOURCE_DATE_EPOCH"}
    proc = subprocess.run([_conch_bin(), "build", "-t", "repro-c:y", str(y)], env={**full, **env},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    steps = proc.stdout.split("Step ")
    assert "Using cache" not in steps[2]  # `echo a >/a` is another instruction: it runs
    assert "Using cache" in steps[3], proc.stdout  # same parent content: `echo b` is cached
