/*
 * The C create/run path of conch-runtime's front (issue 16 point 6): what spec.c reads
 * from the command line and config.json, what create.c (the parent P) and init.c (the
 * container's init G) share. The Python runtime (conch/runtime/) is the specification and
 * the fallback: spec.c takes a container only when every key of its config is one this
 * path applies exactly as Python does; anything else is "not handled" and the front execs
 * Python with the command line untouched.
 */
#ifndef CONCH_FRONT_H
#define CONCH_FRONT_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cgroups.h"
#include "json.h"
#include "seccomp.h"

#define FRONT_MAX_MOUNTS 256
#define FRONT_MAX_DEVICES 256
#define FRONT_MAX_RLIMITS 16
#define FRONT_MAX_GROUPS 256

/* OCI namespace kinds this path takes (user and time go to Python) */
enum { NS_CGROUP, NS_IPC, NS_UTS, NS_NET, NS_PID, NS_MNT, NS_COUNT };

struct front_mount {
	const char *dest, *type, *source; /* type/source "" when missing */
	unsigned long flags, propagation;  /* conch.kernel.mount.parse_options */
	char *data;                        /* the data words joined by ",", or NULL */
};

struct front_device {
	const char *path;
	mode_t kind; /* S_IFCHR, S_IFBLK, S_IFIFO */
	unsigned long long major, minor;
	mode_t mode;
	uid_t uid;
	gid_t gid;
};

struct front_plan {
	/* the command line */
	int run, detach, keep;
	const char *root, *id, *pid_file, *log, *log_format;
	const char *console_socket;         /* "" for none (as Python treats an empty one) */
	char bundle[PATH_MAX], rootfs[PATH_MAX], config_path[PATH_MAX + 16];
	/* config.json */
	char *text;
	struct jval *cfg;
	int readonly_root;
	const char *hostname, *domainname;  /* NULL when unset or "" */
	const struct jval *annotations;     /* an object of strings, or NULL */
	struct front_mount mounts[FRONT_MAX_MOUNTS];
	int nmounts, dev_mounted;
	const struct jval *args, *env;      /* arrays of strings (env may be NULL) */
	const char *cwd;
	int terminal;                       /* process.terminal: a pty for --console-socket */
	int has_size;                       /* a non-empty process.consoleSize */
	unsigned short rows, cols;
	uid_t uid;
	gid_t gid;
	int has_umask;                      /* process.user.umask given (else 0022) */
	mode_t umask;
	gid_t groups[FRONT_MAX_GROUPS];
	int ngroups;
	uint64_t caps[5];                   /* bounding, effective, permitted, inheritable, ambient */
	int last_cap;
	struct { int resource; unsigned long long soft, hard; } rlimits[FRONT_MAX_RLIMITS];
	int nrlimits;
	int nnp, has_oom;
	long oom;
	int ns_has[NS_COUNT];
	const char *ns_path[NS_COUNT];      /* "" for a new namespace */
	const char *cgroups_path;
	const struct jval *resources;
	const struct jval *masked, *readonly, *sysctl;
	const char *root_propagation;       /* "" when unset */
	struct front_device devices[FRONT_MAX_DEVICES];
	int ndevices;
	int has_seccomp;
	struct seccomp_prog seccomp;
	struct cg cg;
	struct cg_mount cg_mounts[CG_MAX];
	int ncg_mounts;
	int fifo_fd;                        /* O_PATH exec.fifo, for G */
	int sync_fd;                        /* G's end of the socketpair */
	int console_fd;                     /* P's connection to --console-socket, or -1 */
};

/* spec.c: flags and config.json into plan, touching nothing on the host. 0, or -1 with
 * the reason in why (then the container is Python's). */
int front_parse(int argc, char **argv, struct front_plan *plan, char *why, size_t whylen);

/* create.c: `create` or `run` in C. Returns the exit code, or -1 when Python must run
 * the command (nothing of ours left on the host). */
int front_create_run(int argc, char **argv, const char *script);

/* init.c: G, the container's init, forked by P. Never returns. */
void front_init(struct front_plan *plan) __attribute__((noreturn));

/* Messages over the SOCK_SEQPACKET pair: P -> G */
#define MSG_CGROUP_DIRS 'd' /* the cgroup directories exist */
#define MSG_CGROUP_JOINED 'j' /* G is inside its cgroup, limits on */
#define MSG_CONSOLE 'c' /* P -> G: the console socket's connection (SCM_RIGHTS), asked for by
                         * G -> P: 'c' once G is about to make its terminal */
/* G -> P */
#define MSG_READY 'r'
#define MSG_ERROR 'e' /* followed by "step: reason" */

/* json.c helpers shared by the files here */
int front_is_string(const struct jval *v);

#endif
