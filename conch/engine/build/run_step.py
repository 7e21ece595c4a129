"""The RUN step: a container made from the parent image with the stage's config (its
network from the build's ``networkmode``), its ``--mount``s (bind, cache, tmpfs, secret)
set up and held for the step, its output streamed from the json log, and its snapshot
committed as the step's layer (:mod:`conch.engine.build.layers`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import posixpath
import shutil
import tempfile
from typing import AsyncIterator

from conch.engine.build import buildkit_syntax as bks
from conch.engine.build import copying, layers
from conch.engine.build import step_images, step_results
from conch.engine.build.messages import BuildMessage, StepFailed, message
from conch.engine.build.steps import StageState, exec_form
from conch.engine.containers import logs as clogs
from conch.engine.model import CreateSpec
from conch.errors import InvalidArgument


def run_network(mode: str) -> str:
    """``networkmode`` for RUN containers: docker's classic builder gives them the
    default bridge unless asked otherwise ("default" is that bridge too)."""
    return "" if mode in ("", "default") else mode


class RunStep:
    """RUN: a container on the parent image, its output streamed, its snapshot committed
    (a mixin of the builder's ``_Build``)."""

    # -- RUN --------------------------------------------------------------------------------
    async def _run(self, state: StageState, ins) -> AsyncIterator[BuildMessage]:
        heredocs = getattr(ins, "heredocs", ())
        if heredocs and not ins.json_form:
            cmd = bks.heredoc_command(tuple(ins.args), heredocs, state.shell)
        else:
            cmd = exec_form(tuple(ins.args), ins.json_form, state.shell)
        mount_flags, network = [], ""
        for flag in ins.flags:
            key, _, value = flag.lstrip("-").partition("=")
            if key == "mount":
                mount_flags.append(value)
            elif key == "network":
                if value not in ("default", "none", "host"):
                    raise InvalidArgument(f"unsupported network mode {value!r}")
                network = value
            else:
                raise InvalidArgument(f"Unknown flag: {key}")
        mounts = bks.run_mounts(mount_flags, state.config.working_dir or "/")
        run_args = state.run_args()
        state.used_args |= {a.partition("=")[0] for a in run_args} & set(self.opts.build_args)
        prefix = f"|{len(run_args)} {' '.join(run_args)} " if run_args else ""
        created_by = prefix + " ".join(cmd)
        key = created_by
        if mounts or network:  # what else the step's result depends on
            key += "\0" + "\0".join([f"network={network}"] + [await self._mount_key(m) for m in mounts])
        if await self._cached(state, key):
            yield message(" ---> Using cache\n")
            return
        if not state.image_id:
            raise InvalidArgument("RUN needs a base image: FROM scratch has no filesystem yet")
        svc = self.b.containers
        lazy = state.lazy
        with contextlib.ExitStack() as held:
            api_mounts = await self._run_mount_specs(mounts, held)
            spec = CreateSpec(image=state.image_id, cmd=cmd, entrypoint=("",),
                              env=tuple(state.config.env or ()) + tuple(run_args),
                              working_dir=state.config.working_dir, user=state.config.user,
                              network_mode=run_network(network or self.opts.network_mode),
                              extra_hosts=tuple(self.opts.extra_hosts), mounts=tuple(api_mounts),
                              rootfs_parent=(lazy.top or "") if lazy is not None else "")
            c = await svc.create(spec)
            yield message(f" ---> Running in {c.id[:12]}\n")
            ok = False
            try:
                await svc.start(c.id)
                async for entry in clogs.follow(svc.paths.log(c.id), 0, svc.exited_event(c.id)):
                    text = entry.data.decode("utf-8", "replace")
                    # the classic builder's stderr writer (moby streamformatter.NewStderrWriter)
                    # wraps each chunk in bright red
                    yield message(f"\033[91m{text}\033[0m" if entry.stream == "stderr" else text)
                code = await svc.wait(c.id, "not-running")
                if code:
                    raise StepFailed(f"The command '{' '.join(cmd)}' returned a non-zero code: {code}", code)
                if state.defer:  # no layer: the container's snapshot is the step's result
                    step_id = self.b.cache.step_id(state.result, key)
                    async with svc._lock(c.id):  # noqa: SLF001 - the exit cleanup (unmount) runs under it
                        snapshot = await asyncio.to_thread(
                            step_results.commit_snapshot, self.b.snapshotter, c.id, step_id,
                            self.epoch, [m.target for m in mounts])
                    await asyncio.to_thread(self._advance, state, created_by, snapshot, key, step_id)
                else:
                    parent = await asyncio.to_thread(self.b.images.get, state.image_id)
                    async with svc._lock(c.id):  # noqa: SLF001 - the exit cleanup (unmount) runs under it
                        # the container's snapshot becomes the layer's unpacked form when the
                        # container goes (rm): the next step mounts it instead of unpacking
                        layer, _ = await asyncio.to_thread(
                            layers.commit_layer, self.b.images, self.b.snapshotter, c.id, parent,
                            step_images.layer_media_type(parent), self.epoch,
                            keep=self.opts.remove or self.opts.force_remove,
                            mount_targets=[m.target for m in mounts])
                    await self._commit(state, created_by, layer, key=key)
                ok = True
            except asyncio.CancelledError:  # another stage failed: this one's container goes
                await asyncio.shield(svc.remove(c.id, force=True))
                ok = None
                raise
            finally:
                if ok and self.opts.remove:
                    # in the background: the next step need not wait for it; the build
                    # waits for every removal before it ends (builder.steps)
                    self._removals.append(asyncio.ensure_future(svc.remove(c.id, force=True)))
                elif ok is not None and self.opts.force_remove:
                    await svc.remove(c.id, force=True)
                await asyncio.to_thread(held.close)  # stage roots, secret files
        if ok and self.opts.remove:
            yield message(f" ---> Removed intermediate container {c.id[:12]}\n")

    async def _mount_key(self, m) -> str:
        """A RUN mount in the step's cache key: a bind's source content (context) or
        stage image; a secret by its id only (never its content, as BuildKit)."""
        extra = ""
        if m.type == "bind":
            if m.from_:
                image = await self._mount_source_image(m.from_)
                extra = str(image.id) if image is not None else "scratch"
            else:
                extra = await asyncio.to_thread(self._context_hash, m.source or ".")
        return m.key() + "," + extra

    def _context_hash(self, rel: str) -> str:
        excluded = None if self.ignore is None else copying.ContextFilter(self.ignore)
        sources = copying.plan(self.ctx, [rel], excluded, context=True)
        return copying.source_hash(sources, excluded)

    async def _mount_source_image(self, ref: str):
        index = self.stage_index.get(ref.lower())
        if index is None and ref.isdigit() and int(ref) in self.stage_futures:
            index = int(ref)
        if index is not None and index in self.stage_futures:
            stage = await self._stage_state(index)
            if stage.lazy is not None:  # a deferred stage: its snapshots are mounted
                return stage.lazy
            image_id = stage.image_id
            return await asyncio.to_thread(self.b.images.get, image_id) if image_id else None
        return await self._base_image(ref)

    async def _run_mount_specs(self, mounts, held: contextlib.ExitStack) -> list[dict]:
        """HostConfig.Mounts entries for a RUN's ``--mount`` flags; what they need open
        (a stage's root, a secret's file) is held by ``held`` until the RUN is done."""
        from conch.runtime.rootfs import secure_join

        out = []
        for m in mounts:
            if m.type == "cache":
                src = await asyncio.to_thread(bks.cache_dir, self.b.paths.data_root, m)
                out.append({"Type": "bind", "Source": src, "Target": m.target, "ReadOnly": m.readonly})
            elif m.type == "tmpfs":
                out.append({"Type": "tmpfs", "Target": m.target,
                            "TmpfsOptions": {"SizeBytes": m.size} if m.size else {}})
            elif m.type == "bind":
                if m.from_:
                    image = await self._mount_source_image(m.from_)
                    root = await asyncio.to_thread(held.enter_context, step_images.scratch_root(
                        self.b.images, self.b.snapshotter, self.b.paths.exec_root, image))
                    base = str(root[1])
                else:
                    base = str(self.ctx)
                src = secure_join(base, "/" + (m.source or "."))
                if not os.path.lexists(src):
                    raise InvalidArgument(f"failed to compute cache key: \"/{(m.source or '.').lstrip('/')}\": not found")
                out.append({"Type": "bind", "Source": src, "Target": m.target, "ReadOnly": m.readonly})
            elif m.type == "secret":
                sid = m.id or posixpath.basename(m.source or m.target)
                if sid not in self.opts.secrets:
                    if m.required:
                        raise InvalidArgument(f"secret {sid}: not found")
                    continue
                path = await asyncio.to_thread(self._secret_file, sid, m, held)
                out.append({"Type": "bind", "Source": path, "Target": m.target, "ReadOnly": True})
        return out

    def _secret_file(self, sid: str, m, held: contextlib.ExitStack) -> str:
        """The secret in a private file for one RUN (never in the context, a layer or
        the history); removed with ``held``."""
        d = tempfile.mkdtemp(dir=self.b.images.tmp_dir(), prefix="build-secret-")
        held.callback(shutil.rmtree, d, True)
        path = os.path.join(d, "secret")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400 if m.mode is None else m.mode)
        with os.fdopen(fd, "wb") as f:
            f.write(self.opts.secrets[sid])
        os.chown(path, m.uid or 0, m.gid or 0)
        return path
