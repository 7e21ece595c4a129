/*
 * conch-runtime: the runtime's executable, a front for the Python runtime beside it.
 *
 *   conch-runtime ARGS...   exec DIR/conch-runtime-py ARGS... (DIR: this binary's own
 *                           directory; that file is the lean Python launcher of
 *                           conch.runtime.main, see tools/lean_launcher.py)
 *
 * Why a front: moving a process into a cgroup takes the kernel's cgroup_threadgroup_rwsem
 * for writing, and when no writer held it lately that waits out a whole RCU grace period
 * (10-14 ms measured here), holding cgroup_mutex meanwhile. A cold `create` or `run`
 * cannot avoid one such wait (the container's init is moved into its cgroups), so the
 * earlier it starts, the sooner it ends: conch.runtime.prearm starts it from Python, but
 * only once the interpreter is up (~10 ms after exec). runc's Go start-up takes ~3 ms.
 * So for `create` and `run` this front starts it first: a grandchild moves itself into
 * the cgroup it is already in (writes "0" to its own cgroup.procs: a no-op move that
 * still takes the lock), and the front execs Python at once. The grandchild is never
 * our child (its parent exits at once), so the Python runtime has no stray child to
 * reap or to see in waitpid(-1); it is reparented to the nearest subreaper or init,
 * which reaps it when its write returns. Best effort: any failure only skips this.
 *
 * Every other verb (and `warm`, conch-shim's pre-started runtime) is a plain exec.
 * Static, no libraries: the exec costs ~0.3 ms.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

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
	if (strcmp(v, "create") == 0 || strcmp(v, "run") == 0)
		prearm();
	argv[0] = script;
	execv(script, argv);
	fprintf(stderr, "conch-runtime: exec %s: %s\n", script, strerror(errno));
	return 127;
}
