"""Helpers the ``conch build`` end-to-end tests share: a build context written to disk and
the per-test ``images`` fixture (names to ``rmi`` after the test, then the leak check of
:func:`conch.testing.daemon.clean_after`)."""

from __future__ import annotations

from pathlib import Path

from conch.testing.daemon import clean_after


def write_context(directory: Path, dockerfile: str, files: dict[str, str] | None = None,
                  name: str = "Dockerfile") -> Path:
    """Write ``dockerfile`` (as ``name``) and ``files`` (relative path -> text) under
    ``directory``, created if missing; returns ``directory``, the build context."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(dockerfile)
    for rel, text in (files or {}).items():
        p = directory / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return directory


def images_fixture():
    """A function-scoped pytest fixture ``images`` (needs the module's ``daemon``
    fixture): yields a list the test appends image names to; afterwards each is removed
    (``rmi -f``) and the host is checked for leaks."""
    import pytest

    @pytest.fixture
    def images(daemon):
        guard = clean_after(daemon)
        next(guard)
        names: list[str] = []
        yield names
        for name in names:
            daemon.conch("rmi", "-f", name)
        next(guard, None)

    return images
