/*
 * The container's cgroups, for the C create/run path (see front.h): the same directories,
 * writes and saved record as conch.cgroups' managers (V1Manager, V2Manager) make for the
 * resources this file knows. Anything else is "unsupported": the caller then leaves the
 * whole container to the Python runtime, before any change to the host.
 */
#ifndef CONCH_CGROUPS_H
#define CONCH_CGROUPS_H

#include <stddef.h>
#include <sys/types.h>

#include "json.h"

#define CG_MAX 16

struct cg {
	int version;               /* 1 or 2 */
	int n;                     /* v1: hierarchies (the unified one of a hybrid host last,
	                            * with options ""); v2: 1 */
	char options[CG_MAX][256]; /* v1: the hierarchy's key in the saved record, e.g.
	                            * "cpu,cpuacct", "name=systemd", "" (hybrid's unified) */
	char dir[CG_MAX][4096];    /* the container's directory in each */
	int ncreated;              /* directories create() made (parents included), in order */
	char created[64][4096];
	char mountpoint[CG_MAX][4096]; /* where each hierarchy is mounted (v2: V2Manager's
	                                * mountpoint, saved; v1: for host-wide checks) */
};

/* open_manager's root= (default "/sys/fs/cgroup"): for tests, e.g. the cgroup2 mount of a
 * hybrid host to exercise the v2 code. Affects later cg_open calls. */
void cg_set_root(const char *root);

/* Resolve linux.cgroupsPath (NULL or "": /conch/<id>) as conch.cgroups.open_manager does.
 * 0, or -1 with the reason in why (then nothing was touched). */
int cg_open(const char *cgroups_path, const char *id, struct cg *cg, char *why, size_t whylen);

/* Whether every field of linux.resources (may be NULL) is one cg_apply writes exactly as
 * the Python manager would on this host: 0, or -1 with the reason. Touches nothing. */
int cg_check(const struct cg *cg, const struct jval *resources, char *why, size_t whylen);

/* Make the directories (recording what was made), apply the resources (runc's default
 * device rules appended as conch.runtime.create._with_default_devices does), move pid in.
 * 0, or -1 with errno set and the reason in why. */
int cg_create(struct cg *cg, char *why, size_t whylen);
int cg_apply(const struct cg *cg, const struct jval *resources, char *why, size_t whylen);
int cg_add(const struct cg *cg, pid_t pid, char *why, size_t whylen);

/* The writes cg_apply would make, in order, without making them (reading only what the
 * Python plan reads: v1's current memory limit, which optional files exist): each(dir,
 * name, value, tolerate) where tolerate is an errno the write may fail with. For tests
 * (the plan against Python's Manager.plan). 0, or -1 with the reason. */
int cg_plan(const struct cg *cg, const struct jval *resources,
	    void (*each)(const char *dir, const char *name, const char *value, int tolerate, void *arg), void *arg,
	    char *why, size_t whylen);

/* Remove the container's directories and the parents create() made, as Manager.destroy
 * does (waiting briefly for a cgroup whose last process is still exiting). 0 or -1. */
int cg_destroy(const struct cg *cg);

/* The saved record, Manager.save()'s JSON ({"version": 1, "dirs": {...}, "created": [...]}
 * or v2's), into buf; returns the length it needs. */
size_t cg_save(const struct cg *cg, char *buf, size_t size);

/* What a "cgroup" mount of the container shows, as conch.runtime.create._cgroup_mounts
 * computes it: n entries of (name, fstype, options, host dir); own_ns: the container has
 * a cgroup namespace of its own. */
struct cg_mount {
	char name[256], fstype[16], options[256], host_dir[4096];
};
int cg_mounts(const struct cg *cg, int own_ns, struct cg_mount *out, int max);

/* Where the cgroup says whether it is frozen, as conch.runtime.state.freezer_file: kind
 * "v1" or "v2" and the file, or kind "" when there is no freezer. */
void cg_freezer_file(const struct cg *cg, char kind[8], char *path, size_t size);

#endif
