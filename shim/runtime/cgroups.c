/*
 * The container's cgroups for the C create/run path: see cgroups.h. A port of
 * conch/cgroups (__init__.py, fs.py, v1.py, v2.py, resources.py), which stays the
 * reference: each function names the Python it mirrors, and where the two could differ
 * the C side refuses (cg_open/cg_check return -1) so the Python runtime runs instead.
 *
 * Supported resources: devices (v2: only what V2Manager takes without eBPF: allow-all or
 * deny-all plus resources.DEFAULT_DEVICE_RULES), memory (limit, reservation, swap,
 * kernel, kernelTCP, swappiness, disableOOMKiller, useHierarchy=true; v2 refuses the
 * v1-only ones as Python does), cpu (shares, quota, period, burst, idle, cpus, mems),
 * pids.limit, blockIO (weight, throttle*). Not here: hugepageLimits, non-empty unified.
 */
#include "cgroups.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int normpath(const char *in, char *out, size_t size);

/* open_manager's root: DEFAULT_ROOT unless cg_set_root (tests) says otherwise */
static char root_dir[4096] = "/sys/fs/cgroup";

void cg_set_root(const char *root)
{
	if (normpath(root, root_dir, sizeof root_dir) < 0)
		snprintf(root_dir, sizeof root_dir, "%s", "/sys/fs/cgroup");
}
#define UNLIMITED (-1LL)

static int fail(char *why, size_t whylen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *why, size_t whylen, const char *fmt, ...)
{
	int saved = errno;
	if (why && whylen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(why, whylen, fmt, ap);
		va_end(ap);
	}
	errno = saved;
	return -1;
}

/* ---- paths (posixpath's normpath, dirname) ---------------------------------------- */

/* posixpath.normpath for the paths met here (no "//" prefix kept: every caller's result
 * is the same either way, or it is refused). 0, or -1 when out does not fit. */
static int normpath(const char *in, char *out, size_t size)
{
	int abs = in[0] == '/';
	size_t len = 0, starts[512];
	int depth = 0, kept_up = 0; /* kept_up: leading ".." of a relative path */
	if (size < 2)
		return -1;
	for (const char *p = in; *p;) {
		while (*p == '/')
			p++;
		if (!*p)
			break;
		size_t n = strcspn(p, "/");
		if (n == 1 && p[0] == '.') {
			/* nothing */
		} else if (n == 2 && p[0] == '.' && p[1] == '.' && (abs || depth > kept_up)) {
			if (depth > 0) {
				depth--;
				len = starts[depth] > 0 ? starts[depth] - 1 : 0; /* and its separator */
			}
		} else {
			if (depth >= 512 || len + 1 + n + 1 > size)
				return -1;
			if (len || abs)
				out[len++] = '/';
			starts[depth++] = len;
			if (n == 2 && p[0] == '.' && p[1] == '.')
				kept_up++;
			memcpy(out + len, p, n);
			len += n;
		}
		p += n;
	}
	if (len == 0)
		strcpy(out, abs ? "/" : ".");
	else
		out[len] = 0;
	return 0;
}

static void dirname_of(const char *path, char *out, size_t size)
{
	const char *slash = strrchr(path, '/');
	if (!slash) {
		snprintf(out, size, "%s", "");
		return;
	}
	size_t n = (size_t)(slash - path);
	while (n > 0 && path[n - 1] == '/')
		n--;
	if (n == 0)
		n = 1; /* "/" */
	snprintf(out, size, "%.*s", (int)n, path);
}

static int is_dir(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int exists(const char *dir, const char *name)
{
	char path[4200];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	return access(path, F_OK) == 0;
}

/* ---- files (fs.py read_value, write_value) ---------------------------------------- */

static int read_value(const char *dir, const char *name, char *buf, size_t size, char *why, size_t whylen)
{
	char path[4200];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail(why, whylen, errno == ENOENT ? "cgroup file %s is missing (controller not available?)"
							 : "read %s: %m", path);
	size_t len = 0;
	for (;;) {
		ssize_t r = read(fd, buf + len, size - 1 - len);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			int e = errno;
			close(fd);
			errno = e;
			return fail(why, whylen, "read %s: %m", path);
		}
		if (r == 0)
			break;
		len += (size_t)r;
		if (len == size - 1) {
			close(fd);
			errno = EFBIG;
			return fail(why, whylen, "read %s: too long", path);
		}
	}
	close(fd);
	buf[len] = 0;
	/* str.strip() */
	char *s = buf;
	while (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r' || *s == '\v' || *s == '\f')
		s++;
	size_t n = strlen(s);
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\n' || s[n - 1] == '\t' || s[n - 1] == '\r' ||
			 s[n - 1] == '\v' || s[n - 1] == '\f'))
		n--;
	memmove(buf, s, n);
	buf[n] = 0;
	return 0;
}

/* write_value: one write(2) of the whole value on O_WRONLY|O_TRUNC, no O_CREAT. errno
 * is the failing call's (ENOENT: the file is missing). */
static int write_value(const char *dir, const char *name, const char *value, char *why, size_t whylen)
{
	char path[4200];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
	if (fd < 0)
		return fail(why, whylen, errno == ENOENT ? "cgroup file %s is missing (controller not available?)"
							 : "open %s: %m", path);
	ssize_t r;
	do
		r = write(fd, value, strlen(value));
	while (r < 0 && errno == EINTR);
	if (r < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return fail(why, whylen, "write %s: %m (value '%s')", path, value);
	}
	close(fd);
	return 0;
}

/* ---- cg_open (cgroups/__init__.py: detect, own_cgroups, cgroup_subpath, _container_dir) */

struct mnt {
	char point[4096], root[4096];
	int v2;
	char opts[256]; /* filtered options joined with "," */
};

static void unescape(char *s)
{
	char *o = s;
	for (char *p = s; *p;) {
		if (p[0] == '\\' && p[1] >= '0' && p[1] <= '7' && p[2] >= '0' && p[2] <= '7' && p[3] >= '0' &&
		    p[3] <= '7') {
			*o++ = (char)(((p[1] - '0') << 6) | ((p[2] - '0') << 3) | (p[3] - '0'));
			p += 4;
		} else {
			*o++ = *p++;
		}
	}
	*o = 0;
}

/* Same set of ","-separated names (frozenset equality). */
static int has_token(const char *list, const char *tok, size_t toklen)
{
	const char *p = list;
	while (1) {
		const char *e = strchr(p, ',');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		if (n == toklen && !strncmp(p, tok, n))
			return 1;
		if (!e)
			return 0;
		p = e + 1;
	}
}

static int subset(const char *a, const char *b)
{
	if (!*a)
		return 1;
	const char *p = a;
	while (1) {
		const char *e = strchr(p, ',');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		if (!has_token(b, p, n))
			return 0;
		if (!e)
			return 1;
		p = e + 1;
	}
}

static int same_set(const char *a, const char *b)
{
	if (!*a || !*b)
		return !*a && !*b;
	return subset(a, b) && subset(b, a);
}

static int non_controller(const char *opt, size_t n)
{
	static const char *const skip[] = {"rw", "ro", "noprefix", "clone_children", "xattr", "cpuset_v2_mode"};
	for (size_t i = 0; i < sizeof skip / sizeof *skip; i++)
		if (strlen(skip[i]) == n && !strncmp(opt, skip[i], n))
			return 1;
	return n >= 14 && !strncmp(opt, "release_agent=", 14);
}

/* parse_mountinfo + detect: the cgroup mounts that manage root_dir, v1 deduplicated by
 * option set (first kept) in mount order, the last cgroup2 below it as *unified. */
static int detect(struct mnt *mounts, int *nmounts, int *version, struct mnt *unified, int *has_unified,
		  char *why, size_t whylen)
{
	static struct mnt root_mount_buf;
	struct mnt *root_mount = &root_mount_buf;
	FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return fail(why, whylen, "cannot read /proc/self/mountinfo: %m");
	char line[16384];
	int n = 0, at_root = 0; /* at_root: 0 none, 1 cgroup, 2 cgroup2 */
	*has_unified = 0;
	struct mnt m;
	while (fgets(line, sizeof line, f)) {
		char *fields[64];
		int nf = 0;
		for (char *tok = strtok(line, " \t\n\r\v\f"); tok && nf < 64; tok = strtok(NULL, " \t\n\r\v\f"))
			fields[nf++] = tok;
		int sep = -1;
		for (int i = 0; i < nf; i++)
			if (!strcmp(fields[i], "-")) {
				sep = i;
				break;
			}
		if (sep < 6 || nf < sep + 4)
			continue;
		const char *fstype = fields[sep + 1];
		int v2 = !strcmp(fstype, "cgroup2");
		if (!v2 && strcmp(fstype, "cgroup"))
			continue;
		memset(&m, 0, sizeof m);
		m.v2 = v2;
		if (strlen(fields[4]) >= sizeof m.point || strlen(fields[3]) >= sizeof m.root)
			goto too_long;
		strcpy(m.point, fields[4]);
		strcpy(m.root, fields[3]);
		unescape(m.point);
		unescape(m.root);
		if (!v2) {
			size_t len = 0;
			const char *p = fields[sep + 3];
			while (1) {
				const char *e = strchr(p, ',');
				size_t k = e ? (size_t)(e - p) : strlen(p);
				if (!non_controller(p, k)) {
					if (len + k + 2 > sizeof m.opts)
						goto too_long;
					if (len)
						m.opts[len++] = ',';
					memcpy(m.opts + len, p, k);
					len += k;
					m.opts[len] = 0;
				}
				if (!e)
					break;
				p = e + 1;
			}
		}
		if (!strcmp(m.point, root_dir)) {
			/* a later mount over the same point hides the earlier one */
			at_root = v2 ? 2 : 1;
			if (v2)
				*root_mount = m;
			continue;
		}
		size_t rl = strlen(root_dir);
		while (rl > 0 && root_dir[rl - 1] == '/')
			rl--; /* root.rstrip("/") + "/" */
		if (strncmp(m.point, root_dir, rl) || m.point[rl] != '/')
			continue;
		if (v2) {
			*unified = m;
			*has_unified = 1;
			continue;
		}
		/* Python drops a v1 mount whose options are all settings ("options" empty);
		 * an option list of one empty name cannot occur in a real mount table. */
		if (!m.opts[0])
			continue;
		int dup = 0;
		for (int i = 0; i < n; i++)
			if (same_set(mounts[i].opts, m.opts))
				dup = 1;
		if (dup)
			continue;
		if (n >= CG_MAX - 1) {
			fclose(f);
			return fail(why, whylen, "more than %d cgroup hierarchies", CG_MAX - 1);
		}
		mounts[n++] = m;
	}
	fclose(f);
	if (at_root == 2) {
		mounts[0] = *root_mount;
		*version = 2;
		*nmounts = 1;
		return 0;
	}
	if (n == 0)
		return fail(why, whylen, "no cgroup v1 or v2 hierarchy is mounted at %s", root_dir);
	*version = 1;
	*nmounts = n;
	return 0;
too_long:
	fclose(f);
	return fail(why, whylen, "mountinfo: a cgroup mount's fields are too long for the C path");
}

/* _expand_slice */
static int expand_slice(const char *slice, char *out, size_t size, char *why, size_t whylen)
{
	size_t len = strlen(slice);
	if (len < 6 || strcmp(slice + len - 6, ".slice") || strchr(slice, '/'))
		return fail(why, whylen, "cgroupsPath: '%s' is not a systemd slice name", slice);
	char name[4096];
	if (len - 6 >= sizeof name)
		return fail(why, whylen, "cgroupsPath: slice name too long");
	memcpy(name, slice, len - 6);
	name[len - 6] = 0;
	if (!strcmp(name, "-")) {
		snprintf(out, size, "/");
		return 1; /* "/" */
	}
	size_t n = strlen(name);
	if (!n || name[0] == '-' || name[n - 1] == '-' || strstr(name, "--"))
		return fail(why, whylen, "cgroupsPath: invalid slice name '%s'", slice);
	size_t o = 0;
	out[0] = 0;
	for (size_t i = 0; i <= n; i++) {
		if (name[i] == '-' || name[i] == 0) {
			int w = snprintf(out + o, size - o, "/%.*s.slice", (int)i, name);
			if (w < 0 || (size_t)w >= size - o)
				return fail(why, whylen, "cgroupsPath: too long");
			o += (size_t)w;
		}
	}
	return 0;
}

/* cgroup_subpath: the normalised path, absolute (hierarchy-relative) or relative (to the
 * caller's own cgroup). */
static int cgroup_subpath(const char *cp, const char *id, char *out, size_t size, char *why, size_t whylen)
{
	if (!cp || !*cp) {
		if (!id || !*id || strchr(id, '/') || !strcmp(id, ".") || !strcmp(id, ".."))
			return fail(why, whylen, "container id '%s' cannot name a cgroup", id ? id : "");
		if ((size_t)snprintf(out, size, "/conch/%s", id) >= size)
			return fail(why, whylen, "container id too long");
		return 0;
	}
	if (strchr(cp, ':') && cp[0] != '/') {
		const char *c1 = strchr(cp, ':'), *c2 = strchr(c1 + 1, ':');
		if (!c2 || strchr(c2 + 1, ':'))
			return fail(why, whylen, "cgroupsPath '%s': expected 'slice:prefix:name'", cp);
		char slice[4096], prefix[4096], name[4096], unit[8300], base[8192];
		if ((size_t)(c1 - cp) >= sizeof slice || (size_t)(c2 - c1 - 1) >= sizeof prefix ||
		    strlen(c2 + 1) >= sizeof name)
			return fail(why, whylen, "cgroupsPath too long");
		snprintf(slice, sizeof slice, "%.*s", (int)(c1 - cp), cp);
		snprintf(prefix, sizeof prefix, "%.*s", (int)(c2 - c1 - 1), c1 + 1);
		snprintf(name, sizeof name, "%s", c2 + 1);
		if (!*name || strchr(name, '/') || strchr(prefix, '/'))
			return fail(why, whylen, "cgroupsPath '%s': bad prefix or name", cp);
		size_t nl = strlen(name);
		if (nl >= 6 && !strcmp(name + nl - 6, ".slice"))
			snprintf(unit, sizeof unit, "%s", name);
		else if (*prefix)
			snprintf(unit, sizeof unit, "%s-%s.scope", prefix, name);
		else
			snprintf(unit, sizeof unit, "%s.scope", name);
		int r = expand_slice(*slice ? slice : "system.slice", base, sizeof base, why, whylen);
		if (r < 0)
			return -1;
		/* posixpath.join(base, unit): unit is relative (no "/" in it) */
		size_t bl = strlen(base);
		if ((size_t)snprintf(out, size, "%s%s%s", base, bl && base[bl - 1] == '/' ? "" : "/", unit) >= size)
			return fail(why, whylen, "cgroupsPath too long");
		return 0;
	}
	/* ".." as a path component */
	for (const char *p = cp; *p;) {
		const char *e = strchr(p, '/');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		if (n == 2 && p[0] == '.' && p[1] == '.')
			return fail(why, whylen, "cgroupsPath '%s' must not contain '..'", cp);
		if (!e)
			break;
		p = e + 1;
	}
	if (normpath(cp, out, size) < 0)
		return fail(why, whylen, "cgroupsPath too long");
	/* Python keeps a leading "//" (posixpath.normpath), so it accepts "//" as a name of
	 * the hierarchy root; the C path refuses it with "/" and leaves it to Python. */
	if (!strcmp(out, "/") || !strcmp(out, "."))
		return fail(why, whylen, "cgroupsPath '%s' names the hierarchy root, not a container", cp);
	return 0;
}

/* own_cgroups: the last line of /proc/self/cgroup whose controller set is opts'. */
static int own_cgroup(const char *text, const char *opts, char *out, size_t size)
{
	int found = 0;
	const char *line = text;
	while (*line) {
		const char *nl = strchr(line, '\n');
		size_t ll = nl ? (size_t)(nl - line) : strlen(line);
		const char *c1 = memchr(line, ':', ll);
		const char *c2 = c1 ? memchr(c1 + 1, ':', ll - (size_t)(c1 + 1 - line)) : NULL;
		if (c2) {
			char ctl[1024];
			size_t cl = (size_t)(c2 - c1 - 1);
			if (cl < sizeof ctl) {
				memcpy(ctl, c1 + 1, cl);
				ctl[cl] = 0;
				if (same_set(ctl, opts)) {
					size_t pl = ll - (size_t)(c2 + 1 - line);
					if (pl < size) {
						memcpy(out, c2 + 1, pl);
						out[pl] = 0;
						found = 1;
					}
				}
			}
		}
		if (!nl)
			break;
		line = nl + 1;
	}
	return found;
}

static int container_dir(const struct mnt *m, const char *subpath, const char *own_text, char *out, size_t size,
			 char *why, size_t whylen)
{
	char base[4096] = "/";
	if (subpath[0] != '/') {
		if (!own_cgroup(own_text, m->opts, base, sizeof base))
			return fail(why, whylen, "this process has no cgroup in hierarchy %s",
				    m->opts[0] ? m->opts : "cgroup2");
		size_t rl = strlen(m->root);
		if (strcmp(m->root, "/") &&
		    (!strcmp(base, m->root) || (!strncmp(base, m->root, rl) && base[rl] == '/'))) {
			memmove(base, base + rl, strlen(base + rl) + 1);
			if (!base[0])
				strcpy(base, "/");
		}
	}
	/* normpath(mountpoint + "/" + posixpath.join(base, subpath).lstrip("/")) */
	char joined[12300];
	if (subpath[0] == '/')
		snprintf(joined, sizeof joined, "%s/%s", m->point, subpath);
	else
		snprintf(joined, sizeof joined, "%s/%s/%s", m->point, base, subpath);
	if (normpath(joined, out, size) < 0)
		return fail(why, whylen, "cgroup path too long");
	return 0;
}

static int read_small(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t len = 0;
	ssize_t r;
	while ((r = read(fd, buf + len, size - 1 - len)) > 0)
		len += (size_t)r;
	close(fd);
	buf[len] = 0;
	return r < 0 ? -1 : 0;
}

int cg_open(const char *cgroups_path, const char *id, struct cg *cg, char *why, size_t whylen)
{
	char subpath[4096];
	static struct mnt mounts[CG_MAX];
	static struct mnt unified;
	int n = 0, version = 0, has_unified = 0;
	if (cgroup_subpath(cgroups_path, id, subpath, sizeof subpath, why, whylen) < 0)
		return -1;
	if (detect(mounts, &n, &version, &unified, &has_unified, why, whylen) < 0)
		return -1;
	char own[16384] = "";
	if (subpath[0] != '/' && read_small("/proc/self/cgroup", own, sizeof own) < 0)
		return fail(why, whylen, "read /proc/self/cgroup: %m");
	cg->ncreated = 0; /* every other field is written in full below */
	cg->version = version;
	if (version == 2) {
		/* V2Manager(dir, mountpoint): both normalised, dir strictly below the mount. */
		cg->n = 1;
		cg->options[0][0] = 0;
		if (container_dir(&mounts[0], subpath, own, cg->dir[0], sizeof cg->dir[0], why, whylen) < 0)
			return -1;
		if (normpath(mounts[0].point, cg->mountpoint[0], sizeof cg->mountpoint[0]) < 0)
			return fail(why, whylen, "cgroup mountpoint too long");
		/* dir.startswith(mountpoint.rstrip("/") + "/") */
		size_t ml = strlen(cg->mountpoint[0]);
		while (ml > 0 && cg->mountpoint[0][ml - 1] == '/')
			ml--;
		if (strncmp(cg->dir[0], cg->mountpoint[0], ml) || cg->dir[0][ml] != '/')
			return fail(why, whylen, "cgroup %s is not below the cgroup2 mount %s", cg->dir[0],
				    cg->mountpoint[0]);
		return 0;
	}
	for (int i = 0; i < n; i++) {
		if (snprintf(cg->options[i], sizeof cg->options[i], "%s", mounts[i].opts) >= (int)sizeof cg->options[i] ||
		    snprintf(cg->mountpoint[i], sizeof cg->mountpoint[i], "%s", mounts[i].point) >=
			    (int)sizeof cg->mountpoint[i])
			return fail(why, whylen, "cgroup mount %s: options or path too long for the C path",
				    mounts[i].point);
		if (container_dir(&mounts[i], subpath, own, cg->dir[i], sizeof cg->dir[i], why, whylen) < 0)
			return -1;
	}
	cg->n = n;
	if (has_unified) {
		cg->options[n][0] = 0;
		snprintf(cg->mountpoint[n], sizeof cg->mountpoint[n], "%s", unified.point);
		if (container_dir(&unified, subpath, own, cg->dir[n], sizeof cg->dir[n], why, whylen) < 0)
			return -1;
		cg->n = n + 1;
	}
	return 0;
}

/* V1Manager.paths[controller]: the last hierarchy whose options name it, or NULL. */
static const char *v1_dir(const struct cg *cg, const char *controller)
{
	for (int i = cg->n - 1; i >= 0; i--)
		if (has_token(cg->options[i], controller, strlen(controller)))
			return cg->dir[i];
	return NULL;
}

static const char *v1_mountpoint(const struct cg *cg, const char *controller)
{
	for (int i = cg->n - 1; i >= 0; i--)
		if (has_token(cg->options[i], controller, strlen(controller)))
			return cg->mountpoint[i];
	return NULL;
}

/* ---- resources (resources.py parse_resources) -------------------------------------- */

struct opt {
	int set;
	long long v;
};

struct rule {
	int allow;
	char type;
	long long major, minor; /* -1: "*" */
	char access[4];
};

struct rate {
	long long major, minor, rate;
};

struct res {
	int has_memory;
	struct opt limit, reservation, swap, kernel, ktcp, swappiness;
	int oom; /* -1 unset */
	int has_cpu;
	struct opt shares, quota, period, burst, idle;
	const char *cpus, *mems;
	struct opt pids;
	int has_devices, ndev;
	const struct jval *devices;
	int has_blkio;
	struct opt weight;
	const struct jval *rates[4];
};

static const char *const THROTTLES[4] = {"throttleReadBpsDevice", "throttleWriteBpsDevice",
					  "throttleReadIOPSDevice", "throttleWriteIOPSDevice"};
static const char *const THROTTLE_FILES[4] = {"blkio.throttle.read_bps_device", "blkio.throttle.write_bps_device",
					       "blkio.throttle.read_iops_device", "blkio.throttle.write_iops_device"};

/* runc's default device rules, appended as conch.runtime.create._with_default_devices. */
static const struct rule DEFAULT_RULES[] = {
	{1, 'c', -1, -1, "m"},  {1, 'b', -1, -1, "m"}, {1, 'c', 1, 3, "rwm"},    {1, 'c', 1, 8, "rwm"},
	{1, 'c', 1, 7, "rwm"},  {1, 'c', 5, 0, "rwm"},   {1, 'c', 1, 5, "rwm"},    {1, 'c', 1, 9, "rwm"},
	{1, 'c', 5, 1, "rwm"},  {1, 'c', 136, -1, "rwm"}, {1, 'c', 5, 2, "rwm"}, {1, 'c', 10, 200, "rwm"},
};
#define NDEFAULT ((int)(sizeof DEFAULT_RULES / sizeof *DEFAULT_RULES))

static int is_set(const struct jval *v)
{
	return v && v->type != J_NULL && !((v->type == J_OBJECT || v->type == J_ARRAY) && v->n == 0);
}

static int reject_unknown(const struct jval *doc, const char *const *known, const char *where, char *why,
			  size_t whylen)
{
	for (size_t i = 0; i < doc->n; i++) {
		int ok = 0;
		for (const char *const *k = known; *k; k++)
			if (!strcmp(doc->keys[i], *k))
				ok = 1;
		if (!ok && is_set(&doc->items[i]))
			return fail(why, whylen, "%s.%s is not supported by conch", where, doc->keys[i]);
	}
	return 0;
}

/* resources.py _int */
static int get_int(const struct jval *doc, const char *key, const char *where, int zero_unset, long long minimum,
		   struct opt *out, char *why, size_t whylen)
{
	const struct jval *v = json_get(doc, key);
	out->set = 0;
	if (!v || v->type == J_NULL)
		return 0;
	if (v->type != J_NUMBER || !v->is_int)
		return fail(why, whylen, "%s.%s must be an integer (in range)", where, key);
	if (zero_unset && v->integer == 0)
		return 0;
	if (v->integer < minimum)
		return fail(why, whylen, "%s.%s must be >= %lld, got %lld", where, key, minimum, v->integer);
	out->set = 1;
	out->v = v->integer;
	return 0;
}

/* resources.py _str: NULL for absent/null/"" */
static int get_str(const struct jval *doc, const char *key, const char *where, const char **out, char *why,
		   size_t whylen)
{
	const struct jval *v = json_get(doc, key);
	*out = NULL;
	if (!v || v->type == J_NULL || (v->type == J_STRING && v->len == 0))
		return 0;
	if (v->type != J_STRING)
		return fail(why, whylen, "%s.%s must be a string", where, key);
	*out = v->str;
	return 0;
}

/* Python truthiness of a JSON value */
static int truthy(const struct jval *v)
{
	if (!v)
		return 0;
	switch (v->type) {
	case J_NULL:
	case J_FALSE:
		return 0;
	case J_TRUE:
		return 1;
	case J_NUMBER:
		return v->is_int ? v->integer != 0 : v->number != 0;
	case J_STRING:
		return v->len != 0;
	default:
		return v->n != 0;
	}
}

static int parse_device(const struct jval *d, int index, struct rule *r, char *why, size_t whylen)
{
	static const char *const known[] = {"allow", "type", "major", "minor", "access", NULL};
	char w[64];
	snprintf(w, sizeof w, "linux.resources.devices[%d]", index);
	if (d->type != J_OBJECT)
		return fail(why, whylen, "%s must be an object", w);
	if (reject_unknown(d, known, w, why, whylen) < 0)
		return -1;
	const struct jval *allow = json_get(d, "allow");
	if (!allow || allow->type == J_NULL)
		return fail(why, whylen, "%s.allow is required", w);
	if (allow->type != J_TRUE && allow->type != J_FALSE)
		return fail(why, whylen, "%s.allow must be a boolean", w);
	r->allow = allow->type == J_TRUE;
	const char *type, *access;
	if (get_str(d, "type", w, &type, why, whylen) < 0 || get_str(d, "access", w, &access, why, whylen) < 0)
		return -1;
	if (!type)
		type = "a";
	if (strcmp(type, "a") && strcmp(type, "b") && strcmp(type, "c"))
		return fail(why, whylen, "%s.type must be 'a', 'b' or 'c', got '%s'", w, type);
	r->type = type[0];
	if (!access)
		access = "rwm";
	if (strspn(access, "rwm") != strlen(access))
		return fail(why, whylen, "%s.access must be letters from 'rwm', got '%s'", w, access);
	size_t k = 0;
	for (const char *c = "rwm"; *c; c++)
		if (strchr(access, *c))
			r->access[k++] = *c;
	r->access[k] = 0;
	struct opt major = {0}, minor = {0};
	if (get_int(d, "major", w, 0, -1, &major, why, whylen) < 0 || get_int(d, "minor", w, 0, -1, &minor, why, whylen) < 0)
		return -1;
	r->major = major.set ? major.v : -1;
	r->minor = minor.set ? minor.v : -1;
	return 0;
}

static int parse_memory(const struct jval *doc, struct res *r, char *why, size_t whylen)
{
	static const char *const known[] = {"limit", "reservation", "swap", "kernel", "kernelTCP", "swappiness",
					    "disableOOMKiller", "useHierarchy", "checkBeforeUpdate", NULL};
	const char *w = "linux.resources.memory";
	if (reject_unknown(doc, known, w, why, whylen) < 0)
		return -1;
	const struct jval *uh = json_get(doc, "useHierarchy");
	if (uh && uh->type == J_FALSE)
		return fail(why, whylen, "%s.useHierarchy=false is not supported", w);
	if (truthy(json_get(doc, "checkBeforeUpdate")))
		return fail(why, whylen, "%s.checkBeforeUpdate is not supported by conch", w);
	if (get_int(doc, "limit", w, 1, -1, &r->limit, why, whylen) < 0 ||
	    get_int(doc, "reservation", w, 0, -1, &r->reservation, why, whylen) < 0 ||
	    get_int(doc, "swap", w, 1, -1, &r->swap, why, whylen) < 0 ||
	    get_int(doc, "kernel", w, 1, -1, &r->kernel, why, whylen) < 0 ||
	    get_int(doc, "kernelTCP", w, 1, -1, &r->ktcp, why, whylen) < 0 ||
	    get_int(doc, "swappiness", w, 0, -1, &r->swappiness, why, whylen) < 0)
		return -1;
	const struct jval *oom = json_get(doc, "disableOOMKiller");
	r->oom = -1;
	if (oom && oom->type != J_NULL) {
		if (oom->type != J_TRUE && oom->type != J_FALSE)
			return fail(why, whylen, "%s.disableOOMKiller must be a boolean", w);
		r->oom = oom->type == J_TRUE;
	}
	if (r->swappiness.set && r->swappiness.v == -1)
		r->swappiness.set = 0;
	if (r->swappiness.set && r->swappiness.v > 100)
		return fail(why, whylen, "%s.swappiness must be in [0, 100]", w);
	if (r->limit.set && r->limit.v != UNLIMITED && r->swap.set && r->swap.v != UNLIMITED && r->swap.v < r->limit.v)
		return fail(why, whylen, "%s.swap must be >= limit: OCI swap is memory+swap", w);
	r->has_memory = 1;
	return 0;
}

static int parse_cpu(const struct jval *doc, struct res *r, char *why, size_t whylen)
{
	static const char *const known[] = {"shares", "quota", "period", "burst", "idle", "cpus", "mems", NULL};
	const char *w = "linux.resources.cpu";
	if (reject_unknown(doc, known, w, why, whylen) < 0)
		return -1;
	if (get_int(doc, "shares", w, 1, 0, &r->shares, why, whylen) < 0)
		return -1;
	if (r->shares.set && (r->shares.v < 2 || r->shares.v > 262144))
		return fail(why, whylen, "%s.shares must be in [2, 262144]", w);
	if (get_int(doc, "quota", w, 1, -1, &r->quota, why, whylen) < 0 ||
	    get_int(doc, "period", w, 1, 1, &r->period, why, whylen) < 0 ||
	    get_int(doc, "burst", w, 0, 0, &r->burst, why, whylen) < 0 ||
	    get_int(doc, "idle", w, 0, 0, &r->idle, why, whylen) < 0 ||
	    get_str(doc, "cpus", w, &r->cpus, why, whylen) < 0 || get_str(doc, "mems", w, &r->mems, why, whylen) < 0)
		return -1;
	r->has_cpu = 1;
	return 0;
}

static int parse_blkio(const struct jval *doc, struct res *r, char *why, size_t whylen)
{
	static const char *const known[] = {"weight", "throttleReadBpsDevice", "throttleWriteBpsDevice",
					    "throttleReadIOPSDevice", "throttleWriteIOPSDevice", NULL};
	static const char *const rate_keys[] = {"major", "minor", "rate", NULL};
	const char *w = "linux.resources.blockIO";
	if (reject_unknown(doc, known, w, why, whylen) < 0)
		return -1;
	if (get_int(doc, "weight", w, 0, 0, &r->weight, why, whylen) < 0)
		return -1;
	if (r->weight.set && (r->weight.v < 10 || r->weight.v > 1000))
		return fail(why, whylen, "%s.weight must be in [10, 1000]", w);
	for (int t = 0; t < 4; t++) {
		const struct jval *list = json_get(doc, THROTTLES[t]);
		r->rates[t] = NULL;
		if (!list || list->type == J_NULL)
			continue;
		if (list->type != J_ARRAY)
			return fail(why, whylen, "%s.%s must be an array", w, THROTTLES[t]);
		for (size_t i = 0; i < list->n; i++) {
			const struct jval *e = &list->items[i];
			char where[128];
			snprintf(where, sizeof where, "%s.%s[%zu]", w, THROTTLES[t], i);
			if (e->type != J_OBJECT)
				return fail(why, whylen, "%s must be an object", where);
			if (reject_unknown(e, rate_keys, where, why, whylen) < 0)
				return -1;
			for (int k = 0; k < 3; k++) {
				struct opt o;
				if (get_int(e, rate_keys[k], where, 0, 0, &o, why, whylen) < 0)
					return -1;
				if (!o.set)
					return fail(why, whylen, "%s needs major, minor and rate", where);
			}
		}
		r->rates[t] = list;
	}
	r->has_blkio = 1;
	return 0;
}

/* resources.DEFAULT_DEVICE_RULES: deny-all, then what v2 takes without eBPF (the list
 * create.py appends, /dev/console included). */
static const struct rule V2_DEFAULTS[] = {
	{1, 'c', -1, -1, "m"}, {1, 'b', -1, -1, "m"}, {1, 'c', 1, 3, "rwm"},    {1, 'c', 1, 8, "rwm"},
	{1, 'c', 1, 7, "rwm"}, {1, 'c', 5, 0, "rwm"}, {1, 'c', 1, 5, "rwm"},    {1, 'c', 1, 9, "rwm"},
	{1, 'c', 5, 1, "rwm"}, {1, 'c', 136, -1, "rwm"}, {1, 'c', 5, 2, "rwm"}, {1, 'c', 10, 200, "rwm"},
};

static int same_rule(const struct rule *a, const struct rule *b)
{
	return a->allow == b->allow && a->type == b->type && a->major == b->major && a->minor == b->minor &&
	       !strcmp(a->access, b->access);
}

static void nth_rule(const struct res *r, int i, struct rule *out)
{
	if (i < (int)r->devices->n)
		parse_device(&r->devices->items[i], i, out, NULL, 0);
	else
		*out = DEFAULT_RULES[i - (int)r->devices->n];
}

/* V2Manager.plan's test: allows_everything(rules) or within_defaults(rules) */
static int v2_devices_ok(const struct res *r)
{
	struct rule rule;
	int i;
	for (i = r->ndev - 1; i >= 0; i--) { /* allows_everything */
		nth_rule(r, i, &rule);
		if (rule.type == 'a' && !strcmp(rule.access, "rwm"))
			break;
	}
	int everything = 1;
	if (i >= 0) {
		nth_rule(r, i, &rule);
		everything = rule.allow;
	}
	for (int k = i + 1; everything && k < r->ndev; k++) {
		nth_rule(r, k, &rule);
		everything = rule.allow;
	}
	if (everything)
		return 1;
	/* within_defaults */
	static const struct rule deny_all = {0, 'a', -1, -1, "rwm"};
	if (r->ndev == 0)
		return 0;
	nth_rule(r, 0, &rule);
	if (!same_rule(&rule, &deny_all))
		return 0;
	for (int k = 1; k < r->ndev; k++) {
		nth_rule(r, k, &rule);
		int known = 0;
		for (size_t j = 0; j < sizeof V2_DEFAULTS / sizeof *V2_DEFAULTS; j++)
			known |= same_rule(&rule, &V2_DEFAULTS[j]);
		if (!rule.allow || !known)
			return 0;
	}
	return 1;
}

/* Object-valued section: NULL for absent/null, error for a non-object. */
static int section(const struct jval *doc, const char *key, const struct jval **out, char *why, size_t whylen)
{
	const struct jval *v = json_get(doc, key);
	*out = NULL;
	if (!v || v->type == J_NULL)
		return 0;
	if (v->type != J_OBJECT)
		return fail(why, whylen, "linux.resources.%s must be an object", key);
	*out = v;
	return 0;
}

/* parse_resources(_with_default_devices(resources)) plus the v1 manager's own refusals
 * (controllers not mounted, swap without accounting). */
static int parse(const struct cg *cg, const struct jval *doc, struct res *r, char *why, size_t whylen)
{
	static const char *const known[] = {"memory", "cpu", "pids", "devices", "blockIO", "hugepageLimits",
					    "unified", NULL};
	memset(r, 0, sizeof *r);
	r->oom = -1;
	if (!truthy(doc))
		return 0; /* create.py: linux.get("resources") or {} */
	if (doc->type != J_OBJECT)
		return fail(why, whylen, "linux.resources must be an object");
	if (reject_unknown(doc, known, "linux.resources", why, whylen) < 0)
		return -1;
	const struct jval *memory, *cpu, *pids, *blkio, *unified;
	if (section(doc, "memory", &memory, why, whylen) < 0 || section(doc, "cpu", &cpu, why, whylen) < 0 ||
	    section(doc, "pids", &pids, why, whylen) < 0 || section(doc, "blockIO", &blkio, why, whylen) < 0 ||
	    section(doc, "unified", &unified, why, whylen) < 0)
		return -1;
	if (unified && unified->n)
		return fail(why, whylen, "linux.resources.unified: not in the C path");
	const struct jval *huge = json_get(doc, "hugepageLimits");
	if (huge && huge->type != J_NULL) {
		if (huge->type != J_ARRAY)
			return fail(why, whylen, "linux.resources.hugepageLimits must be an array");
		if (huge->n)
			return fail(why, whylen, "linux.resources.hugepageLimits: not in the C path");
	}
	const struct jval *devices = NULL;
	for (size_t i = 0; i < doc->n; i++)
		if (!strcmp(doc->keys[i], "devices"))
			devices = &doc->items[i];
	if (devices) {
		/* create._with_default_devices: list(None) would be a TypeError in Python */
		if (devices->type != J_ARRAY)
			return fail(why, whylen, "linux.resources.devices must be an array");
		for (size_t i = 0; i < devices->n; i++) {
			struct rule rule;
			if (parse_device(&devices->items[i], (int)i, &rule, why, whylen) < 0)
				return -1;
		}
		r->has_devices = 1;
		r->devices = devices;
		r->ndev = (int)devices->n + NDEFAULT;
		if (cg->version == 1 && !v1_dir(cg, "devices"))
			return fail(why, whylen, "cgroup v1 controller 'devices' is not mounted on this host");
		if (cg->version == 2 && !v2_devices_ok(r))
			return fail(why, whylen, "linux.resources.devices: restrictive device rules need an eBPF "
						 "device program on cgroup v2 (not in conch)");
	}
	if (pids) {
		static const char *const pk[] = {"limit", NULL};
		if (reject_unknown(pids, pk, "linux.resources.pids", why, whylen) < 0 ||
		    get_int(pids, "limit", "linux.resources.pids", 1, (long long)(-9223372036854775807LL - 1), &r->pids,
			    why, whylen) < 0)
			return -1;
		if (r->pids.set && r->pids.v < 0)
			r->pids.v = UNLIMITED;
		if (r->pids.set && cg->version == 1 && !v1_dir(cg, "pids"))
			return fail(why, whylen, "cgroup v1 controller 'pids' is not mounted on this host");
	}
	if (memory) {
		if (parse_memory(memory, r, why, whylen) < 0)
			return -1;
		if (cg->version == 2) {
			/* V2Manager._memory_plan's refusals and swap_to_v2's */
			if (r->kernel.set || r->ktcp.set || r->swappiness.set || r->oom == 1)
				return fail(why, whylen, "linux.resources.memory: kernel, kernelTCP, swappiness and "
							 "disableOOMKiller have no cgroup v2 equivalent");
			struct opt swap = r->swap;
			if (r->limit.set && r->limit.v == UNLIMITED && !swap.set)
				swap = (struct opt){1, UNLIMITED};
			if (swap.set && swap.v != UNLIMITED && (!r->limit.set || r->limit.v == UNLIMITED))
				return fail(why, whylen, "linux.resources.memory.swap: a swap limit needs memory.limit too");
		} else if (!v1_dir(cg, "memory"))
			return fail(why, whylen, "cgroup v1 controller 'memory' is not mounted on this host");
		/* Swap accounting is host-wide: look at the hierarchy's root, not yet the
		 * container's directory, so Python reports "boot with swapaccount=1". */
		if (cg->version == 1 && r->swap.set && r->swap.v != UNLIMITED &&
		    !exists(v1_mountpoint(cg, "memory"), "memory.memsw.limit_in_bytes"))
			return fail(why, whylen, "linux.resources.memory.swap needs swap accounting");
	}
	if (cpu) {
		if (parse_cpu(cpu, r, why, whylen) < 0)
			return -1;
		if (cg->version == 1 && (r->cpus || r->mems) && !v1_dir(cg, "cpuset"))
			return fail(why, whylen, "cgroup v1 controller 'cpuset' is not mounted on this host");
		if (cg->version == 1 && (r->shares.set || r->quota.set || r->period.set || r->burst.set || r->idle.set) &&
		    !v1_dir(cg, "cpu"))
			return fail(why, whylen, "cgroup v1 controller 'cpu' is not mounted on this host");
	}
	if (blkio) {
		if (parse_blkio(blkio, r, why, whylen) < 0)
			return -1;
		if (cg->version == 2)
			return 0;
		if (!v1_dir(cg, "blkio"))
			return fail(why, whylen, "cgroup v1 controller 'blkio' is not mounted on this host");
		/* The I/O scheduler is host-wide: without CFQ/BFQ weight files at the root,
		 * the plan fails; leave that to Python to report. */
		const char *root = v1_mountpoint(cg, "blkio");
		if (r->weight.set && !exists(root, "blkio.weight") && !exists(root, "blkio.bfq.weight"))
			return fail(why, whylen, "linux.resources.blockIO.weight: no blkio.weight on this host");
	}
	return 0;
}

int cg_check(const struct cg *cg, const struct jval *resources, char *why, size_t whylen)
{
	struct res r;
	return parse(cg, resources, &r, why, whylen);
}

/* ---- cg_apply (V1Manager.plan + fs.run_plan) ---------------------------------------- */

struct wr {
	const char *dir, *name;
	const char *str; /* the value, or NULL: buf */
	char buf[96];
	int tolerate;
};

static struct wr *push(struct wr *plan, int *n, const char *dir, const char *name)
{
	struct wr *w = &plan[(*n)++];
	w->dir = dir;
	w->name = name;
	w->str = NULL;
	w->buf[0] = 0;
	w->tolerate = 0;
	return w;
}

static void limit_str(char *buf, size_t size, long long v)
{
	if (v == UNLIMITED)
		snprintf(buf, size, "-1");
	else
		snprintf(buf, size, "%lld", v);
}

static void rule_line(const struct rule *r, char *buf, size_t size)
{
	char ma[24], mi[24];
	if (r->type == 'a') {
		/* Python's DeviceRule.v1_line writes "a" whatever the access letters */
		snprintf(buf, size, "a");
		return;
	}
	if (r->major < 0)
		snprintf(ma, sizeof ma, "*");
	else
		snprintf(ma, sizeof ma, "%lld", r->major);
	if (r->minor < 0)
		snprintf(mi, sizeof mi, "*");
	else
		snprintf(mi, sizeof mi, "%lld", r->minor);
	snprintf(buf, size, "%c %s:%s %s", r->type, ma, mi, r->access);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* V1Manager.plan: the writes into plan (room for r.ndev + the rates + 40), in order. */
static int v1_plan(const struct cg *cg, const struct res *rp, struct wr *plan, int *np, char *why, size_t whylen)
{
	struct res r = *rp;
	int n = 0, ret = -1;
	struct wr *w = plan;
	if (r.has_cpu && (r.cpus || r.mems)) {
		const char *d = v1_dir(cg, "cpuset");
		if (r.cpus)
			push(plan, &n, d, "cpuset.cpus")->str = r.cpus;
		if (r.mems)
			push(plan, &n, d, "cpuset.mems")->str = r.mems;
	}
	if (r.has_devices && r.ndev > 0) {
		const char *d = v1_dir(cg, "devices");
		for (int i = 0; i < r.ndev; i++) {
			struct rule rule;
			nth_rule(&r, i, &rule);
			w = push(plan, &n, d, rule.allow ? "devices.allow" : "devices.deny");
			rule_line(&rule, w->buf, sizeof w->buf);
		}
	}
	if (r.has_memory) {
		/* V1Manager._memory_plan */
		const char *d = v1_dir(cg, "memory");
		struct opt limit = r.limit, swap = r.swap;
		if (limit.set && limit.v == UNLIMITED && !swap.set)
			swap = (struct opt){1, UNLIMITED};
		if (swap.set && !exists(d, "memory.memsw.limit_in_bytes")) {
			if (swap.v != UNLIMITED) {
				fail(why, whylen, "linux.resources.memory.swap needs swap accounting, but "
						  "memory.memsw.limit_in_bytes is missing (boot with swapaccount=1)");
				errno = ENOENT;
				goto out;
			}
			swap.set = 0;
		}
		if (limit.set && swap.set) {
			char cur[64];
			if (read_value(d, "memory.limit_in_bytes", cur, sizeof cur, why, whylen) < 0)
				goto out;
			long long current = strtoll(cur, NULL, 10);
			int swap_first = swap.v == UNLIMITED || current < swap.v;
			for (int k = 0; k < 2; k++) {
				int is_swap = (k == 0) == swap_first;
				w = push(plan, &n, d, is_swap ? "memory.memsw.limit_in_bytes" : "memory.limit_in_bytes");
				limit_str(w->buf, sizeof w->buf, is_swap ? swap.v : limit.v);
			}
		} else if (limit.set) {
			limit_str(push(plan, &n, d, "memory.limit_in_bytes")->buf, sizeof w->buf, limit.v);
		} else if (swap.set) {
			limit_str(push(plan, &n, d, "memory.memsw.limit_in_bytes")->buf, sizeof w->buf, swap.v);
		}
		if (r.reservation.set)
			limit_str(push(plan, &n, d, "memory.soft_limit_in_bytes")->buf, sizeof w->buf, r.reservation.v);
		if (r.kernel.set)
			limit_str(push(plan, &n, d, "memory.kmem.limit_in_bytes")->buf, sizeof w->buf, r.kernel.v);
		if (r.ktcp.set)
			limit_str(push(plan, &n, d, "memory.kmem.tcp.limit_in_bytes")->buf, sizeof w->buf, r.ktcp.v);
		if (r.swappiness.set)
			snprintf(push(plan, &n, d, "memory.swappiness")->buf, sizeof w->buf, "%lld", r.swappiness.v);
		if (r.oom >= 0)
			snprintf(push(plan, &n, d, "memory.oom_control")->buf, sizeof w->buf, "%d", r.oom);
	}
	if (r.has_cpu && (r.shares.set || r.quota.set || r.period.set || r.burst.set || r.idle.set)) {
		/* V1Manager._cpu_plan */
		const char *d = v1_dir(cg, "cpu");
		if (r.shares.set)
			snprintf(push(plan, &n, d, "cpu.shares")->buf, sizeof w->buf, "%lld", r.shares.v);
		if (r.period.set) {
			w = push(plan, &n, d, "cpu.cfs_period_us");
			snprintf(w->buf, sizeof w->buf, "%lld", r.period.v);
			w->tolerate = r.quota.set ? EINVAL : 0;
		}
		if (r.quota.set) {
			limit_str(push(plan, &n, d, "cpu.cfs_quota_us")->buf, sizeof w->buf, r.quota.v);
			if (r.period.set)
				snprintf(push(plan, &n, d, "cpu.cfs_period_us")->buf, sizeof w->buf, "%lld", r.period.v);
		}
		if (r.burst.set)
			snprintf(push(plan, &n, d, "cpu.cfs_burst_us")->buf, sizeof w->buf, "%lld", r.burst.v);
		if (r.idle.set)
			snprintf(push(plan, &n, d, "cpu.idle")->buf, sizeof w->buf, "%lld", r.idle.v);
	}
	if (r.pids.set) {
		w = push(plan, &n, v1_dir(cg, "pids"), "pids.max");
		if (r.pids.v == UNLIMITED)
			snprintf(w->buf, sizeof w->buf, "max");
		else
			snprintf(w->buf, sizeof w->buf, "%lld", r.pids.v);
	}
	if (r.has_blkio) {
		/* V1Manager._blkio_plan */
		const char *d = v1_dir(cg, "blkio");
		if (r.weight.set) {
			const char *name = exists(d, "blkio.weight") ? "blkio.weight"
					   : exists(d, "blkio.bfq.weight") ? "blkio.bfq.weight" : NULL;
			if (!name) {
				fail(why, whylen, "linux.resources.blockIO.weight: this kernel has neither blkio.weight "
						  "nor blkio.bfq.weight (no CFQ/BFQ I/O scheduler)");
				errno = ENOENT;
				goto out;
			}
			snprintf(push(plan, &n, d, name)->buf, sizeof w->buf, "%lld", r.weight.v);
		}
		for (int t = 0; t < 4; t++)
			for (size_t i = 0; r.rates[t] && i < r.rates[t]->n; i++) {
				const struct jval *e = &r.rates[t]->items[i];
				snprintf(push(plan, &n, d, THROTTLE_FILES[t])->buf, sizeof w->buf, "%lld:%lld %lld",
					 json_get(e, "major")->integer, json_get(e, "minor")->integer,
					 json_get(e, "rate")->integer);
			}
	}
	ret = 0;
out:
	*np = n;
	return ret;
}

static int shares_to_weight(long long shares)
{
	shares = shares < 2 ? 2 : shares > 262144 ? 262144 : shares;
	return (int)(1 + ((shares - 2) * 9999) / 262142);
}

static void max_str(char *buf, size_t size, long long v)
{
	if (v == UNLIMITED)
		snprintf(buf, size, "max");
	else
		snprintf(buf, size, "%lld", v);
}

/* V2Manager.plan (parse made the refusals: devices beyond the defaults, v1-only memory
 * fields, swap without a memory limit). */
static int v2_plan(const struct cg *cg, const struct res *rp, struct wr *plan, int *np, char *why, size_t whylen)
{
	const struct res r = *rp;
	const char *d = cg->dir[0];
	int n = 0;
	struct wr *w = plan;
	if (r.has_cpu && r.cpus)
		push(plan, &n, d, "cpuset.cpus")->str = r.cpus;
	if (r.has_cpu && r.mems)
		push(plan, &n, d, "cpuset.mems")->str = r.mems;
	if (r.has_memory) {
		struct opt swap = r.swap;
		if (r.limit.set && r.limit.v == UNLIMITED && !swap.set)
			swap = (struct opt){1, UNLIMITED};
		if (swap.set && swap.v != UNLIMITED)
			swap.v -= r.limit.v; /* swap_to_v2: memory+swap to swap alone */
		if (swap.set) {
			if (exists(d, "memory.swap.max")) {
				max_str(push(plan, &n, d, "memory.swap.max")->buf, sizeof w->buf, swap.v);
			} else if (swap.v != UNLIMITED) {
				*np = n;
				errno = ENOENT;
				return fail(why, whylen, "linux.resources.memory.swap needs swap accounting, but "
							 "memory.swap.max is missing");
			}
		}
		if (r.limit.set)
			max_str(push(plan, &n, d, "memory.max")->buf, sizeof w->buf, r.limit.v);
		if (r.reservation.set)
			max_str(push(plan, &n, d, "memory.low")->buf, sizeof w->buf, r.reservation.v);
	}
	if (r.has_cpu) {
		if (r.shares.set)
			snprintf(push(plan, &n, d, "cpu.weight")->buf, sizeof w->buf, "%d", shares_to_weight(r.shares.v));
		if (r.quota.set || r.period.set) {
			/* cpu.max is "$QUOTA $PERIOD"; a lone period keeps quota at "max" (runc) */
			char quota[32];
			max_str(quota, sizeof quota, r.quota.set ? r.quota.v : UNLIMITED);
			w = push(plan, &n, d, "cpu.max");
			if (r.period.set)
				snprintf(w->buf, sizeof w->buf, "%s %lld", quota, r.period.v);
			else
				snprintf(w->buf, sizeof w->buf, "%s", quota);
		}
		if (r.burst.set)
			snprintf(push(plan, &n, d, "cpu.max.burst")->buf, sizeof w->buf, "%lld", r.burst.v);
		if (r.idle.set)
			snprintf(push(plan, &n, d, "cpu.idle")->buf, sizeof w->buf, "%lld", r.idle.v);
	}
	if (r.pids.set)
		max_str(push(plan, &n, d, "pids.max")->buf, sizeof w->buf, r.pids.v);
	if (r.has_blkio) {
		if (r.weight.set) {
			if (exists(d, "io.bfq.weight"))
				snprintf(push(plan, &n, d, "io.bfq.weight")->buf, sizeof w->buf, "%lld", r.weight.v);
			else
				snprintf(push(plan, &n, d, "io.weight")->buf, sizeof w->buf, "default %lld",
					 1 + ((r.weight.v - 10) * 9999) / 990);
		}
		static const char *const keys[4] = {"rbps", "wbps", "riops", "wiops"};
		for (int t = 0; t < 4; t++)
			for (size_t i = 0; r.rates[t] && i < r.rates[t]->n; i++) {
				const struct jval *e = &r.rates[t]->items[i];
				snprintf(push(plan, &n, d, "io.max")->buf, sizeof w->buf, "%lld:%lld %s=%lld",
					 json_get(e, "major")->integer, json_get(e, "minor")->integer, keys[t],
					 json_get(e, "rate")->integer);
			}
	}
	*np = n;
	return 0;
}

/* parse + the version's plan into a fresh array (*out, freed by the caller). */
static int make_plan(const struct cg *cg, const struct jval *resources, struct wr **out, int *np, char *why,
		     size_t whylen)
{
	struct res r;
	*out = NULL;
	*np = 0;
	if (parse(cg, resources, &r, why, whylen) < 0) {
		errno = EINVAL;
		return -1;
	}
	int cap = 40 + r.ndev;
	if (r.has_blkio)
		for (int t = 0; t < 4; t++)
			cap += r.rates[t] ? (int)r.rates[t]->n : 0;
	*out = calloc((size_t)cap, sizeof **out);
	if (!*out)
		return fail(why, whylen, "out of memory");
	return cg->version == 2 ? v2_plan(cg, &r, *out, np, why, whylen) : v1_plan(cg, &r, *out, np, why, whylen);
}

int cg_plan(const struct cg *cg, const struct jval *resources,
	    void (*each)(const char *dir, const char *name, const char *value, int tolerate, void *arg), void *arg,
	    char *why, size_t whylen)
{
	struct wr *plan;
	int n, ret = make_plan(cg, resources, &plan, &n, why, whylen);
	for (int i = 0; ret == 0 && i < n; i++)
		each(plan[i].dir, plan[i].name, plan[i].str ? plan[i].str : plan[i].buf, plan[i].tolerate, arg);
	free(plan);
	return ret;
}

int cg_apply(const struct cg *cg, const struct jval *resources, char *why, size_t whylen)
{
	struct wr *plan;
	int n, ret = -1;
	if (make_plan(cg, resources, &plan, &n, why, whylen) < 0)
		goto out;
	/* run_plan: every file first (no half-applied limits), then the writes in order */
	{
		char *missing[64];
		int nm = 0;
		for (int i = 0; i < n; i++) {
			if (exists(plan[i].dir, plan[i].name))
				continue;
			char path[4200];
			snprintf(path, sizeof path, "%s/%s", plan[i].dir, plan[i].name);
			int dup = 0;
			for (int k = 0; k < nm; k++)
				dup |= !strcmp(missing[k], path);
			if (!dup && nm < 64)
				missing[nm++] = strdup(path);
		}
		if (nm) {
			qsort(missing, (size_t)nm, sizeof *missing, cmp_str);
			size_t o = (size_t)snprintf(why, whylen, "this host's cgroups lack ");
			for (int k = 0; k < nm; k++) {
				if (o < whylen)
					o += (size_t)snprintf(why + o, whylen - o, "%s%s", k ? ", " : "", missing[k]);
				free(missing[k]);
			}
			errno = ENOENT;
			goto out;
		}
	}
	for (int i = 0; i < n; i++) {
		const char *value = plan[i].str ? plan[i].str : plan[i].buf;
		if (write_value(plan[i].dir, plan[i].name, value, why, whylen) < 0) {
			if (plan[i].tolerate && errno == plan[i].tolerate)
				continue;
			goto out;
		}
	}
	ret = 0;
out:
	{
		int e = errno;
		free(plan);
		errno = e;
	}
	return ret;
}

/* ---- cg_create (fs.make_dirs, V1Manager.create/_create_cpuset/_fill_cpuset, V2's) ---- */

static int record(struct cg *cg, const char *path, char *why, size_t whylen)
{
	for (int i = 0; i < cg->ncreated; i++)
		if (!strcmp(cg->created[i], path))
			return 0;
	if (cg->ncreated >= (int)(sizeof cg->created / sizeof *cg->created)) {
		errno = ENOSPC;
		return fail(why, whylen, "more than %d cgroup directories to create",
			    (int)(sizeof cg->created / sizeof *cg->created));
	}
	snprintf(cg->created[cg->ncreated++], sizeof cg->created[0], "%s", path);
	return 0;
}

static int make_dirs(struct cg *cg, const char *dir, int depth, char *why, size_t whylen)
{
	static char missing[64][4096]; /* depth 0's (the runtime is single-threaded); deeper
	                                * levels, only after a concurrent rmdir, allocate */
	char (*mine)[4096] = NULL;
	int nmiss = 0;
	char probe[4096];
	if (depth > 4)
		return fail(why, whylen, "mkdir %s: parents keep disappearing", dir);
	mine = depth == 0 ? missing : malloc(64 * 4096);
	if (!mine)
		return fail(why, whylen, "out of memory");
	snprintf(probe, sizeof probe, "%s", dir);
	int ret = -1;
	while (!is_dir(probe)) {
		if (nmiss >= 64) {
			fail(why, whylen, "mkdir %s: too deep", dir);
			goto out;
		}
		snprintf(mine[nmiss++], 4096, "%s", probe);
		char parent[4096];
		dirname_of(probe, parent, sizeof parent);
		if (!strcmp(parent, probe))
			break;
		snprintf(probe, sizeof probe, "%s", parent);
	}
	for (int i = nmiss - 1; i >= 0; i--) {
		const char *path = mine[i];
		for (int attempt = 0; attempt < 5; attempt++) {
			if (mkdir(path, 0755) == 0) {
				if (record(cg, path, why, whylen) < 0)
					goto out;
				break;
			}
			if (errno == EEXIST)
				break; /* a concurrent create made it; it is not ours to remove */
			if (errno == ENOENT) {
				/* a shared parent was removed meanwhile as empty: remake it */
				if (attempt == 4) {
					fail(why, whylen, "mkdir %s: %m", path);
					goto out;
				}
				char parent[4096];
				dirname_of(path, parent, sizeof parent);
				if (make_dirs(cg, parent, depth + 1, why, whylen) < 0)
					goto out;
				continue;
			}
			fail(why, whylen, "mkdir %s: %m", path);
			goto out;
		}
	}
	ret = 0;
out:
	if (depth > 0) {
		int e = errno;
		free(mine);
		errno = e;
	}
	return ret;
}

static int fill_cpuset(const char *dir, char *why, size_t whylen)
{
	static const char *const names[] = {"cpuset.cpus", "cpuset.mems"};
	for (int i = 0; i < 2; i++) {
		char value[4096], parent[4096];
		if (read_value(dir, names[i], value, sizeof value, why, whylen) < 0)
			return -1;
		if (value[0])
			continue;
		dirname_of(dir, parent, sizeof parent);
		if (!strcmp(parent, dir)) {
			errno = ENOENT;
			return fail(why, whylen, "no cpuset ancestor of %s has %s set", dir, names[i]);
		}
		if (fill_cpuset(parent, why, whylen) < 0 ||
		    read_value(parent, names[i], value, sizeof value, why, whylen) < 0 ||
		    write_value(dir, names[i], value, why, whylen) < 0)
			return -1;
	}
	return 0;
}

static int create_cpuset(struct cg *cg, const char *dir, char *why, size_t whylen)
{
	char missing[64][4096 / 4]; /* a cgroup path fits: checked below */
	int nmiss = 0;
	char probe[4096];
	snprintf(probe, sizeof probe, "%s", dir);
	while (!is_dir(probe)) {
		if (nmiss >= 64 || strlen(probe) >= sizeof missing[0])
			return fail(why, whylen, "cpuset cgroup %s: too deep or too long for the C path", dir);
		memcpy(missing[nmiss++], probe, strlen(probe) + 1); /* fits: checked above */
		char parent[4096];
		dirname_of(probe, parent, sizeof parent);
		snprintf(probe, sizeof probe, "%s", parent);
	}
	if (fill_cpuset(probe, why, whylen) < 0)
		return -1;
	for (int i = nmiss - 1; i >= 0; i--)
		if (make_dirs(cg, missing[i], 0, why, whylen) < 0 || fill_cpuset(missing[i], why, whylen) < 0)
			return -1;
	return 0;
}

static int has_word(const char *list, const char *word)
{
	size_t wl = strlen(word);
	for (const char *p = list; *p;) {
		while (*p == ' ' || *p == '\n' || *p == '\t')
			p++;
		size_t n = strcspn(p, " \n\t");
		if (n == wl && !strncmp(p, word, n))
			return 1;
		p += n;
	}
	return 0;
}

/* V2Manager._enable_controllers: top-down from the mount, every available controller
 * not yet enabled, in sorted order; refusals are expected (undelegatable ancestors). */
static int enable_controllers(const struct cg *cg, char *why, size_t whylen)
{
	char parent[4096], level[4096];
	dirname_of(cg->dir[0], parent, sizeof parent);
	const char *mnt = cg->mountpoint[0];
	size_t ml = strlen(mnt);
	snprintf(level, sizeof level, "%s", mnt);
	const char *rest = parent + ml;
	for (;;) {
		char avail[4096], enabled[4096];
		if (read_value(level, "cgroup.controllers", avail, sizeof avail, why, whylen) < 0 ||
		    read_value(level, "cgroup.subtree_control", enabled, sizeof enabled, why, whylen) < 0)
			return -1;
		char *words[64];
		int nw = 0;
		for (char *tok = strtok(avail, " \n\t"); tok && nw < 64; tok = strtok(NULL, " \n\t"))
			if (!has_word(enabled, tok))
				words[nw++] = tok;
		qsort(words, (size_t)nw, sizeof *words, cmp_str);
		for (int i = 0; i < nw; i++) {
			char v[80];
			snprintf(v, sizeof v, "+%s", words[i]);
			if (write_value(level, "cgroup.subtree_control", v, why, whylen) < 0 && errno == ENOENT)
				return -1;
		}
		while (*rest == '/')
			rest++;
		if (!*rest)
			break;
		size_t n = strcspn(rest, "/");
		size_t ll = strlen(level);
		snprintf(level + ll, sizeof level - ll, "%s%.*s", level[ll - 1] == '/' ? "" : "/", (int)n, rest);
		rest += n;
	}
	return 0;
}

int cg_create(struct cg *cg, char *why, size_t whylen)
{
	for (int i = 0; i < cg->n; i++) {
		int r = cg->version == 1 && has_token(cg->options[i], "cpuset", 6)
				? create_cpuset(cg, cg->dir[i], why, whylen)
				: make_dirs(cg, cg->dir[i], 0, why, whylen);
		if (r < 0)
			return -1;
	}
	if (cg->version == 2)
		return enable_controllers(cg, why, whylen);
	return 0;
}

int cg_add(const struct cg *cg, pid_t pid, char *why, size_t whylen)
{
	char v[24];
	snprintf(v, sizeof v, "%d", (int)pid);
	for (int i = 0; i < cg->n; i++)
		if (write_value(cg->dir[i], "cgroup.procs", v, why, whylen) < 0)
			return -1;
	return 0;
}

/* ---- cg_destroy (fs.remove_dir, _rmdir_retry, remove_created_parents) ---------------- */

static int rmdir_retry(const char *path)
{
	struct timespec start, now;
	clock_gettime(CLOCK_MONOTONIC, &start);
	long delay_us = 5000;
	for (;;) {
		if (rmdir(path) == 0 || errno == ENOENT)
			return 0;
		if (errno != EBUSY)
			return -1;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if ((now.tv_sec - start.tv_sec) * 1000000000L + (now.tv_nsec - start.tv_nsec) >= 2000000000L)
			return -1;
		usleep((useconds_t)delay_us);
		delay_us = delay_us * 2 > 100000 ? 100000 : delay_us * 2;
	}
}

/* os.walk(path, topdown=False) removing each directory's subdirectories */
static int remove_children(const char *path)
{
	DIR *d = opendir(path);
	if (!d)
		return 0; /* os.walk ignores what it cannot list */
	struct dirent *e;
	char sub[4200];
	int ret = 0;
	char **names = NULL;
	size_t nn = 0;
	while ((e = readdir(d))) {
		if (e->d_type != DT_DIR || !strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		char **more = realloc(names, (nn + 1) * sizeof *names);
		if (!more)
			break;
		names = more;
		names[nn++] = strdup(e->d_name);
	}
	closedir(d);
	for (size_t i = 0; i < nn; i++) {
		snprintf(sub, sizeof sub, "%s/%s", path, names[i]);
		if (ret == 0 && (remove_children(sub) < 0 || rmdir_retry(sub) < 0))
			ret = -1;
		free(names[i]);
	}
	free(names);
	return ret;
}

static int remove_dir(const char *path)
{
	if (rmdir(path) == 0 || errno == ENOENT)
		return 0;
	if (errno != EBUSY && errno != ENOTEMPTY)
		return -1;
	if (remove_children(path) < 0)
		return -1;
	return rmdir_retry(path);
}

static int remove_created_parents(const struct cg *cg, const char *leaf)
{
	/* the created ancestors of leaf, longest first (stable: ties keep created order) */
	int idx[64], n = 0;
	for (int i = 0; i < cg->ncreated && n < 64; i++) {
		const char *p = cg->created[i];
		size_t pl = strlen(p);
		while (pl > 0 && p[pl - 1] == '/')
			pl--;
		if (!strncmp(leaf, p, pl) && leaf[pl] == '/')
			idx[n++] = i;
	}
	for (int i = 1; i < n; i++) /* insertion sort: stable */
		for (int k = i; k > 0 && strlen(cg->created[idx[k]]) > strlen(cg->created[idx[k - 1]]); k--) {
			int t = idx[k];
			idx[k] = idx[k - 1];
			idx[k - 1] = t;
		}
	for (int i = 0; i < n; i++) {
		if (rmdir(cg->created[idx[i]]) == 0 || errno == ENOENT)
			continue;
		if (errno == EBUSY || errno == ENOTEMPTY)
			return 0; /* another container's cgroup lives here too; it stays */
		return -1;
	}
	return 0;
}

int cg_destroy(const struct cg *cg)
{
	for (int i = 0; i < cg->n; i++)
		if (remove_dir(cg->dir[i]) < 0 || remove_created_parents(cg, cg->dir[i]) < 0)
			return -1;
	return 0;
}

/* ---- cg_save (Manager.save() as json.dumps writes it) -------------------------------- */

struct out {
	char *buf;
	size_t size, len;
};

static void put(struct out *o, const char *s)
{
	size_t n = strlen(s);
	if (o->len < o->size)
		memcpy(o->buf + o->len, s, o->len + n < o->size ? n : o->size - o->len);
	o->len += n;
}

static void put_quoted(struct out *o, const char *s)
{
	size_t room = o->len < o->size ? o->size - o->len : 0;
	size_t need = json_quote(room ? o->buf + o->len : NULL, room, s, strlen(s));
	o->len += need;
}

size_t cg_save(const struct cg *cg, char *buf, size_t size)
{
	struct out o = {buf, size, 0};
	if (cg->version == 2) {
		put(&o, "{\"version\": 2, \"dir\": ");
		put_quoted(&o, cg->dir[0]);
		put(&o, ", \"mountpoint\": ");
		put_quoted(&o, cg->mountpoint[0]);
	} else {
		put(&o, "{\"version\": 1, \"dirs\": {");
		for (int i = 0; i < cg->n; i++) {
			if (i)
				put(&o, ", ");
			put_quoted(&o, cg->options[i]);
			put(&o, ": ");
			put_quoted(&o, cg->dir[i]);
		}
		put(&o, "}");
	}
	put(&o, ", \"created\": [");
	for (int i = 0; i < cg->ncreated; i++) {
		if (i)
			put(&o, ", ");
		put_quoted(&o, cg->created[i]);
	}
	put(&o, "]}");
	if (size)
		buf[o.len < size ? o.len : size - 1] = 0;
	return o.len;
}

/* ---- cg_mounts, cg_freezer_file ------------------------------------------------------ */

int cg_mounts(const struct cg *cg, int own_ns, struct cg_mount *out, int max)
{
	int k = 0;
	if (cg->version == 2) {
		if (max < 1)
			return -1;
		memset(&out[0], 0, sizeof out[0]);
		snprintf(out[0].fstype, sizeof out[0].fstype, "%s", own_ns ? "cgroup2" : "bind");
		snprintf(out[0].host_dir, sizeof out[0].host_dir, "%s", cg->dir[0]);
		return 1;
	}
	for (int i = 0; i < cg->n; i++) {
		const char *opts = cg->options[i];
		if (!opts[0])
			continue; /* mount_sources skips the unified "" */
		if (k >= max)
			return -1;
		struct cg_mount *m = &out[k++];
		memset(m, 0, sizeof *m);
		/* ",".join(o.replace("name=", "") for o in opts.split(",") if o != "none") */
		size_t len = 0;
		for (const char *p = opts;;) {
			size_t n = strcspn(p, ",");
			if (!(n == 4 && !strncmp(p, "none", 4))) {
				if (len && len < sizeof m->name - 1)
					m->name[len++] = ',';
				for (size_t j = 0; j < n && len < sizeof m->name - 1;) {
					if (n - j >= 5 && !strncmp(p + j, "name=", 5)) {
						j += 5;
						continue;
					}
					m->name[len++] = p[j++];
				}
				m->name[len] = 0;
			}
			if (!p[n])
				break;
			p += n + 1;
		}
		snprintf(m->fstype, sizeof m->fstype, "%s", own_ns ? "cgroup" : "bind");
		snprintf(m->options, sizeof m->options, "%s", opts);
		snprintf(m->host_dir, sizeof m->host_dir, "%s", cg->dir[i]);
	}
	return k;
}

void cg_freezer_file(const struct cg *cg, char kind[8], char *path, size_t size)
{
	kind[0] = 0;
	if (size)
		path[0] = 0;
	if (cg->version == 2) {
		snprintf(kind, 8, "v2");
		snprintf(path, size, "%s/cgroup.events", cg->dir[0]);
		return;
	}
	for (int i = 0; i < cg->n; i++)
		if (has_token(cg->options[i], "freezer", 7)) {
			snprintf(kind, 8, "v1");
			snprintf(path, size, "%s/freezer.state", cg->dir[i]);
			return;
		}
}
