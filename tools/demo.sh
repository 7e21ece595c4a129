#!/usr/bin/env bash
# `make demo`: the seed lesson's scenarios (a Portuguese Docker lesson: packaging,
# containers are processes not VMs, horizontal scale, volumes, networks, tags) through
# conchd and the conch CLI, printing each command and its output.
#
# - Uses the default daemon (unix:///run/conch/conch.sock). When nothing answers there,
#   starts conchd in the background (log: /tmp/conch-demo-conchd.log) and stops it at
#   the end; a conchd that was already running is left alone.
# - Makes busybox:latest with `conch import` from Debian's busybox-static when missing
#   (Docker Hub is out of reach here) and keeps it: it is the image you play with next.
# - Everything else it creates (containers, the site folder, tags) is removed on exit,
#   also after a failure or Ctrl-C, so re-running always works.
# - Exits non-zero when a step fails. Needs root, like dockerd.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD
BIN=$REPO/.venv/bin
export PATH="$BIN:$PATH"   # `conch` in the printed commands is .venv/bin/conch
unset CONCH_HOST           # the demo is about the default daemon
SOCK=/run/conch/conch.sock
DAEMON_LOG=/tmp/conch-demo-conchd.log
PORT=8881
REG_PORT=5055

if [ "$(id -u)" != 0 ]; then
    echo "tools/demo.sh: run as root (containers need it, as with dockerd)" >&2
    exit 1
fi
for tool in "$BIN/conch" "$BIN/conchd" "$BIN/python"; do
    [ -x "$tool" ] || { echo "tools/demo.sh: $tool missing: run \`make setup\` first" >&2; exit 1; }
done

bold="" dim="" reset=""
if [ -t 1 ]; then   # no escape codes in logs and pipes
    bold=$(tput bold 2>/dev/null || true); dim=$(tput dim 2>/dev/null || true)
    reset=$(tput sgr0 2>/dev/null || true)
fi
T0=$(date +%s%N)
section() { printf '\n%s== %s ==%s\n' "$bold" "$*" "$reset"; }
say() { printf '%s# %s%s\n' "$dim" "$*" "$reset"; }
# run CMD...: print `$ CMD` (quoted the way you would type it), run it; a failure ends
# the demo (set -e) after a message naming the command.
run() {
    printf '%s$ %s%s\n' "$bold" "$(quote "$@")" "$reset"
    local rc=0
    "$@" || rc=$?
    if [ $rc -ne 0 ]; then
        echo "demo: \`$(quote "$@")\` failed (exit $rc)" >&2
        exit $rc
    fi
}
# Shell words as you would type them: bare when safe, else in single quotes.
quote() {
    local out="" a q="'"
    for a in "$@"; do
        if [[ $a =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then out+="$a "
        else out+="'${a//$q/$q\\$q$q}' "; fi
    done
    printf '%s' "${out% }"
}
alive() { "$BIN/python" -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.settimeout(1); s.connect(sys.argv[1])' "$SOCK" 2>/dev/null; }
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

# -- cleanup: whatever this demo made, also after a failure --------------------------------
DEMO_CONTAINERS=(hello-proc web-1 web-2 web-3 web-4 web-5 site diario container1 meu-container outro-container app)
DEMO_NETWORKS=(minha-rede)
DEMO_TAGS=(meu-usuario/minha-imagem:v1 "127.0.0.1:$REG_PORT/meu-usuario/minha-imagem:v1" minha-app:v1 minha-app:build)
SITE_DIR=""
BUILD_DIR=""
REG_DIR=""
REGISTRY_PID=""
STARTED_DAEMON=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if alive; then
        conch rm -f "${DEMO_CONTAINERS[@]}" >/dev/null 2>&1 || true
        conch rmi "${DEMO_TAGS[@]}" >/dev/null 2>&1 || true
        conch network rm "${DEMO_NETWORKS[@]}" >/dev/null 2>&1 || true
    fi
    [ -n "$SITE_DIR" ] && rm -rf "$SITE_DIR"
    [ -n "$BUILD_DIR" ] && rm -rf "$BUILD_DIR"
    if [ -n "$REGISTRY_PID" ]; then
        alive && conch logout "127.0.0.1:$REG_PORT" >/dev/null 2>&1 || true
        kill -TERM "$REGISTRY_PID" 2>/dev/null || true
        wait "$REGISTRY_PID" 2>/dev/null || true
    fi
    [ -n "$REG_DIR" ] && rm -rf "$REG_DIR"
    if [ -n "$STARTED_DAEMON" ]; then
        [ $rc -eq 0 ] && say "stopping the conchd this demo started (the conch CLI starts it again on first use)"
        kill -TERM "$STARTED_DAEMON" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$STARTED_DAEMON" 2>/dev/null || break; sleep 0.1; done
    fi
    if [ $rc -ne 0 ]; then
        echo "demo: FAILED (exit $rc); conchd's log: $( [ -n "$STARTED_DAEMON" ] && echo "$DAEMON_LOG" || echo /var/log/conch/conchd.log)" >&2
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# -- the daemon ----------------------------------------------------------------------------------
section "conchd"
if alive; then
    say "conchd already answers on unix://$SOCK: using it"
else
    # The conch CLI would start it by itself on first use (root, default socket); starting
    # it here instead lets the demo stop it at the end and keep its log in /tmp.
    mkdir -p /run/conch
    setsid "$BIN/conchd" -H "unix://$SOCK" </dev/null >>"$DAEMON_LOG" 2>&1 &
    STARTED_DAEMON=$!
    for _ in $(seq 100); do alive && break; kill -0 "$STARTED_DAEMON" 2>/dev/null || break; sleep 0.05; done
    if ! alive; then
        echo "demo: conchd did not come up; last lines of $DAEMON_LOG:" >&2
        tail -n 20 "$DAEMON_LOG" >&2
        exit 1
    fi
    say "started conchd (pid $STARTED_DAEMON, log $DAEMON_LOG); the demo stops it at the end"
fi
run conch version
# Containers left by an interrupted earlier run would make `--name` clash.
conch rm -f "${DEMO_CONTAINERS[@]}" >/dev/null 2>&1 || true
conch rmi "${DEMO_TAGS[@]}" >/dev/null 2>&1 || true
conch network rm "${DEMO_NETWORKS[@]}" >/dev/null 2>&1 || true

# -- 1. packaging ------------------------------------------------------------------------------------
section "1. Empacotamento: an image carries the app and its userland"
if ! conch image inspect busybox:latest >/dev/null 2>&1; then
    say "no busybox:latest yet, and Docker Hub is out of reach: import one from Debian's busybox-static"
    ROOTFS_TAR=$(mktemp /tmp/conch-demo-busybox.XXXXXX.tar)
    "$BIN/python" - "$ROOTFS_TAR" <<'PYEOF'
import subprocess, sys, tempfile
from pathlib import Path
from conch.testing.rootfs import busybox_rootfs
with tempfile.TemporaryDirectory() as tmp:
    rootfs = busybox_rootfs(Path(tmp) / "rootfs")
    subprocess.run(["tar", "-C", str(rootfs), "-cf", sys.argv[1], "."], check=True)
PYEOF
    run conch import "$ROOTFS_TAR" busybox:latest
    rm -f "$ROOTFS_TAR"
fi
run conch images
say "one command: unpack the image, start a container, print, exit, remove it"
run conch run --rm busybox echo "Olá! Eu rodo dentro de um container."
say "the container brings its own userland (busybox) but shares the host's kernel:"
run conch run --rm busybox uname -r
run uname -r

# -- 2. processes, not VMs ----------------------------------------------------------------------
section "2. Um container é um processo, não uma VM"
t=$(date +%s%N)
run conch run --rm busybox true
say "a whole container, created, run and removed, in $(ms_since "$t") ms: no guest OS to boot"
run conch run -d --name hello-proc busybox sleep 300
run conch ps
PID=$(conch inspect --format '{{.State.Pid}}' hello-proc)
say "its process is an ordinary host process (pid $PID), parented by a small conch-shim:"
run ps -o pid,ppid,etime,rss,args -p "$PID"
run ps -o pid,ppid,rss,comm -p "$(ps -o ppid= -p "$PID" | tr -d ' ')"
say "inside, it is PID 1 of its own pid namespace:"
run conch top hello-proc
run conch exec hello-proc ps
run conch inspect --format 'started at {{.State.StartedAt}}, status {{.State.Status}}' hello-proc

# -- 3. many instances ----------------------------------------------------------------------------
section "3. Várias instâncias ao mesmo tempo (escala horizontal)"
t=$(date +%s%N)
for i in 1 2 3 4 5; do
    run conch run -d --name "web-$i" --hostname "web-$i" busybox sh -c 'echo "réplica $(hostname) no ar"; exec sleep 300'
done
say "5 replicas of the same image started in $(ms_since "$t") ms"
run conch ps --filter name=web
run conch logs web-3
say "scaling in is removing replicas:"
run conch rm -f web-1 web-2 web-3 web-4 web-5
run conch ps

# -- 4. inspect ----------------------------------------------------------------------------------------
section "4. conch inspect"
run conch inspect --format '{{json .State}}' hello-proc
run conch inspect --format 'Image={{.Config.Image}} Cmd={{json .Config.Cmd}} Mounts={{json .Mounts}}' hello-proc
run conch rm -f hello-proc

# -- 5. bind mount: the seed's site ------------------------------------------------------------------
section "5. Volumes: a host folder mounted into a web server (the lesson's primeiro-teste.html)"
say "the lesson runs httpd:2.4 with -p 8881:80; here busybox httpd listens on port 80 of its"
say "container and -p publishes it on the host's port $PORT (a kernel DNAT rule, no proxy process)"
SITE_DIR=$(mktemp -d /tmp/meu-site.XXXXXX)
chmod 755 "$SITE_DIR"
cat >"$SITE_DIR/primeiro-teste.html" <<'EOF'
<!DOCTYPE html>
<html>
  <head><title>Docker é muito bom!</title><meta charset="utf-8"></head>
  <body>
    <h1>Minha primeira página rodando em Docker.</h1>
    <p>Estou começando minha primeira página em HTML.</p>
  </body>
</html>
EOF
if "$BIN/python" -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' "$PORT" 2>/dev/null; then
    echo "demo: something already listens on 127.0.0.1:$PORT; stop it and re-run" >&2
    exit 1
fi
run ls -la "$SITE_DIR"
run conch run -d --name site -p "$PORT:80" -v "$SITE_DIR:/www" busybox httpd -f -p 80 -h /www
run conch port site
# The host's wget when there is one, else busybox's (busybox-static is a conch dependency).
if command -v wget >/dev/null; then WGET=(wget); else WGET=(busybox wget); fi
URL="http://127.0.0.1:$PORT/primeiro-teste.html"
fetch() { "${WGET[@]}" -qO- "$URL"; }
for _ in $(seq 50); do fetch >/dev/null 2>&1 && break; sleep 0.1; done
run "${WGET[@]}" -qO- "$URL"
say "edit the file on the host; the container serves the new version at once:"
run sed -i -e 's|rodando em Docker.|rodando em Docker, que maravilha!|' \
    -e 's|em HTML.|em HTML e estou muito feliz! #VQV|' "$SITE_DIR/primeiro-teste.html"
run "${WGET[@]}" -qO- "$URL"
fetch | grep -q "que maravilha" || { echo "demo: the edited page was not served" >&2; exit 1; }
run conch inspect --format '{{json .Mounts}}' site
say "httpd is PID 1 in its container with no SIGTERM handler, so TERM is ignored: -t 1 sends KILL after 1 s (Docker waits 10)"
run conch stop -t 1 site
run conch rm site
say "the container is gone; the host folder and the page are intact:"
run ls -la "$SITE_DIR"

# -- 6. networks ---------------------------------------------------------------------------------------
section "6. Redes: bridge, none, host, minha-rede, --link"
run conch network ls
say "the default bridge: an address, a gateway and outbound NAT for every container"
run conch run --rm busybox sh -c 'ip -o -4 addr show eth0; ip route'
say "--network none: an isolated network namespace with only lo"
run conch run --rm --network none busybox ip addr
say "--network host shares the host's whole stack (the host's interfaces):"
run conch run --rm --network host busybox sh -c 'ip -o link | cut -d" " -f2 | tr "\n" " "; echo'
say "--link on the default bridge: container2 finds container1 by name (/etc/hosts)"
run conch run -d --name container1 busybox sleep 300
run conch run --rm --link container1 --name container2 busybox ping -c1 -W2 container1
say "a network of our own: containers on it find each other by name (embedded DNS)"
run conch network create -d bridge minha-rede
run conch run -d --network minha-rede --name meu-container busybox sleep 300
run conch run -d --network minha-rede --name outro-container busybox sleep 300
run conch exec meu-container ping -c1 -W2 outro-container
run conch network ls
say "connect a running container: a new interface appears in it at once; disconnect: gone"
run conch network connect minha-rede container1
run conch exec container1 ip -o -4 addr
run conch exec container1 ping -c1 -W2 meu-container
run conch network disconnect minha-rede container1
run conch exec container1 ip -o -4 addr
run conch rm -f container1 meu-container outro-container
run conch network rm minha-rede

# -- 7. logs, exec, stop, rm --------------------------------------------------------------------------
section "7. logs, exec, stop, rm"
run conch run -d --name diario busybox sh -c 'trap "echo tchau; exit 0" TERM; for i in 1 2 3; do echo "linha $i"; done; while :; do sleep 1; done'
for _ in $(seq 50); do [ "$(conch logs diario 2>/dev/null | wc -l)" -ge 3 ] && break; sleep 0.1; done
run conch logs diario
run conch exec diario sh -c 'echo "hello from exec, in $(hostname), as $(id -un)"'
run conch exec -e MENSAGEM=oi diario sh -c 'echo "MENSAGEM=$MENSAGEM"'
say "this one traps SIGTERM, so stop is quick and the goodbye lands in the log:"
run conch stop diario
run conch ps -a --filter name=diario --format '{{.Names}}: {{.Status}}'
run conch logs --tail 1 diario
run conch rm diario

# -- 8. tag, rmi -----------------------------------------------------------------------------------------
section "8. tag and rmi"
run conch tag busybox meu-usuario/minha-imagem:v1
run conch images
run conch rmi meu-usuario/minha-imagem:v1
run conch images

# -- 9. a registry: the lesson's Docker Hub ------------------------------------------------------------
section "9. Docker Hub: login, push, rmi -f, pull (conch registry serve plays Docker Hub)"
say "Docker Hub is out of reach here; \`conch registry serve\` is a real registry (OCI distribution"
say "spec, htpasswd users, token auth) on 127.0.0.1:$REG_PORT with its storage in a temp folder"
if "$BIN/python" -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' "$REG_PORT" 2>/dev/null; then
    echo "demo: something already listens on 127.0.0.1:$REG_PORT; stop it and re-run" >&2
    exit 1
fi
REG_DIR=$(mktemp -d /tmp/conch-demo-registry.XXXXXX)
"$BIN/python" -c 'import bcrypt,sys; print("meu-usuario:" + bcrypt.hashpw(sys.argv[1].encode(), bcrypt.gensalt(5)).decode())' \
    senha-secreta >"$REG_DIR/htpasswd"
conch registry serve --addr "127.0.0.1:$REG_PORT" --root "$REG_DIR/storage" --htpasswd "$REG_DIR/htpasswd" \
    </dev/null >"$REG_DIR/log" 2>&1 &
REGISTRY_PID=$!
for _ in $(seq 100); do grep -q "listening on" "$REG_DIR/log" && break; sleep 0.05; done
grep -q "listening on" "$REG_DIR/log" || { echo "demo: the registry did not start:" >&2; cat "$REG_DIR/log" >&2; exit 1; }
HUB="127.0.0.1:$REG_PORT"
echo senha-secreta | run conch login -u meu-usuario --password-stdin "$HUB"
run conch tag busybox "$HUB/meu-usuario/minha-imagem:v1"
run conch push "$HUB/meu-usuario/minha-imagem:v1"
IMAGE_ID=$(conch images -q busybox)
if [ -z "$(conch ps -aq --filter "ancestor=$IMAGE_ID")" ]; then
    say "remove the image by ID, every name of it (busybox:latest too), as the lesson does:"
    run conch rmi -f "$IMAGE_ID"
else   # your own containers use busybox: only take this name away
    say "containers of yours use busybox, so only this name goes (the layers stay):"
    run conch rmi -f "$HUB/meu-usuario/minha-imagem:v1"
fi
run conch images
run conch pull "$HUB/meu-usuario/minha-imagem:v1"
run conch run --rm "$HUB/meu-usuario/minha-imagem:v1" echo "Vim do registry!"
conch tag "$HUB/meu-usuario/minha-imagem:v1" busybox:latest   # the image you keep, as before
run conch images
run conch logout "$HUB"
run conch system df

# -- 10. multi-stage build ---------------------------------------------------------------------------
section "10. Multi-stage: FROM … AS build-stage, COPY --from=build-stage, a small final image"
say "the lesson builds a React app in node:10 and serves it from nginx; with no Docker Hub here,"
say "both stages start FROM busybox: the first 'builds' the site (with a 2 MB toolbox the final"
say "image does not need), the second keeps only the result and serves it with httpd"
BUILD_DIR=$(mktemp -d /tmp/conch-demo-build.XXXXXX)
mkdir -p "$BUILD_DIR/src" "$BUILD_DIR/public"
echo '<h1>Multi-stage com conch</h1>' >"$BUILD_DIR/public/index.html"
echo 'echo "<p>construído em $(date -u +%Y-%m-%d) por $(uname -s)</p>"' >"$BUILD_DIR/src/build.sh"
cat >"$BUILD_DIR/Dockerfile" <<'EOF'
### Estágio 1 - O processo de build
FROM busybox AS build-stage
WORKDIR /usr/src/app
COPY ["./src", "./src"]
COPY ["./public", "./public"]
RUN dd if=/dev/zero of=toolbox.bin bs=1M count=2 2>/dev/null \
 && mkdir build && cp public/index.html build/ && sh src/build.sh >> build/index.html

### Estágio 2 - O ambiente de produção
FROM busybox
COPY --from=build-stage /usr/src/app/build /www
EXPOSE 80
CMD ["httpd", "-f", "-p", "80", "-h", "/www"]
EOF
run cat "$BUILD_DIR/Dockerfile"
run conch build -t minha-app:build --target build-stage "$BUILD_DIR"
run conch build -t minha-app:v1 "$BUILD_DIR"
run conch images minha-app
say "the final image has busybox and the built page; the 2 MB toolbox stayed in build-stage"
run conch run -d --name app -p "$PORT:80" minha-app:v1
URL="http://127.0.0.1:$PORT/"
for _ in $(seq 50); do fetch >/dev/null 2>&1 && break; sleep 0.1; done
run "${WGET[@]}" -qO- "$URL"
run conch rm -f app
run conch rmi minha-app:v1 minha-app:build

section "done in $(ms_since "$T0") ms"
say "busybox:latest stays for your own experiments (\`conch rmi busybox\` removes it)"
