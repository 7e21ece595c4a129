"""The build graph (issue 14): stages the target does not need are not built (a failing
unused stage does not fail the build), independent stages run at once, output stays in
stage order, and a step's snapshot is reused (the image's filesystem is right without
unpacking). One conchd for the module (conch.testing.daemon's; busybox imported).
"""

from __future__ import annotations

import json
import time

from conch.testing.build import images_fixture, write_context as _ctx
from conch.testing.daemon import daemon_fixture, ok

daemon = daemon_fixture("module")
images = images_fixture()


def test_unused_failing_stage_is_skipped_and_stages_run_in_parallel(daemon, images, tmp_path):
    ctx = _ctx(tmp_path, (
        "FROM busybox AS broken\n"
        "RUN echo never-run && exit 3\n"
        "FROM busybox AS a\n"
        "RUN sleep 2 && date +%s > /a\n"
        "FROM busybox AS b\n"
        "RUN sleep 2 && date +%s > /b\n"
        "FROM busybox\n"
        "COPY --from=a /a /a\n"
        "COPY --from=1 /a /a1\n"
        "COPY --from=b /b /b\n"
        'CMD ["cat", "/a", "/b"]\n'
    ))
    images.append("graph-par:latest")
    t0 = time.monotonic()
    out = ok(daemon.conch("build", "--no-cache", "-t", "graph-par", str(ctx), timeout=120))
    elapsed = time.monotonic() - t0
    assert "never-run" not in out and "exit 3" not in out  # the broken stage never ran
    # output in stage order, numbered over the stages built: 3 stages, 2+2+5 steps
    steps = [line for line in out.splitlines() if line.startswith("Step ")]
    assert steps[0] == "Step 1/9 : FROM busybox AS a" and steps[2] == "Step 3/9 : FROM busybox AS b"
    assert steps[-1] == 'Step 9/9 : CMD ["cat", "/a", "/b"]'
    a, b = ok(daemon.conch("run", "--rm", "--network", "none", "graph-par")).split()
    # a and b ran at once: their `date`s are at most a second apart, not >= 2 s
    assert abs(int(a) - int(b)) <= 1, (a, b)
    assert elapsed < 60
    assert daemon.container_ids() == []


def test_needed_failing_stage_fails_and_leaves_no_container(daemon, images, tmp_path):
    ctx = _ctx(tmp_path, (
        "FROM busybox AS slow\n"
        "RUN sleep 30\n"
        "FROM busybox AS bad\n"
        "RUN exit 7\n"
        "FROM busybox\n"
        "COPY --from=slow /bin/sh /x\n"
        "COPY --from=bad /bin/sh /y\n"
    ))
    t0 = time.monotonic()
    p = daemon.conch("build", "--no-cache", "--force-rm", "-t", "graph-bad", str(ctx), timeout=120)
    assert p.returncode == 7, p.stderr
    assert "The command '/bin/sh -c exit 7' returned a non-zero code: 7" in p.stderr
    assert time.monotonic() - t0 < 25  # the sleeping stage was cancelled, not waited for
    images.append("graph-bad:latest")
    deadline = time.monotonic() + 30
    while daemon.container_ids() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert daemon.container_ids() == []


def test_target_builds_only_what_it_needs(daemon, images, tmp_path):
    ctx = _ctx(tmp_path, (
        "FROM busybox AS base\n"
        "RUN echo base > /base\n"
        "FROM base AS dev\n"
        "RUN echo dev > /dev-marker\n"
        "FROM busybox AS other\n"
        "RUN exit 1\n"
        "FROM base AS prod\n"
        "RUN cat /base > /prod\n"
        "FROM prod\n"
        "RUN exit 9\n"
    ))
    images.append("graph-target:latest")
    out = ok(daemon.conch("build", "--target", "prod", "-t", "graph-target", str(ctx)))
    assert "dev-marker" not in out and "exit 1" not in out
    assert ok(daemon.conch("run", "--rm", "--network", "none", "graph-target", "cat", "/prod")).strip() == "base"
    history = json.loads(ok(daemon.conch("image", "inspect", "graph-target")))[0]
    assert history["RootFS"]["Type"] == "layers"
