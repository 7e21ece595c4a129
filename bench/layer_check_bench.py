"""CPU cost of the one verdict on a layer's entries (issue 15 item 7): ``apply_layer`` (a
pull's unpack, which runs ``check_entry`` on every entry first) and ``check_layer``
(``docker load``'s check: the entry rules plus the in-memory tree model), on the worst
case for per-entry cost: 20,400 entries of 100-byte files, directories and symlinks.

    .venv/bin/python bench/layer_check_bench.py [DEST_PARENT]     (default /dev/shm)

Prints the least process CPU time of 7 runs of each. To compare with an older commit:
``git archive <commit> | tar -x -C /tmp/old`` and run this file with PYTHONPATH=/tmp/old.
"""

from __future__ import annotations

import io
import shutil
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from conch.archive.apply import apply_layer
from conch.archive.check import check_layer


def layer(dirs: int = 200, files: int = 100) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in range(dirs):
            info = tarfile.TarInfo(f"usr/d{d}")
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
            for f in range(files):
                info = tarfile.TarInfo(f"usr/d{d}/f{f}")
                info.size = 100
                tar.addfile(info, io.BytesIO(b"x" * 100))
            info = tarfile.TarInfo(f"usr/d{d}/link")
            info.type, info.linkname = tarfile.SYMTYPE, "../d0"
            tar.addfile(info)
    return buf.getvalue()


def least_cpu(fn, parent: str, runs: int = 7) -> float:
    times = []
    for _ in range(runs):
        dest = Path(tempfile.mkdtemp(dir=parent))
        try:
            t0 = time.process_time()
            fn(dest)
            times.append(time.process_time() - t0)
        finally:
            shutil.rmtree(dest)
    return min(times)


def main() -> None:
    parent = sys.argv[1] if len(sys.argv) > 1 else "/dev/shm"
    data = layer()
    print(f"layer: 20400 entries, {len(data)} bytes")
    print(f"apply_layer  {least_cpu(lambda d: apply_layer(io.BytesIO(data), d), parent):.3f} s CPU")
    print(f"check_layer  {least_cpu(lambda d: check_layer(io.BytesIO(data)), parent):.3f} s CPU")


if __name__ == "__main__":
    main()
