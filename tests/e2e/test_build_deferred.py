"""Deferred stages (issue 14): a stage the build does not export keeps its steps as
snapshots (conch.engine.build.step_results) -- no layer tar, no blob, no image per step;
only the exported image's layers are made, once. The step IDs are printed as before but
are not images; the cache finds them again (warm build: every step "Using cache"); image
GC keeps them; builder prune and a --no-cache rebuild leave no step snapshot behind; a
dangling cache entry is dropped at conchd's start. One conchd for the module.
"""

from __future__ import annotations

import json
import re
import sqlite3

from conch.testing.build import images_fixture, write_context as _ctx
from conch.testing.daemon import daemon_fixture, ok

daemon = daemon_fixture("module")
images = images_fixture()

MULTI = (
    "FROM busybox AS build\n"
    "RUN dd if=/dev/zero of=/big bs=1k count=300 2>/dev/null && echo built > /x\n"
    "ENV STAGE=build\n"
    "COPY hello.txt /hello.txt\n"
    "WORKDIR /w\n"
    "RUN echo $STAGE > /w/stage\n"
    "FROM busybox\n"
    "COPY --from=build /x /x\n"
    "COPY --from=build /w/stage /hello.txt /out/\n"
    'CMD ["cat", "/x"]\n'
)


def step_snapshots(daemon) -> set[str]:
    db = sqlite3.connect(f"file:{daemon.data_root / 'snapshots' / 'metadata.db'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT key, labels FROM snapshots WHERE kind = 'committed'").fetchall()
    finally:
        db.close()
    return {key for key, labels in rows if json.loads(labels).get("conch.build.step")}


def all_ids(daemon) -> set[str]:
    return set(ok(daemon.conch("images", "-a", "-q", "--no-trunc")).split())


def stage_ids(out: str, first: int, last: int) -> list[str]:
    """The `` ---> <id>`` printed after steps first..last (1-based)."""
    ids, step = [], 0
    for line in out.splitlines():
        if line.startswith("Step "):
            step = int(line.split()[1].split("/")[0])
        m = re.fullmatch(r" ---> ([0-9a-f]{12})", line)
        if m and first <= step <= last:
            ids.append(m.group(1))
    return ids


def test_deferred_stage_makes_no_images_and_is_cached(daemon, images, tmp_path):
    ctx = _ctx(tmp_path, MULTI, {"hello.txt": "hello\n"})
    images.append("deferred:latest")
    before = all_ids(daemon)
    snaps_before = step_snapshots(daemon)
    out = ok(daemon.conch("build", "-t", "deferred", str(ctx), timeout=120))
    top = json.loads(ok(daemon.conch("image", "inspect", "deferred")))[0]
    # the build stage's steps print IDs, as the classic builder does, that are no image
    build_ids = stage_ids(out, 2, 6)
    assert len(build_ids) == 5, out
    for short in build_ids:
        assert daemon.conch("image", "inspect", short).returncode != 0
    # only the exported stage's steps made images: its 3 steps (COPY, COPY, CMD)
    new = all_ids(daemon) - before
    assert top["Id"] in new and len(new) == 3, (new, out)
    assert len(top["RootFS"]["Layers"]) == 1 + 2  # busybox's, and the two COPYs'
    # the build stage's files reached the image through COPY --from
    assert ok(daemon.conch("run", "--rm", "--network", "none", "deferred")).strip() == "built"
    files = ok(daemon.conch("run", "--rm", "--network", "none", "deferred", "cat", "/out/stage",
                            "/out/hello.txt")).split()
    assert files == ["build", "hello"]
    snaps = step_snapshots(daemon) - snaps_before
    assert len(snaps) == 4, snaps  # RUN, COPY, WORKDIR, RUN (ENV wrote no files)
    # warm: every step from the cache, the same IDs, the same image
    warm = ok(daemon.conch("build", "-t", "deferred", str(ctx), timeout=120))
    assert warm.count(" ---> Using cache") == 8, warm
    assert stage_ids(warm, 2, 6) == build_ids
    assert json.loads(ok(daemon.conch("image", "inspect", "deferred")))[0]["Id"] == top["Id"]
    # image GC (image prune) keeps the step snapshots: the cache still hits
    ok(daemon.conch("image", "prune", "-f"))
    assert step_snapshots(daemon) - snaps_before == snaps
    assert ok(daemon.conch("build", "-t", "deferred", str(ctx))).count(" ---> Using cache") == 8
    # --no-cache replaces them: the old ones go, none piles up
    cold = ok(daemon.conch("build", "--no-cache", "-t", "deferred", str(ctx), timeout=120))
    assert "Using cache" not in cold
    again = step_snapshots(daemon) - snaps_before
    assert len(again) == 4 and not again & snaps, (again, snaps)
    # builder prune removes them and says how much it freed
    pruned = daemon.api.post("/build/prune")
    assert pruned["SpaceReclaimed"] >= 300 * 1024, pruned
    assert step_snapshots(daemon) == set()
    rebuilt = ok(daemon.conch("build", "-t", "deferred", str(ctx), timeout=120))
    assert " ---> Running in " in rebuilt


def test_exported_stage_from_a_deferred_stage_is_made_once(daemon, images, tmp_path):
    """FROM a deferred stage: its step snapshots become the image's layers then (once:
    a warm build reuses that image), history and config as the classic builder's."""
    ctx = _ctx(tmp_path, (
        "FROM busybox AS base\n"
        "RUN echo base > /base\n"
        "ENV FROM_BASE=yes\n"
        "RUN echo more > /more\n"
        "FROM base\n"
        "RUN cat /base /more > /both && echo $FROM_BASE >> /both\n"
    ))
    images.append("deferred-from:latest")
    ok(daemon.conch("build", "-t", "deferred-from", str(ctx), timeout=120))
    info = json.loads(ok(daemon.conch("image", "inspect", "deferred-from")))[0]
    assert len(info["RootFS"]["Layers"]) == 1 + 3
    assert "FROM_BASE=yes" in info["Config"]["Env"]
    out = ok(daemon.conch("run", "--rm", "--network", "none", "deferred-from", "cat", "/both"))
    assert out.split() == ["base", "more", "yes"]
    history = ok(daemon.conch("history", "--format", "{{.CreatedBy}}", "--no-trunc",
                              "deferred-from")).splitlines()
    assert "echo more > /more" in history[1] and "FROM_BASE=yes" in history[2], history
    warm = ok(daemon.conch("build", "-t", "deferred-from", str(ctx)))
    assert warm.count(" ---> Using cache") == 4, warm
    assert json.loads(ok(daemon.conch("image", "inspect", "deferred-from")))[0]["Id"] == info["Id"]


def test_dangling_cache_entries_are_dropped_at_start(daemon, images, tmp_path):
    """The cache is never fsynced: at conchd's start an entry whose snapshot is gone, an
    unreadable one and a crash's temp file go; good entries stay (the next build hits
    them)."""
    ctx = _ctx(tmp_path, "FROM busybox AS a\nRUN echo a > /a\nFROM busybox\nCOPY --from=a /a /a\n")
    images.append("deferred-restart:latest")
    ok(daemon.conch("build", "-t", "deferred-restart", str(ctx), timeout=120))
    cache = daemon.data_root / "build-cache"
    entry = next(json.loads(p.read_text()) for p in cache.iterdir() if p.read_text().startswith("{")
                 and json.loads(p.read_text())["layers"])
    dangling = dict(entry, layers=["build-step-gone"])
    (cache / ("d" * 64)).write_text(json.dumps(dangling))
    (cache / ("e" * 64)).write_text("{not json")
    (cache / ("f" * 64 + ".tmp1234")).write_text("half")
    daemon.stop()
    daemon.start()
    left = {p.name for p in cache.iterdir()}
    assert not {"d" * 64, "e" * 64, "f" * 64 + ".tmp1234"} & left, left
    out = ok(daemon.conch("build", "-t", "deferred-restart", str(ctx)))
    assert out.count(" ---> Using cache") == 2, out
