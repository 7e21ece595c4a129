/*
 * The C create/run path, part 1: the command line and config.json, read and checked
 * before anything on the host changes (see front.h).
 *
 * The rule is a whitelist, walked recursively: a container is taken only when every flag
 * and every key of its config is one this path implements exactly as the Python runtime
 * (conch/runtime/main.py's parser, config.validate, create.create's checks) does, with a
 * value that Python would accept. Anything else, including what Python would refuse, is
 * declined with a short reason (CONCH_RUNTIME_FRONT_DEBUG prints it) and the front execs
 * Python, which runs the container or says what is wrong in its own words. So this file
 * never has to word an error, only to be sure it is not one.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "front.h"
#include "record.h"

#define NO(...)                                          \
	do {                                             \
		snprintf(why, whylen, __VA_ARGS__);      \
		return -1;                               \
	} while (0)

/* conch.kernel.capabilities.NAMES */
static const char *const CAP_NAMES[] = {
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
	"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
	"CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
	"CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
	"CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
	"CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
	"CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
	"CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
	"CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE", NULL,
};

/* conch.kernel.mount.MOUNT_OPTIONS: word, clear, flag */
static const struct {
	const char *word;
	int clear;
	unsigned long flag;
} MOUNT_OPTIONS[] = {
	{"ro", 0, MS_RDONLY}, {"rw", 1, MS_RDONLY}, {"nosuid", 0, MS_NOSUID}, {"suid", 1, MS_NOSUID},
	{"nodev", 0, MS_NODEV}, {"dev", 1, MS_NODEV}, {"noexec", 0, MS_NOEXEC}, {"exec", 1, MS_NOEXEC},
	{"sync", 0, MS_SYNCHRONOUS}, {"async", 1, MS_SYNCHRONOUS}, {"dirsync", 0, MS_DIRSYNC},
	{"remount", 0, MS_REMOUNT}, {"mand", 0, MS_MANDLOCK}, {"nomand", 1, MS_MANDLOCK},
	{"atime", 1, MS_NOATIME}, {"noatime", 0, MS_NOATIME}, {"diratime", 1, MS_NODIRATIME},
	{"nodiratime", 0, MS_NODIRATIME}, {"bind", 0, MS_BIND}, {"rbind", 0, MS_BIND | MS_REC},
	{"relatime", 0, MS_RELATIME}, {"norelatime", 1, MS_RELATIME},
	{"strictatime", 0, MS_STRICTATIME}, {"nostrictatime", 1, MS_STRICTATIME},
	{"lazytime", 0, MS_LAZYTIME}, {"nolazytime", 1, MS_LAZYTIME},
	{"symfollow", 1, 0x100}, {"nosymfollow", 0, 0x100}, {"defaults", 0, 0}, {NULL, 0, 0},
};

/* conch.kernel.mount.PROPAGATION_OPTIONS; also used by init.c */
unsigned long front_propagation(const char *word)
{
	static const struct {
		const char *word;
		unsigned long flag;
	} P[] = {
		{"private", MS_PRIVATE}, {"rprivate", MS_PRIVATE | MS_REC}, {"shared", MS_SHARED},
		{"rshared", MS_SHARED | MS_REC}, {"slave", MS_SLAVE}, {"rslave", MS_SLAVE | MS_REC},
		{"unbindable", MS_UNBINDABLE}, {"runbindable", MS_UNBINDABLE | MS_REC}, {NULL, 0},
	};
	for (int i = 0; P[i].word; i++)
		if (strcmp(P[i].word, word) == 0)
			return P[i].flag;
	return 0;
}

/* conch.runtime.process._RLIMITS */
static const char *const RLIMIT_NAMES[] = {
	"RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_DATA", "RLIMIT_STACK", "RLIMIT_CORE", "RLIMIT_RSS",
	"RLIMIT_NPROC", "RLIMIT_NOFILE", "RLIMIT_MEMLOCK", "RLIMIT_AS", "RLIMIT_LOCKS",
	"RLIMIT_SIGPENDING", "RLIMIT_MSGQUEUE", "RLIMIT_NICE", "RLIMIT_RTPRIO", "RLIMIT_RTTIME", NULL,
};

static const char *const NS_NAMES[NS_COUNT] = {"cgroup", "ipc", "uts", "network", "pid", "mount"};

int front_is_string(const struct jval *v)
{
	return v && v->type == J_STRING;
}

static int is_bool(const struct jval *v)
{
	return v && (v->type == J_TRUE || v->type == J_FALSE);
}

/* A non-negative JSON integer no larger than max. */
static int uint_of(const struct jval *v, unsigned long long max, unsigned long long *out)
{
	if (!v || v->type != J_NUMBER || !v->is_int || v->integer < 0 || (unsigned long long)v->integer > max)
		return -1;
	*out = (unsigned long long)v->integer;
	return 0;
}

static int cmp_keys(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A key obj repeats (then json_get's last value is not the only one Python would see), or
 * NULL. Sorted, O(n log n): 100k annotations are a config.json Python takes in 0.5 s. */
static const char *repeated_key(const struct jval *obj)
{
	if (obj->n < 2)
		return NULL;
	if (obj->n <= 8) {
		for (size_t i = 1; i < obj->n; i++)
			for (size_t j = 0; j < i; j++)
				if (strcmp(obj->keys[i], obj->keys[j]) == 0)
					return obj->keys[i];
		return NULL;
	}
	char **sorted = malloc(obj->n * sizeof *sorted);
	const char *dup = NULL;
	if (!sorted)
		return obj->keys[0]; /* no memory: declined as if repeated */
	memcpy(sorted, obj->keys, obj->n * sizeof *sorted);
	qsort(sorted, obj->n, sizeof *sorted, cmp_keys);
	for (size_t i = 1; i < obj->n && !dup; i++)
		if (strcmp(sorted[i], sorted[i - 1]) == 0)
			dup = sorted[i];
	free(sorted);
	return dup;
}

/* Every key of obj is in allowed (NULL-terminated) and none is repeated: then the last
 * value json_get returns is the only one, as Python would see it. */
static int keys_ok(const struct jval *obj, const char *const *allowed, const char **bad)
{
	for (size_t i = 0; i < obj->n; i++) {
		int ok = 0;
		for (const char *const *a = allowed; a && *a; a++)
			if (strcmp(*a, obj->keys[i]) == 0)
				ok = 1;
		for (size_t j = 0; j < i && ok; j++) /* i < len(allowed) here: small */
			if (strcmp(obj->keys[i], obj->keys[j]) == 0)
				ok = 0;
		if (!ok) {
			*bad = obj->keys[i];
			return -1;
		}
	}
	return 0;
}

static int strings(const struct jval *v)
{
	if (!v || v->type != J_ARRAY)
		return 0;
	for (size_t i = 0; i < v->n; i++)
		if (v->items[i].type != J_STRING)
			return 0;
	return 1;
}

/* os.path.normpath of an absolute path (a leading "//" is declined by the caller). */
static void normpath(char *path)
{
	char *out = path, *p = path;
	size_t len = 0;
	while (*p) {
		while (*p == '/')
			p++;
		if (!*p)
			break;
		char *end = strchrnul(p, '/');
		size_t n = (size_t)(end - p);
		if (n == 1 && p[0] == '.') {
			/* nothing */
		} else if (n == 2 && p[0] == '.' && p[1] == '.') {
			while (len > 0 && out[len - 1] != '/')
				len--;
			if (len > 0)
				len--; /* the slash before it */
		} else {
			out[len++] = '/';
			memmove(out + len, p, n);
			len += n;
		}
		p = end;
	}
	if (len == 0)
		out[len++] = '/';
	out[len] = '\0';
}

static int absolute(const char *path, char *out, size_t size)
{
	char cwd[PATH_MAX];
	if (path[0] == '/') {
		if (snprintf(out, size, "%s", path) >= (int)size)
			return -1;
	} else {
		if (!getcwd(cwd, sizeof cwd) || snprintf(out, size, "%s/%s", cwd, path) >= (int)size)
			return -1;
	}
	if (out[0] == '/' && out[1] == '/' && out[2] != '/')
		return -1; /* POSIX keeps "//": not worth matching */
	normpath(out);
	return 0;
}

static int parse_flags(int argc, char **argv, struct front_plan *pl, char *why, size_t whylen)
{
	const char *root = getenv("CONCH_RUNTIME_ROOT");
	const char *bundle = NULL;
	pl->root = root && *root ? root : "/run/conch-runtime";
	pl->log_format = "text";
	pl->pid_file = "";
	pl->console_socket = "";
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		const char *a = argv[i], **slot = NULL, *value = NULL;
		if (strncmp(a, "--root", 6) == 0 && (a[6] == '\0' || a[6] == '='))
			slot = &pl->root;
		else if (strncmp(a, "--log-format", 12) == 0 && (a[12] == '\0' || a[12] == '='))
			slot = &pl->log_format;
		else if (strncmp(a, "--log", 5) == 0 && (a[5] == '\0' || a[5] == '='))
			slot = &pl->log;
		else
			NO("global flag %s", a);
		value = strchr(a, '=');
		if (value)
			value++;
		else if (i + 1 < argc)
			value = argv[++i];
		else
			NO("flag %s without a value", a);
		*slot = value;
	}
	if (!*pl->root)
		NO("an empty --root");
	if (strcmp(pl->log_format, "text") != 0 && strcmp(pl->log_format, "json") != 0)
		NO("--log-format %s", pl->log_format);
	if (i >= argc)
		NO("no command");
	pl->run = strcmp(argv[i], "run") == 0;
	if (!pl->run && strcmp(argv[i], "create") != 0)
		NO("command %s", argv[i]);
	for (i++; i < argc; i++) {
		const char *a = argv[i];
		if (a[0] != '-' || strcmp(a, "-") == 0) {
			if (pl->id)
				NO("a second argument %s", a);
			pl->id = a;
			continue;
		}
		const char *eq = strncmp(a, "--", 2) == 0 ? strchr(a, '=') : NULL;
		size_t namelen = eq ? (size_t)(eq - a) : strlen(a);
		const char **slot = NULL;
#define name_is(n) (strlen(n) == namelen && strncmp(a, n, namelen) == 0)
		if (name_is("--bundle") || name_is("-b"))
			slot = &bundle;
		else if (name_is("--pid-file"))
			slot = &pl->pid_file;
		else if (name_is("--console-socket"))
			slot = &pl->console_socket;
		else if (name_is("--preserve-fds")) {
			const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
			if (!v || strcmp(v, "0") != 0)
				NO("--preserve-fds");
			continue;
		} else if (pl->run && !eq && (name_is("--detach") || name_is("-d"))) {
			pl->detach = 1;
			continue;
		} else if (pl->run && !eq && name_is("--keep")) {
			pl->keep = 1;
			continue;
		} else {
			NO("flag %s", a);
		}
		if (eq)
			*slot = eq + 1;
		else if (i + 1 < argc)
			*slot = argv[++i];
		else
			NO("flag %s without a value", a);
#undef name_is
	}
	if (!pl->id || !front_valid_id(pl->id))
		NO("no valid container id");
	if (strlen(pl->id) > NAME_MAX) /* Python's mkdir fails (ENAMETOOLONG): its words */
		NO("container id longer than NAME_MAX");
	/* Python takes a path of exactly sizeof sun_path bytes (no NUL): not worth matching */
	if (strlen(pl->console_socket) >= sizeof ((struct sockaddr_un *)0)->sun_path)
		NO("--console-socket path too long");
	if (absolute(bundle && *bundle ? bundle : ".", pl->bundle, sizeof pl->bundle) < 0)
		NO("bundle path");
	return 0;
}

static int own_bounding(uint64_t *out)
{
	char line[256];
	FILE *f = fopen("/proc/self/status", "re");
	int found = -1;
	while (f && found < 0 && fgets(line, sizeof line, f))
		if (strncmp(line, "CapBnd:", 7) == 0) {
			*out = strtoull(line + 7, NULL, 16);
			found = 0;
		}
	if (f)
		fclose(f);
	return found;
}

static int check_process(const struct jval *proc, struct front_plan *pl, char *why, size_t whylen)
{
	static const char *const keys[] = {"terminal", "consoleSize", "user", "args", "env", "cwd",
					   "capabilities", "rlimits", "noNewPrivileges", "oomScoreAdj", NULL};
	const char *bad;
	const struct jval *v;
	unsigned long long n;
	if (!proc || proc->type != J_OBJECT)
		NO("process is not an object");
	if (keys_ok(proc, keys, &bad) < 0)
		NO("process.%s", bad);
	if ((v = json_get(proc, "terminal"))) {
		if (!is_bool(v))
			NO("process.terminal");
		pl->terminal = v->type == J_TRUE;
	}
	if ((v = json_get(proc, "consoleSize")) && v->type != J_NULL) {
		/* console.make_controlling: a non-empty object's height and width (0 when
		 * missing) packed as unsigned shorts; anything else is Python's to take or
		 * refuse. Read (and checked) even without a terminal, where Python ignores it. */
		static const char *const skeys[] = {"height", "width", NULL};
		const struct jval *h, *w;
		unsigned long long rows = 0, cols = 0;
		if (v->type != J_OBJECT || keys_ok(v, skeys, &bad) < 0 ||
		    ((h = json_get(v, "height")) && uint_of(h, 0xffff, &rows) < 0) ||
		    ((w = json_get(v, "width")) && uint_of(w, 0xffff, &cols) < 0))
			NO("process.consoleSize");
		pl->has_size = v->n > 0;
		pl->rows = (unsigned short)rows;
		pl->cols = (unsigned short)cols;
	}
	if ((v = json_get(proc, "user"))) {
		/* username: read by neither runtime (process.switch_user); umask: init.finalize */
		static const char *const ukeys[] = {"uid", "gid", "additionalGids", "umask", "username", NULL};
		const struct jval *g;
		if (v->type != J_OBJECT || keys_ok(v, ukeys, &bad) < 0 ||
		    (json_get(v, "umask") && json_get(v, "umask")->type != J_NULL &&
		     uint_of(json_get(v, "umask"), 07777, &n) < 0) ||
		    (json_get(v, "username") && !front_is_string(json_get(v, "username"))))
			NO("process.user");
		if (json_get(v, "umask") && json_get(v, "umask")->type != J_NULL) { /* null: none */
			pl->has_umask = 1; /* checked above: an integer in 0..07777 */
			pl->umask = (mode_t)json_get(v, "umask")->integer;
		}
		if (json_get(v, "uid")) {
			if (uint_of(json_get(v, "uid"), 0xfffffffeULL, &n) < 0)
				NO("process.user.uid");
			pl->uid = (uid_t)n;
		}
		if (json_get(v, "gid")) {
			if (uint_of(json_get(v, "gid"), 0xfffffffeULL, &n) < 0)
				NO("process.user.gid");
			pl->gid = (gid_t)n;
		}
		if ((g = json_get(v, "additionalGids"))) {
			if (g->type != J_ARRAY || g->n > FRONT_MAX_GROUPS)
				NO("process.user.additionalGids");
			for (size_t i = 0; i < g->n; i++) {
				if (uint_of(&g->items[i], 0xfffffffeULL, &n) < 0)
					NO("process.user.additionalGids");
				pl->groups[pl->ngroups++] = (gid_t)n;
			}
		}
	}
	pl->args = json_get(proc, "args");
	if (!strings(pl->args) || pl->args->n == 0 || pl->args->items[0].len == 0)
		NO("process.args");
	if ((pl->env = json_get(proc, "env"))) {
		if (!strings(pl->env))
			NO("process.env");
		for (size_t i = 0; i < pl->env->n; i++) /* process.env_dict: "has no name" */
			if (!*pl->env->items[i].str || pl->env->items[i].str[0] == '=')
				NO("process.env entry without a name");
	}
	pl->cwd = "/";
	if ((v = json_get(proc, "cwd"))) {
		if (!front_is_string(v) || v->str[0] != '/')
			NO("process.cwd");
		pl->cwd = v->str;
	}
	if ((v = json_get(proc, "capabilities"))) {
		static const char *const sets[] = {"bounding", "effective", "permitted", "inheritable", "ambient", NULL};
		uint64_t available = 0;
		if (v->type != J_OBJECT || keys_ok(v, sets, &bad) < 0)
			NO("process.capabilities");
		if (own_bounding(&available) < 0)
			NO("no CapBnd in /proc/self/status");
		for (int s = 0; sets[s]; s++) {
			const struct jval *names = json_get(v, sets[s]);
			if (!names)
				continue;
			if (!strings(names))
				NO("process.capabilities.%s", sets[s]);
			for (size_t i = 0; i < names->n; i++) {
				int bit = -1;
				for (int c = 0; CAP_NAMES[c]; c++)
					if (strcmp(CAP_NAMES[c], names->items[i].str) == 0)
						bit = c;
				if (bit < 0 || !(available & (1ULL << bit)))
					NO("capability %s", names->items[i].str);
				pl->caps[s] |= 1ULL << bit;
			}
		}
	}
	if ((v = json_get(proc, "rlimits"))) {
		static const char *const rkeys[] = {"type", "soft", "hard", NULL};
		if (v->type != J_ARRAY || v->n > FRONT_MAX_RLIMITS)
			NO("process.rlimits");
		for (size_t i = 0; i < v->n; i++) {
			const struct jval *rl = &v->items[i], *t;
			unsigned long long soft = 0, hard = 0;
			int res = -1;
			struct rlimit cur;
			if (rl->type != J_OBJECT || keys_ok(rl, rkeys, &bad) < 0 || !front_is_string(t = json_get(rl, "type")))
				NO("process.rlimits");
			for (int r = 0; RLIMIT_NAMES[r]; r++)
				if (strcmp(RLIMIT_NAMES[r], t->str) == 0)
					res = r;
			if (res < 0 || (json_get(rl, "soft") && uint_of(json_get(rl, "soft"), (1ULL << 62), &soft) < 0) ||
			    (json_get(rl, "hard") && uint_of(json_get(rl, "hard"), (1ULL << 62), &hard) < 0) || soft > hard)
				NO("process.rlimits %s", t->str);
			if (getrlimit(res, &cur) < 0 || (cur.rlim_max != RLIM_INFINITY && hard > cur.rlim_max))
				NO("rlimit %s above ours", t->str);
			pl->rlimits[pl->nrlimits].resource = res;
			pl->rlimits[pl->nrlimits].soft = soft;
			pl->rlimits[pl->nrlimits].hard = hard;
			pl->nrlimits++;
		}
	}
	if ((v = json_get(proc, "noNewPrivileges"))) {
		if (!is_bool(v))
			NO("process.noNewPrivileges");
		pl->nnp = v->type == J_TRUE;
	}
	if ((v = json_get(proc, "oomScoreAdj"))) {
		if (v->type != J_NUMBER || !v->is_int || v->integer < -1000 || v->integer > 1000)
			NO("process.oomScoreAdj");
		pl->has_oom = 1;
		pl->oom = (long)v->integer;
	}
	return 0;
}

static int check_mounts(const struct jval *mounts, struct front_plan *pl, char *why, size_t whylen)
{
	static const char *const keys[] = {"destination", "type", "source", "options", NULL};
	static const char *const unsupported[] = {"idmap", "ridmap", "tmpcopyup", "copy-symlink",
						  "src-nofollow", "nosymfollow", NULL};
	static const char *const types[] = {"proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup", NULL};
	const char *bad;
	if (mounts->type != J_ARRAY || mounts->n > FRONT_MAX_MOUNTS)
		NO("mounts");
	for (size_t i = 0; i < mounts->n; i++) {
		const struct jval *m = &mounts->items[i], *v;
		struct front_mount *fm = &pl->mounts[pl->nmounts++];
		if (m->type != J_OBJECT || keys_ok(m, keys, &bad) < 0)
			NO("mounts[%zu]", i);
		if (!front_is_string(v = json_get(m, "destination")) || v->str[0] != '/')
			NO("mounts[%zu].destination", i);
		fm->dest = v->str;
		fm->type = fm->source = "";
		if ((v = json_get(m, "type"))) {
			if (!front_is_string(v))
				NO("mounts[%zu].type", i);
			fm->type = v->str;
		}
		if ((v = json_get(m, "source"))) {
			if (!front_is_string(v))
				NO("mounts[%zu].source", i);
			fm->source = v->str;
		}
		int binds = 0;
		size_t datalen = 0;
		if ((v = json_get(m, "options"))) {
			if (!strings(v))
				NO("mounts[%zu].options", i);
			for (size_t k = 0; k < v->n; k++) {
				const char *o = v->items[k].str;
				int known = 0;
				for (int u = 0; unsupported[u]; u++)
					if (strcmp(o, unsupported[u]) == 0)
						NO("mount option %s", o);
				if (strcmp(o, "bind") == 0 || strcmp(o, "rbind") == 0)
					binds = 1;
				for (int t = 0; MOUNT_OPTIONS[t].word; t++)
					if (strcmp(MOUNT_OPTIONS[t].word, o) == 0) {
						known = 1;
						if (MOUNT_OPTIONS[t].clear)
							fm->flags &= ~MOUNT_OPTIONS[t].flag;
						else
							fm->flags |= MOUNT_OPTIONS[t].flag;
					}
				if (!known && front_propagation(o))
					fm->propagation |= front_propagation(o);
				else if (!known) {
					if (!*o || strchr(o, ','))
						NO("mount data word %s", o);
					datalen += strlen(o) + 1;
				}
			}
			if (datalen) {
				fm->data = calloc(1, datalen);
				for (size_t k = 0; k < v->n; k++) {
					const char *o = v->items[k].str;
					int known = front_propagation(o) != 0;
					for (int t = 0; MOUNT_OPTIONS[t].word; t++)
						known |= strcmp(MOUNT_OPTIONS[t].word, o) == 0;
					if (!known) {
						if (*fm->data)
							strcat(fm->data, ",");
						strcat(fm->data, o);
					}
				}
			}
		}
		if (!(strcmp(fm->type, "bind") == 0 || (fm->flags & MS_BIND))) {
			int ok = 0;
			for (int t = 0; types[t]; t++)
				ok |= strcmp(types[t], fm->type) == 0;
			if (!ok)
				NO("mount type %s", fm->type);
		}
		if (strcmp(fm->dest, "/dev") == 0 && strcmp(fm->type, "bind") != 0 && !binds)
			pl->dev_mounted = 1;
	}
	return 0;
}

static int check_devices(const struct jval *devs, struct front_plan *pl, char *why, size_t whylen)
{
	static const char *const keys[] = {"path", "type", "major", "minor", "fileMode", "uid", "gid", NULL};
	const char *bad;
	if (devs->type != J_ARRAY || devs->n > FRONT_MAX_DEVICES)
		NO("linux.devices");
	for (size_t i = 0; i < devs->n; i++) {
		const struct jval *d = &devs->items[i], *v;
		struct front_device *fd = &pl->devices[pl->ndevices++];
		unsigned long long n;
		if (d->type != J_OBJECT || keys_ok(d, keys, &bad) < 0 || !front_is_string(v = json_get(d, "path")) ||
		    strncmp(v->str, "/dev/", 5) != 0)
			NO("linux.devices[%zu]", i);
		fd->path = v->str;
		if (!front_is_string(v = json_get(d, "type")) || v->len != 1 || !strchr("cubp", v->str[0]))
			NO("linux.devices[%zu].type", i);
		fd->kind = v->str[0] == 'b' ? S_IFBLK : v->str[0] == 'p' ? S_IFIFO : S_IFCHR;
		fd->mode = 0666;
#define FIELD(name, max, dst)                                             \
	if (json_get(d, name)) {                                          \
		if (uint_of(json_get(d, name), max, &n) < 0)              \
			NO("linux.devices[%zu].%s", i, name);             \
		dst = n;                                                  \
	}
		FIELD("major", 0xfffffffULL, fd->major)
		FIELD("minor", 0xfffffULL, fd->minor)
		FIELD("fileMode", 0xffffffffULL, fd->mode)
		FIELD("uid", 0xfffffffeULL, fd->uid)
		FIELD("gid", 0xfffffffeULL, fd->gid)
#undef FIELD
		fd->mode &= 07777;
	}
	return 0;
}

/* Both paths exist and are one file (an empty path is none). */
static int same_file(const char *a, const char *b)
{
	struct stat sa, sb;
	return *a && stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* runc's sysctl rule (libcontainer/configs/validate), which config.validate words: an
 * IPC sysctl needs an ipc namespace, "net." a network one, kernel.domainname a uts one;
 * anything else (kernel.hostname included) is refused there, so declined here. */
static int sysctl_allowed(const char *key, const struct front_plan *pl)
{
	static const char *const ipc[] = {"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
					  "kernel.shmall", "kernel.shmmax", "kernel.shmmni",
					  "kernel.shm_rmid_forced", NULL};
	for (int i = 0; ipc[i]; i++)
		if (strcmp(key, ipc[i]) == 0)
			return pl->ns_has[NS_IPC];
	if (strncmp(key, "fs.mqueue.", 10) == 0)
		return pl->ns_has[NS_IPC];
	if (strncmp(key, "net.", 4) == 0) /* config._is_host_netns: a path that is our own is refused */
		return pl->ns_has[NS_NET] && !same_file(pl->ns_path[NS_NET], "/proc/self/ns/net");
	if (strcmp(key, "kernel.domainname") == 0)
		return pl->ns_has[NS_UTS];
	return 0;
}

static int check_linux(const struct jval *lx, struct front_plan *pl, char *why, size_t whylen)
{
	static const char *const keys[] = {"namespaces", "cgroupsPath", "resources", "maskedPaths",
					   "readonlyPaths", "rootfsPropagation", "sysctl", "devices",
					   "seccomp", NULL};
	const char *bad;
	const struct jval *v;
	if (lx->type != J_OBJECT || keys_ok(lx, keys, &bad) < 0)
		NO("linux.%s", lx->type == J_OBJECT ? bad : "");
	if ((v = json_get(lx, "namespaces"))) {
		static const char *const nkeys[] = {"type", "path", NULL};
		if (v->type != J_ARRAY)
			NO("linux.namespaces");
		for (size_t i = 0; i < v->n; i++) {
			const struct jval *ns = &v->items[i], *t, *p;
			int kind = -1;
			if (ns->type != J_OBJECT || keys_ok(ns, nkeys, &bad) < 0 || !front_is_string(t = json_get(ns, "type")))
				NO("linux.namespaces[%zu]", i);
			for (int k = 0; k < NS_COUNT; k++)
				if (strcmp(NS_NAMES[k], t->str) == 0)
					kind = k;
			if (kind < 0 || pl->ns_has[kind])
				NO("namespace %s", t->str);
			pl->ns_has[kind] = 1;
			pl->ns_path[kind] = "";
			if ((p = json_get(ns, "path"))) {
				if (!front_is_string(p))
					NO("namespace path");
				pl->ns_path[kind] = p->str;
			}
		}
	}
	if ((v = json_get(lx, "cgroupsPath"))) {
		if (!front_is_string(v))
			NO("linux.cgroupsPath");
		pl->cgroups_path = v->len ? v->str : NULL;
	}
	if ((v = json_get(lx, "resources"))) {
		if (v->type != J_OBJECT)
			NO("linux.resources");
		pl->resources = v;
	}
	if ((v = json_get(lx, "maskedPaths"))) {
		if (!strings(v))
			NO("linux.maskedPaths");
		pl->masked = v;
	}
	if ((v = json_get(lx, "readonlyPaths"))) {
		if (!strings(v))
			NO("linux.readonlyPaths");
		pl->readonly = v;
	}
	pl->root_propagation = "";
	if ((v = json_get(lx, "rootfsPropagation"))) {
		if (!front_is_string(v) || (v->len && !front_propagation(v->str)))
			NO("linux.rootfsPropagation");
		pl->root_propagation = v->str;
	}
	if ((v = json_get(lx, "sysctl"))) {
		if (v->type != J_OBJECT)
			NO("linux.sysctl");
		if ((bad = repeated_key(v)))
			NO("linux.sysctl repeats %s", bad);
		for (size_t i = 0; i < v->n; i++) {
			const char *k = v->keys[i];
			if (v->items[i].type != J_STRING || !*k || strstr(k, "..") || strchr(k, '/') || !sysctl_allowed(k, pl))
				NO("linux.sysctl %s", k);
		}
		pl->sysctl = v;
	}
	if ((v = json_get(lx, "devices")) && check_devices(v, pl, why, whylen) < 0)
		return -1;
	/* NULL, null and {} are no filter (process.compile_seccomp), len 0 */
	if (seccomp_compile(json_get(lx, "seccomp"), &pl->seccomp, why, whylen) < 0)
		return -1;
	pl->has_seccomp = pl->seccomp.len > 0;
	return 0;
}

static int check_config(struct front_plan *pl, char *why, size_t whylen)
{
	static const char *const keys[] = {"ociVersion", "root", "hostname", "domainname", "annotations",
					   "mounts", "process", "linux", "hooks", NULL};
	const struct jval *c = pl->cfg, *v, *r;
	const char *bad;
	struct stat st;
	if (c->type != J_OBJECT || keys_ok(c, keys, &bad) < 0)
		NO("config.json key %s", c->type == J_OBJECT ? bad : "");
	if (!front_is_string(v = json_get(c, "ociVersion")) || strncmp(v->str, "1.", 2) != 0)
		NO("ociVersion");
	static const char *const rkeys[] = {"path", "readonly", NULL};
	if (!(r = json_get(c, "root")) || r->type != J_OBJECT || keys_ok(r, rkeys, &bad) < 0 ||
	    !front_is_string(v = json_get(r, "path")) || !v->len)
		NO("root");
	/* rconfig.rootfs_path: normpath(path if isabs(path) else join(bundle, path)) */
	char joined[2 * PATH_MAX];
	snprintf(joined, sizeof joined, "%s%s%s", v->str[0] == '/' ? "" : pl->bundle,
		 v->str[0] == '/' ? "" : "/", v->str);
	if (strlen(joined) >= sizeof pl->rootfs || (joined[0] == '/' && joined[1] == '/' && joined[2] != '/'))
		NO("root.path");
	strcpy(pl->rootfs, joined);
	normpath(pl->rootfs);
	if (strcmp(pl->rootfs, "/") == 0 || stat(pl->rootfs, &st) < 0 || !S_ISDIR(st.st_mode))
		NO("root.path is not a directory");
	if ((v = json_get(r, "readonly"))) {
		if (!is_bool(v))
			NO("root.readonly");
		pl->readonly_root = v->type == J_TRUE;
	}
	if ((v = json_get(c, "hostname"))) {
		if (!front_is_string(v))
			NO("hostname");
		pl->hostname = v->len ? v->str : NULL;
	}
	if ((v = json_get(c, "domainname"))) {
		if (!front_is_string(v))
			NO("domainname");
		pl->domainname = v->len ? v->str : NULL;
	}
	if ((v = json_get(c, "annotations"))) {
		if (v->type != J_OBJECT)
			NO("annotations");
		for (size_t i = 0; i < v->n; i++)
			if (v->items[i].type != J_STRING)
				NO("annotation %s", v->keys[i]);
		if ((bad = repeated_key(v)))
			NO("annotations repeat %s", bad);
		pl->annotations = v->n ? v : NULL;
	}
	if ((v = json_get(c, "hooks"))) {
		if (v->type != J_OBJECT)
			NO("hooks");
		for (size_t i = 0; i < v->n; i++)
			if (v->items[i].type != J_ARRAY || v->items[i].n)
				NO("hooks.%s", v->keys[i]);
	}
	if ((v = json_get(c, "mounts")) && check_mounts(v, pl, why, whylen) < 0)
		return -1;
	if (check_process(json_get(c, "process"), pl, why, whylen) < 0)
		return -1;
	if ((v = json_get(c, "linux")) && check_linux(v, pl, why, whylen) < 0)
		return -1;
	if (!pl->ns_has[NS_MNT] || strcmp(pl->ns_path[NS_MNT], "") != 0)
		NO("no new mount namespace");
	if ((pl->hostname || pl->domainname) && !pl->ns_has[NS_UTS])
		NO("hostname without a uts namespace");
	return 0;
}

static int read_cap_last(void)
{
	char buf[32] = "";
	int fd = open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		ssize_t n = read(fd, buf, sizeof buf - 1);
		buf[n > 0 ? n : 0] = '\0';
		close(fd);
	}
	return *buf ? atoi(buf) : 40;
}

/* Whether text is what Python's strict UTF-8 decoder takes (no overlong forms, no
 * surrogates, nothing past U+10FFFF), and holds no \\u escape of a surrogate (Python
 * takes a lone one into a str it later cannot encode; json.c's reading of pairs is not
 * worth matching): else config.json is Python's to refuse or to take. */
static int utf8_ok(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n;) {
		unsigned c = p[i];
		size_t len = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
		if (!len || i + len > n)
			return 0;
		unsigned cp = len == 1 ? c : len == 2 ? c & 0x1f : len == 3 ? c & 0x0f : c & 0x07;
		for (size_t k = 1; k < len; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (p[i + k] & 0x3f);
		}
		if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		if (c == '\\' && i + 5 < n && p[i + 1] == 'u' && (p[i + 2] == 'd' || p[i + 2] == 'D') &&
		    strchr("89abcdefABCDEF", p[i + 3]))
			return 0;
		if (c == '\\')
			len = 2; /* an escape: its second character is never a backslash that starts one */
		i += len;
	}
	return 1;
}

int front_parse(int argc, char **argv, struct front_plan *pl, char *why, size_t whylen)
{
	char err[128];
	if (parse_flags(argc, argv, pl, why, whylen) < 0)
		return -1;
	snprintf(pl->config_path, sizeof pl->config_path, "%s%sconfig.json", pl->bundle,
		 strcmp(pl->bundle, "/") == 0 ? "" : "/");
	int fd = open(pl->config_path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0 || st.st_size > (16 << 20)) {
		if (fd >= 0)
			close(fd);
		NO("no readable config.json");
	}
	pl->text = malloc((size_t)st.st_size + 1);
	size_t got = 0;
	ssize_t r;
	while (pl->text && got < (size_t)st.st_size && (r = read(fd, pl->text + got, (size_t)st.st_size - got)) > 0)
		got += (size_t)r;
	close(fd);
	if (!pl->text || got != (size_t)st.st_size)
		NO("config.json read");
	if (got >= 3 && memcmp(pl->text, "\xef\xbb\xbf", 3) == 0)
		NO("config.json has a BOM");
	if (!utf8_ok((const unsigned char *)pl->text, got))
		NO("config.json is not strict UTF-8, or escapes a surrogate");
	if (!(pl->cfg = json_parse(pl->text, got, err, sizeof err)))
		NO("config.json: %s", err);
	if (check_config(pl, why, whylen) < 0)
		return -1;
	/* A terminal needs a console socket: without one `create` refuses it (Python's
	 * words) and a foreground `run` proxies the pty itself (commands.cmd_run): both
	 * Python's. With a closed stdio fd, which fd the slave lands on would depend on
	 * each runtime's own open fds: Python's too. */
	if (pl->terminal && !*pl->console_socket)
		NO("process.terminal without --console-socket");
	for (int fd = 0; pl->terminal && fd < 3; fd++)
		if (fcntl(fd, F_GETFD) < 0)
			NO("process.terminal with fd %d closed", fd);
	pl->last_cap = read_cap_last();
	if (cg_open(pl->cgroups_path, pl->id, &pl->cg, why, whylen) < 0)
		return -1;
	/* A cgroup that exists already (a cgroupsPath naming one, its processes in it) is
	 * Python's: this path's undo removes the directories it finds, and must never touch
	 * what was there before the create. */
	for (int i = 0; i < pl->cg.n; i++)
		if (access(pl->cg.dir[i], F_OK) == 0 || errno != ENOENT)
			NO("cgroup exists: %s", pl->cg.dir[i]);
	if (cg_check(&pl->cg, pl->resources, why, whylen) < 0)
		return -1;
	int n = cg_mounts(&pl->cg, pl->ns_has[NS_CGROUP], pl->cg_mounts, CG_MAX);
	if (n < 0)
		NO("cgroup mounts");
	pl->ncg_mounts = n;
	return 0;
}
