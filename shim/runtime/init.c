/*
 * The C create/run path, part 3: G, the container's init, forked by the front (create.c)
 * already inside its pid namespace. The steps, their order and their semantics are
 * conch/runtime/init.py's run_init and finalize, rootfs.py and process.py, one for one
 * (the Python functions are named beside each step): the Python runtime is the
 * specification, and a container built here must be indistinguishable from one it builds.
 *
 * A failing step is sent to P over the sync socket ("e" + "step: reason") and G exits;
 * P then undoes everything and execs the Python runtime, which redoes the create and
 * reports the error in its own words. So the reasons here are only for
 * CONCH_RUNTIME_FRONT_DEBUG. After "ready" (create has returned) a failure can only be
 * told on stderr, as init._die_after_start does.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <termios.h>
#include <unistd.h>

#include "fdpass.h"
#include "front.h"

#ifndef PROC_SUPER_MAGIC
#define PROC_SUPER_MAGIC 0x9fa0
#endif

#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_RAISE 2
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif

unsigned long front_propagation(const char *word); /* spec.c */

static struct front_plan *pl;
static const char *step = "init";
static int made, joined; /* init._CgroupProgress */

/* Tell P what failed (errno's text appended when err) and exit. read()/write() on the
 * socket, never recv()/send(): after the seccomp filter is loaded, Python's channel
 * uses read/write, so a profile denying sendto/recvfrom cannot fail only this path (SIGPIPE
 * is ignored from front_init's start to the reset before execve). The step may be a mount
 * destination longer than msg: each length is clamped before the next write. */
static void __attribute__((noreturn, format(printf, 2, 3))) fail(int err, const char *fmt, ...)
{
	char msg[PATH_MAX + 512];
	int n = snprintf(msg, sizeof msg, "%c%s: ", MSG_ERROR, step);
	if (n < 0)
		n = 0;
	if (n < (int)sizeof msg - 1) {
		va_list ap;
		va_start(ap, fmt);
		int k = vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
		va_end(ap);
		n += k > 0 ? k : 0;
	}
	if (err && n < (int)sizeof msg - 1)
		n += snprintf(msg + n, sizeof msg - (size_t)n, ": %s", strerror(err));
	if (n >= (int)sizeof msg)
		n = sizeof msg - 1;
	ssize_t w;
	while ((w = write(pl->sync_fd, msg, (size_t)n)) < 0 && errno == EINTR)
		;
	_exit(1);
}

static void expect(char kind)
{
	char msg[64];
	ssize_t n;
	while ((n = read(pl->sync_fd, msg, sizeof msg)) < 0 && errno == EINTR)
		;
	if (n <= 0 || msg[0] != kind)
		fail(0, "sync: expected %c", kind);
}

static void wait_made(void)
{
	if (!made)
		expect(MSG_CGROUP_DIRS);
	made = 1;
}

static void wait_joined(void)
{
	if (joined)
		return;
	wait_made();
	expect(MSG_CGROUP_JOINED);
	if (pl->ns_has[NS_CGROUP] && !*pl->ns_path[NS_CGROUP] && unshare(CLONE_NEWCGROUP) < 0)
		fail(errno, "unshare cgroup");
	joined = 1;
}

static void do_mount(const char *src, const char *dst, const char *type, unsigned long flags, const char *data)
{
	if (mount(src, dst, type, flags, data) < 0)
		fail(errno, "mount %s", dst);
}

static int exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

static int lexists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0;
}

static int isdir(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* os.makedirs(path, mode, exist_ok=True): parents 0777, the last mode. 0 or -1. */
static int makedirs(const char *path, mode_t mode)
{
	char buf[PATH_MAX];
	if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) {
		errno = ENAMETOOLONG;
		return -1;
	}
	size_t len = strlen(buf);
	while (len > 1 && buf[len - 1] == '/')
		buf[--len] = '\0';
	for (char *s = buf + 1; (s = strchr(s, '/')); s++) {
		*s = '\0';
		if (!exists(buf) && mkdir(buf, 0777) < 0 && !(errno == EEXIST && isdir(buf)))
			return -1;
		*s = '/';
		while (s[1] == '/')
			s++;
	}
	if (mkdir(buf, mode) < 0 && !(errno == EEXIST && isdir(buf)))
		return -1;
	return 0;
}

static void dirname_of(const char *path, char *out, size_t size)
{
	if (snprintf(out, size, "%s", path) >= (int)size) /* a cut path is another path */
		fail(ENAMETOOLONG, "%s", path);
	char *slash = strrchr(out, '/');
	if (slash == out)
		out[1] = '\0';
	else if (slash)
		*slash = '\0';
}

/* A growing string for secure_join, whose parts have no length limit (Python's lists) */
struct str {
	char *p;
	size_t len, cap;
};

static void str_put(struct str *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = (b->len + n + 1) * 2;
		char *p = realloc(b->p, cap);
		if (!p)
			fail(ENOMEM, "secure_join");
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

/* rootfs.secure_join: unsafe resolved in root as if root were "/". As Python's, a part
 * whose lstat fails for any reason (a name past NAME_MAX, a candidate past PATH_MAX
 * included) is kept as text, and a later ".." may remove it: only the result must fit. */
static void secure_join(const char *root, const char *unsafe, char *out, size_t size)
{
	struct str rest = {0}, resolved = {0}, candidate = {0};
	char target[PATH_MAX + 1];
	int links = 0;
	str_put(&rest, unsafe, strlen(unsafe));
	str_put(&resolved, "", 0);
	size_t at = 0; /* where the parts still to walk start in rest */
	for (;;) {
		const char *p = rest.p + at;
		while (*p == '/')
			p++;
		if (!*p)
			break;
		const char *end = strchrnul(p, '/');
		size_t n = (size_t)(end - p);
		at = (size_t)(end - rest.p);
		if (n == 1 && p[0] == '.')
			continue;
		if (n == 2 && p[0] == '.' && p[1] == '.') {
			while (resolved.len > 0 && resolved.p[resolved.len - 1] != '/')
				resolved.len--;
			if (resolved.len > 0)
				resolved.len--;
			resolved.p[resolved.len] = '\0';
			continue;
		}
		struct stat st;
		candidate.len = 0;
		str_put(&candidate, root, strlen(root));
		str_put(&candidate, resolved.p, resolved.len);
		str_put(&candidate, "/", 1);
		str_put(&candidate, p, n);
		if (lstat(candidate.p, &st) == 0 && S_ISLNK(st.st_mode)) {
			if (++links > 255)
				fail(0, "too many symlinks resolving %s in the rootfs", unsafe);
			ssize_t t = readlink(candidate.p, target, sizeof target - 1);
			if (t < 0)
				fail(errno, "readlink %s", candidate.p);
			target[t] = '\0';
			if (target[0] == '/') {
				resolved.len = 0;
				resolved.p[0] = '\0';
			}
			struct str next = {0}; /* the target's parts, then the rest */
			str_put(&next, target, (size_t)t);
			str_put(&next, "/", 1);
			str_put(&next, rest.p + at, rest.len - at);
			free(rest.p);
			rest = next;
			at = 0;
			continue;
		}
		str_put(&resolved, "/", 1);
		str_put(&resolved, p, n);
	}
	if (snprintf(out, size, "%s%s", root, resolved.p) >= (int)(size < PATH_MAX ? size : PATH_MAX))
		fail(ENAMETOOLONG, "%s", unsafe);
	free(rest.p);
	free(resolved.p);
	free(candidate.p);
}

/* rootfs._make_target */
static void make_target(const char *dest, int is_dir)
{
	char dir[PATH_MAX];
	if (lexists(dest))
		return;
	if (is_dir) {
		if (makedirs(dest, 0755) < 0)
			fail(errno, "mkdir %s", dest);
		return;
	}
	dirname_of(dest, dir, sizeof dir);
	if (makedirs(dir, 0755) < 0)
		fail(errno, "mkdir %s", dir);
	int fd = open(dest, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
	if (fd < 0)
		fail(errno, "create %s", dest);
	close(fd);
}

/* rootfs._statvfs_flags: the MS_* bits statvfs reports alike (MS_RELATIME is tested
 * as Python tests it, against the MS_ value) */
static unsigned long statvfs_flags(const char *path)
{
	static const unsigned long bits[] = {MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_NOATIME,
					     MS_NODIRATIME, MS_RELATIME};
	struct statvfs st;
	unsigned long out = 0;
	if (statvfs(path, &st) < 0)
		fail(errno, "statvfs %s", path);
	for (size_t i = 0; i < sizeof bits / sizeof *bits; i++)
		if (st.f_flag & bits[i])
			out |= bits[i];
	return out;
}

/* rootfs._remount_bind */
static void remount_bind(const char *dest, unsigned long flags, int keep_existing)
{
	unsigned long base = MS_BIND | MS_REMOUNT;
	if (keep_existing)
		flags |= statvfs_flags(dest);
	if (mount(NULL, dest, NULL, base | flags, NULL) == 0)
		return;
	if (errno != EPERM)
		fail(errno, "remount %s", dest);
	do_mount(NULL, dest, NULL, base | flags | statvfs_flags(dest), NULL);
}

/* rootfs._cgroup_fs_or_bind */
static void cgroup_fs_or_bind(const char *dest, const struct cg_mount *m, unsigned long flags)
{
	if (strcmp(m->fstype, "bind") != 0) {
		if (mount("cgroup", dest, m->fstype, flags, *m->options ? m->options : NULL) == 0)
			return;
		if (!*m->host_dir)
			fail(errno, "mount cgroup %s", dest);
	}
	do_mount(m->host_dir, dest, NULL, MS_BIND | MS_REC, NULL);
	if (flags)
		remount_bind(dest, flags, 0);
}

/* rootfs._mount_cgroup */
static void mount_cgroup(const char *dest, unsigned long flags)
{
	unsigned long ro = flags & MS_RDONLY, base = flags & (MS_NOSUID | MS_NODEV | MS_NOEXEC);
	char sub[PATH_MAX * 3];
	if (pl->ncg_mounts == 1 && !*pl->cg_mounts[0].name) {
		cgroup_fs_or_bind(dest, &pl->cg_mounts[0], base | ro);
		return;
	}
	do_mount("tmpfs", dest, "tmpfs", base, "mode=755");
	for (int i = 0; i < pl->ncg_mounts; i++) {
		snprintf(sub, sizeof sub, "%s/%s", dest, pl->cg_mounts[i].name);
		if (makedirs(sub, 0777) < 0)
			fail(errno, "mkdir %s", sub);
		cgroup_fs_or_bind(sub, &pl->cg_mounts[i], base | ro);
	}
}

/* rootfs.mount_one */
static void mount_one(const struct front_mount *m)
{
	char dest[PATH_MAX * 2];
	struct stat st;
	secure_join(pl->rootfs, m->dest, dest, sizeof dest);
	if (strcmp(m->type, "bind") == 0 || (m->flags & MS_BIND)) {
		if (!*m->source || stat(m->source, &st) < 0)
			fail(0, "bind mount source %s for %s does not exist", m->source, m->dest);
		make_target(dest, S_ISDIR(st.st_mode));
		do_mount(m->source, dest, NULL, MS_BIND | (m->flags & MS_REC), NULL);
		unsigned long remount = m->flags & ~(unsigned long)(MS_BIND | MS_REC | MS_REMOUNT);
		if (remount)
			remount_bind(dest, remount, 0);
	} else if (strcmp(m->type, "cgroup") == 0) {
		make_target(dest, 1);
		mount_cgroup(dest, m->flags);
	} else {
		make_target(dest, 1);
		do_mount(*m->source ? m->source : m->type, dest, m->type, m->flags, m->data);
	}
	if (m->propagation)
		do_mount(NULL, dest, NULL, m->propagation, NULL);
}

/* rootfs._mount_point_of + _make_parent_private: whole lines (getline), as Python reads
 * them, and mount points of any length (escaped, one can pass PATH_MAX) */
static void make_parent_private(const char *rootfs)
{
	char *line = NULL, *best = NULL;
	size_t cap = 0;
	int shared = 0;
	FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		fail(errno, "open /proc/self/mountinfo");
	while (getline(&line, &cap, f) >= 0) {
		char *fields[64];
		int n = 0;
		for (char *t = strtok(line, " \n"); t && n < 64; t = strtok(NULL, " \n"))
			fields[n++] = t;
		if (n < 7)
			continue;
		char *mp = malloc(strlen(fields[4]) + 1);
		size_t k = 0;
		if (!mp)
			fail(ENOMEM, "mountinfo");
		for (const char *c = fields[4]; *c; c++) {
			if (strncmp(c, "\\040", 4) == 0) {
				mp[k++] = ' ';
				c += 3;
			} else {
				mp[k++] = *c;
			}
		}
		mp[k] = '\0';
		size_t plen = k;
		while (plen && mp[plen - 1] == '/')
			plen--; /* mp.rstrip("/") + "/" */
		int inside = strcmp(rootfs, mp) == 0 ||
			     (strncmp(rootfs, mp, plen) == 0 && rootfs[plen] == '/');
		if (inside && (!best || k >= strlen(best))) {
			free(best);
			best = mp;
			mp = NULL;
			shared = 0;
			for (int i = 6; i < n && strcmp(fields[i], "-") != 0; i++)
				if (strncmp(fields[i], "shared:", 7) == 0)
					shared = 1;
		}
		free(mp);
	}
	fclose(f);
	free(line);
	if (best && shared)
		do_mount(NULL, best, NULL, MS_PRIVATE, NULL);
	free(best);
}

/* rootfs.prepare_root */
static void prepare_root(void)
{
	unsigned long flag = front_propagation(*pl->root_propagation ? pl->root_propagation : "rslave");
	if (flag & MS_SHARED)
		flag = MS_SLAVE | MS_REC;
	do_mount(NULL, "/", NULL, flag, NULL);
	make_parent_private(pl->rootfs);
	do_mount(pl->rootfs, pl->rootfs, NULL, MS_BIND | MS_REC, NULL);
}

/* rootfs.create_devices with _create_device (no user namespace on this path) */
static void create_devices(void)
{
	static const struct front_device defaults[] = {
		{"/dev/null", S_IFCHR, 1, 3, 0666, 0, 0}, {"/dev/zero", S_IFCHR, 1, 5, 0666, 0, 0},
		{"/dev/full", S_IFCHR, 1, 7, 0666, 0, 0}, {"/dev/random", S_IFCHR, 1, 8, 0666, 0, 0},
		{"/dev/urandom", S_IFCHR, 1, 9, 0666, 0, 0}, {"/dev/tty", S_IFCHR, 5, 0, 0666, 0, 0},
	};
	static const char *const links[][2] = {
		{"/proc/self/fd", "/dev/fd"}, {"/proc/self/fd/0", "/dev/stdin"},
		{"/proc/self/fd/1", "/dev/stdout"}, {"/proc/self/fd/2", "/dev/stderr"},
		{"pts/ptmx", "/dev/ptmx"},
	};
	const struct front_device *all[6 + FRONT_MAX_DEVICES];
	int n = 0;
	char dest[PATH_MAX * 2], dir[PATH_MAX * 2];
	for (size_t i = 0; i < 6; i++) {
		int listed = 0;
		for (int k = 0; k < pl->ndevices; k++)
			listed |= strcmp(pl->devices[k].path, defaults[i].path) == 0;
		if (!listed)
			all[n++] = &defaults[i];
	}
	for (int k = 0; k < pl->ndevices; k++)
		all[n++] = &pl->devices[k];
	mode_t old = umask(0);
	for (int i = 0; i < n; i++) {
		const struct front_device *d = all[i];
		secure_join(pl->rootfs, d->path, dest, sizeof dest);
		dirname_of(dest, dir, sizeof dir);
		if (makedirs(dir, 0755) < 0)
			fail(errno, "mkdir %s", dir);
		if (lexists(dest) && unlink(dest) < 0)
			fail(errno, "unlink %s", dest);
		if (mknod(dest, d->kind | d->mode, makedev(d->major, d->minor)) < 0)
			fail(errno, "mknod %s", dest);
		if (chown(dest, d->uid, d->gid) < 0)
			fail(errno, "chown %s", dest);
	}
	for (size_t i = 0; i < sizeof links / sizeof *links; i++) {
		secure_join(pl->rootfs, links[i][1], dest, sizeof dest);
		if (!lexists(dest) && symlink(links[i][0], dest) < 0)
			fail(errno, "symlink %s", dest);
	}
	if (exists("/proc/kcore")) {
		secure_join(pl->rootfs, "/dev/core", dest, sizeof dest);
		if (!lexists(dest) && symlink("/proc/kcore", dest) < 0)
			fail(errno, "symlink %s", dest);
	}
	umask(old);
}

/* rootfs.pivot_root: the pivot_root(".", ".") trick */
static void pivot(void)
{
	int old_root = open("/", O_DIRECTORY | O_RDONLY | O_CLOEXEC);
	int new_root = open(pl->rootfs, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
	if (old_root < 0 || new_root < 0)
		fail(errno, "open %s", pl->rootfs);
	if (fchdir(new_root) < 0 || syscall(SYS_pivot_root, ".", ".") < 0 || fchdir(old_root) < 0)
		fail(errno, "pivot_root %s", pl->rootfs);
	do_mount(NULL, ".", NULL, MS_SLAVE | MS_REC, NULL);
	if (umount2(".", MNT_DETACH) < 0 || chdir("/") < 0)
		fail(errno, "umount2 .");
	close(old_root);
	close(new_root);
}

/* The console socket's connection, made by P only now: P connects when G asks, once
 * everything that commonly fails has passed (the program's lookup above all). A failure
 * before this point is undone and redone by Python, which connects itself; had P
 * connected first, a listener that takes one connection only (containerd's shim, conmon)
 * would have been spent on the attempt that failed. */
static void receive_console(void)
{
	char ask = MSG_CONSOLE, body[8];
	int fd;
	if (write(pl->sync_fd, &ask, 1) != 1)
		fail(errno, "ask for the console socket");
	ssize_t n = front_recv_fd(pl->sync_fd, body, sizeof body, &fd);
	if (n != 1 || body[0] != MSG_CONSOLE || fd < 0)
		fail(0, "no console socket connection from the runtime");
	pl->console_fd = fd;
}

/* init._setup_console with console.py's open_pty, bind_console, send_fd and
 * make_controlling, in their order: a pty from the container's own devpts (/dev/ptmx
 * after pivot_root), its slave bound onto /dev/console, the master sent over the
 * console socket (SCM_RIGHTS, the body "/dev/ptmx" as Python sends it), then the slave
 * our controlling terminal (we are a session leader: setsid) and fds 0-2. */
static void setup_console(void)
{
	int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC), unlock = 0;
	if (master < 0)
		fail(errno, "open /dev/ptmx");
	if (ioctl(master, TIOCSPTLCK, &unlock) < 0)
		fail(errno, "unlock /dev/ptmx");
	/* console.open_pty: the slave from the master itself, never by its path in the
	 * container's /dev/pts (runc's CVE-2025-52565) */
	int slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (slave < 0)
		fail(errno, "TIOCGPTPEER");
	/* console.bind_console: onto /dev/console opened without following a link */
	int made = open("/dev/console", O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (made >= 0)
		close(made);
	else if (errno != EEXIST)
		fail(errno, "create /dev/console");
	int target = open("/dev/console", O_PATH | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;
	if (target < 0 || fstat(target, &st) < 0)
		fail(errno, "open /dev/console");
	if (!S_ISREG(st.st_mode) && !S_ISCHR(st.st_mode))
		fail(0, "/dev/console in the container is neither a file nor a device");
	char src[64], dst[64];
	snprintf(src, sizeof src, "/proc/self/fd/%d", slave);
	snprintf(dst, sizeof dst, "/proc/self/fd/%d", target);
	do_mount(src, dst, NULL, MS_BIND, NULL);
	close(target);
	receive_console(); /* only now: every step that can fail here has passed */
	static const char body[] = "/dev/ptmx"; /* what console.send_fd sends with it */
	ssize_t sent = front_send_fd(pl->console_fd, body, sizeof body - 1, master);
	if (sent < 0)
		fail(errno, "send the pty master");
	close(master);
	close(pl->console_fd);
	int fd = slave; /* console.make_controlling: TIOCSCTTY makes it our terminal */
	struct winsize ws = {.ws_row = pl->rows, .ws_col = pl->cols};
	if (pl->has_size && ioctl(fd, TIOCSWINSZ, &ws) < 0)
		fail(errno, "TIOCSWINSZ");
	if (ioctl(fd, TIOCSCTTY, 0) < 0)
		fail(errno, "TIOCSCTTY");
	for (int i = 0; i < 3; i++)
		if (fd != i && dup2(fd, i) < 0)
			fail(errno, "dup2 %d", i);
}

/* rootfs.apply_sysctls */
static void sysctls(void)
{
	char path[PATH_MAX];
	for (size_t i = 0; pl->sysctl && i < pl->sysctl->n; i++) {
		const struct jval *v = &pl->sysctl->items[i];
		if (snprintf(path, sizeof path, "/proc/sys/%s", pl->sysctl->keys[i]) >= (int)sizeof path)
			fail(ENAMETOOLONG, "sysctl %s", pl->sysctl->keys[i]); /* a cut path is another key */
		for (char *c = path + 10; *c; c++)
			if (*c == '.')
				*c = '/';
		/* rootfs.apply_sysctls: never through a link, never a new file */
		int fd = open(path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC); /* no O_TRUNC: checked first */
		struct statfs sfs;
		if (fd >= 0 && (fstatfs(fd, &sfs) < 0 || sfs.f_type != PROC_SUPER_MAGIC))
			fail(0, "not on procfs: %s", path); /* an image's own file: Python says so */
		if (fd < 0 || write(fd, v->str, v->len) != (ssize_t)v->len || close(fd) < 0)
			fail(errno, "sysctl %s", pl->sysctl->keys[i]);
	}
}

/* init._loopback_up */
static void loopback_up(void)
{
	struct ifreq ifr;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		fail(errno, "socket");
	memset(&ifr, 0, sizeof ifr);
	strcpy(ifr.ifr_name, "lo");
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
		fail(errno, "SIOCGIFFLAGS lo");
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
		fail(errno, "SIOCSIFFLAGS lo");
	close(fd);
}

/* rootfs.readonly_paths, mask_paths */
static void readonly_paths(void)
{
	for (size_t i = 0; pl->readonly && i < pl->readonly->n; i++) {
		const char *path = pl->readonly->items[i].str;
		if (mount(path, path, NULL, MS_BIND | MS_REC, NULL) < 0) {
			if (errno == ENOENT)
				continue;
			fail(errno, "mount %s", path);
		}
		remount_bind(path, MS_RDONLY, 1);
	}
}

/* Files are masked with the container's /dev/null, held by an O_PATH fd and bound through
 * /proc/self/fd/N, after checking it is the null device: an image's /dev/null that is a
 * symlink (to /proc/sys/kernel/hostname, say) or another device would otherwise be bound
 * writable onto the masked files (CVE-2025-31133's pattern; runc's fix). */
static void mask_paths(void)
{
	if (!pl->masked || !pl->masked->n)
		return;
	struct stat null_st;
	char null_path[32];
	int null_fd = open("/dev/null", O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (null_fd < 0 || fstat(null_fd, &null_st) < 0)
		fail(errno, "open /dev/null");
	if (!S_ISCHR(null_st.st_mode) || null_st.st_rdev != makedev(1, 3))
		fail(0, "/dev/null in the container is not the null device (1:3)");
	snprintf(null_path, sizeof null_path, "/proc/self/fd/%d", null_fd);
	for (size_t i = 0; i < pl->masked->n; i++) {
		const char *path = pl->masked->items[i].str;
		struct stat st;
		int is_dir = isdir(path) && !(lstat(path, &st) == 0 && S_ISLNK(st.st_mode));
		int r = is_dir ? mount("tmpfs", path, "tmpfs", MS_RDONLY, NULL)
			       : mount(null_path, path, NULL, MS_BIND, NULL);
		if (r < 0 && errno != ENOENT)
			fail(errno, "mask %s", path);
	}
	close(null_fd);
}

struct env_key {
	const char *s;
	size_t klen, i;
};

static int cmp_env(const void *a, const void *b)
{
	const struct env_key *x = a, *y = b;
	size_t n = x->klen < y->klen ? x->klen : y->klen;
	int c = memcmp(x->s, y->s, n);
	if (c)
		return c;
	if (x->klen != y->klen)
		return x->klen < y->klen ? -1 : 1;
	return x->i < y->i ? -1 : x->i > y->i;
}

/* process.env_dict + init.prepare_exec's HOME: "K=V" in the dict's order (a key's first
 * place, its last value). Sorted by (key, place), O(n log n), as a dict is about linear:
 * 100k entries are a config Python takes. */
static char **environment(void)
{
	size_t n = pl->env ? pl->env->n : 0, count = 0;
	char **envp = calloc(n + 2, sizeof *envp);
	struct env_key *keys = calloc(n + 1, sizeof *keys);
	size_t *value_of = calloc(n + 1, sizeof *value_of); /* first place -> last place + 1 */
	int home = 0;
	if (!envp || !keys || !value_of)
		fail(ENOMEM, "env");
	for (size_t i = 0; i < n; i++) {
		const char *item = pl->env->items[i].str;
		keys[i] = (struct env_key){item, strcspn(item, "="), i};
		if (keys[i].klen == 4 && strncmp(item, "HOME", 4) == 0)
			home = 1;
	}
	qsort(keys, n, sizeof *keys, cmp_env);
	for (size_t g = 0, e; g < n; g = e) {
		for (e = g + 1; e < n && keys[e].klen == keys[g].klen && memcmp(keys[e].s, keys[g].s, keys[g].klen) == 0; e++)
			;
		value_of[keys[g].i] = keys[e - 1].i + 1;
	}
	for (size_t i = 0; i < n; i++) {
		if (!value_of[i])
			continue;
		const char *item = pl->env->items[value_of[i] - 1].str;
		char *entry = NULL;
		if (item[strcspn(item, "=")] ? !(entry = strdup(item)) : asprintf(&entry, "%s=", item) < 0)
			fail(ENOMEM, "env");
		envp[count++] = entry;
	}
	free(keys);
	free(value_of);
	if (!home) { /* process.home_of, from the container's /etc/passwd */
		char uid[16], *dir = NULL, *text = NULL;
		size_t len = 0, cap = 0;
		int ulen = snprintf(uid, sizeof uid, "%u", (unsigned)pl->uid);
		FILE *f = fopen("/etc/passwd", "re");
		/* the whole file: lines of any length, split as Python's text mode splits them
		 * (universal newlines: "\n", "\r\n" and a lone "\r" end a line) */
		while (f) {
			if (len + 4096 > cap) {
				char *p = realloc(text, cap = (len + 4096) * 2);
				if (!p)
					fail(ENOMEM, "env");
				text = p;
			}
			size_t got = fread(text + len, 1, cap - len, f);
			len += got;
			if (got == 0)
				break;
		}
		if (f)
			fclose(f);
		for (size_t at = 0; text && at < len && !dir;) {
			const char *line = text + at;
			size_t n = 0; /* a byte loop: the file may hold NULs */
			while (at + n < len && line[n] != '\r' && line[n] != '\n')
				n++;
			at += n;
			if (at < len && text[at++] == '\r' && at < len && text[at] == '\n')
				at++;
			const char *fields[6];
			size_t flen[6], k = 0;
			for (const char *c = line, *end = line + n; k < 6; k++) { /* line.split(":") */
				const char *colon = memchr(c, ':', (size_t)(end - c));
				fields[k] = c;
				flen[k] = (size_t)((colon ? colon : end) - c);
				if (!colon) {
					k++;
					break;
				}
				c = colon + 1;
			}
			if (k >= 6 && flen[2] == (size_t)ulen && memcmp(fields[2], uid, (size_t)ulen) == 0) {
				if (memchr(fields[5], '\0', flen[5]))
					fail(0, "HOME from /etc/passwd holds a NUL");
				dir = flen[5] ? strndup(fields[5], flen[5]) : strdup("/");
				if (!dir)
					fail(ENOMEM, "env");
			}
		}
		free(text);
		if (asprintf(&envp[count++], "HOME=%s", dir ? dir : "/") < 0)
			fail(ENOMEM, "env");
	}
	envp[count] = NULL;
	return envp;
}

/* process.resolve_executable */
static const char *resolve(const char *arg0, char **envp)
{
	const char *path_env = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	static char found[PATH_MAX * 2];
	int denied = 0;
	struct stat st;
	for (char **e = envp; *e; e++)
		if (strncmp(*e, "PATH=", 5) == 0)
			path_env = *e + 5;
	const char *d = path_env;
	for (;;) {
		int len;
		if (strchr(arg0, '/')) {
			len = snprintf(found, sizeof found, "%s", arg0);
		} else {
			size_t dlen = strcspn(d, ":");
			if (dlen == 0)
				len = snprintf(found, sizeof found, "./%s", arg0);
			else
				len = snprintf(found, sizeof found, "%.*s%s%s", (int)dlen, d, d[dlen - 1] == '/' ? "" : "/", arg0);
		}
		/* a candidate too long for found is one whose stat fails (ENAMETOOLONG), never
		 * the shorter path it was cut to */
		if (len < (int)sizeof found && stat(found, &st) == 0) {
			if (!S_ISREG(st.st_mode) || (access(found, X_OK) < 0 && !(st.st_mode & 0111)))
				denied = 1;
			else
				return found;
		}
		if (strchr(arg0, '/'))
			break;
		d += strcspn(d, ":");
		if (!*d)
			break;
		d++;
	}
	fail(0, "exec: \"%s\": %s", arg0, denied ? "permission denied" : "not found");
}

static int capset3(uint64_t eff, uint64_t perm, uint64_t inh)
{
	struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct data[2];
	for (int i = 0; i < 2; i++) {
		data[i].effective = (uint32_t)(eff >> (32 * i));
		data[i].permitted = (uint32_t)(perm >> (32 * i));
		data[i].inheritable = (uint32_t)(inh >> (32 * i));
	}
	return (int)syscall(SYS_capset, &hdr, data);
}

static int setgroups_allowed(void)
{
	char buf[16] = "";
	int fd = open("/proc/self/setgroups", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 1;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	return strncmp(buf, "deny", 4) != 0 || (buf[4] != '\0' && buf[4] != '\n');
}

/* init.finalize with process.switch_user */
static void finalize(void)
{
	int cwd_done = 1;
	if (chdir(pl->cwd) < 0) {
		if (errno == EACCES || errno == EPERM)
			cwd_done = 0;
		else if (errno != ENOENT || makedirs(pl->cwd, 0755) < 0 || chdir(pl->cwd) < 0)
			fail(errno, "chdir %s", pl->cwd);
	}
	for (int i = 0; i < pl->nrlimits; i++) {
		struct rlimit rl = {pl->rlimits[i].soft, pl->rlimits[i].hard};
		if (setrlimit(pl->rlimits[i].resource, &rl) < 0)
			fail(errno, "setrlimit %d", pl->rlimits[i].resource);
	}
	if (pl->has_oom) {
		char buf[32];
		int len = snprintf(buf, sizeof buf, "%ld", pl->oom);
		int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
		if (fd < 0 || write(fd, buf, (size_t)len) != len || close(fd) < 0)
			fail(errno, "oomScoreAdj");
	}
	if (pl->nnp) {
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
			fail(errno, "no_new_privs");
	} else if (pl->has_seccomp && seccomp_load(&pl->seccomp) < 0) {
		fail(errno, "seccomp");
	}
	umask(pl->has_umask ? pl->umask : 0022); /* init.finalize, before switch_user (runc's) */
	int groups_ok = setgroups_allowed();
	for (int cap = 0; cap <= pl->last_cap; cap++)
		if (!(pl->caps[0] & (1ULL << cap)) && prctl(PR_CAPBSET_READ, cap, 0, 0, 0) == 1 &&
		    prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
			fail(errno, "PR_CAPBSET_DROP %d", cap);
	if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
		fail(errno, "keepcaps");
	if (groups_ok) {
		if (setgroups((size_t)pl->ngroups, pl->groups) < 0)
			fail(errno, "setgroups");
	} else if (pl->ngroups) {
		fail(0, "additionalGids cannot be set: setgroups is denied");
	}
	if (setresgid(pl->gid, pl->gid, pl->gid) < 0 || setresuid(pl->uid, pl->uid, pl->uid) < 0)
		fail(errno, "setresuid/gid");
	if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0)
		fail(errno, "keepcaps");
	if (capset3(pl->caps[1], pl->caps[2], pl->caps[3]) < 0)
		fail(errno, "capset");
	if (pl->caps[4]) {
		if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0)
			fail(errno, "PR_CAP_AMBIENT");
		for (int cap = 0; cap <= pl->last_cap; cap++)
			if ((pl->caps[4] & (1ULL << cap)) && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0)
				fail(errno, "PR_CAP_AMBIENT_RAISE %d", cap);
	}
	if (!cwd_done && chdir(pl->cwd) < 0)
		fail(errno, "chdir %s", pl->cwd);
}

/* process.mark_fds_cloexec(3) */
static void fds_cloexec(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	while (d && (e = readdir(d))) {
		int fd = atoi(e->d_name);
		if (e->d_name[0] != '.' && fd >= 3) {
			int flags = fcntl(fd, F_GETFD);
			if (flags >= 0)
				fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
		}
	}
	if (d)
		closedir(d);
}

/* Python's repr() of a str (an OSError's filename in its message): quoted with ' unless
 * it holds a ' and no ", backslashes and control characters escaped. */
static void python_repr(const char *s, char *out, size_t size)
{
	char q = strchr(s, '\'') && !strchr(s, '"') ? '"' : '\'';
	size_t n = 0;
	out[n++] = q;
	for (const unsigned char *c = (const unsigned char *)s; *c && n + 6 < size; c++) {
		if (*c == '\\' || *c == (unsigned char)q)
			n += (size_t)snprintf(out + n, size - n, "\\%c", *c);
		else if (*c == '\n')
			n += (size_t)snprintf(out + n, size - n, "\\n");
		else if (*c == '\t')
			n += (size_t)snprintf(out + n, size - n, "\\t");
		else if (*c == '\r')
			n += (size_t)snprintf(out + n, size - n, "\\r");
		else if (*c < 0x20 || *c == 0x7f)
			n += (size_t)snprintf(out + n, size - n, "\\x%02x", *c);
		else
			out[n++] = (char)*c;
	}
	out[n++] = q;
	out[n] = '\0';
}

/* init._enter_namespaces: join by path (init._JOIN_ORDER, pid already ours), then make
 * the new ones but pid and cgroup (G makes that once inside its cgroup) */
static void enter_namespaces(void)
{
	static const int order[] = {NS_CGROUP, NS_IPC, NS_UTS, NS_NET, NS_MNT};
	static const int flag[NS_COUNT] = {CLONE_NEWCGROUP, CLONE_NEWIPC, CLONE_NEWUTS, CLONE_NEWNET,
					   CLONE_NEWPID, CLONE_NEWNS};
	int fds[NS_COUNT], unshare_flags = 0;
	for (int i = 0; i < 5; i++) {
		int k = order[i];
		fds[k] = -1;
		if (pl->ns_has[k] && *pl->ns_path[k] && (fds[k] = open(pl->ns_path[k], O_RDONLY | O_CLOEXEC)) < 0)
			fail(errno, "open %s", pl->ns_path[k]);
	}
	for (int i = 0; i < 5; i++) {
		int k = order[i];
		if (fds[k] >= 0) {
			if (setns(fds[k], flag[k]) < 0)
				fail(errno, "setns %s", pl->ns_path[k]);
			close(fds[k]);
		} else if (pl->ns_has[k] && k != NS_CGROUP) {
			unshare_flags |= flag[k];
		}
	}
	if (unshare_flags && unshare(unshare_flags) < 0)
		fail(errno, "unshare");
}

void front_init(struct front_plan *plan)
{
	pl = plan;
	/* not dumpable until execve makes the user process so again (runc's CVE-2016-9962
	 * fix, init.run_init's first step): nothing in the container may ptrace us or open
	 * our /proc files meanwhile */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		fail(errno, "PR_SET_DUMPABLE");
	signal(SIGPIPE, SIG_IGN); /* fail()'s write to a P gone: an error, not a signal */
	step = "enter namespaces";
	enter_namespaces();
	step = "setsid";
	if (setsid() < 0)
		fail(errno, "setsid");
	step = "prepare rootfs";
	prepare_root();
	for (int i = 0; i < pl->nmounts; i++) {
		step = pl->mounts[i].dest;
		if (strcmp(pl->mounts[i].type, "cgroup") == 0) {
			if (pl->ns_has[NS_CGROUP])
				wait_joined();
			else
				wait_made();
		}
		mount_one(&pl->mounts[i]);
	}
	if (pl->dev_mounted) {
		step = "create devices";
		create_devices();
	}
	if (pl->ns_has[NS_CGROUP] && !*pl->ns_path[NS_CGROUP]) {
		step = "join cgroup";
		wait_joined();
	}
	step = "hostname";
	if (pl->hostname && sethostname(pl->hostname, strlen(pl->hostname)) < 0)
		fail(errno, "sethostname");
	if (pl->domainname && setdomainname(pl->domainname, strlen(pl->domainname)) < 0)
		fail(errno, "setdomainname");
	step = "pivot_root";
	pivot();
	step = "sysctl";
	sysctls();
	if (pl->ns_has[NS_NET] && !*pl->ns_path[NS_NET]) {
		step = "loopback";
		loopback_up();
	}
	step = "readonlyPaths";
	readonly_paths();
	step = "maskedPaths";
	mask_paths();
	if (pl->readonly_root) {
		step = "readonly rootfs";
		remount_bind("/", MS_RDONLY, 1);
	}
	if (*pl->root_propagation && (front_propagation(pl->root_propagation) & MS_SHARED))
		do_mount(NULL, "/", NULL, front_propagation(pl->root_propagation), NULL);
	step = "process";
	char **envp = environment();
	const char *arg0 = pl->args->items[0].str;
	const char *exe = resolve(arg0, envp);
	char **argv = calloc(pl->args->n + 1, sizeof *argv);
	if (!argv)
		fail(ENOMEM, "args");
	for (size_t i = 0; i < pl->args->n; i++)
		argv[i] = pl->args->items[i].str;
	if (pl->terminal) { /* init.run_init's place for it: see receive_console */
		step = "console";
		wait_joined(); /* P's messages before its connection: all sent once it is in */
		setup_console();
		step = "process";
	}
	finalize();
	fds_cloexec();
	step = "join cgroup";
	wait_joined();
	char ready = MSG_READY;
	if (write(pl->sync_fd, &ready, 1) != 1)
		_exit(1);
	close(pl->sync_fd);

	/* create has returned: wait for start (init.run_init's second half) */
	char fifo[64];
	const char *failed_path = NULL; /* the OSError's filename, if it has one */
	int err = 0;
	snprintf(fifo, sizeof fifo, "/proc/self/fd/%d", pl->fifo_fd);
	int fd = open(fifo, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		err = errno, failed_path = fifo;
	else if (write(fd, "0", 1) != 1)
		err = errno;
	close(pl->fifo_fd);
	if (!err && pl->nnp && pl->has_seccomp && seccomp_load(&pl->seccomp) < 0)
		err = errno;
	if (!err) {
		sigset_t none;
		sigemptyset(&none);
		signal(SIGPIPE, SIG_DFL);
		signal(SIGXFSZ, SIG_DFL);
		sigprocmask(SIG_SETMASK, &none, NULL);
		execve(exe, argv, envp);
		err = errno;
		failed_path = exe;
	}
	/* init._die_after_start: "exec ARG0: " and str(OSError) */
	char repr[PATH_MAX * 4 + 8] = "";
	if (failed_path)
		python_repr(failed_path, repr, sizeof repr);
	dprintf(2, "conch-runtime: exec %s: [Errno %d] %s%s%s\n", arg0, err, strerror(err), failed_path ? ": " : "", repr);
	_exit(err == ENOENT ? 127 : (err == EACCES || err == EPERM) ? 126 : 1);
}
