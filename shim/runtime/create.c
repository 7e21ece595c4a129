/*
 * The C create/run path, part 2: P, the front itself, does `create` and `run` as
 * conch/runtime/create.py (create, _drive, _cleanup_failed) and commands.py (cmd_run,
 * start, delete, _wait, _forward_signals) do, for the containers spec.c takes; the
 * container's init G is init.c. Why in C: a cold `run` must be no slower than runc's, and
 * Python's start-up alone is half of that (issue 16 point 6).
 *
 * P: state dir and record ("creating"), exec.fifo, fork G inside its pid namespace
 * (init.fork_init's way), then, while G builds its rootfs, the cgroup (dirs -> tell G,
 * limits, move G in -> tell G), the record with G's pid, and G's "ready": "created",
 * state.front, --pid-file. The records are byte for byte what conch.runtime.state writes.
 *
 * Any failure before "created" (or, for `run`, before the init's byte is read from
 * exec.fifo) is undone here (G killed and reaped, the cgroup dirs removed, the state dir
 * removed) and the caller execs the Python runtime with the original command line, which
 * redoes the create and reports any error in its own words. Only after the user process
 * was let go does `run` handle failures itself, as Python's would: the container's exit
 * code is returned, and a delete that fails is finished by `conch-runtime-py delete
 * --force` in a child.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fdpass.h"
#include "front.h"
#include "record.h"

static struct front_plan plan; /* large (struct cg): not on the stack */
static char why[16384];
static char state_dir[PATH_MAX + 256];
static char created_at[64];
static pid_t init_pid;
static long long init_start;
static volatile sig_atomic_t forward_to;

/* ---- small string builder ------------------------------------------------------- */

struct sb {
	char *p;
	size_t len, cap;
	int oom;
};

static void sb_grow(struct sb *b, size_t more)
{
	if (b->len + more + 1 <= b->cap)
		return;
	size_t cap = (b->cap ? b->cap * 2 : 1024) + more;
	char *p = realloc(b->p, cap);
	if (!p) {
		b->oom = 1;
		return;
	}
	b->p = p;
	b->cap = cap;
}

static void __attribute__((format(printf, 2, 3))) sb_printf(struct sb *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	sb_grow(b, (size_t)n);
	if (b->oom)
		return;
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

static void sb_mem(struct sb *b, const char *s, size_t n)
{
	sb_grow(b, n);
	if (b->oom)
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

/* a JSON string literal, json.dumps's way */
static void sb_quote(struct sb *b, const char *s)
{
	size_t need = json_quote(NULL, 0, s, strlen(s));
	sb_grow(b, need);
	if (b->oom)
		return;
	json_quote(b->p + b->len, need + 1, s, strlen(s));
	b->len += need;
}

/* ---- records (conch.runtime.state) ----------------------------------------------- */

static int write_file(const char *path, const char *data, size_t len, mode_t mode)
{
	char tmp[PATH_MAX + 300];
	if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
		errno = ENAMETOOLONG;
		return -1;
	}
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		return -1;
	int ok = write(fd, data, len) == (ssize_t)len;
	if (close(fd) < 0 || !ok || rename(tmp, path) < 0)
		return -1;
	return 0;
}

/* State.save: json.dumps of the fields in _FIELDS order. The cgroup record is the one
 * State.new was given, Manager.save() before create() made anything ("created": []), as
 * Python keeps it for the container's whole life. */
static int save_state(const char *status)
{
	static char *cgjson;
	static size_t cglen;
	struct sb b = {0};
	char path[PATH_MAX + 300];
	if (!cgjson) {
		cglen = cg_save(&plan.cg, NULL, 0);
		if (!(cgjson = malloc(cglen + 1)))
			return -1;
		cg_save(&plan.cg, cgjson, cglen + 1);
	}
	sb_printf(&b, "{\"id\": ");
	sb_quote(&b, plan.id);
	sb_printf(&b, ", \"bundle\": ");
	sb_quote(&b, plan.bundle);
	sb_printf(&b, ", \"pid\": %d, \"pid_start\": %lld, \"created\": \"%s\", \"status\": \"%s\", \"annotations\": {",
		  (int)init_pid, init_start, created_at, status);
	for (size_t i = 0; plan.annotations && i < plan.annotations->n; i++) {
		sb_printf(&b, i ? ", " : "");
		sb_quote(&b, plan.annotations->keys[i]);
		sb_printf(&b, ": ");
		sb_quote(&b, plan.annotations->items[i].str);
	}
	sb_printf(&b, "}, \"cgroup\": ");
	sb_mem(&b, cgjson, cglen);
	sb_printf(&b, ", \"creator_pid\": %d, \"rootfs\": ", (int)getpid());
	sb_quote(&b, plan.rootfs);
	sb_printf(&b, ", \"config_path\": ");
	sb_quote(&b, plan.config_path);
	sb_printf(&b, ", \"owner\": \"\", \"hooks\": []}");
	snprintf(path, sizeof path, "%s/state.json", state_dir);
	int r = b.oom ? -1 : write_file(path, b.p, b.len, 0600);
	free(b.p);
	return r;
}

/* State.oci(status) as fastjson.dumps_pretty prints it */
static void oci_pretty(struct sb *b, const char *status)
{
	int live = strcmp(status, "stopped") != 0;
	sb_printf(b, "{\n  \"ociVersion\": \"1.2.0\",\n  \"id\": ");
	sb_quote(b, plan.id);
	sb_printf(b, ",\n  \"status\": \"%s\",\n  \"bundle\": ", status);
	sb_quote(b, plan.bundle);
	sb_printf(b, ",\n  \"pid\": %d", live ? (int)init_pid : 0);
	if (plan.annotations) {
		sb_printf(b, ",\n  \"annotations\": {");
		for (size_t i = 0; i < plan.annotations->n; i++) {
			sb_printf(b, i ? ",\n    " : "\n    ");
			sb_quote(b, plan.annotations->keys[i]);
			sb_printf(b, ": ");
			sb_quote(b, plan.annotations->items[i].str);
		}
		sb_printf(b, "\n  }");
	}
	sb_printf(b, "\n}");
}

/* State._save_front (no hooks on this path: the front may start it) */
static int save_front(void)
{
	static const char *const statuses[] = {"created", "running", "paused", "stopped"};
	struct sb b = {0};
	char kind[8] = "", where[PATH_MAX] = "", path[PATH_MAX + 300];
	cg_freezer_file(&plan.cg, kind, where, sizeof where);
	sb_printf(&b, "%d %lld 1\n", (int)init_pid, init_start);
	if (*kind)
		sb_printf(&b, "%s %s\n", kind, where);
	else
		sb_printf(&b, "none\n");
	for (int i = 0; i < 4; i++) {
		oci_pretty(&b, statuses[i]);
		sb_mem(&b, "\n", 2); /* "\n" and its NUL */
	}
	snprintf(path, sizeof path, "%s/state.front", state_dir);
	int r = b.oom ? -1 : write_file(path, b.p, b.len, 0600);
	free(b.p);
	return r;
}

/* state.remove_state_dir */
static void remove_state_dir(void)
{
	static const char *const names[] = {"state.json", "state.json.tmp", "state.front", "state.front.tmp", "exec.fifo"};
	char path[PATH_MAX + 300];
	for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
		snprintf(path, sizeof path, "%s/%s", state_dir, names[i]);
		unlink(path);
	}
	rmdir(state_dir);
}

/* ---- undo -------------------------------------------------------------------------- */

/* SIGKILL every process left in the container's cgroups (G's own are gone with its pid
 * namespace; without one, what it forked may live on). 0 when none is left. */
static int kill_leftovers(void)
{
	for (int round = 0; round < 100; round++) {
		int found = 0;
		for (int i = 0; i < plan.cg.n; i++) {
			char path[4200], line[32];
			snprintf(path, sizeof path, "%s/cgroup.procs", plan.cg.dir[i]);
			FILE *f = fopen(path, "re");
			while (f && fgets(line, sizeof line, f)) {
				pid_t p = (pid_t)atoi(line);
				if (p > 0) {
					found = 1;
					kill(p, SIGKILL);
				}
			}
			if (f)
				fclose(f);
		}
		if (!found)
			return 0;
		while (waitpid(-1, NULL, WNOHANG) > 0) /* ours as subreaper */
			;
		usleep(10000);
	}
	return -1;
}

/* create._cleanup_failed: the init killed and reaped, the cgroup and the state dir
 * removed. G never forks before "ready", so the init is all there is to kill; the
 * cgroup's directories are ours (spec.c declines a cgroup that exists), and nothing else
 * in them is killed: a process there was put there by someone else. */
static void undo(int cgroup_made)
{
	if (init_pid > 0) {
		kill(init_pid, SIGKILL);
		while (waitpid(init_pid, NULL, 0) < 0 && errno == EINTR)
			;
	}
	if (cgroup_made) {
		struct timespec start, now;
		clock_gettime(CLOCK_MONOTONIC, &start);
		while (cg_destroy(&plan.cg) < 0) {
			clock_gettime(CLOCK_MONOTONIC, &now);
			if (now.tv_sec - start.tv_sec >= 2)
				break;
			usleep(10000);
		}
	}
	remove_state_dir();
}

/* ---- create ------------------------------------------------------------------------ */

static void now_rfc3339(char *out, size_t size)
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	size_t k = strftime(out, size, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + k, size - k, ".%09ldZ", ts.tv_nsec);
}

/* os.makedirs(root, 0o711, exist_ok=True) */
static int make_root(const char *root)
{
	char buf[PATH_MAX];
	struct stat st;
	if (snprintf(buf, sizeof buf, "%s", root) >= (int)sizeof buf)
		return -1;
	size_t len = strlen(buf);
	while (len > 1 && buf[len - 1] == '/')
		buf[--len] = '\0';
	if (stat(buf, &st) == 0)
		return S_ISDIR(st.st_mode) ? 0 : -1;
	for (char *s = buf + 1; (s = strchr(s, '/')); s++) {
		*s = '\0';
		if (stat(buf, &st) < 0 && mkdir(buf, 0777) < 0 && errno != EEXIST)
			return -1;
		*s = '/';
	}
	return mkdir(buf, 0711) < 0 && errno != EEXIST ? -1 : 0;
}

/* The message G sent (its error), for the reason. */
static void read_error(int fd, const char *what)
{
	char msg[PATH_MAX + 512];
	ssize_t n = recv(fd, msg, sizeof msg - 1, MSG_DONTWAIT);
	if (n < 0 && errno == ECONNRESET) /* G exited with a message of ours unread */
		n = recv(fd, msg, sizeof msg - 1, MSG_DONTWAIT);
	if (n > 1 && msg[0] == MSG_ERROR) {
		msg[n] = '\0';
		snprintf(why, sizeof why, "init failed: %s", msg + 1);
	} else {
		snprintf(why, sizeof why, "init exited (%s)", what);
	}
}

/* console.connect: a stream connection to --console-socket, close-on-exec (G keeps it,
 * as Python's G does, until it sends the pty master or, without a terminal, until its
 * execve). -1 with errno. */
static int console_connect(const char *path)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	memcpy(addr.sun_path, path, strlen(path)); /* spec.c: shorter than sun_path */
	while (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
		if (errno == EINTR)
			continue;
		int err = errno;
		close(fd);
		errno = err;
		return -1;
	}
	return fd;
}

/* G asked for its console socket (init.c receive_console): connect and hand it the
 * connection. -1 with why set (the socket's error: undone, and Python says it). */
static int send_console(int sync)
{
	int fd = console_connect(plan.console_socket);
	if (fd < 0) {
		snprintf(why, sizeof why, "console socket %s: %s", plan.console_socket, strerror(errno));
		return -1;
	}
	char body = MSG_CONSOLE;
	ssize_t sent = front_send_fd(sync, &body, 1, fd);
	close(fd);
	if (sent != 1) {
		read_error(sync, "console"); /* G's error, or that it exited */
		return -1;
	}
	return 0;
}

/* create.create + _drive. 0 when "created"; -1 with why set, everything undone. */
static int create(void)
{
	int sv[2] = {-1, -1}, cgroup_made = 0;
	char fifo[PATH_MAX + 300];
	const char *root = plan.root;
	if (make_root(root) < 0) {
		snprintf(why, sizeof why, "cannot make --root %s", root);
		return -1;
	}
	if (snprintf(state_dir, sizeof state_dir, "%s%s%s", root, root[strlen(root) - 1] == '/' ? "" : "/",
		     plan.id) >= (int)sizeof state_dir) { /* cut, it would be another container's */
		snprintf(why, sizeof why, "state dir path too long");
		return -1;
	}
	if (mkdir(state_dir, 0711) < 0) {
		snprintf(why, sizeof why, "mkdir %s: %s", state_dir, strerror(errno));
		return -1; /* EEXIST: Python says "already exists" */
	}
	now_rfc3339(created_at, sizeof created_at);
	snprintf(fifo, sizeof fifo, "%s/exec.fifo", state_dir);
	plan.console_fd = -1;
	if (save_state("creating") < 0 || mkfifo(fifo, 0622) < 0 || chown(fifo, 0, 0) < 0 || chmod(fifo, 0622) < 0) {
		snprintf(why, sizeof why, "state dir: %s", strerror(errno));
		goto fail;
	}
	/* create.create connects here, between the fifo and its O_PATH fd. A socket that
	 * cannot be reached is Python's error to word: undone, and Python redoes it. With a
	 * terminal, P connects only when G asks for it (send_console): see init.c's
	 * receive_console. */
	if (*plan.console_socket && !plan.terminal &&
	    (plan.console_fd = console_connect(plan.console_socket)) < 0) {
		snprintf(why, sizeof why, "console socket %s: %s", plan.console_socket, strerror(errno));
		goto fail;
	}
	if ((plan.fifo_fd = open(fifo, O_PATH | O_CLOEXEC)) < 0 ||
	    socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		snprintf(why, sizeof why, "state dir: %s", strerror(errno));
		goto fail;
	}
	/* init.fork_init: the pid namespace around the fork, ours again after it */
	int own = -1;
	if (plan.ns_has[NS_PID]) {
		own = open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC);
		int ok = own >= 0;
		if (ok && *plan.ns_path[NS_PID]) {
			int fd = open(plan.ns_path[NS_PID], O_RDONLY | O_CLOEXEC);
			ok = fd >= 0 && setns(fd, CLONE_NEWPID) == 0;
			if (fd >= 0)
				close(fd);
		} else if (ok) {
			ok = unshare(CLONE_NEWPID) == 0;
		}
		if (!ok) {
			snprintf(why, sizeof why, "pid namespace: %s", strerror(errno));
			if (own >= 0)
				close(own);
			goto fail;
		}
	}
	pid_t pid = fork();
	if (pid == 0) {
		close(sv[0]);
		plan.sync_fd = sv[1];
		front_init(&plan);
	}
	int err = errno;
	if (own >= 0) {
		if (setns(own, CLONE_NEWPID) < 0) /* cannot happen; if it did, forks would go astray */
			abort();
		close(own);
	}
	close(sv[1]);
	sv[1] = -1;
	close(plan.fifo_fd);
	if (plan.console_fd >= 0) { /* G has its own copy */
		close(plan.console_fd);
		plan.console_fd = -1;
	}
	if (pid < 0) {
		snprintf(why, sizeof why, "fork: %s", strerror(err));
		goto fail;
	}
	init_pid = pid;
	/* create._drive: the cgroup while G builds its rootfs */
	char msg = MSG_CGROUP_DIRS;
	cgroup_made = 1;
	if (cg_create(&plan.cg, why, sizeof why) < 0)
		goto fail;
	if (send(sv[0], &msg, 1, MSG_NOSIGNAL) != 1) {
		read_error(sv[0], "cgroup-dirs");
		goto fail;
	}
	if (cg_apply(&plan.cg, plan.resources, why, sizeof why) < 0 || cg_add(&plan.cg, pid, why, sizeof why) < 0)
		goto fail;
	msg = MSG_CGROUP_JOINED;
	if (send(sv[0], &msg, 1, MSG_NOSIGNAL) != 1) {
		read_error(sv[0], "cgroup");
		goto fail;
	}
	init_start = front_process_start(pid);
	if (init_start < 0)
		init_start = 0;
	if (save_state("creating") < 0) {
		snprintf(why, sizeof why, "state.json: %s", strerror(errno));
		goto fail;
	}
	char reply[PATH_MAX + 512];
	ssize_t n;
	for (;;) {
		/* ECONNRESET: G exited with a message of ours unread; its own message still waits */
		for (int tries = 0; (n = recv(sv[0], reply, sizeof reply - 1, 0)) < 0 && tries < 8; tries++)
			if (errno != EINTR && errno != ECONNRESET)
				break;
		if (!(n == 1 && reply[0] == MSG_CONSOLE && plan.terminal && *plan.console_socket))
			break;
		if (send_console(sv[0]) < 0)
			goto fail;
	}
	if (n != 1 || reply[0] != MSG_READY) {
		reply[n > 0 ? n : 0] = '\0';
		if (n > 1 && reply[0] == MSG_ERROR)
			snprintf(why, sizeof why, "init failed: %s", reply + 1);
		else
			snprintf(why, sizeof why, "init exited before ready");
		goto fail;
	}
	close(sv[0]);
	sv[0] = -1;
	if (save_state("created") < 0 || save_front() < 0) {
		snprintf(why, sizeof why, "state: %s", strerror(errno));
		goto fail;
	}
	if (*plan.pid_file) { /* create._write_pid_file */
		char tmp[PATH_MAX + 64], text[16];
		/* O_EXCL|O_NOFOLLOW: a file or symlink planted at the temp name is an error, not
		 * a file to write through */
		int fd = -1, len = snprintf(text, sizeof text, "%d", (int)init_pid);
		if (snprintf(tmp, sizeof tmp, "%s.%d.tmp", plan.pid_file, (int)getpid()) >= (int)sizeof tmp)
			errno = ENAMETOOLONG;
		else
			fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
		int ok = fd >= 0 && write(fd, text, (size_t)len) == len;
		if (fd >= 0 && close(fd) < 0)
			ok = 0;
		if (!ok || rename(tmp, plan.pid_file) < 0) {
			snprintf(why, sizeof why, "--pid-file %s: %s", plan.pid_file, strerror(errno));
			if (fd >= 0) /* ours to remove; one that was there is not */
				unlink(tmp);
			goto fail;
		}
	}
	return 0;
fail:
	if (plan.console_fd >= 0)
		close(plan.console_fd);
	if (sv[0] >= 0)
		close(sv[0]);
	if (sv[1] >= 0)
		close(sv[1]);
	undo(cgroup_made);
	return -1;
}

/* ---- run ----------------------------------------------------------------------------- */

static void forward(int sig)
{
	int saved = errno;
	if (forward_to > 0)
		kill((pid_t)forward_to, sig);
	errno = saved;
}

/* main._log_error's line, for a failure after the user process was let go */
static void log_error(const char *msg)
{
	front_log_error(plan.log, plan.log_format, msg);
}

/* fastpath.release_init: 0 once the init's byte is read (the user process is let go);
 * -1 with Python's message in why when it cannot be (the init died before: killed, say,
 * by a signal we forwarded), as commands.start words it */
static int release_init(void)
{
	char fifo[PATH_MAX + 300];
	snprintf(fifo, sizeof fifo, "%s/exec.fifo", state_dir);
	if (front_process_start(init_pid) != init_start) { /* status_of(state) != "created" */
		snprintf(why, sizeof why, "cannot start container '%s': it is stopped, not created", plan.id);
		return -1;
	}
	int fd = open(fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		snprintf(why, sizeof why, "%s: %s", strerror(errno), fifo);
		return -1;
	}
	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		char byte;
		if (poll(&p, 1, 100) > 0 && read(fd, &byte, 1) == 1)
			break;
		if (front_process_start(init_pid) != init_start) {
			snprintf(why, sizeof why, "container '%s' init process exited before start", plan.id);
			close(fd);
			return -1;
		}
	}
	close(fd);
	if (unlink(fifo) < 0) {
		snprintf(why, sizeof why, "%s: %s", strerror(errno), fifo);
		return -1;
	}
	if (save_state("running") < 0) {
		snprintf(why, sizeof why, "%s: %s/state.json.tmp", strerror(errno), state_dir);
		return -1;
	}
	return 0;
}

/* commands.delete of a stopped container without hooks: from the record, whose cgroup
 * lists no parents made (see save_state), so only the container's own directories go */
static int delete_stopped(void)
{
	plan.cg.ncreated = 0;
	if (kill_leftovers() < 0 || cg_destroy(&plan.cg) < 0)
		return -1;
	remove_state_dir();
	return 0;
}

static void say(const char *fmt, ...)
{
	const char *debug = getenv("CONCH_RUNTIME_FRONT_DEBUG");
	if (!debug || strcmp(debug, "1") != 0)
		return;
	char line[1200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	dprintf(2, "conch-runtime front: %s\n", line);
}

int front_create_run(int argc, char **argv, const char *script)
{
	const char *mode = getenv("CONCH_RUNTIME_FRONT");
	if (mode && (strcmp(mode, "0") == 0 || strcmp(mode, "python") == 0)) {
		say("python: CONCH_RUNTIME_FRONT=%s", mode);
		return -1;
	}
	if (front_parse(argc, argv, &plan, why, sizeof why) < 0) {
		say("python: %s", why);
		return -1;
	}
	if (plan.run && !plan.detach)
		prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); /* as cmd_run does, before create */
	if (create() < 0) {
		say("python: %s", why);
		return -1;
	}
	if (!plan.run) {
		say("create in C");
		return 0;
	}
	static const int sigs[] = {SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGINT};
	struct sigaction fw = {.sa_handler = forward}, old[6];
	sigemptyset(&fw.sa_mask);
	if (!plan.detach) {
		forward_to = init_pid;
		for (int i = 0; i < 6; i++)
			sigaction(sigs[i], &fw, &old[i]);
	}
	/* From here on the run is ours to finish, as commands.cmd_run finishes it (Python
	 * would not redo a container that was created): an error of start is reported in
	 * Python's words, and in the foreground the container is deleted (unless --keep);
	 * a detached run leaves its record as Python's does. */
	say("run in C");
	int code = 0;
	if (release_init() < 0) {
		log_error(why);
		if (plan.detach)
			return 1;
		code = 1;
		kill(init_pid, SIGKILL);
	}
	if (plan.detach)
		return 0;
	/* commands._wait: the init's status, reaping other orphans meanwhile */
	int status, wcode = -1;
	while (wcode < 0) {
		pid_t done = waitpid(-1, &status, 0);
		if (done < 0 && errno == EINTR)
			continue;
		if (done < 0)
			wcode = 255;
		else if (done == init_pid)
			wcode = WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
	}
	if (!code)
		code = wcode;
	for (int i = 0; i < 6; i++)
		sigaction(sigs[i], &old[i], NULL);
	if (!plan.keep && delete_stopped() < 0) {
		pid_t child = fork();
		if (child == 0) {
			char *args[] = {(char *)script, "--root", (char *)plan.root, "delete", "--force", (char *)plan.id, NULL};
			execv(script, args);
			_exit(127);
		}
		while (child > 0 && waitpid(child, NULL, 0) < 0 && errno == EINTR)
			;
	}
	return code;
}
