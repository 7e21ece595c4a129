"""``docker build`` with docker's classic builder semantics (``DOCKER_BUILDKIT=0``).

Contract: :meth:`Builder.build` takes the build context (a tar, plain or compressed) and
:class:`BuildOptions`, and yields :class:`BuildMessage` records -- the text docker's
classic builder prints (``Step 1/4 : FROM busybox``, `` ---> 1a2b3c4d5e6f``, the RUN
output, ``Successfully built …``) and, once, the final image ID (``aux``). A failure
raises a ``ConchError``; a RUN that exits non-zero raises :class:`StepFailed` with
docker's "The command '/bin/sh -c false' returned a non-zero code: 1" and the exit code.
No image is named then.

Order of a build:

1. The context is unpacked (``conch.archive.apply_layer``: no entry can land outside)
   into a private directory under the image service's tmp dir; ``.dockerignore`` is
   read from it (:class:`conch.build.dockerignore.DockerIgnore`).
2. The Dockerfile (``dockerfile``, default ``Dockerfile``) is parsed
   (:func:`conch.build.parser.parse`); ARGs before the first FROM are the meta args
   FROM lines expand with. With ``target`` the stages after it are dropped.
3. Every instruction is a step and every step leaves an image (dangling, as docker's
   intermediate images): config-only steps (:mod:`conch.engine.build.steps`) an image
   with an ``empty_layer`` history entry; RUN a real container (create, start, its
   output streamed from the json log, stderr in red as docker's; on the default
   bridge unless ``networkmode`` says otherwise) whose snapshot diff is
   committed as ``docker commit`` does; COPY/ADD/WORKDIR a snapshot of the parent
   mounted privately, written into, and committed (:mod:`conch.engine.build.step_images`,
   :mod:`conch.engine.build.copying`).
4. Before each step the step cache (:class:`step_images.StepCache`) is asked for an
   image made from the same parent by the same instruction (`` ---> Using cache``);
   ``no_cache`` skips the lookup.
5. ``labels`` are applied as a last LABEL step (as docker appends one); the final image
   is tagged with each ``tags`` entry.

Intermediate RUN containers are removed after their step when ``remove`` (docker's
``rm``, default true); a failed step's container is kept unless ``force_remove``, as
docker does. The context directory and every mount go whatever happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import posixpath
import re
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import AsyncIterator, BinaryIO, Mapping

from conch.build.dockerignore import DockerIgnore
from conch.build.parser import parse
from conch.build.shell import Lexer
from conch.engine.build import buildkit_syntax as bks
from conch.engine.build import copying, layers
from conch.engine.build import step_images
from conch.engine.containers import logs as clogs
from conch.engine.build.steps import (CONFIG_STEPS, PREDEFINED_ARGS, StageState,
                                      apply_config_step, exec_form, expand_words, flag_values,
                                      validate, workdir_path)
from conch.engine.model import CreateSpec
from conch.errors import ConchError, InvalidArgument, NotFound
from conch.oci.image import ExecutionConfig
from conch.oci.reference import Reference

log = logging.getLogger(__name__)

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildOptions:
    tags: tuple[str, ...] = ()
    dockerfile: str = "Dockerfile"
    build_args: Mapping[str, str] = field(default_factory=dict)
    target: str = ""
    no_cache: bool = False
    quiet: bool = False
    remove: bool = True
    force_remove: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)
    pull: bool = False
    network_mode: str = ""  # RUN's network: "" / "default" (the default bridge), none, host, a name
    extra_hosts: tuple[str, ...] = ()  # RUN's /etc/hosts additions, "host:ip"
    cache_from: tuple[str, ...] = ()  # images whose history may stand in for steps (cachefrom)
    secrets: Mapping[str, bytes] = field(default_factory=dict)  # RUN --mount=type=secret's, by id


@dataclass(frozen=True, slots=True)
class BuildMessage:
    stream: str = ""
    aux_id: str = ""


class StepFailed(ConchError):
    """A RUN step exited non-zero; ``code`` is its exit status (the CLI's exit code)."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class _Synthetic:
    """An instruction the builder adds itself (``--label``'s LABEL)."""

    name: str
    args: tuple
    original: str
    flags: tuple[str, ...] = ()
    json_form: bool = False


class Builder:
    def __init__(self, engine):
        self.containers = engine.containers
        self.images = engine.images
        self.snapshotter = engine.containers.snapshotter
        self.paths = engine.containers.paths
        self.cache = step_images.StepCache(self.paths.data_root, engine.images)

    async def build(self, context: BinaryIO, opts: BuildOptions) -> AsyncIterator[BuildMessage]:
        ctx_dir = await asyncio.to_thread(self._unpack_context, context)
        try:
            run = _Build(self, Path(ctx_dir), opts)
            if not opts.quiet:
                async for msg in run.steps():
                    yield msg
                return
            held = []  # -q: the output only if the build fails, as dockerd
            try:
                async for msg in run.steps():
                    if msg.aux_id:
                        yield msg
                    else:
                        held.append(msg)
            except ConchError:
                for msg in held:
                    yield msg
                raise
            yield BuildMessage(stream=run.final_id + "\n")
        finally:
            await asyncio.to_thread(shutil.rmtree, ctx_dir, True)

    def _unpack_context(self, stream: BinaryIO) -> str:
        from conch.archive.apply import apply_layer

        d = tempfile.mkdtemp(dir=self.images.tmp_dir(), prefix="build-context-")
        try:
            apply_layer(stream, Path(d), whiteout_format="none")  # a tar, not a layer
        except BaseException:
            shutil.rmtree(d, ignore_errors=True)
            raise
        return d


class _Build:
    """One build's working state (see the module docstring for the order)."""

    def __init__(self, builder: Builder, ctx: Path, opts: BuildOptions):
        self.b = builder
        self.ctx = ctx
        self.opts = opts
        self.stages: list[StageState] = []
        self.meta_args: dict[str, str] = {}
        self.used_meta: set[str] = set()
        self.step = 0
        self.total = 0
        self.final_id = ""
        self.ignore = self._dockerignore()
        self._sources: list | None = None  # the cachefrom images, resolved on first use
        self.epoch = source_date_epoch(opts.build_args)
        if self.epoch is not None:  # a step's image then depends on it too
            builder.cache = builder.cache.salted(f"SOURCE_DATE_EPOCH={self.epoch}")

    # -- the whole build ---------------------------------------------------------------
    async def steps(self) -> AsyncIterator[BuildMessage]:
        df = parse(await asyncio.to_thread(self._read_dockerfile))
        self.lexer = Lexer(df.escape)
        if df.syntax:
            yield _out(f"[note] # syntax={df.syntax}: the frontend is not fetched; conch's "
                       "built-in Dockerfile frontend (BuildKit's syntax) is used\n")
        for ins in df.instructions:
            validate(ins)
        meta, stages = _split_stages(df.instructions)
        stages = self._up_to_target(stages)
        for ins in meta:
            self._meta_arg(ins)
        needed = _needed_stages(stages, self.lexer, self.meta_args)
        extra = [_label_step(self.opts.labels)] if self.opts.labels else []
        self.total = len(meta) + sum(1 + len(stages[i][1]) for i in needed) + len(extra)
        for ins in meta:
            yield self._step_line(ins)
        # The stage graph: every needed stage runs as its own task as soon as the
        # stages it names are built (independent ones at once); stages the target does
        # not need are never built. Output stays in stage order, as the classic builder
        # prints it: each stage's lines are held until the stages before it are out.
        first_step = {}
        n = self.step
        for i in needed:
            first_step[i] = n
            n += 1 + len(stages[i][1]) + (len(extra) if i == needed[-1] else 0)
        self.stage_futures = {i: asyncio.get_running_loop().create_future() for i in needed}
        self.stage_index = {_stage_alias(f).lower(): i for i, (f, _) in enumerate(stages) if _stage_alias(f)}
        queues = {i: asyncio.Queue() for i in needed}
        self.tasks = tasks = {i: asyncio.create_task(self._stage_task(i, stages[i], first_step[i],
                                                         extra if i == needed[-1] else [], queues[i]))
                 for i in needed}
        failure: BaseException | None = None
        try:
            for i in needed:
                while True:
                    item = await queues[i].get()
                    if item is None:
                        break
                    if isinstance(item, BaseException):
                        failure = item
                        break
                    yield item
                if failure is not None:
                    raise failure
        finally:
            pending = [t for t in tasks.values() if not t.done()]
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
            for fut in self.stage_futures.values():
                if not fut.done():
                    fut.cancel()
                elif not fut.cancelled():
                    fut.exception()  # retrieved: no "never retrieved" warning
        self.stages = [self.stage_futures[i].result() for i in needed]
        final = self.stages[-1]
        if not final.image_id:  # FROM scratch and nothing else: docker makes an empty image
            await self._commit(final, step_images.nop_created_by("FROM scratch"))
        unused = sorted(set(self.opts.build_args) - {a for s in self.stages for a in s.used_args}
                        - self.used_meta - PREDEFINED_ARGS)
        if unused:
            yield _out(f"[Warning] One or more build-args [{' '.join(unused)}] were not consumed\n")
        self.final_id = final.image_id
        yield BuildMessage(aux_id=final.image_id)
        yield _out(f"Successfully built {_short(final.image_id)}\n")
        for tag in self.opts.tags:
            await asyncio.to_thread(self.b.images.tag, final.image_id, tag)
            yield _out(f"Successfully tagged {Reference.parse(tag).familiar()}\n")

    async def _stage_task(self, index: int, stage, first_step: int, extra, queue: asyncio.Queue) -> None:
        """One stage, start to end: its messages into ``queue`` (None at the end, the
        exception when it fails); its StageState into its future."""
        from_ins, body = stage
        step = first_step
        fut = self.stage_futures[index]

        def line(ins) -> BuildMessage:
            nonlocal step
            step += 1
            return _out(f"Step {step}/{self.total} : {ins.original.strip()}\n")

        try:
            queue.put_nowait(line(from_ins))
            state = await self._from(from_ins, index)
            queue.put_nowait(_out(f" ---> {_short(state.image_id)}\n"))
            for trigger in state.triggers:
                async for msg in self._dispatch(state, trigger):
                    queue.put_nowait(msg)
            for ins in list(body) + list(extra):
                queue.put_nowait(line(ins))
                async for msg in self._dispatch(state, ins):
                    queue.put_nowait(msg)
                queue.put_nowait(_out(f" ---> {_short(state.image_id)}\n"))
        except asyncio.CancelledError:
            fut.cancel()
            queue.put_nowait(None)
            raise
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            if not fut.done():
                fut.set_exception(exc)
            queue.put_nowait(exc)
            for other, task in self.tasks.items():  # the build has failed: stop the rest
                if other != index and not task.done():
                    task.cancel()
            return
        fut.set_result(state)
        queue.put_nowait(None)

    async def _stage_state(self, index: int) -> StageState:
        fut = self.stage_futures.get(index)
        if fut is None:
            raise InvalidArgument(f"stage {index} is not part of this build")
        return await asyncio.shield(fut)

    def _step_line(self, ins) -> BuildMessage:
        self.step += 1
        return _out(f"Step {self.step}/{self.total} : {ins.original.strip()}\n")

    def _read_dockerfile(self) -> str:
        from conch.runtime.rootfs import secure_join

        name = self.opts.dockerfile or "Dockerfile"
        for candidate in (name, "dockerfile") if name == "Dockerfile" else (name,):
            path = secure_join(str(self.ctx), "/" + candidate)
            if os.path.isfile(path):
                with open(path, encoding="utf-8", errors="surrogateescape") as f:
                    return f.read()
        raise NotFound(f"Cannot locate specified Dockerfile: {name}")

    def _dockerignore(self) -> DockerIgnore | None:
        path = self.ctx / ".dockerignore"
        if not path.is_file():
            return None
        return DockerIgnore.parse(path.read_text(errors="surrogateescape"))

    def _excluded(self, rel: str) -> bool:
        return self.ignore is not None and self.ignore.excluded(rel)

    def _up_to_target(self, stages):
        if not self.opts.target:
            return stages
        for i, (from_ins, _) in enumerate(stages):
            if _stage_alias(from_ins).lower() == self.opts.target.lower():
                return stages[:i + 1]
        raise InvalidArgument(f"failed to reach build target {self.opts.target} in Dockerfile")

    def _meta_arg(self, ins) -> None:
        if ins.name != "arg":
            raise InvalidArgument(f"{ins.name.upper()} is not allowed before the first FROM")
        for word in ins.args:
            name, eq, default = word.partition("=")
            value = self.lexer.process_word(default, self.meta_args) if eq else None
            if name in self.opts.build_args:
                value = self.opts.build_args[name]
                self.used_meta.add(name)
            if value is not None:
                self.meta_args[name] = value

    # -- FROM -----------------------------------------------------------------------------
    async def _from(self, ins, index: int) -> StageState:
        platform = flag_values(ins.flags, ("platform",), "FROM").get("platform", "")
        if platform:
            self._check_platform(platform)
        words = expand_words(self.lexer, tuple(ins.args), False, self.meta_args)
        if len(words) not in (1, 3) or (len(words) == 3 and words[1].lower() != "as"):
            raise InvalidArgument("FROM requires either one or three arguments")
        name = words[0]
        earlier = self.stage_index.get(name.lower())
        if name.lower() == "scratch":
            image = None
        elif earlier is not None and earlier < index:
            image_id = (await self._stage_state(earlier)).image_id
            image = await asyncio.to_thread(self.b.images.get, image_id) if image_id else None
        else:
            image = await self._base_image(name)
        config = (image.config.config if image is not None else None) or ExecutionConfig()
        triggers = tuple(config.on_build or ())
        if not config.env:  # docker's setDefaultPath
            config = replace(config, env=(DEFAULT_PATH,))
        state = StageState(name=words[2].lower() if len(words) == 3 else str(index),
                           image_id=str(image.id) if image is not None else "",
                           config=replace(config, on_build=None),
                           build_args=dict(self.opts.build_args), meta_args=self.meta_args)
        state.triggers = [_trigger(t) for t in triggers]
        return state

    def _check_platform(self, text: str) -> None:
        """``FROM --platform``: the host's platform only (no emulation here); the
        BUILDPLATFORM/TARGETPLATFORM args (both the host's) expand in it."""
        from conch.oci.platform import Platform, normalize

        host = normalize(self.b.images.platform)
        host_text = f"{host.os}/{host.architecture}" + (f"/{host.variant}" if host.variant else "")
        value = self.lexer.process_word(text, {**self.meta_args, "BUILDPLATFORM": host_text,
                                               "TARGETPLATFORM": host_text})
        if not value:
            return
        try:
            want = normalize(Platform.parse(value))
        except ConchError as exc:
            raise InvalidArgument(f"failed to parse platform {value}: {exc}") from exc
        if (want.os, want.architecture) != (host.os, host.architecture) or (
                want.variant and host.variant and want.variant != host.variant):
            raise InvalidArgument(f"FROM --platform={value}: conch builds for the host's platform "
                                  f"({host_text}) only")

    async def _base_image(self, name: str):
        try:
            if not self.opts.pull:
                return await asyncio.to_thread(self.b.images.get, name)
        except NotFound:
            pass
        async for _ in self.b.images.pull(name):  # no registry reachable: its error says so
            pass
        return await asyncio.to_thread(self.b.images.get, name)

    # -- one instruction -------------------------------------------------------------------
    async def _dispatch(self, state: StageState, ins) -> AsyncIterator[BuildMessage]:
        name = ins.name
        if name == "run":
            async for msg in self._run(state, ins):
                yield msg
        elif name in ("copy", "add"):
            async for msg in self._copy(state, ins):
                yield msg
        elif name == "workdir":
            async for msg in self._workdir(state, ins):
                yield msg
        elif name == "onbuild" and not isinstance(ins, _Synthetic):
            text = re.sub(r"(?is)^\s*onbuild\s+", "", ins.original.strip())
            comment = apply_config_step(state, self.lexer, name, (), (text,), False)
            async for msg in self._config_commit(state, comment):
                yield msg
        elif name == "label" and isinstance(ins, _Synthetic):
            state.config = replace(state.config, labels={**(state.config.labels or {}), **dict(ins.args)})
            comment = "LABEL " + " ".join(f'"{k}"="{v}"' for k, v in ins.args)
            async for msg in self._config_commit(state, comment):
                yield msg
        elif name in CONFIG_STEPS:
            comment = apply_config_step(state, self.lexer, name, tuple(ins.flags), tuple(ins.args),
                                        ins.json_form)
            async for msg in self._config_commit(state, comment):
                yield msg
        elif name == "from":
            raise InvalidArgument("FROM inside a stage")  # _split_stages never lets one through
        else:
            raise InvalidArgument(f"unknown instruction: {name.upper()}")

    async def _cached(self, state: StageState, key: str) -> bool:
        if self.opts.no_cache:
            return False
        hit = await asyncio.to_thread(self.b.cache.get, state.image_id, key)
        if hit is None and self.opts.cache_from:
            hit = await asyncio.to_thread(self._from_sources, state, key)
        if hit is None:
            return False
        state.image_id = hit
        return True

    def _from_sources(self, state: StageState, created_by: str) -> str | None:
        """A step's image from the ``cachefrom`` images (worker thread); remembered in
        the step cache as a local hit would be."""
        if self._sources is None:
            self._sources = []
            for ref in self.opts.cache_from:
                try:
                    self._sources.append(self.b.images.get(ref))
                except ConchError:
                    log.info("cache-from image %s not found: ignored", ref)
        if not self._sources:
            return None
        parent = self.b.images.get(state.image_id) if state.image_id else None
        hit = step_images.from_sources(self.b.images, parent, state.config, created_by,
                                       self._sources, author=state.author)
        if hit is not None:
            self.b.cache.put(state.image_id, created_by, hit)
        return hit

    async def _commit(self, state: StageState, created_by: str, layer=None, key: str | None = None) -> None:
        parent = await asyncio.to_thread(self.b.images.get, state.image_id) if state.image_id else None
        parent_id = state.image_id
        state.image_id = await asyncio.to_thread(
            step_images.commit_step, self.b.images, parent, state.config, created_by,
            layer=layer, author=state.author, epoch=self.epoch)
        await asyncio.to_thread(self.b.cache.put, parent_id, key or created_by, state.image_id)

    async def _config_commit(self, state: StageState, comment: str) -> AsyncIterator[BuildMessage]:
        created_by = step_images.nop_created_by(comment)
        if await self._cached(state, created_by):
            yield _out(" ---> Using cache\n")
            return
        await self._commit(state, created_by)

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
            yield _out(" ---> Using cache\n")
            return
        if not state.image_id:
            raise InvalidArgument("RUN needs a base image: FROM scratch has no filesystem yet")
        svc = self.b.containers
        with contextlib.ExitStack() as held:
            api_mounts = await self._run_mount_specs(mounts, held)
            spec = CreateSpec(image=state.image_id, cmd=cmd, entrypoint=("",),
                              env=tuple(state.config.env or ()) + tuple(run_args),
                              working_dir=state.config.working_dir, user=state.config.user,
                              network_mode=_run_network(network or self.opts.network_mode),
                              extra_hosts=tuple(self.opts.extra_hosts), mounts=tuple(api_mounts))
            c = await svc.create(spec)
            yield _out(f" ---> Running in {c.id[:12]}\n")
            ok = False
            try:
                await svc.start(c.id)
                async for entry in clogs.follow(svc.paths.log(c.id), 0, svc.exited_event(c.id)):
                    text = entry.data.decode("utf-8", "replace")
                    # the classic builder's stderr writer (moby streamformatter.NewStderrWriter)
                    # wraps each chunk in bright red
                    yield _out(f"\033[91m{text}\033[0m" if entry.stream == "stderr" else text)
                code = await svc.wait(c.id, "not-running")
                if code:
                    raise StepFailed(f"The command '{' '.join(cmd)}' returned a non-zero code: {code}", code)
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
                if ok is not None and (ok and self.opts.remove or self.opts.force_remove):
                    await svc.remove(c.id, force=True)
                await asyncio.to_thread(held.close)  # stage roots, secret files
        if ok and self.opts.remove:
            yield _out(f" ---> Removed intermediate container {c.id[:12]}\n")

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
            image_id = (await self._stage_state(index)).image_id
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

    # -- COPY / ADD / WORKDIR ------------------------------------------------------------------
    async def _copy(self, state: StageState, ins) -> AsyncIterator[BuildMessage]:
        add = ins.name == "add"
        flags = flag_values(tuple(ins.flags), ("chown", "chmod", "link", "checksum") if add
                            else ("chown", "from", "chmod", "link"), ins.name.upper())
        chmod = bks.parse_chmod(flags.get("chmod", ""))
        # --link: BuildKit makes the layer apart from its parent; conch's layer is the
        # same files either way, so it is accepted as is
        heredocs = getattr(ins, "heredocs", ())
        words = expand_words(self.lexer, tuple(ins.args), ins.json_form, state.env_map())
        if len(words) < 2:
            raise InvalidArgument(f"{ins.name.upper()} requires at least two arguments, but only "
                                  "one was provided. Destination could not be determined.")
        srcs, dest = words[:-1], words[-1]
        special = [s for s in srcs if bks.is_heredoc_source(s, heredocs)
                   or (add and s.startswith(("http://", "https://")))]
        if flags.get("checksum") and not all(s.startswith(("http://", "https://")) for s in srcs):
            raise InvalidArgument("checksum can't be specified for non-HTTP(S) sources")
        if special and len(special) != len(srcs):
            raise InvalidArgument(f"{ins.name.upper()} cannot mix heredocs or URLs with other sources")
        dest_abs, dest_dir = copying.destination(dest, state.config.working_dir)
        if len(srcs) > 1 and not dest_dir:
            raise InvalidArgument(f"When using {ins.name.upper()} with more than one source file, "
                                  "the destination must be a directory and end with a /")
        source_image = await self._copy_source(flags.get("from", ""))
        parent = await asyncio.to_thread(self.b.images.get, state.image_id) if state.image_id else None
        with contextlib.ExitStack() as held:
            alt_root = None
            if special:  # heredoc bodies and downloads: files in a private directory
                alt_root = Path(tempfile.mkdtemp(dir=self.b.images.tmp_dir(), prefix="build-src-"))
                held.callback(shutil.rmtree, alt_root, True)
                names = []
                for src in srcs:
                    if (name := bks.is_heredoc_source(src, heredocs)) is not None:
                        names.append(name)
                    else:
                        names.append(await asyncio.to_thread(bks.fetch_url, src, alt_root,
                                                             flags.get("checksum", "")))
                await asyncio.to_thread(bks.heredoc_files, alt_root,
                                        [h for h in heredocs if h.name in names], state.env_map())
                srcs = names
            result = await asyncio.to_thread(
                self._copy_sync, state, parent, source_image, "from" in flags, srcs, dest, dest_abs,
                dest_dir, flags.get("chown", ""), add and alt_root is None, chmod, alt_root,
                "ADD" if add else "COPY")
        if result == "cached":
            yield _out(" ---> Using cache\n")

    async def _copy_source(self, ref: str):
        if not ref:
            return None
        index = self.stage_index.get(ref.lower())
        if index is None and ref.isdigit() and int(ref) in self.stage_futures:
            index = int(ref)
        stage = await self._stage_state(index) if index is not None and index in self.stage_futures else None
        if stage is not None:
            if not stage.image_id:
                raise InvalidArgument(f"stage {ref} has no filesystem (FROM scratch)")
            return await asyncio.to_thread(self.b.images.get, stage.image_id)
        return await self._base_image(ref)

    def _copy_sync(self, state, parent, source_image, from_flag, srcs, dest, dest_abs, dest_dir,
                   chown, add, chmod=None, alt_root=None, verb="COPY") -> str:
        """Worker thread: resolve, hash, look in the cache, else write and commit.
        ``add``: local archives are unpacked; ``alt_root``: the sources' directory
        instead of the context (heredocs, downloads)."""
        b = self.b
        with copying.source_root(b, self.ctx, source_image, from_flag, alt_root) as src_root:
            excluded = (None if from_flag or alt_root is not None or self.ignore is None
                        else copying.ContextFilter(self.ignore))
            sources = copying.plan(src_root, srcs, excluded, context=not from_flag and alt_root is None)
            digest = copying.source_hash(sources, excluded)
            created_by = f"{step_images.SHELL_PREFIX}#(nop) {verb} {digest} in {dest} "
            key = created_by + (f"\0chown={chown}" if chown else "") + (
                f"\0chmod={chmod:o}" if chmod is not None else "")
            if not self.opts.no_cache and (hit := b.cache.get(state.image_id, key)
                                           or (not chown and chmod is None and self.opts.cache_from
                                               and self._from_sources(state, created_by))):
                state.image_id = hit
                return "cached"
            with step_images.scratch_root(b.images, b.snapshotter, self.b.paths.exec_root,
                                           parent, keep=True) as (snap, root):
                owner = copying.chown_ids(chown, root)
                archives = [s for s in sources if add and not s.is_dir and copying.is_archive(s.path)]
                plain = [s for s in sources if s not in archives]
                copying.write_sources(root, plain, archives, dest_abs, dest_dir, owner, excluded,
                                      chmod=chmod)
            layer = step_images.layer_of(b.images, b.snapshotter, snap, parent, self.epoch)
            parent_id = state.image_id
            state.image_id = step_images.commit_step(b.images, parent, state.config, created_by,
                                                      layer=layer, author=state.author,
                                                      epoch=self.epoch)
            b.cache.put(parent_id, key, state.image_id)
        return "built"

    async def _workdir(self, state: StageState, ins) -> AsyncIterator[BuildMessage]:
        path = workdir_path(state, self.lexer, tuple(ins.args))
        state.config = replace(state.config, working_dir=path)
        created_by = f"{step_images.SHELL_PREFIX}#(nop) WORKDIR {path}"
        if await self._cached(state, created_by):
            yield _out(" ---> Using cache\n")
            return
        parent = await asyncio.to_thread(self.b.images.get, state.image_id) if state.image_id else None
        layer = await asyncio.to_thread(self._mkdir_layer, parent, path)
        await self._commit(state, created_by, layer)

    def _mkdir_layer(self, parent, path: str):
        from conch.runtime.rootfs import secure_join

        b = self.b
        with step_images.scratch_root(b.images, b.snapshotter, b.paths.exec_root, parent,
                                       keep=True) as (snap, root):
            target = secure_join(str(root), path)
            if not os.path.isdir(target):
                os.makedirs(target, mode=0o755, exist_ok=True)
        return step_images.layer_of(b.images, b.snapshotter, snap, parent, self.epoch)


# -- helpers ---------------------------------------------------------------------------------

def source_date_epoch(build_args: Mapping[str, str]) -> int | None:
    """SOURCE_DATE_EPOCH (a build arg; the CLI passes its environment's as one, as
    buildx): image, history and layer times are clamped to it (reproducible builds)."""
    text = (build_args.get("SOURCE_DATE_EPOCH") or "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        raise InvalidArgument(f"invalid SOURCE_DATE_EPOCH: {text!r}") from None
    if value < 0:
        raise InvalidArgument(f"invalid SOURCE_DATE_EPOCH: {text!r}")
    return value


def _run_network(mode: str) -> str:
    """``networkmode`` for RUN containers: docker's classic builder gives them the
    default bridge unless asked otherwise ("default" is that bridge too)."""
    return "" if mode in ("", "default") else mode


def _out(text: str) -> BuildMessage:
    return BuildMessage(stream=text)


def _short(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


def _stage_alias(from_ins) -> str:
    words = " ".join(from_ins.args).split()
    return words[2] if len(words) == 3 else ""


def _needed_stages(stages, lexer, meta_args) -> list[int]:
    """The stages the last one (the target) needs, in order: those named by a FROM or
    a ``--from`` (COPY, RUN --mount) of a needed stage, transitively (BuildKit's graph;
    a stage nobody needs is not built, so its failure cannot fail the build)."""
    names = {}
    for i, (from_ins, _) in enumerate(stages):
        alias = _stage_alias(from_ins).lower()
        if alias:
            names.setdefault(alias, i)

    def refs(i: int) -> set[int]:
        from_ins, body = stages[i]
        out = set()
        try:
            words = expand_words(lexer, tuple(from_ins.args), False, meta_args)
        except ConchError:
            words = list(from_ins.args)
        candidates = [words[0]] if words else []
        for ins in body:
            for flag in ins.flags:
                key, _, value = flag.lstrip("-").partition("=")
                if key == "from":
                    candidates.append(value)
                elif key == "mount":
                    for part in value.split(","):
                        k, _, v = part.partition("=")
                        if k == "from":
                            candidates.append(v)
        for c in candidates:
            c = c.lower()
            j = names.get(c)
            if j is None and c.isdigit():
                j = int(c)
            if j is not None and j < i:
                out.add(j)
        return out

    needed = {len(stages) - 1}
    todo = [len(stages) - 1]
    while todo:
        for j in refs(todo.pop()):
            if j not in needed:
                needed.add(j)
                todo.append(j)
    return sorted(needed)


def _split_stages(instructions):
    """(meta ARGs before the first FROM, [(FROM, [instructions…])…])."""
    meta, stages = [], []
    for ins in instructions:
        if ins.name == "from":
            stages.append((ins, []))
        elif not stages:
            meta.append(ins)
        else:
            stages[-1][1].append(ins)
    if not stages:
        raise InvalidArgument("no build stage in current context")
    return meta, stages


def _label_step(labels: Mapping[str, str]) -> _Synthetic:
    pairs = tuple(sorted(labels.items()))
    return _Synthetic(name="label", args=pairs,
                      original="LABEL " + " ".join(f'"{k}"="{v}"' for k, v in pairs))


def _trigger(text: str):
    """An ONBUILD trigger of the base image, parsed as a one-line Dockerfile."""
    instructions = parse(text + "\n").instructions
    if len(instructions) != 1:
        raise InvalidArgument(f"bad ONBUILD trigger: {text!r}")
    return instructions[0]
