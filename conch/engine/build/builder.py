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
   committed as ``docker commit`` does (:mod:`conch.engine.build.run_step`); COPY/ADD/WORKDIR
   a snapshot of the parent mounted privately, written into, and committed
   (:mod:`conch.engine.build.file_steps`, :mod:`conch.engine.build.copying`,
   :mod:`conch.engine.build.step_images`). A step's layer is made once from its
   snapshot, and the snapshot is kept as that layer's unpacked form
   (:mod:`conch.engine.build.layers`): nothing is unpacked again. Stages form a graph
   (:mod:`conch.engine.build.stages`): only the stages the target needs are built, each
   as its own task once the stages it names are done (independent stages at once; a
   failure cancels the rest), their output held back into stage order. The stream's
   records are :mod:`conch.engine.build.messages`'.
   Stages the target only reads from (``COPY --from``, ``RUN --mount=from``, or
   that it is built ``FROM``) are *deferred*: their steps leave committed snapshots and
   step-cache records, never layer blobs or images (:mod:`conch.engine.build.step_results`;
   their `` ---> <id>`` is the step's cache key, not an image). An exported stage built
   FROM one makes its layers then, once. Not with ``cachefrom`` (it matches image
   histories) or ``rm=false`` (the RUN container keeps its snapshot).
4. Before each step the step cache (:class:`step_images.StepCache`) is asked for an
   image made from a parent with the same content by the same instruction
   (`` ---> Using cache``); ``no_cache`` skips the lookup.
5. ``SOURCE_DATE_EPOCH`` (a build arg; the CLI passes its environment's): image and
   history times are set to it and layer mtimes clamped to it, so the same inputs
   give the same image ID (layers are written in name order, gzip without mtime).
6. ``labels`` are applied as a last LABEL step (as docker appends one); the final image
   is tagged with each ``tags`` entry.

Intermediate RUN containers are removed (in the background, awaited before the build
ends) after their step when ``remove`` (docker's
``rm``, default true); a failed step's container is kept unless ``force_remove``, as
docker does. The context directory and every mount go whatever happens.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import AsyncIterator, BinaryIO, Mapping

from conch.build.dockerignore import DockerIgnore
from conch.build.parser import parse
from conch.build.shell import Lexer
from conch.engine.build import step_images, step_results
from conch.engine.build.file_steps import FileSteps
from conch.engine.build.messages import BuildMessage, message, short_id
from conch.engine.build.run_step import RunStep
from conch.engine.build.stages import needed_stages, split_stages, stage_alias
from conch.engine.build.steps import (CONFIG_STEPS, PREDEFINED_ARGS, StageState, apply_config_step,
                                      expand_words, flag_values, validate)
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
        running = step_results.build_running()
        running.__enter__()
        run = None
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
            # step snapshots whose cache entries this build replaced (--no-cache): gone
            # unless another build may be about to use them (then the next start's
            # reconcile or builder prune takes them)
            if run is not None and run.replaced and step_results.alone():
                await asyncio.shield(asyncio.to_thread(
                    step_results.drop_snapshots, self.snapshotter, run.replaced))
            running.__exit__(None, None, None)

    def _unpack_context(self, stream: BinaryIO) -> str:
        from conch.archive.apply import apply_layer

        d = tempfile.mkdtemp(dir=self.images.tmp_dir(), prefix="build-context-")
        try:
            apply_layer(stream, Path(d), whiteout_format="none")  # a tar, not a layer
        except BaseException:
            shutil.rmtree(d, ignore_errors=True)
            raise
        return d


class _Build(RunStep, FileSteps):
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
        self._roots: dict[str, Path] = {}  # COPY --from sources, mounted once per build
        self._root_cms: list = []
        self._roots_lock = threading.Lock()
        self._roots_closed = False
        self._removals: list[asyncio.Future] = []  # RUN containers being removed
        # stages other than the target keep their steps as snapshots (step_results),
        # unless cache-from (it matches image histories) or --rm=false (the RUN
        # container keeps its snapshot) needs every step to be an image
        self.defer_ok = not opts.cache_from and (opts.remove or opts.force_remove)
        self.final_index = -1
        self.replaced: list[str] = []  # step snapshots whose cache entries were replaced
        if self.epoch is not None:  # a step's image then depends on it too
            builder.cache = builder.cache.salted(f"SOURCE_DATE_EPOCH={self.epoch}")

    # -- the whole build ---------------------------------------------------------------
    async def steps(self) -> AsyncIterator[BuildMessage]:
        df = parse(await asyncio.to_thread(self._read_dockerfile))
        self.lexer = Lexer(df.escape)
        if df.syntax:
            yield message(f"[note] # syntax={df.syntax}: the frontend is not fetched; conch's "
                       "built-in Dockerfile frontend (BuildKit's syntax) is used\n")
        for ins in df.instructions:
            validate(ins)
        meta, stages = split_stages(df.instructions)
        stages = self._up_to_target(stages)
        for ins in meta:
            self._meta_arg(ins)
        needed = needed_stages(stages, self.lexer, self.meta_args)
        self.final_index = needed[-1]
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
        self.stage_index = {stage_alias(f).lower(): i for i, (f, _) in enumerate(stages) if stage_alias(f)}
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
            await asyncio.shield(asyncio.to_thread(self._close_roots))
            if self._removals:  # the RUN containers removed in the background
                done = await asyncio.shield(asyncio.gather(*self._removals, return_exceptions=True))
                for exc in done:
                    if isinstance(exc, Exception):
                        log.warning("build: removing an intermediate container failed: %s", exc)
        self.stages = [self.stage_futures[i].result() for i in needed]
        final = self.stages[-1]
        if not final.image_id:  # FROM scratch and nothing else: docker makes an empty image
            await self._commit(final, step_images.nop_created_by("FROM scratch"))
        unused = sorted(set(self.opts.build_args) - {a for s in self.stages for a in s.used_args}
                        - self.used_meta - PREDEFINED_ARGS)
        if unused:
            yield message(f"[Warning] One or more build-args [{' '.join(unused)}] were not consumed\n")
        self.final_id = final.image_id
        yield BuildMessage(aux_id=final.image_id)
        yield message(f"Successfully built {short_id(final.image_id)}\n")
        for tag in self.opts.tags:
            await asyncio.to_thread(self.b.images.tag, final.image_id, tag)
            yield message(f"Successfully tagged {Reference.parse(tag).familiar()}\n")

    async def _stage_task(self, index: int, stage, first_step: int, extra, queue: asyncio.Queue) -> None:
        """One stage, start to end: its messages into ``queue`` (None at the end, the
        exception when it fails); its StageState into its future."""
        from_ins, body = stage
        step = first_step
        fut = self.stage_futures[index]

        def line(ins) -> BuildMessage:
            nonlocal step
            step += 1
            return message(f"Step {step}/{self.total} : {ins.original.strip()}\n")

        try:
            queue.put_nowait(line(from_ins))
            state = await self._from(from_ins, index)
            queue.put_nowait(message(f" ---> {short_id(state.step_id)}\n"))
            for trigger in state.triggers:
                async for msg in self._dispatch(state, trigger):
                    queue.put_nowait(msg)
            for ins in list(body) + list(extra):
                queue.put_nowait(line(ins))
                async for msg in self._dispatch(state, ins):
                    queue.put_nowait(msg)
                queue.put_nowait(message(f" ---> {short_id(state.step_id)}\n"))
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
        return message(f"Step {self.step}/{self.total} : {ins.original.strip()}\n")

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
            if stage_alias(from_ins).lower() == self.opts.target.lower():
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
        defer = self.defer_ok and index != self.final_index
        lazy = None
        if name.lower() == "scratch":
            image = None
        elif earlier is not None and earlier < index:
            before = await self._stage_state(earlier)
            image_id = before.image_id
            if before.lazy is not None and defer:  # this stage goes on from its snapshots
                lazy = before.lazy
            elif before.lazy is not None:  # exported: its layers are made now, once
                image_id = await asyncio.to_thread(self._materialize, before.lazy)
            image = await asyncio.to_thread(self.b.images.get, image_id) if image_id else None
        else:
            image = await self._base_image(name)
        config = (lazy.config.config if lazy is not None
                  else image.config.config if image is not None else None) or ExecutionConfig()
        triggers = tuple(config.on_build or ())
        if not config.env:  # docker's setDefaultPath
            config = replace(config, env=(DEFAULT_PATH,))
        state = StageState(name=words[2].lower() if len(words) == 3 else str(index),
                           image_id=str(image.id) if image is not None else "",
                           config=replace(config, on_build=None),
                           build_args=dict(self.opts.build_args), meta_args=self.meta_args)
        state.triggers = [_trigger(t) for t in triggers]
        state.defer = defer and image is not None  # a Lazy stands on an image
        state.lazy = lazy
        return state

    def _materialize(self, lazy) -> str:
        """Worker thread: a deferred stage's result as an image (an exported stage is
        built FROM it); remembered in the step cache, so a warm build tars nothing."""
        key = "\0export"
        hit = None if self.opts.no_cache else self.b.cache.get(lazy, key)
        if isinstance(hit, str):
            return hit
        image_id = step_results.materialize(self.b.images, self.b.snapshotter, lazy)
        self.replaced += self.b.cache.put(lazy, key, image_id)
        return image_id

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
            raise InvalidArgument("FROM inside a stage")  # split_stages never lets one through
        else:
            raise InvalidArgument(f"unknown instruction: {name.upper()}")

    async def _cached(self, state: StageState, key: str) -> bool:
        if self.opts.no_cache:
            return False
        hit = await asyncio.to_thread(self.b.cache.get, state.result, key)
        if hit is None and self.opts.cache_from:
            hit = await asyncio.to_thread(self._from_sources, state, key)
        return self._take_hit(state, hit)

    @staticmethod
    def _take_hit(state: StageState, hit) -> bool:
        """A cache hit becomes the stage's result: an image anywhere, a Lazy only in a
        deferred stage (an exported stage's steps must be images: a miss there)."""
        if not hit:  # None (or a falsy "no source" from the cache-from chain)
            return False
        if isinstance(hit, step_results.Lazy):
            if not state.defer:
                return False
            state.lazy = hit
            return True
        state.image_id, state.lazy = hit, None
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
        if state.defer:  # a config-only step of a deferred stage: no image, no blob
            await asyncio.to_thread(self._advance, state, created_by, None, key or created_by)
            return
        parent = await asyncio.to_thread(self.b.images.get, state.image_id) if state.image_id else None
        parent_id = state.image_id
        state.image_id = await asyncio.to_thread(
            step_images.commit_step, self.b.images, parent, state.config, created_by,
            layer=layer, author=state.author, epoch=self.epoch)
        self.replaced += await asyncio.to_thread(self.b.cache.put, parent_id, key or created_by,
                                                 state.image_id)

    def _advance(self, state: StageState, created_by: str, snapshot: str | None, key: str,
                 step_id: str | None = None) -> None:
        """Worker thread: a deferred stage's step result (``snapshot``: the committed
        step snapshot of its files, None when it wrote none) and its cache entry."""
        parent = state.lazy if state.lazy is not None else self.b.images.get(state.image_id)
        result = state.result
        state.lazy = step_results.advance(
            parent, state.config, created_by, snapshot=snapshot, author=state.author,
            epoch=self.epoch, step_id=step_id or self.b.cache.step_id(result, key))
        self.replaced += self.b.cache.put(result, key, state.lazy)

    async def _config_commit(self, state: StageState, comment: str) -> AsyncIterator[BuildMessage]:
        created_by = step_images.nop_created_by(comment)
        if await self._cached(state, created_by):
            yield message(" ---> Using cache\n")
            return
        await self._commit(state, created_by)


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
