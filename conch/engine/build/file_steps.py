"""The steps that write files: COPY/ADD (sources from the context, a stage or an image,
:mod:`conch.engine.build.copying`) and WORKDIR (the directory made in a layer), each on a
private mount of the parent's snapshot, committed as the step's layer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import AsyncIterator

from conch.engine.build import buildkit_syntax as bks
from conch.engine.build import copying
from conch.engine.build import step_images, step_results
from conch.engine.build.messages import BuildMessage, message
from conch.engine.build.steps import StageState, expand_words, flag_values, workdir_path
from conch.errors import InvalidArgument


log = logging.getLogger(__name__)


class FileSteps:
    """COPY/ADD and WORKDIR: the parent's snapshot mounted privately, written into and
    committed (a mixin of the builder's ``_Build``)."""

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
        parent = state.lazy if state.lazy is not None else (
            await asyncio.to_thread(self.b.images.get, state.image_id) if state.image_id else None)
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
            yield message(" ---> Using cache\n")

    async def _copy_source(self, ref: str):
        if not ref:
            return None
        index = self.stage_index.get(ref.lower())
        if index is None and ref.isdigit() and int(ref) in self.stage_futures:
            index = int(ref)
        stage = await self._stage_state(index) if index is not None and index in self.stage_futures else None
        if stage is not None:
            if stage.lazy is not None:  # a deferred stage: its snapshots are mounted
                return stage.lazy
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
        reuse = from_flag and alt_root is None and source_image is not None
        with contextlib.nullcontext(self._stage_root(source_image)) if reuse \
                else copying.source_root(b, self.ctx, source_image, from_flag, alt_root) as src_root:
            excluded = (None if from_flag or alt_root is not None or self.ignore is None
                        else copying.ContextFilter(self.ignore))
            sources = copying.plan(src_root, srcs, excluded, context=not from_flag and alt_root is None)
            digest = copying.source_hash(sources, excluded)
            created_by = f"{step_images.SHELL_PREFIX}#(nop) {verb} {digest} in {dest} "
            key = created_by + (f"\0chown={chown}" if chown else "") + (
                f"\0chmod={chmod:o}" if chmod is not None else "")
            if not self.opts.no_cache and self._take_hit(state, (
                    b.cache.get(state.result, key)
                    or (not chown and chmod is None and self.opts.cache_from
                        and self._from_sources(state, created_by)))):
                return "cached"
            with step_images.scratch_root(b.images, b.snapshotter, self.b.paths.exec_root,
                                           parent, keep=True) as (snap, root):
                owner = copying.chown_ids(chown, root)
                archives = [s for s in sources if add and not s.is_dir and copying.is_archive(s.path)]
                plain = [s for s in sources if s not in archives]
                copying.write_sources(root, plain, archives, dest_abs, dest_dir, owner, excluded,
                                      chmod=chmod)
            self._file_step_done(state, parent, snap, created_by, key)
        return "built"

    def _file_step_done(self, state, parent, snap: str, created_by: str, key: str) -> None:
        """Worker thread: a COPY/ADD/WORKDIR's written snapshot ``snap`` (unmounted) as
        the step's result: a step snapshot in a deferred stage, else a layer and image."""
        b = self.b
        if state.defer:
            step_id = b.cache.step_id(state.result, key)
            try:
                snapshot = step_results.commit_snapshot(b.snapshotter, snap, step_id, self.epoch)
            except BaseException:
                with contextlib.suppress(Exception):
                    b.snapshotter.remove(snap)
                raise
            self._advance(state, created_by, snapshot, key, step_id)
            return
        layer = step_images.layer_of(b.images, b.snapshotter, snap, parent, self.epoch)
        parent_id = state.image_id
        state.image_id = step_images.commit_step(b.images, parent, state.config, created_by,
                                                  layer=layer, author=state.author,
                                                  epoch=self.epoch)
        self.replaced += b.cache.put(parent_id, key, state.image_id)

    def _stage_root(self, image) -> Path:
        """Worker thread: ``image``'s filesystem mounted (a private snapshot) once per
        build, however many COPY --from read it; unmounted by :meth:`_close_roots`."""
        key = str(image.id)
        with self._roots_lock:
            if self._roots_closed:  # the build is over (failed): mount nothing more
                raise InvalidArgument("build cancelled")
            if key not in self._roots:
                cm = step_images.scratch_root(self.b.images, self.b.snapshotter,
                                              self.b.paths.exec_root, image)
                self._roots[key] = cm.__enter__()[1]
                self._root_cms.append(cm)
            return self._roots[key]

    def _close_roots(self) -> None:
        with self._roots_lock:
            self._roots_closed = True
            while self._root_cms:
                cm = self._root_cms.pop()
                try:
                    cm.__exit__(None, None, None)
                except Exception:  # noqa: BLE001 - the others still go
                    log.warning("build: unmounting a COPY --from source failed", exc_info=True)
            self._roots.clear()

    async def _workdir(self, state: StageState, ins) -> AsyncIterator[BuildMessage]:
        path = workdir_path(state, self.lexer, tuple(ins.args))
        state.config = replace(state.config, working_dir=path)
        created_by = f"{step_images.SHELL_PREFIX}#(nop) WORKDIR {path}"
        if await self._cached(state, created_by):
            yield message(" ---> Using cache\n")
            return
        parent = state.lazy if state.lazy is not None else (
            await asyncio.to_thread(self.b.images.get, state.image_id) if state.image_id else None)
        await asyncio.to_thread(self._mkdir_step, state, parent, path, created_by)

    def _mkdir_step(self, state, parent, path: str, created_by: str) -> None:
        from conch.runtime.rootfs import secure_join

        b = self.b
        with step_images.scratch_root(b.images, b.snapshotter, b.paths.exec_root, parent,
                                       keep=True) as (snap, root):
            target = secure_join(str(root), path)
            if not os.path.isdir(target):
                os.makedirs(target, mode=0o755, exist_ok=True)
        self._file_step_done(state, parent, snap, created_by, created_by)
