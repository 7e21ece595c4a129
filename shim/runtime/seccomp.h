/*
 * linux.seccomp compiled to a classic BPF program in C, the same program (byte for byte)
 * conch.runtime.seccomp.compile_filter makes, with the same flags as filter_flags, for
 * the C create/run path. A profile using anything this file does not compile exactly as
 * Python does is "unsupported": the container is then left to the Python runtime.
 */
#ifndef CONCH_SECCOMP_H
#define CONCH_SECCOMP_H

#include <linux/filter.h>
#include <stddef.h>

#include "json.h"

struct seccomp_prog {
	struct sock_filter *insns;
	size_t len;
	unsigned flags; /* SECCOMP_FILTER_FLAG_* for seccomp(2) */
};

/* linux.seccomp (the value of the key; NULL when the key is absent) compiled for the
 * host architecture: 0 with *out filled, or -1 with the reason in why ("unsupported: ..."
 * for what the Python runtime would compile but this file does not, "invalid: ..." for
 * what Python refuses with InvalidArgument; either way the container goes to Python).
 * NULL, null and {} are "no filter", as conch.runtime.process.compile_seccomp has it:
 * 0 with out->len == 0 and out->insns == NULL. Otherwise insns is malloc'd: free it with
 * seccomp_prog_free. */
int seccomp_compile(const struct jval *seccomp, struct seccomp_prog *out, char *why, size_t whylen);
void seccomp_prog_free(struct seccomp_prog *prog);

/* Load it in the calling thread with seccomp(SECCOMP_SET_MODE_FILTER, prog->flags, ...),
 * as conch.kernel.seccomp.load_filter does (no_new_privs or CAP_SYS_ADMIN is the caller's
 * business; conch.runtime.process has the order). len 0 loads nothing and returns 0.
 * 0, or -1 with errno set (ESRCH when TSYNC could not synchronise a thread). */
int seccomp_load(const struct seccomp_prog *prog);

#endif
