# conch developer entry points. Everything here is idempotent: stamp files under
# build/stamps/ (gitignored) make the second `make setup` / `make test-deps` instant.
#
#   make setup      busybox-static, gcc (what conch itself needs) + .venv + pip install -e .[test]
#                   + build/conch-shim
#   make test-deps  side-by-side anchors for differential/compat tests (never conch deps)
#   make test       setup + test-deps + pytest over tests/
#   make demo       tools/demo.sh: the seed lesson's scenarios through conchd + the conch CLI
#   make bench-deps Debian's docker.io and docker-registry, the anchors of the benches
#   make install    conch into $(PREFIX)/venv (default /opt/conch), conch/conchd in $(BINDIR),
#                   the systemd units (contrib/systemd) and an example /etc/conch/daemon.json
#   make bench      bench/runtime_bench.py (conch-runtime vs runc vs crun) and
#                   bench/daemon_bench.py (conch vs docker vs podman, whole engine) and
#                   bench/registry_bench.py (conch registry vs CNCF distribution, blob MB/s)

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := test

VENV     := .venv
STAMPS   := build/stamps
RTFRONT  := build/conch-runtime
PYTEST_ARGS ?= -q
APT_ENV  := DEBIAN_FRONTEND=noninteractive
# Packages conch itself needs at run time / for its own tests' rootfs. gcc and libc6-dev
# are conch dependencies: they build conch-shim, the per-container supervisor written in C
# (like conmon) so that each running container costs well under 1 MiB, not a Python process.
# nftables: the `nft` tool conch.network.firewall drives (NAT, isolation, published ports).
SYSTEM_PACKAGES := busybox-static gcc libc6-dev nftables
# Reference runtimes and tools the differential and compat tests compare against.
# openssl: the registry server's TLS test makes a throwaway certificate with it.
# docker-registry (CNCF distribution): tests/e2e/test_registry.py pushes to and pulls from
# its own instance on 127.0.0.1 (apache2-utils: htpasswd, for trying auth by hand).
# containerd: Debian's 1.6 with its runc v2 shim; tests/compat/test_containerd.py runs a
# private one (conch.testing.containerd) driving conch-runtime as its runc binary.
TEST_DEP_PACKAGES := runc crun podman conmon skopeo uidmap openssl docker-registry apache2-utils containerd
# What bench/daemon_bench.py compares conch with (never a conch dependency). dockerd is
# started by the bench itself with private roots; the package's own service must not start.
# docker-registry (CNCF distribution) and curl: bench/registry_bench.py's anchor and client;
# the bench runs its own docker-registry on 127.0.0.1 (the policy-rc.d below keeps the service off).
BENCH_DEP_PACKAGES := docker.io docker-registry curl

.PHONY: setup test-deps bench-deps test demo bench clean install

setup: $(STAMPS)/system $(STAMPS)/venv $(STAMPS)/shim

test-deps: $(STAMPS)/test-deps

bench-deps: $(STAMPS)/bench-deps

# apt-get install; `apt-get update` only when the package lists don't know a package.
define apt_install
	missing=""; for p in $(1); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null \
	    | grep -q "install ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	    echo "apt-get install$$missing"; \
	    $(APT_ENV) apt-get install -y --no-install-recommends $$missing \
	    || { $(APT_ENV) apt-get update && $(APT_ENV) apt-get install -y --no-install-recommends $$missing; }; \
	fi
endef

$(STAMPS)/system: Makefile
	@mkdir -p $(STAMPS)
	@$(call apt_install,$(SYSTEM_PACKAGES))
	@touch $@

# docker-registry's postinst would start a registry service on :5000: the same
# policy-rc.d as bench-deps keeps it off (tests start their own).
$(STAMPS)/test-deps: Makefile
	@mkdir -p $(STAMPS)
	@policy=/usr/sbin/policy-rc.d; ours=""; \
	if [ ! -e $$policy ]; then printf '#!/bin/sh\nexit 101\n' > $$policy; chmod 755 $$policy; ours=1; fi; \
	rc=0; { $(call apt_install,$(TEST_DEP_PACKAGES)); } || rc=$$?; \
	if [ -n "$$ours" ]; then rm -f $$policy; fi; \
	exit $$rc
	@touch $@

# docker.io's postinst would start a system-wide dockerd (iptables, /var/lib/docker):
# a policy-rc.d that says 101 ("action forbidden") keeps it from starting, unless the
# machine already has a policy-rc.d of its own.
$(STAMPS)/bench-deps: Makefile
	@mkdir -p $(STAMPS)
	@policy=/usr/sbin/policy-rc.d; ours=""; \
	if [ ! -e $$policy ]; then printf '#!/bin/sh\nexit 101\n' > $$policy; chmod 755 $$policy; ours=1; fi; \
	rc=0; { $(call apt_install,$(BENCH_DEP_PACKAGES)); } || rc=$$?; \
	if [ -n "$$ours" ]; then rm -f $$policy; fi; \
	exit $$rc
	@touch $@

# Prefer Debian's /usr/bin/python3 when it can make venvs (ensurepip comes with the
# python3-venv package); otherwise whatever `python3` is; install python3-venv if
# neither can. An existing working .venv is kept.
$(VENV)/bin/python:
	@py=""; \
	for cand in /usr/bin/python3 "$$(command -v python3 || true)"; do \
	    if [ -n "$$cand" ] && [ -x "$$cand" ] && "$$cand" -c 'import venv, ensurepip' 2>/dev/null; then \
	        py="$$cand"; break; fi; \
	done; \
	if [ -z "$$py" ]; then \
	    $(call apt_install,python3 python3-venv); py=/usr/bin/python3; \
	fi; \
	echo "creating $(VENV) with $$py ($$($$py --version))"; \
	"$$py" -m venv $(VENV)

# After pip: conch-runtime, conch and conchd get lean launchers (python -IS, no site, no
# re; conchd with the venv's site-packages on its path): the runtime is exec'd for every
# container, the CLI for every command, and conchd (-OO) keeps ~2 MiB less resident; then
# byte-compile everything (conchd's -OO needs .opt-2.pyc), so that no run pays for
# compiling (environments that set PYTHONDONTWRITEBYTECODE would otherwise pay every time).
# conch-runtime itself is build/conch-runtime (shim/conch-runtime.c), a C front that
# starts the cgroup lock's grace period before exec'ing the Python runtime, conch-runtime-py.
$(STAMPS)/venv: $(VENV)/bin/python pyproject.toml tools/lean_launcher.py $(RTFRONT)
	@mkdir -p $(STAMPS)
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
	$(VENV)/bin/python tools/lean_launcher.py $(VENV)/bin . conch-runtime-py=conch.runtime.main:run conch=conch.cli.main:run conchd=conch.daemon.main:main+site+OO
	cp $(RTFRONT) $(VENV)/bin/conch-runtime.tmp && mv -f $(VENV)/bin/conch-runtime.tmp $(VENV)/bin/conch-runtime
	$(VENV)/bin/python -I -m compileall -q -o 0 -o 2 conch
	$(VENV)/bin/python -I -m compileall -q -o 2 $$($(VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') >/dev/null
	@touch $@

# conch-shim (see conch/shim/__init__.py for its contract): one C file, no libraries.
# conch-init (shim/conch-init.c): the `run --init` pid 1, static so it runs in any image.
SHIM     := build/conch-shim
INIT     := build/conch-init
NETNS    := build/conch-netns

$(SHIM): shim/conch-shim.c | $(STAMPS)/system
	@mkdir -p build
	gcc -O2 -Wall -Wextra -Werror -o $@ shim/conch-shim.c

$(INIT): shim/conch-init.c | $(STAMPS)/system
	@mkdir -p build
	gcc -O2 -Wall -Wextra -Werror -static -o $@ shim/conch-init.c

# conch-netns (shim/conch-netns.c): hands conchd a netlink socket made inside a network
# namespace, so the daemon configures containers' interfaces without entering one.
$(NETNS): shim/conch-netns.c | $(STAMPS)/system
	@mkdir -p build
	gcc -O2 -Wall -Wextra -Werror -o $@ shim/conch-netns.c

# conch-runtime (shim/conch-runtime.c): the runtime's executable, a static front for the
# Python runtime (see the file for why); static: its exec costs ~0.3 ms.
# It does create and run itself (shim/runtime/*.c) for the configs it implements exactly.
$(RTFRONT): shim/conch-runtime.c $(wildcard shim/runtime/*.[ch]) | $(STAMPS)/system
	@mkdir -p build
	gcc -O2 -Wall -Wextra -Werror -static -I shim/runtime -o $@ shim/conch-runtime.c $(wildcard shim/runtime/*.c)

$(STAMPS)/shim: $(SHIM) $(INIT) $(NETNS) $(RTFRONT)
	@mkdir -p $(STAMPS)
	@touch $@

# pytest exits 5 when it collected no tests: that is a failure for us.
test: setup test-deps
	@rc=0; $(VENV)/bin/pytest $(PYTEST_ARGS) tests/ || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests (exit 5); tests must run" >&2; exit 1; fi; \
	exit $$rc

# make install: a venv of its own under $(PREFIX) (a regular, not editable, install: the
# checkout can go away), the C helpers next to its python (where conchd looks for them),
# lean launchers as in .venv, links in $(BINDIR), the units in $(UNITDIR) pointing at
# $(PREFIX), and $(SYSCONFDIR)/daemon.json from contrib/daemon.json unless one exists
# (a user's configuration is never overwritten). Then, where systemd runs:
# `systemctl enable --now conchd.socket`.
PREFIX     ?= /opt/conch
BINDIR     ?= /usr/local/bin
UNITDIR    ?= /etc/systemd/system
SYSCONFDIR ?= /etc/conch

install: setup
	@py="$$(readlink -f $(VENV)/bin/python)"; \
	[ -x $(PREFIX)/venv/bin/python ] || "$$py" -m venv $(PREFIX)/venv
	$(PREFIX)/venv/bin/python -m pip install -q --disable-pip-version-check --upgrade .
	install -m 0755 $(SHIM) $(INIT) $(NETNS) $(PREFIX)/venv/bin/
	@site="$$($(PREFIX)/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"; \
	$(PREFIX)/venv/bin/python tools/lean_launcher.py $(PREFIX)/venv/bin "$$site" conch-runtime-py=conch.runtime.main:run conch=conch.cli.main:run conchd=conch.daemon.main:main+site+OO; \
	install -m 0755 $(RTFRONT) $(PREFIX)/venv/bin/conch-runtime; \
	$(PREFIX)/venv/bin/python -I -m compileall -q -o 0 -o 2 "$$site" >/dev/null
	install -m 0644 README.md $(PREFIX)/README.md
	install -d $(BINDIR) $(UNITDIR)
	ln -sfn $(PREFIX)/venv/bin/conch $(BINDIR)/conch
	ln -sfn $(PREFIX)/venv/bin/conchd $(BINDIR)/conchd
	sed -e 's|/opt/conch/venv/bin/conchd -H fd://|$(PREFIX)/venv/bin/conchd --config-file $(SYSCONFDIR)/daemon.json -H fd://|' \
	    -e 's|file:///opt/conch/|file://$(PREFIX)/|' contrib/systemd/conchd.service > $(UNITDIR)/conchd.service
	install -m 0644 contrib/systemd/conchd.socket $(UNITDIR)/conchd.socket
	chmod 0644 $(UNITDIR)/conchd.service
	install -d -m 0755 $(SYSCONFDIR)
	@[ -e $(SYSCONFDIR)/daemon.json ] || install -m 0644 contrib/daemon.json $(SYSCONFDIR)/daemon.json
	@if [ -d /run/systemd/system ]; then systemctl daemon-reload; \
	    echo "installed: systemctl enable --now conchd.socket"; \
	else echo "installed (systemd is not running here: start $(BINDIR)/conchd by hand)"; fi

demo: setup
	@tools/demo.sh

bench: setup test-deps bench-deps
	$(VENV)/bin/python bench/runtime_bench.py
	$(VENV)/bin/python bench/daemon_bench.py
	$(VENV)/bin/python bench/registry_bench.py

clean:
	rm -rf $(STAMPS) bench/results $(SHIM) $(RTFRONT)
