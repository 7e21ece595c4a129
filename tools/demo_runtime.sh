#!/usr/bin/env bash
# Demo of conch-runtime on its own: build a busybox bundle, then `run` a few probes in
# it, printing each command and what the container printed. RUNTIME=runc (or crun)
# runs the same probes through another runtime for comparison.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PY=.venv/bin/python
RUNTIME=${RUNTIME:-.venv/bin/conch-runtime}
WORK=$(mktemp -d /tmp/conch-demo.XXXXXX)
ROOT="$WORK/state"
trap 'rm -rf "$WORK"' EXIT

$PY - "$WORK/bundle" <<'PYEOF'
import sys
from conch.testing.bundles import make_bundle
make_bundle(sys.argv[1], ["sh"], hostname="conch-demo")
PYEOF
echo "bundle: $WORK/bundle (busybox rootfs, Docker's default capabilities)"
echo "runtime: $RUNTIME"

n=0
probe() {
    local script=$1
    n=$((n + 1))
    "$PY" - "$WORK/bundle/config.json" "$script" <<'PYEOF'
import json, sys, uuid
path, script = sys.argv[1], sys.argv[2]
spec = json.load(open(path))
spec["process"]["args"] = ["sh", "-c", script]
spec["linux"]["cgroupsPath"] = f"/conch-test/demo-{uuid.uuid4().hex[:8]}"
json.dump(spec, open(path, "w"), indent=2)
PYEOF
    echo
    echo "\$ $(basename "$RUNTIME") run demo$n    # sh -c '$script'"
    "$RUNTIME" --root "$ROOT" run --bundle "$WORK/bundle" "demo$n" </dev/null
    echo "[exit $?]"
}

probe 'hostname'
probe 'id'
probe 'cat /proc/self/status | grep Cap'
probe 'ls /'
probe 'echo "my pid is $$"; cat /proc/1/cmdline | tr "\0" " "; echo'
probe 'exit 3'
# The demo's cgroups share a parent that runtimes leave in place; tidy it when empty.
rmdir /sys/fs/cgroup/*/conch-test 2>/dev/null || true
