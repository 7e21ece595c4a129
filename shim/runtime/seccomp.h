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

/* 0 with *out filled (insns malloc'd), or -1 with the reason in why. */
int seccomp_compile(const struct jval *seccomp, struct seccomp_prog *out, char *why, size_t whylen);

/* Load it in the calling process (the init, just before or after no_new_privs as
 * conch.runtime.init does): 0, or -1 with errno set. */
int seccomp_load(const struct seccomp_prog *prog);

#endif
