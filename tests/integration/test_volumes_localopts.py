"""conch.volumes.localopts against the real mount(8) (root; a tmpfs in a temp dir)."""

from __future__ import annotations

import os

import pytest

from conch.volumes import localopts

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root")


def test_a_device_that_looks_like_an_option_is_a_source(tmp_path):
    # `volume create -o type=tmpfs -o device=--help`: without "--" mount(8) would print
    # its help, exit 0, and the volume would silently be a plain directory
    target = tmp_path / "_data"
    target.mkdir()
    opts = localopts.validate("v", {"type": "tmpfs", "device": "--help", "o": "size=1m"})
    localopts.mount(opts, str(target))
    try:
        assert localopts.is_mounted(str(target))
    finally:
        localopts.unmount(str(target))
    assert not localopts.is_mounted(str(target))
