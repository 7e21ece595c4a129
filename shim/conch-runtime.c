/*
 * conch-runtime: the runtime's executable. It does the common cases itself, in C, and
 * execs the Python runtime beside it for everything else:
 *
 *   conch-runtime ARGS...   exec DIR/conch-runtime-py ARGS... (DIR: this binary's own
 *                           directory; that file is the lean Python launcher of
 *                           conch.runtime.main, see tools/lean_launcher.py)
 *
 * Why: a cold `run` of a container must be no slower than runc's (issue 16 point 6), and
 * the Python interpreter's start-up and imports alone are ~9 ms of it. So:
 *
 * `create` and `run` are done here (shim/runtime/: spec.c, create.c, init.c, with
 * cgroups.c and seccomp.c) whenever config.json uses only what that code implements
 * exactly as the Python runtime does; the Python runtime stays the specification and the
 * fallback. spec.c checks every flag and every key before anything on the host changes,
 * and declines anything else (the command line then goes to Python untouched); a
 * failure after changes began is undone (init killed, cgroup and state dir removed) and
 * Python redoes the command, reporting any error in its own words. Env
 * CONCH_RUNTIME_FRONT=0 (or "python") always runs Python; CONCH_RUNTIME_FRONT_DEBUG=1
 * prints one stderr line saying which path ran and, for Python, why.
 *
 * Also for `create` and `run`, first of all: moving a process into a cgroup takes the
 * kernel's cgroup_threadgroup_rwsem for writing, and when no writer held it lately that
 * waits out a whole RCU grace period (10-14 ms measured here), holding cgroup_mutex
 * meanwhile. A cold create cannot avoid one such wait (the container's init is moved
 * into its cgroups), so the earlier it starts, the sooner it ends: a grandchild moves
 * itself into the cgroup it is already in (writes "0" to its own cgroup.procs: a no-op
 * move that still takes the lock) while the front parses and forks (measured: a cold
 * C `run` 11.8 ms with it, 16.5 without). The grandchild is never our child (its parent
 * exits at once), so neither the C path nor the Python runtime has a stray child to reap
 * or to see in waitpid(-1); it is reparented to the nearest subreaper or init, which
 * reaps it when its write returns. Best effort: any failure only skips this.
 *
 * `state`, the verb shims and engines poll, and `start` are done here when they can
 * be, without starting Python at all (~10 ms): create leaves `state.front` beside the
 * record (conch/runtime/state.py, State._save_front) with the init's pid and start time,
 * whether config.json had poststart hooks, where the cgroup tells whether it is frozen,
 * and what `state` prints for each status. The status is derived as
 * State.current_status derives it: stopped unless the pid still names the same process
 * (start time, zombies dead), created while exec.fifo exists, paused while the cgroup
 * is frozen, else running. `start` (no poststart hooks) is conch.runtime.fastpath's:
 * the init's byte read from exec.fifo, the fifo removed, "running" recorded. Anything
 * else (no such file, any flag this does not know, an unreadable record, an init that
 * died before its byte) runs the Python runtime, which says what is wrong in its own
 * words; only an error after start's first change is reported here, as it would be.
 *
 * `kill` (no --all) of a live container and `delete` of a stopped one without poststop
 * hooks or leftovers are done here too (shim/runtime/verbs.c: commands.cmd_kill and
 * fastpath._delete_stopped in C), so that an engine exec'ing the runtime for every step
 * (containerd's shim, conmon) starts Python for none of them in the common case.
 *
 * Every other verb (and `warm`, conch-shim's pre-started runtime) is a plain exec.
 * Static, no libraries: the exec costs ~0.3 ms.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "front.h"
#include "record.h"
#include "verbs.h"

#define SCRIPT "conch-runtime-py"

/* The command word: the first argument that is not a global flag or a flag's value. */
static const char *verb(int argc, char **argv)
{
	static const char *with_value[] = {"--root", "--log", "--log-format", "--criu", NULL};
	for (int i = 1; i < argc; i++) {
		int takes = 0;
		for (const char **w = with_value; *w; w++)
			if (strcmp(argv[i], *w) == 0)
				takes = 1;
		if (takes)
			i++;
		else if (argv[i][0] != '-')
			return argv[i];
	}
	return "";
}

/* The cgroup.procs file of the cgroup this process is in, in one v1 hierarchy that
 * moves take the global lock for (any will do), or the unified one on a v2 host:
 * as conch.runtime.prearm._own_procs_file. */
static int own_procs_file(char *out, size_t size)
{
	static const char *controllers[] = {"pids", "freezer", "cpu", "memory", "devices", "blkio", NULL};
	char line[4096];
	struct stat st;
	FILE *f = fopen("/proc/self/cgroup", "re");
	if (!f)
		return -1;
	int found = -1;
	while (found < 0 && fgets(line, sizeof line, f)) {
		char *first = strchr(line, ':');
		char *second = first ? strchr(first + 1, ':') : NULL;
		if (!second)
			continue;
		*first = *second = '\0';
		char *names = first + 1, *path = second + 1;
		path[strcspn(path, "\n")] = '\0';
		size_t len = strlen(path);
		if (len && path[len - 1] == '/')
			path[len - 1] = '\0';
		if (*names == '\0') { /* "0::/path": cgroup v2 */
			if (stat("/sys/fs/cgroup/cgroup.controllers", &st) == 0 &&
			    snprintf(out, size, "/sys/fs/cgroup%s/cgroup.procs", path) < (int)size &&
			    stat(out, &st) == 0)
				found = 0;
			continue;
		}
		for (char *name = strtok(names, ","); name && found < 0; name = strtok(NULL, ","))
			for (const char **c = controllers; *c; c++)
				if (strcmp(name, *c) == 0 &&
				    snprintf(out, size, "/sys/fs/cgroup/%s%s/cgroup.procs", name, path) < (int)size &&
				    stat(out, &st) == 0) {
					found = 0;
					break;
				}
	}
	fclose(f);
	return found;
}

static void prearm(void)
{
	char procs[PATH_MAX];
	if (own_procs_file(procs, sizeof procs) < 0)
		return;
	pid_t child = fork();
	if (child < 0)
		return;
	if (child == 0) {
		if (fork() == 0) {
			int fd = open(procs, O_WRONLY | O_CLOEXEC);
			if (fd >= 0) {
				ssize_t n = write(fd, "0", 1); /* blocks for the grace period */
				(void)n;
			}
			_exit(0);
		}
		_exit(0);
	}
	while (waitpid(child, NULL, 0) < 0 && errno == EINTR)
		;
}

static int frozen(const char *kind, const char *path)
{
	size_t len;
	char *text = front_slurp(path, 4096, &len);
	if (!text)
		return 0; /* no freezer file: never paused, as the Python runtime says */
	int yes = 0;
	if (strcmp(kind, "v1") == 0) {
		while (len && strchr(" \t\n", text[len - 1]))
			text[--len] = '\0';
		yes = strcmp(text, "FROZEN") == 0;
	} else {
		for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"))
			if (strcmp(line, "frozen 1") == 0)
				yes = 1;
	}
	free(text);
	return yes;
}

/* What state.front says of one container, and where its record is. */
struct front {
	char dir[PATH_MAX];
	char *buf; /* the file; renderings point into it */
	size_t len;
	long long pid, start;
	int may_start; /* config.json had no poststart hooks */
	char kind[8], where[PATH_MAX]; /* the freezer file; kind "" without one */
	char *renderings;
	const char *log, *log_format;
};

/* `[--root DIR] [--log FILE] [--log-format text|json] VERB ID` with state.front read:
 * 0, or -1 to leave the verb to the Python runtime. */
static int load_front(int argc, char **argv, const char *verb_word, struct front *f)
{
	const char *root = getenv("CONCH_RUNTIME_ROOT"), *id = NULL;
	int verb_seen = 0;
	memset(f, 0, sizeof *f);
	f->log_format = "text";
	if (!root || !*root)
		root = "/run/conch-runtime";
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!verb_seen && strcmp(a, "--root") == 0 && i + 1 < argc)
			root = argv[++i];
		else if (!verb_seen && strncmp(a, "--root=", 7) == 0)
			root = a + 7;
		else if (!verb_seen && strcmp(a, "--log") == 0 && i + 1 < argc)
			f->log = argv[++i];
		else if (!verb_seen && strncmp(a, "--log=", 6) == 0)
			f->log = a + 6;
		else if (!verb_seen && strcmp(a, "--log-format") == 0 && i + 1 < argc &&
			 (strcmp(argv[i + 1], "text") == 0 || strcmp(argv[i + 1], "json") == 0))
			f->log_format = argv[++i];
		else if (!verb_seen && strcmp(a, verb_word) == 0)
			verb_seen = 1;
		else if (verb_seen && !id && a[0] != '-')
			id = a;
		else
			return -1;
	}
	if (!id || !*root || !front_valid_id(id))
		return -1;
	if (snprintf(f->dir, sizeof f->dir, "%s%s%s", root, root[strlen(root) - 1] == '/' ? "" : "/", id) >= (int)sizeof f->dir)
		return -1;
	char path[PATH_MAX + 32];
	snprintf(path, sizeof path, "%s/state.front", f->dir);
	if (!(f->buf = front_slurp(path, 1 << 20, &f->len)))
		return -1;
	/* "PID START [MAY_START]\n" then "KIND PATH\n" (or "none\n"), then the renderings */
	int n = 0;
	if (sscanf(f->buf, "%lld %lld%n", &f->pid, &f->start, &n) == 2 && n > 0) {
		char *line = f->buf + n;
		if (line[0] == ' ' && (line[1] == '0' || line[1] == '1') && line[2] == '\n') {
			f->may_start = line[1] == '1';
			line += 2;
		}
		char *end = line[0] == '\n' ? strchr(line + 1, '\n') : NULL;
		if (end) {
			line++;
			*end = '\0';
			f->renderings = end + 1;
			if (strcmp(line, "none") == 0)
				f->kind[0] = '\0';
			else if (sscanf(line, "%7s %4095[^\n]", f->kind, f->where) != 2)
				f->renderings = NULL;
		}
	}
	if (!f->renderings || f->pid <= 0) {
		free(f->buf);
		return -1;
	}
	return 0;
}

/* The status as conch.runtime.state.State.current_status derives it. */
static const char *front_status(const struct front *f)
{
	char path[PATH_MAX + 32];
	struct stat st;
	if (!front_same_process(f->pid, f->start))
		return "stopped";
	snprintf(path, sizeof path, "%s/exec.fifo", f->dir);
	if (stat(path, &st) == 0)
		return "created";
	if (f->kind[0] && frozen(f->kind, f->where))
		return "paused";
	return "running";
}

/* `state`: the rendering for the status, as the Python runtime prints it. */
static int state_from_front(int argc, char **argv)
{
	struct front f;
	if (load_front(argc, argv, "state", &f) < 0)
		return -1;
	const char *status = front_status(&f);
	/* FRONT_STATUSES in conch/runtime/state.py: created, running, paused, stopped */
	static const char *order[] = {"created", "running", "paused", "stopped"};
	char *text = f.renderings, *stop = f.buf + f.len;
	for (int k = 0; text && k < 4; k++) {
		char *nul = memchr(text, '\0', (size_t)(stop - text));
		if (!nul) {
			text = NULL;
			break;
		}
		if (strcmp(order[k], status) == 0)
			break;
		text = nul + 1;
	}
	int code = -1;
	if (text && text < stop) {
		size_t left = strlen(text);
		const char *p = text;
		code = 0;
		while (left) {
			ssize_t w = write(1, p, left);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				break; /* a closed stdout: as Python's print, not an error here */
			p += w;
			left -= (size_t)w;
		}
	}
	free(f.buf);
	return code;
}

/* An error after start changed something: on stderr and, with --log, in the log file
 * as conch.runtime.main._log_error writes it (runc's text or json line). */
static int start_failed(const struct front *f, const char *path)
{
	char msg[PATH_MAX + 256];
	snprintf(msg, sizeof msg, "%s: %s", strerror(errno), path);
	front_log_error(f->log, f->log_format, msg);
	return 1;
}

/* `start` of a created container without poststart hooks, as conch.runtime.fastpath
 * does it: read the init's byte from exec.fifo (it then execs), remove the fifo, record
 * "running" (state.json as the Python runtime writes it, only its status changed). */
static int start_from_front(int argc, char **argv)
{
	struct front f;
	if (load_front(argc, argv, "start", &f) < 0)
		return -1;
	char fifo[PATH_MAX + 32], record[PATH_MAX + 32], tmp[PATH_MAX + 32];
	snprintf(fifo, sizeof fifo, "%s/exec.fifo", f.dir);
	snprintf(record, sizeof record, "%s/state.json", f.dir);
	snprintf(tmp, sizeof tmp, "%s/state.json.tmp", f.dir);
	size_t len;
	char *json = NULL, *status = NULL;
	int fd = -1;
	if (f.may_start && strcmp(front_status(&f), "created") == 0 &&
	    (json = front_slurp(record, 1 << 20, &len)) &&
	    (status = strstr(json, "\"status\": \"created\"")))
		fd = open(fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		free(json);
		free(f.buf);
		return -1;
	}
	for (;;) { /* poll, so that an init that died meanwhile does not hang us */
		struct pollfd p = {.fd = fd, .events = POLLIN};
		char byte;
		if (poll(&p, 1, 100) > 0 && read(fd, &byte, 1) == 1)
			break;
		if (!front_same_process(f.pid, f.start)) { /* nothing changed: Python says why */
			close(fd);
			free(json);
			free(f.buf);
			return -1;
		}
	}
	int code = 0;
	memcpy(status + strlen("\"status\": \""), "running", 7); /* as long as "created" */
	if (unlink(fifo) < 0) {
		code = start_failed(&f, fifo);
	} else {
		int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		int ok = out >= 0 && write(out, json, len) == (ssize_t)len;
		if (out >= 0 && close(out) < 0)
			ok = 0;
		if (!ok || rename(tmp, record) < 0)
			code = start_failed(&f, ok ? record : tmp);
	}
	close(fd);
	free(json);
	free(f.buf);
	return code;
}

/* `kill` and `delete` in C (shim/runtime/verbs.c) unless CONCH_RUNTIME_FRONT turns the
 * C paths off; CONCH_RUNTIME_FRONT_DEBUG says which path ran, as for create and run. */
static int c_verb(const char *v, int argc, char **argv)
{
	const char *mode = getenv("CONCH_RUNTIME_FRONT"), *debug = getenv("CONCH_RUNTIME_FRONT_DEBUG");
	int off = mode && (strcmp(mode, "0") == 0 || strcmp(mode, "python") == 0);
	int code = off ? -1 : strcmp(v, "kill") == 0 ? front_kill(argc, argv) : front_delete(argc, argv);
	if (debug && strcmp(debug, "1") == 0)
		fprintf(stderr, code >= 0 ? "conch-runtime front: %s in C\n" : "conch-runtime front: python: %s\n",
			code >= 0 ? v : off ? "CONCH_RUNTIME_FRONT" : "not the common case");
	return code;
}

int main(int argc, char **argv)
{
	char self[PATH_MAX], script[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	if (n <= 0) {
		perror("conch-runtime: readlink /proc/self/exe");
		return 127;
	}
	self[n] = '\0';
	char *slash = strrchr(self, '/');
	*slash = '\0';
	if (snprintf(script, sizeof script, "%s/%s", self, SCRIPT) >= (int)sizeof script) {
		fprintf(stderr, "conch-runtime: path too long: %s\n", self);
		return 127;
	}
	const char *v = verb(argc, argv);
	if (strcmp(v, "create") == 0 || strcmp(v, "run") == 0) {
		prearm();
		int code = front_create_run(argc, argv, script);
		if (code >= 0)
			return code;
	}
	if (strcmp(v, "state") == 0 || strcmp(v, "start") == 0) {
		int code = strcmp(v, "start") == 0 ? start_from_front(argc, argv) : state_from_front(argc, argv);
		if (code >= 0)
			return code;
	}
	if (strcmp(v, "kill") == 0 || strcmp(v, "delete") == 0) {
		int code = c_verb(v, argc, argv);
		if (code >= 0)
			return code;
	}
	argv[0] = script;
	execv(script, argv);
	fprintf(stderr, "conch-runtime: exec %s: %s\n", script, strerror(errno));
	return 127;
}
