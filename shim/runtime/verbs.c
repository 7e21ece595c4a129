/*
 * `kill` and `delete` of conch-runtime's front, for the common case, without Python.
 *
 * containerd's runc shim and podman's conmon exec the runtime for every step of a
 * container's life: create, start, state (polled), kill, delete. The front does create,
 * start and state already; these two were the last to pay the interpreter's start-up
 * (~8 ms each). What is done here is exactly what the Python runtime does for them
 * (conch/runtime/commands.py cmd_kill; conch/runtime/fastpath.py _delete_stopped):
 *
 * - `kill ID [SIGNAL]` (no --all) of a container whose init is alive: the signal parsed
 *   as commands.parse_signal parses it, sent to the init;
 * - `delete ID` of a stopped container without poststop hooks whose cgroup has no process,
 *   no child cgroup and no parent this container made: its cgroup directories removed,
 *   then its state directory.
 *
 * Anything else (another flag, a record this does not read, an init still alive for
 * delete, a dead one for kill, a signal Python would refuse, any failure before the first
 * change) returns -1, and main() execs the Python runtime with the command line untouched,
 * which does it or says what is wrong in its own words. Past the first change (a removed
 * cgroup directory), a failure is handed to Python too: its delete finishes what is left
 * (a missing directory is no error there), as fastpath's does.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"
#include "record.h"
#include "verbs.h"

/* The container's record, as conch.runtime.state.State.load reads it. */
struct record {
	char dir[4096];
	char *text;
	struct jval *doc;
	long long pid, pid_start;
	const struct jval *cgroup, *hooks;
};

static void drop(struct record *r)
{
	json_free(r->doc);
	free(r->text);
}

/* `[--root R] [--log F] [--log-format F] VERB [FLAGS] ID [ARG]`: the root, the id and up
 * to one argument after it; flag words in flags[] are counted in *seen. -1: not ours. */
static int parse(int argc, char **argv, const char *verb, const char *const *flags, int *seen,
		 const char **root, const char **id, const char **arg)
{
	int verb_at = 0;
	*root = getenv("CONCH_RUNTIME_ROOT");
	if (!*root || !**root)
		*root = "/run/conch-runtime";
	*id = *arg = NULL;
	*seen = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!verb_at) {
			if (!strcmp(a, "--root") && i + 1 < argc)
				*root = argv[++i];
			else if (!strncmp(a, "--root=", 7))
				*root = a + 7;
			else if ((!strcmp(a, "--log") || !strcmp(a, "--log-format")) && i + 1 < argc)
				i++; /* only errors are logged, and errors go to Python */
			else if (!strncmp(a, "--log=", 6) || !strncmp(a, "--log-format=", 13))
				;
			else if (!strcmp(a, verb))
				verb_at = i;
			else
				return -1;
			continue;
		}
		int flag = 0;
		for (const char *const *f = flags; f && *f; f++)
			if (!strcmp(a, *f))
				flag = 1;
		if (flag && !*id)
			(*seen)++;
		else if (a[0] == '-' && a[1] != '\0')
			return -1; /* a flag this does not know, or one after the id */
		else if (!*id)
			*id = a;
		else if (!*arg)
			*arg = a;
		else
			return -1;
	}
	return verb_at && *id && **root ? 0 : -1;
}

static int load(const char *root, const char *id, struct record *r)
{
	memset(r, 0, sizeof *r);
	if (!front_valid_id(id))
		return -1;
	size_t rl = strlen(root);
	if (snprintf(r->dir, sizeof r->dir, "%s%s%s", root, rl && root[rl - 1] == '/' ? "" : "/", id) >=
	    (int)sizeof r->dir)
		return -1;
	char path[4200], err[128];
	size_t len;
	snprintf(path, sizeof path, "%s/state.json", r->dir);
	if (!(r->text = front_slurp(path, 1 << 20, &len)))
		return -1;
	r->doc = json_parse(r->text, len, err, sizeof err);
	const struct jval *pid = json_get(r->doc, "pid"), *start = json_get(r->doc, "pid_start"),
			  *status = json_get(r->doc, "status");
	if (!r->doc || !pid || pid->type != J_NUMBER || !pid->is_int || !start || start->type != J_NUMBER ||
	    !start->is_int || !status || status->type != J_STRING) {
		drop(r);
		return -1;
	}
	r->pid = pid->integer;
	r->pid_start = start->integer;
	if (!strcmp(status->str, "creating") || r->pid <= 0) { /* current_status: Python's */
		drop(r);
		return -1;
	}
	r->cgroup = json_get(r->doc, "cgroup");
	r->hooks = json_get(r->doc, "hooks");
	return 0;
}

/* commands.parse_signal: a number 1..64, or a name of Python's signal module with or
 * without "SIG", any case. 0 when Python would refuse it (it then says so). */
static int parse_signal(const char *text)
{
	static const struct { const char *name; int num; } names[] = {
		{"SIGABRT", SIGABRT}, {"SIGALRM", SIGALRM}, {"SIGBUS", SIGBUS}, {"SIGCHLD", SIGCHLD},
		{"SIGCLD", SIGCHLD}, {"SIGCONT", SIGCONT}, {"SIGFPE", SIGFPE}, {"SIGHUP", SIGHUP},
		{"SIGILL", SIGILL}, {"SIGINT", SIGINT}, {"SIGIO", SIGIO}, {"SIGIOT", SIGIOT},
		{"SIGKILL", SIGKILL}, {"SIGPIPE", SIGPIPE}, {"SIGPOLL", SIGPOLL}, {"SIGPROF", SIGPROF},
		{"SIGPWR", SIGPWR}, {"SIGQUIT", SIGQUIT}, {"SIGRTMAX", 64}, {"SIGRTMIN", 34},
		{"SIGSEGV", SIGSEGV}, {"SIGSTKFLT", SIGSTKFLT}, {"SIGSTOP", SIGSTOP}, {"SIGSYS", SIGSYS},
		{"SIGTERM", SIGTERM}, {"SIGTRAP", SIGTRAP}, {"SIGTSTP", SIGTSTP}, {"SIGTTIN", SIGTTIN},
		{"SIGTTOU", SIGTTOU}, {"SIGURG", SIGURG}, {"SIGUSR1", SIGUSR1}, {"SIGUSR2", SIGUSR2},
		{"SIGVTALRM", SIGVTALRM}, {"SIGWINCH", SIGWINCH}, {"SIGXCPU", SIGXCPU}, {"SIGXFSZ", SIGXFSZ},
	};
	char up[32];
	if (!text || !*text)
		text = "SIGTERM";
	size_t n = strlen(text);
	if (n + 4 > sizeof up)
		return 0;
	int digits = 1;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)text[i];
		if (c >= 0x80)
			return 0; /* str.upper/isdigit of non-ASCII: Python's to judge */
		digits &= c >= '0' && c <= '9';
	}
	if (digits) {
		if (n > 3)
			return 0;
		int num = atoi(text);
		return num > 0 && num < 65 ? num : 0;
	}
	size_t k = 0;
	if (!(n >= 3 && (text[0] == 's' || text[0] == 'S') && (text[1] == 'i' || text[1] == 'I') &&
	      (text[2] == 'g' || text[2] == 'G'))) {
		memcpy(up, "SIG", 3);
		k = 3;
	}
	for (size_t i = 0; i < n; i++)
		up[k++] = (char)(text[i] >= 'a' && text[i] <= 'z' ? text[i] - 32 : text[i]);
	up[k] = '\0';
	for (size_t i = 0; i < sizeof names / sizeof *names; i++)
		if (!strcmp(up, names[i].name))
			return names[i].num;
	return 0;
}

int front_kill(int argc, char **argv)
{
	static const char *const flags[] = {NULL};
	const char *root, *id, *arg;
	int seen;
	struct record r;
	if (parse(argc, argv, "kill", flags, &seen, &root, &id, &arg) < 0)
		return -1;
	int sig = parse_signal(arg);
	if (!sig || load(root, id, &r) < 0)
		return -1;
	int code = -1;
	/* created, running or paused: signalled; stopped: Python says "is not running" */
	if (front_same_process(r.pid, r.pid_start) && kill((pid_t)r.pid, sig) == 0)
		code = 0;
	drop(&r);
	return code;
}

/* fastpath._cgroup_dirs: the directories of a saved cgroup record; n = -1 for a record
 * this does not read. */
static int cgroup_dirs(const struct jval *saved, const char **dirs, int max)
{
	if (!saved || saved->type == J_NULL || (saved->type == J_OBJECT && saved->n == 0))
		return 0;
	const struct jval *version = json_get(saved, "version");
	if (!version || version->type != J_NUMBER || !version->is_int)
		return -1;
	if (version->integer == 1) {
		const struct jval *d = json_get(saved, "dirs");
		if (!d || d->type != J_OBJECT || (int)d->n > max)
			return -1;
		for (size_t i = 0; i < d->n; i++) {
			if (d->items[i].type != J_STRING)
				return -1;
			dirs[i] = d->items[i].str;
		}
		return (int)d->n;
	}
	if (version->integer == 2) {
		const struct jval *d = json_get(saved, "dir");
		if (!d || d->type != J_STRING)
			return -1;
		dirs[0] = d->str;
		return 1;
	}
	return -1;
}

/* fastpath._procs_dir: the directory whose processes the managers' pids() lists. */
static const char *procs_dir(const struct jval *saved, const char **dirs)
{
	const struct jval *version = json_get(saved, "version");
	if (version->integer == 2)
		return dirs[0];
	static const char *const order[] = {"pids", "freezer", "memory", "cpu", "devices"};
	const struct jval *d = json_get(saved, "dirs");
	for (size_t o = 0; o < sizeof order / sizeof *order; o++)
		for (size_t i = 0; i < d->n; i++) {
			char opts[512];
			snprintf(opts, sizeof opts, ",%s,", d->keys[i]);
			char want[32];
			snprintf(want, sizeof want, ",%s,", order[o]);
			if (strstr(opts, want))
				return d->items[i].str;
		}
	return dirs[0];
}

/* fastpath._busy: processes or child cgroups left (an unreadable one counts as busy). */
static int busy(const char *dir)
{
	char path[4200];
	snprintf(path, sizeof path, "%s/cgroup.procs", dir);
	FILE *f = fopen(path, "re");
	if (!f)
		return errno == ENOENT ? 0 : 1;
	int c, any = 0;
	while ((c = fgetc(f)) != EOF)
		if (!strchr(" \t\n\r\v\f", c))
			any = 1;
	int bad = ferror(f);
	fclose(f);
	if (any || bad)
		return 1;
	DIR *d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : 1;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		struct stat st;
		if (e->d_type == DT_DIR || (e->d_type == DT_UNKNOWN && fstatat(dirfd(d), e->d_name, &st,
						  AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode))) {
			any = 1;
			break;
		}
	}
	closedir(d);
	return any;
}

/* state.remove_state_dir: the directory holds only plain files. -1 when something
 * cannot be removed (a stray directory, say): Python's delete then finishes and says. */
static int remove_state_dir(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : -1;
	struct dirent *e;
	int bad = 0;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && unlinkat(dirfd(d), e->d_name, 0) < 0 &&
		    errno != ENOENT)
			bad = 1;
	closedir(d);
	if (!bad && rmdir(dir) < 0 && errno != ENOENT)
		bad = 1;
	return bad ? -1 : 0;
}

int front_delete(int argc, char **argv)
{
	static const char *const flags[] = {"--force", "-f", NULL};
	const char *root, *id, *arg, *dirs[64];
	int seen;
	struct record r;
	if (parse(argc, argv, "delete", flags, &seen, &root, &id, &arg) < 0 || arg || load(root, id, &r) < 0)
		return -1;
	int code = -1, n;
	/* stopped (a live init: Python kills it with --force, or refuses), and no poststop
	 * hooks: state.hooks a list without "poststop" (None in old records: maybe some) */
	int hooks_ok = r.hooks && r.hooks->type == J_ARRAY;
	for (size_t i = 0; hooks_ok && i < r.hooks->n; i++)
		if (r.hooks->items[i].type != J_STRING || !strcmp(r.hooks->items[i].str, "poststop"))
			hooks_ok = 0;
	if (!hooks_ok || front_same_process(r.pid, r.pid_start) || (n = cgroup_dirs(r.cgroup, dirs, 64)) < 0)
		goto out;
	if (n > 0) {
		const struct jval *created = json_get(r.cgroup, "created");
		if (created && created->type != J_ARRAY)
			goto out;
		for (size_t c = 0; created && c < created->n; c++) {
			if (created->items[c].type != J_STRING)
				goto out;
			char prefix[4200];
			size_t pl = strlen(created->items[c].str);
			while (pl && created->items[c].str[pl - 1] == '/')
				pl--;
			snprintf(prefix, sizeof prefix, "%.*s/", (int)pl, created->items[c].str);
			for (int i = 0; i < n; i++)
				if (!strncmp(dirs[i], prefix, strlen(prefix)))
					goto out; /* a parent of ours to remove if empty: Python's delete */
		}
		if (busy(procs_dir(r.cgroup, dirs)))
			goto out; /* left-over processes to kill, or child cgroups: Python's */
	}
	for (int i = 0; i < n; i++)
		if (rmdir(dirs[i]) < 0 && errno != ENOENT)
			goto out; /* EBUSY/ENOTEMPTY: Python waits, walks and retries */
	if (remove_state_dir(r.dir) == 0)
		code = 0;
out:
	drop(&r);
	return code;
}
