"""``conch build`` end to end: the conch CLI (and the real docker CLI with
``DOCKER_BUILDKIT=0``, and docker-py) -> ``POST /build`` on a private conchd -> real
RUN containers and committed layers.

The daemon is conch.testing.daemon's (one per module, busybox:latest imported; skips when
not root or conchd is missing). There is no internet: every FROM names busybox, an
earlier stage or scratch. Each test removes the images it named; clean_after checks that
no container of the test, mount, cgroup or process is left.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from conch.testing.build import images_fixture, write_context as context
from conch.testing.daemon import DOCKER, daemon_fixture, ok

daemon = daemon_fixture("module")
images = images_fixture()


def inspect(daemon, name: str) -> dict:
    return json.loads(ok(daemon.conch("image", "inspect", name)))[0]


def test_single_stage_run_copy_env_workdir_cmd(daemon, images, tmp_path):
    ctx = context(tmp_path, (
        "FROM busybox\n"
        "ENV GREETING=hello\n"
        "WORKDIR /app\n"
        "COPY hello.txt ./\n"
        "COPY conf/ /etc/myapp/\n"
        "RUN echo \"$GREETING from run\" > made.txt && cat hello.txt\n"
        'CMD ["sh", "-c", "cat made.txt hello.txt /etc/myapp/a.conf; pwd"]\n'
    ), {"hello.txt": "hi there\n", "conf/a.conf": "a=1\n"})
    images.append("b-single:latest")
    out = ok(daemon.conch("build", "-t", "b-single", str(ctx)))
    assert "Step 1/7 : FROM busybox" in out
    assert "Step 6/7 : RUN echo" in out
    assert " ---> Running in " in out
    assert "hi there" in out  # the RUN's output is streamed
    assert "Successfully built " in out and "Successfully tagged b-single:latest" in out
    run = ok(daemon.conch("run", "--rm", "b-single"))
    assert run.splitlines() == ["hello from run", "hi there", "a=1", "/app"]
    cfg = inspect(daemon, "b-single")["Config"]
    assert "GREETING=hello" in cfg["Env"] and cfg["WorkingDir"] == "/app"
    assert cfg["Cmd"] == ["sh", "-c", "cat made.txt hello.txt /etc/myapp/a.conf; pwd"]
    history = json.loads(ok(daemon.conch("history", "--no-trunc", "--format", "{{json .}}", "b-single"))
                         .splitlines()[0])
    assert "CMD" in history["CreatedBy"]
    assert daemon.container_ids() == []  # intermediate containers removed (rm=true)


def test_multi_stage_copy_from_build_stage(daemon, images, tmp_path):
    ctx = context(tmp_path, (
        "FROM busybox AS build\n"
        "WORKDIR /src\n"
        "RUN dd if=/dev/zero of=/src/ballast bs=1024 count=2048 2>/dev/null"
        " && echo 'built artefact' > /src/app.txt\n"
        "FROM busybox\n"
        "COPY --from=build /src/app.txt /srv/app.txt\n"
        'CMD ["cat", "/srv/app.txt"]\n'
    ))
    images += ["b-multi:latest", "b-multi-build:latest"]
    ok(daemon.conch("build", "-t", "b-multi", str(ctx)))
    ok(daemon.conch("build", "-t", "b-multi-build", "--target", "build", str(ctx)))
    assert ok(daemon.conch("run", "--rm", "b-multi")) == "built artefact\n"
    final, build = inspect(daemon, "b-multi"), inspect(daemon, "b-multi-build")
    assert final["Size"] < build["Size"]
    assert build["Size"] - final["Size"] > 1_500_000  # the ballast stayed in the build stage
    ls = daemon.conch("run", "--rm", "b-multi", "ls", "/src")
    assert ls.returncode != 0


def test_build_arg_and_arg(daemon, images, tmp_path):
    ctx = context(tmp_path, (
        "ARG BASE=busybox\n"
        "FROM $BASE\n"
        "ARG WHO=nobody\n"
        "ARG UNSET\n"
        "RUN echo \"who=$WHO unset=[$UNSET]\" > /who.txt\n"
        "ENV WHO_ENV=${WHO}\n"
    ))
    images.append("b-args:latest")
    out = ok(daemon.conch("build", "-t", "b-args", "--build-arg", "WHO=alice",
                          "--build-arg", "EXTRA=1", str(ctx)))
    assert "[Warning] One or more build-args [EXTRA] were not consumed" in out
    assert ok(daemon.conch("run", "--rm", "b-args", "cat", "/who.txt")) == "who=alice unset=[]\n"
    assert "WHO_ENV=alice" in inspect(daemon, "b-args")["Config"]["Env"]
    # ARG values are build-time only: not in the image's environment
    assert not any(e.startswith("WHO=") for e in inspect(daemon, "b-args")["Config"]["Env"])


def test_cache_hit_and_no_cache(daemon, images, tmp_path):
    ctx = context(tmp_path, (
        "FROM busybox\n"
        "COPY f.txt /f.txt\n"
        "RUN date +%s%N > /stamp\n"
    ), {"f.txt": "one\n"})
    images.append("b-cache:latest")
    first = ok(daemon.conch("build", "-t", "b-cache", str(ctx)))
    assert "Using cache" not in first
    id1 = inspect(daemon, "b-cache")["Id"]
    second = ok(daemon.conch("build", "-t", "b-cache", str(ctx)))
    assert second.count(" ---> Using cache") == 2
    assert inspect(daemon, "b-cache")["Id"] == id1
    third = ok(daemon.conch("build", "--no-cache", "-t", "b-cache", str(ctx)))
    assert "Using cache" not in third and inspect(daemon, "b-cache")["Id"] != id1
    (ctx / "f.txt").write_text("two\n")  # a changed source misses from that step on
    fourth = ok(daemon.conch("build", "-t", "b-cache", str(ctx)))
    assert "Using cache" not in fourth
    assert ok(daemon.conch("run", "--rm", "b-cache", "cat", "/f.txt")) == "two\n"


def test_failing_run(daemon, images, tmp_path):
    ctx = context(tmp_path, "FROM busybox\nRUN echo before\nRUN false\nRUN echo never\n")
    images.append("b-fail:latest")
    proc = daemon.conch("build", "--force-rm", "-t", "b-fail", str(ctx))
    assert proc.returncode == 1
    assert "The command '/bin/sh -c false' returned a non-zero code: 1" in proc.stderr
    assert "never" not in proc.stdout
    assert daemon.conch("image", "inspect", "b-fail").returncode != 0
    assert daemon.container_ids() == []  # --force-rm: the failed container went too
    # docker's default (rm without force-rm) keeps the failed container, stopped
    proc = daemon.conch("build", "-t", "b-fail", str(ctx))
    assert proc.returncode == 1
    left = daemon.container_ids()
    assert len(left) == 1
    state = json.loads(ok(daemon.conch("inspect", left[0])))[0]["State"]
    assert state["Status"] == "exited" and state["ExitCode"] == 1
    # a RUN's exit status is the CLI's exit code, as docker's
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN exit 3\n")
    proc = daemon.conch("build", "--force-rm", str(ctx))
    assert proc.returncode == 3 and "returned a non-zero code: 3" in proc.stderr


def test_dockerignore_and_dockerfile_name(daemon, images, tmp_path):
    ctx = context(tmp_path, "FROM busybox\nCOPY . /ctx/\n", {
        "keep.txt": "k\n", "secret.txt": "s\n", "logs/a.log": "l\n", "logs/keep.log": "kl\n",
        ".dockerignore": "secret.txt\nlogs/*.log\n!logs/keep.log\n",
    }, name="Build.dockerfile")
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN false\n")  # -f picks the other one
    images.append("b-ignore:latest")
    ok(daemon.conch("build", "-f", str(ctx / "Build.dockerfile"), "-t", "b-ignore", str(ctx)))
    listing = ok(daemon.conch("run", "--rm", "b-ignore", "find", "/ctx", "-type", "f"))
    files = sorted(listing.split())
    assert "/ctx/keep.txt" in files and "/ctx/logs/keep.log" in files
    assert "/ctx/secret.txt" not in files and "/ctx/logs/a.log" not in files
    # COPY of an excluded file is docker's "not found" error
    (ctx / "Build.dockerfile").write_text("FROM busybox\nCOPY secret.txt /\n")
    proc = daemon.conch("build", "-f", str(ctx / "Build.dockerfile"), str(ctx))
    assert proc.returncode == 1 and "secret.txt" in proc.stderr and "excluded by .dockerignore" in proc.stderr


def test_config_instructions_and_scratch(daemon, images, tmp_path):
    ctx = context(tmp_path, (
        "FROM busybox AS tools\n"
        "FROM scratch\n"
        "COPY --from=tools /bin/busybox /bin/busybox\n"
        "COPY --chown=1000:1000 data.txt /data/\n"
        "LABEL org.example.name=\"my app\" tier=web\n"
        "EXPOSE 8080 53/udp\n"
        "VOLUME /data\n"
        "USER 1000\n"
        "STOPSIGNAL SIGUSR1\n"
        "HEALTHCHECK --interval=5s --retries=2 CMD [\"/bin/busybox\", \"true\"]\n"
        "ONBUILD RUN echo triggered\n"
        'ENTRYPOINT ["/bin/busybox"]\n'
        'CMD ["cat", "/data/data.txt"]\n'
    ), {"data.txt": "d\n"})
    images.append("b-config:latest")
    ok(daemon.conch("build", "--label", "built.by=conch", "-t", "b-config", str(ctx)))
    image = inspect(daemon, "b-config")
    cfg = image["Config"]
    assert cfg["Labels"] == {"org.example.name": "my app", "tier": "web", "built.by": "conch"}
    assert cfg["ExposedPorts"] == {"8080/tcp": {}, "53/udp": {}}
    assert cfg["Volumes"] == {"/data": {}} and cfg["User"] == "1000"
    assert cfg["StopSignal"] == "SIGUSR1" and cfg["OnBuild"] == ["RUN echo triggered"]
    assert cfg["Healthcheck"]["Test"] == ["CMD", "/bin/busybox", "true"]
    assert cfg["Healthcheck"]["Interval"] == 5_000_000_000
    assert cfg["Entrypoint"] == ["/bin/busybox"] and len(image["RootFS"]["Layers"]) == 2
    out = ok(daemon.conch("run", "--rm", "b-config", "stat", "-c", "%u:%g %n", "/data/data.txt"))
    assert out == "1000:1000 /data/data.txt\n"


def test_stdin_dockerfile_and_quiet(daemon, images):
    images.append("b-stdin:latest")
    proc = daemon.conch("build", "-q", "-t", "b-stdin", "-", input="FROM busybox\nENV X=1\n")
    image_id = ok(proc).strip()
    assert image_id.startswith("sha256:") and "Step" not in proc.stdout
    assert inspect(daemon, "b-stdin")["Id"] == image_id


@pytest.mark.skipif(not DOCKER, reason="the docker CLI is not installed (/usr/local/bin/docker)")
def test_docker_cli_classic_builder(daemon, images, tmp_path):
    ctx = context(tmp_path, "FROM busybox\nRUN echo from-docker > /d.txt\nCMD cat /d.txt\n")
    images.append("b-docker:latest")
    env = dict(daemon.env, DOCKER_BUILDKIT="0")
    proc = subprocess.run([DOCKER, "build", "-t", "b-docker", "."], cwd=ctx, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Successfully tagged b-docker:latest" in proc.stdout
    assert ok(daemon.conch("run", "--rm", "b-docker")) == "from-docker\n"
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN exit 7\n")
    proc = subprocess.run([DOCKER, "build", "--force-rm", "."], cwd=ctx, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 7, proc.stdout + proc.stderr
    assert "The command '/bin/sh -c exit 7' returned a non-zero code: 7" in proc.stderr


def test_docker_py_images_build(daemon, images, tmp_path):
    docker = pytest.importorskip("docker")
    ctx = context(tmp_path, "FROM busybox\nCOPY x.txt /x.txt\nCMD [\"cat\", \"/x.txt\"]\n",
                  {"x.txt": "from docker-py\n"})
    images.append("b-dockerpy:latest")
    client = docker.DockerClient(base_url=daemon.host, version="1.45")
    try:
        image, logs = client.images.build(path=str(ctx), tag="b-dockerpy", rm=True)
        assert "b-dockerpy:latest" in image.tags
        assert any("Successfully built" in item.get("stream", "") for item in logs)
        with pytest.raises(docker.errors.BuildError, match="returned a non-zero code: 2"):
            (ctx / "Dockerfile").write_text("FROM busybox\nRUN exit 2\n")
            client.images.build(path=str(ctx), forcerm=True)
    finally:
        client.close()
    assert ok(daemon.conch("run", "--rm", "b-dockerpy")) == "from docker-py\n"


def test_add_archive_wildcards_and_errors(daemon, images, tmp_path):
    import tarfile

    src = tmp_path / "payload"
    (src / "inner").mkdir(parents=True)
    (src / "inner" / "x.txt").write_text("from the tar\n")
    with tarfile.open(tmp_path / "payload.tar.gz", "w:gz") as tar:
        tar.add(src / "inner", arcname="inner")
    ctx = context(tmp_path, (
        "FROM busybox\n"
        "ADD payload.tar.gz /opt/\n"
        "COPY *.md /docs/\n"
    ), {"a.md": "a\n", "b.md": "b\n", "c.txt": "c\n"})
    images.append("b-add:latest")
    ok(daemon.conch("build", "-t", "b-add", str(ctx)))
    out = ok(daemon.conch("run", "--rm", "b-add", "sh", "-c", "cat /opt/inner/x.txt; ls /docs"))
    assert out.split() == ["from", "the", "tar", "a.md", "b.md"]
    # a parse error is an HTTP error before any output, as dockerd
    (ctx / "Dockerfile").write_text("FROM busybox\nENV\n")
    proc = daemon.conch("build", str(ctx))
    assert proc.returncode == 1 and "dockerfile parse error on line 2" in proc.stderr
    # two sources need a directory destination
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY a.md b.md /notadir\n")
    proc = daemon.conch("build", str(ctx))
    assert proc.returncode == 1 and "must be a directory and end with a /" in proc.stderr
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY a.md /x\n")
    proc = daemon.conch("build", "--target", "nope", str(ctx))
    assert proc.returncode == 1 and "failed to reach build target nope" in proc.stderr


def test_intermediate_images_hidden_kept_and_removed_with_their_image(daemon, images, tmp_path):
    """Each step's image is an *intermediate* image, as docker's: hidden from `images`
    (shown with -a, docker's CLI alike), kept by `image prune` (the next build still hits
    the cache), and removed by `rmi` of the image built on them."""
    ctx = context(tmp_path, "FROM busybox\nENV A=1\nRUN echo one > /one\nRUN echo two > /two\n")
    images.append("b-steps:latest")

    def ids(*flags: str) -> set[str]:
        return set(ok(daemon.conch("images", "-q", "--no-trunc", *flags)).split())

    before_all = ids("-a")
    ok(daemon.conch("build", "-t", "b-steps", str(ctx)))
    top = inspect(daemon, "b-steps")["Id"]
    steps = ids("-a") - before_all - {top}
    assert len(steps) == 2, steps  # ENV's and the first RUN's images
    assert top in ids() and not steps & ids()
    # docker's classic store: history names the step images it has (and the base's)
    history = ok(daemon.conch("history", "-q", "--no-trunc", "b-steps")).split()
    assert history[0] == top and steps <= set(history) and "<missing>" not in history[:3]
    docker_ids = set(ok(daemon.docker("images", "-q", "--no-trunc")).split()) if DOCKER else ids()
    assert not steps & docker_ids
    ok(daemon.conch("image", "prune", "-f"))
    assert steps <= ids("-a")
    assert "Using cache" in ok(daemon.conch("build", "-t", "b-steps", str(ctx)))
    out = ok(daemon.conch("rmi", "b-steps"))
    assert all(f"Deleted: {i}" in out for i in steps | {top}), out
    assert not (steps | {top}) & ids("-a")
    images.remove("b-steps:latest")


def test_system_prune_and_builder_prune(daemon, images, tmp_path):
    """`system prune` (conch, and the docker CLI, whose last step is POST /build/prune)
    removes stopped containers and unused networks and forgets the build cache; the
    built image stays."""
    ctx = context(tmp_path, "FROM busybox\nRUN echo pruned > /p\n")
    images.append("b-prune:latest")
    ok(daemon.conch("build", "-t", "b-prune", str(ctx)))
    ok(daemon.conch("run", "--name", "b-prune-stopped", "busybox", "true"))
    ok(daemon.conch("network", "create", "b-prune-net"))
    out = ok(daemon.conch("system", "prune", "-f"))
    assert "Deleted Containers:" in out and "b-prune-net" in out
    assert "Deleted build cache objects:" in out and "Total reclaimed space:" in out
    assert daemon.conch("inspect", "b-prune-stopped").returncode != 0
    assert "Using cache" not in ok(daemon.conch("build", "-t", "b-prune", str(ctx)))
    ok(daemon.conch("builder", "prune", "-f"))
    assert "Using cache" not in ok(daemon.conch("build", "-t", "b-prune", str(ctx)))
    if DOCKER:
        ok(daemon.conch("run", "--name", "b-prune-stopped2", "busybox", "true"))
        out = ok(daemon.docker("system", "prune", "-f"))
        assert "Total reclaimed space" in out
        assert daemon.conch("inspect", "b-prune-stopped2").returncode != 0
    assert inspect(daemon, "b-prune")["Id"]


def test_copy_never_follows_a_context_symlink_out_of_the_context(daemon, images, tmp_path):
    """conchd runs as root: a context whose symlink points at the host's /etc must not
    let COPY read the host's files (symlinks resolve inside the context, as docker's
    FollowSymlinkInScope); a symlink inside the context still works."""
    ctx = context(tmp_path, "FROM busybox\nCOPY hostetc/hostname /got\n", {"inside.txt": "in\n"})
    (ctx / "hostetc").symlink_to("/etc")
    p = daemon.conch("build", "-t", "b-escape", str(ctx))
    assert p.returncode != 0 and "file not found in build context" in p.stderr + p.stdout
    assert daemon.conch("image", "inspect", "b-escape").returncode != 0
    (ctx / "alias.txt").symlink_to("inside.txt")
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY alias.txt /got\n")
    images.append("b-escape:latest")
    ok(daemon.conch("build", "-t", "b-escape", str(ctx)))
    assert ok(daemon.conch("run", "--rm", "b-escape", "cat", "/got")) == "in\n"
    # the context is a tar, not a layer: a .wh. file in it is a file (no whiteout), which
    # COPY then refuses by name, since in a layer it would hide its namesake
    (ctx / ".wh.inside.txt").write_text("x\n")
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY .wh.inside.txt inside.txt /got/\n")
    p = daemon.conch("build", "-t", "b-escape", str(ctx))
    assert p.returncode != 0 and "cannot copy a file named .wh." in p.stderr
