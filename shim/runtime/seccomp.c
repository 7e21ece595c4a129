/*
 * linux.seccomp -> classic BPF, the C twin of conch/runtime/seccomp.py (see seccomp.h).
 *
 * Python is the specification: this file lays out the same program in the same order
 * (arch dispatch, per-arch sections, x32 guard, one block per syscall number in ascending
 * order, conditional rules in profile order before the unconditional one) and refuses what
 * Python refuses. Where Python would accept a document only by accident of duck typing (a
 * string iterated as characters, an object iterated as its keys, a bool taken as an int,
 * a number as a syscall name) this file says "unsupported" instead: the container then
 * goes to the Python runtime, which behaves as it always did. Refusing more than Python is
 * always safe; compiling anything differently never is.
 *
 * The syscall numbers come from syscall_table.h, generated from the Python table
 * (tools/gen_seccomp_table.py), so both skip exactly the same unknown names.
 */
#define _GNU_SOURCE
#include "seccomp.h"
#include "syscall_table.h"

#include <errno.h>
#include <linux/seccomp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

/* SECCOMP_RET_* (<linux/seccomp.h>), spelled out as seccomp.py has them. */
#define RET_KILL_PROCESS 0x80000000U
#define RET_KILL_THREAD 0x00000000U
#define RET_TRAP 0x00030000U
#define RET_ERRNO 0x00050000U
#define RET_TRACE 0x7FF00000U
#define RET_LOG 0x7FFC0000U
#define RET_ALLOW 0x7FFF0000U

/* Classic BPF opcodes and seccomp_data offsets. */
#define OP_LD_ABS 0x20
#define OP_AND_K 0x54
#define OP_JA 0x05
#define OP_JEQ 0x15
#define OP_JGT 0x25
#define OP_JGE 0x35
#define OP_RET 0x06
#define OFF_NR 0
#define OFF_ARCH 4
#define OFF_ARGS 16
#define MAX_INSNS 4096
#define X32_SYSCALL_BIT 0x40000000U
#define EPERM_RET 1

static const struct action {
	const char *name;
	uint32_t ret;
	int with_data; /* takes errnoRet */
} actions[] = {
	{"SCMP_ACT_KILL", RET_KILL_THREAD, 0}, /* libseccomp: KILL == KILL_THREAD */
	{"SCMP_ACT_KILL_THREAD", RET_KILL_THREAD, 0},
	{"SCMP_ACT_KILL_PROCESS", RET_KILL_PROCESS, 0},
	{"SCMP_ACT_TRAP", RET_TRAP, 0},
	{"SCMP_ACT_ERRNO", RET_ERRNO, 1},
	{"SCMP_ACT_TRACE", RET_TRACE, 1},
	{"SCMP_ACT_ALLOW", RET_ALLOW, 0},
	{"SCMP_ACT_LOG", RET_LOG, 0},
};

static const char *const flag_names[] = {
	"SECCOMP_FILTER_FLAG_TSYNC",      /* 1 << 0 */
	"SECCOMP_FILTER_FLAG_LOG",        /* 1 << 1 */
	"SECCOMP_FILTER_FLAG_SPEC_ALLOW", /* 1 << 2 */
};

enum { A_X86_64, A_X86, A_AARCH64, N_ARCHES };

static const struct arch {
	const char *name; /* SCMP_ARCH_* */
	uint32_t audit;   /* AUDIT_ARCH_* */
	const struct syscall_entry *table;
	size_t count;
	unsigned max_nr;
} arches[N_ARCHES] = {
	{"SCMP_ARCH_X86_64", 0xC000003EU, syscalls_x86_64,
	 sizeof syscalls_x86_64 / sizeof syscalls_x86_64[0], SYSCALLS_X86_64_MAX_NR},
	{"SCMP_ARCH_X86", 0x40000003U, syscalls_x86,
	 sizeof syscalls_x86 / sizeof syscalls_x86[0], SYSCALLS_X86_MAX_NR},
	{"SCMP_ARCH_AARCH64", 0xC00000B7U, syscalls_aarch64,
	 sizeof syscalls_aarch64 / sizeof syscalls_aarch64[0], SYSCALLS_AARCH64_MAX_NR},
};

/* Names runtime-spec allows that Python accepts but has no table for. */
static const char *const uncompiled_arches[] = {
	"SCMP_ARCH_X32", "SCMP_ARCH_ARM", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64",
	"SCMP_ARCH_MIPS64N32", "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32",
	"SCMP_ARCH_PPC", "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390",
	"SCMP_ARCH_S390X", "SCMP_ARCH_PARISC", "SCMP_ARCH_PARISC64", "SCMP_ARCH_RISCV64",
	"SCMP_ARCH_LOONGARCH64",
};

enum op { CMP_NE, CMP_LT, CMP_LE, CMP_EQ, CMP_GE, CMP_GT, CMP_MASKED_EQ, N_OPS };
static const char *const op_names[N_OPS] = {
	"SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ",
	"SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ",
};

struct arg {
	unsigned index;
	enum op op;
	uint64_t value, value_two;
};

struct rule {
	uint32_t ret;
	size_t nargs;
	struct arg *args;
	const struct jval *names;
};

struct cond {
	uint32_t ret;
	const struct rule *rule;
};

/* What one syscall number collected from the profile (seccomp.py's _group). */
struct slot {
	int used, has_uncond;
	uint32_t uncond;
	size_t ncond, cap;
	struct cond *conds;
};

/* An instruction while jumps may still be labels (PASS/FAIL, resolved per rule). */
#define L_PASS (-1)
#define L_FAIL (-2)
struct pins {
	uint16_t code;
	int jt, jf;
	uint32_t k;
};

struct prog {
	struct sock_filter *v;
	size_t len, cap;
};

static int why_(char *why, size_t whylen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int why_(char *why, size_t whylen, const char *fmt, ...)
{
	if (why && whylen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(why, whylen, fmt, ap);
		va_end(ap);
	}
	return -1;
}

#define INVALID(...) why_(why, whylen, "invalid: " __VA_ARGS__)
#define UNSUPPORTED(...) why_(why, whylen, "unsupported: " __VA_ARGS__)

/* Python's truth value of a JSON value (for `x or ()` and `if seccomp.get(...)`). */
static int truthy(const struct jval *v)
{
	switch (v->type) {
	case J_NULL:
	case J_FALSE:
		return 0;
	case J_TRUE:
		return 1;
	case J_NUMBER:
		return v->number != 0;
	case J_STRING:
		return v->len != 0;
	default:
		return v->n != 0;
	}
}

/* A value Python's `x or ()` makes empty: absent or falsy. */
static int empty(const struct jval *v)
{
	return !v || !truthy(v);
}

/* A JSON integer Python would take as int (not bool, not float) in 0..max, with values
 * past long long read from the text: 1 when it is one, 0 when not. */
static int uint_value(const struct jval *v, uint64_t max, uint64_t *out)
{
	if (v->type != J_NUMBER)
		return 0;
	if (v->is_int) {
		if (v->integer < 0 || (uint64_t)v->integer > max)
			return 0;
		*out = (uint64_t)v->integer;
		return 1;
	}
	/* Not is_int: a fraction, an exponent (Python: float), or too long for long long. */
	uint64_t n = 0;
	if (v->rawlen == 0)
		return 0;
	for (size_t i = 0; i < v->rawlen; i++) {
		char c = v->raw[i];
		if (c < '0' || c > '9')
			return 0; /* '-' (negative, too big for long long), '.', 'e' */
		if (n > (UINT64_MAX - (uint64_t)(c - '0')) / 10)
			return 0;
		n = n * 10 + (uint64_t)(c - '0');
	}
	if (n > max)
		return 0;
	*out = n;
	return 1;
}

static int find_name(const char *const *names, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(names[i], s) == 0)
			return (int)i;
	return -1;
}

/* seccomp.py's _action: name + errnoRet -> SECCOMP_RET_*. */
static int action(const struct jval *name, const struct jval *errno_ret, const char *where,
		  uint32_t *ret, char *why, size_t whylen)
{
	if (!name || name->type != J_STRING)
		return INVALID("seccomp %s: unknown action", where);
	if (strcmp(name->str, "SCMP_ACT_NOTIFY") == 0)
		return INVALID("seccomp %s: SCMP_ACT_NOTIFY needs a seccomp agent", where);
	const struct action *a = NULL;
	for (size_t i = 0; i < sizeof actions / sizeof actions[0]; i++)
		if (strcmp(actions[i].name, name->str) == 0)
			a = &actions[i];
	if (!a)
		return INVALID("seccomp %s: unknown action %.64s", where, name->str);
	int has_ret = errno_ret && errno_ret->type != J_NULL; /* Python: `is not None` */
	if (!a->with_data) {
		if (has_ret)
			return INVALID("seccomp %s: errnoRet is only valid with SCMP_ACT_ERRNO/TRACE", where);
		*ret = a->ret;
		return 0;
	}
	uint64_t data = EPERM_RET; /* runc's default for both ERRNO and TRACE */
	if (has_ret && !uint_value(errno_ret, 0xFFFF, &data))
		return INVALID("seccomp %s: errnoRet is not in 0..65535", where);
	*ret = a->ret | (uint32_t)data;
	return 0;
}

/* seccomp.py's _arg. */
static int parse_arg(const struct jval *a, const char *where, struct arg *out, char *why,
		     size_t whylen)
{
	if (a->type != J_OBJECT)
		return UNSUPPORTED("seccomp %s is not an object", where);
	const struct jval *index = json_get(a, "index"), *op = json_get(a, "op");
	const struct jval *value = json_get(a, "value"), *value_two = json_get(a, "valueTwo");
	uint64_t n;
	if (index && (index->type == J_TRUE || index->type == J_FALSE))
		return UNSUPPORTED("seccomp %s: index is a bool", where); /* Python: 0 or 1 */
	if (!index || !uint_value(index, 5, &n))
		return INVALID("seccomp %s: index is not in 0..5", where);
	out->index = (unsigned)n;
	int o = op && op->type == J_STRING ? find_name(op_names, N_OPS, op->str) : -1;
	if (o < 0)
		return INVALID("seccomp %s: unknown operator", where);
	out->op = (enum op)o;
	out->value = out->value_two = 0; /* arg.get("value", 0) */
	if (value && !uint_value(value, UINT64_MAX, &out->value))
		return INVALID("seccomp %s: value is not an unsigned 64-bit integer", where);
	if (value_two && !uint_value(value_two, UINT64_MAX, &out->value_two))
		return INVALID("seccomp %s: valueTwo is not an unsigned 64-bit integer", where);
	return 0;
}

static int prog_push(struct prog *p, uint16_t code, uint8_t jt, uint8_t jf, uint32_t k)
{
	if (p->len == p->cap) {
		size_t cap = p->cap ? 2 * p->cap : 256;
		struct sock_filter *v = realloc(p->v, cap * sizeof *v);
		if (!v)
			return -1;
		p->v = v;
		p->cap = cap;
	}
	p->v[p->len++] = (struct sock_filter){code, jt, jf, k};
	return 0;
}

/* seccomp.py's _compare: 64-bit unsigned args[index] <op> value, high word first. */
static size_t compare(const struct arg *a, struct pins *o)
{
	uint32_t lo_off = OFF_ARGS + 8 * a->index, hi_off = lo_off + 4;
	uint32_t hi = (uint32_t)(a->value >> 32), lo = (uint32_t)a->value;
	const int P = L_PASS, F = L_FAIL;
	struct pins ld_hi = {OP_LD_ABS, 0, 0, hi_off}, ld_lo = {OP_LD_ABS, 0, 0, lo_off};
	size_t n = 0;
#define I(c, t, f, kk) (o[n++] = (struct pins){c, t, f, kk})
	switch (a->op) {
	case CMP_EQ:
		o[n++] = ld_hi, I(OP_JEQ, 0, F, hi), o[n++] = ld_lo, I(OP_JEQ, 0, F, lo);
		break;
	case CMP_NE:
		o[n++] = ld_hi, I(OP_JEQ, 0, P, hi), o[n++] = ld_lo, I(OP_JEQ, F, 0, lo);
		break;
	case CMP_GT:
		o[n++] = ld_hi, I(OP_JGT, P, 0, hi), I(OP_JEQ, 0, F, hi), o[n++] = ld_lo,
		I(OP_JGT, 0, F, lo);
		break;
	case CMP_GE:
		o[n++] = ld_hi, I(OP_JGT, P, 0, hi), I(OP_JEQ, 0, F, hi), o[n++] = ld_lo,
		I(OP_JGE, 0, F, lo);
		break;
	case CMP_LT:
		o[n++] = ld_hi, I(OP_JGT, F, 0, hi), I(OP_JEQ, 0, P, hi), o[n++] = ld_lo,
		I(OP_JGE, F, 0, lo);
		break;
	case CMP_LE:
		o[n++] = ld_hi, I(OP_JGT, F, 0, hi), I(OP_JEQ, 0, P, hi), o[n++] = ld_lo,
		I(OP_JGT, F, 0, lo);
		break;
	default: /* CMP_MASKED_EQ: (arg & value) == valueTwo */
		o[n++] = ld_hi, I(OP_AND_K, 0, 0, hi), I(OP_JEQ, 0, F, (uint32_t)(a->value_two >> 32)),
		o[n++] = ld_lo, I(OP_AND_K, 0, 0, lo), I(OP_JEQ, 0, F, (uint32_t)a->value_two);
		break;
	}
#undef I
	return n;
}

/* seccomp.py's _resolve: jumps to label become offsets to the end of ins[0..n). */
static int resolve(struct pins *ins, size_t n, int label)
{
	for (size_t i = 0; i < n; i++) {
		if (ins[i].jt == label)
			ins[i].jt = (int)(n - i - 1);
		if (ins[i].jf == label)
			ins[i].jf = (int)(n - i - 1);
		if (ins[i].jt > 255 || ins[i].jf > 255)
			return -1;
	}
	return 0;
}

/* seccomp.py's _rule, appended to p: the AND of the checks, then ret. */
static int rule_insns(const struct rule *r, uint32_t ret, struct prog *p, char *why, size_t whylen)
{
	size_t cap = 6 * r->nargs + 1, n = 0;
	struct pins *ins = malloc(cap * sizeof *ins);
	if (!ins)
		return UNSUPPORTED("out of memory");
	for (size_t i = 0; i < r->nargs; i++) {
		size_t m = compare(&r->args[i], ins + n);
		resolve(ins + n, m, L_PASS); /* a few instructions: never past 255 */
		n += m;
	}
	ins[n++] = (struct pins){OP_RET, 0, 0, ret};
	if (resolve(ins, n, L_FAIL) < 0) {
		free(ins);
		return INVALID("seccomp: a rule is too long for an 8-bit BPF jump");
	}
	for (size_t i = 0; i < n; i++)
		if (prog_push(p, ins[i].code, (uint8_t)ins[i].jt, (uint8_t)ins[i].jf, ins[i].k) < 0) {
			free(ins);
			return UNSUPPORTED("out of memory");
		}
	free(ins);
	return 0;
}

static int by_name(const void *key, const void *entry)
{
	return strcmp(key, ((const struct syscall_entry *)entry)->name);
}

/* seccomp.py's _section for one architecture, appended to p. */
static int section(const struct rule *rules, size_t nrules, const struct arch *arch,
		   uint32_t deflt, int x32_guard, struct prog *p, char *why, size_t whylen)
{
	int rc = -1;
	struct slot *slots = calloc(arch->max_nr + 1, sizeof *slots);
	struct prog body = {0};
	if (!slots)
		return UNSUPPORTED("out of memory");
	/* _group: syscall number -> conditional rules in order, the first unconditional one. */
	for (size_t i = 0; i < nrules; i++) {
		const struct jval *names = rules[i].names;
		for (size_t j = 0; j < names->n; j++) {
			const struct syscall_entry *e = bsearch(names->items[j].str, arch->table,
								arch->count, sizeof *e, by_name);
			if (!e)
				continue; /* not a syscall of this architecture/kernel: skipped, as runc */
			struct slot *s = &slots[e->nr];
			s->used = 1;
			if (rules[i].nargs) {
				if (s->ncond == s->cap) {
					size_t cap = s->cap ? 2 * s->cap : 4;
					struct cond *c = realloc(s->conds, cap * sizeof *c);
					if (!c) {
						UNSUPPORTED("out of memory");
						goto out;
					}
					s->conds = c;
					s->cap = cap;
				}
				s->conds[s->ncond++] = (struct cond){rules[i].ret, &rules[i]};
			} else if (!s->has_uncond) {
				s->has_uncond = 1; /* a later unconditional rule is ignored */
				s->uncond = rules[i].ret;
			}
		}
	}
	if (prog_push(p, OP_LD_ABS, 0, 0, OFF_NR) < 0)
		goto oom;
	if (x32_guard) {
		uint32_t x32 = deflt == RET_ALLOW || deflt == RET_LOG ? RET_ERRNO | EPERM_RET : deflt;
		if (prog_push(p, OP_JGE, 0, 1, X32_SYSCALL_BIT) < 0 || prog_push(p, OP_RET, 0, 0, x32) < 0)
			goto oom;
	}
	for (unsigned nr = 0; nr <= arch->max_nr; nr++) {
		struct slot *s = &slots[nr];
		if (!s->used)
			continue;
		uint32_t final = s->has_uncond ? s->uncond : deflt;
		if (!s->ncond && final == deflt)
			continue; /* the block would only repeat the default */
		body.len = 0;
		for (size_t c = 0; c < s->ncond; c++)
			if (rule_insns(s->conds[c].rule, s->conds[c].ret, &body, why, whylen) < 0)
				goto out;
		if (prog_push(&body, OP_RET, 0, 0, final) < 0)
			goto oom;
		if (body.len <= 255) {
			if (prog_push(p, OP_JEQ, 0, (uint8_t)body.len, nr) < 0)
				goto oom;
		} else if (prog_push(p, OP_JEQ, 1, 0, nr) < 0 ||
			   prog_push(p, OP_JA, 0, 0, (uint32_t)body.len) < 0) {
			goto oom;
		}
		for (size_t k = 0; k < body.len; k++)
			if (prog_push(p, body.v[k].code, body.v[k].jt, body.v[k].jf, body.v[k].k) < 0)
				goto oom;
		if (p->len > MAX_INSNS + 64) {
			/* Already too long to load: stop growing (the caller says why). */
			break;
		}
	}
	if (prog_push(p, OP_RET, 0, 0, deflt) < 0)
		goto oom;
	rc = 0;
	goto out;
oom:
	UNSUPPORTED("out of memory");
out:
	for (unsigned nr = 0; nr <= arch->max_nr; nr++)
		free(slots[nr].conds);
	free(slots);
	free(body.v);
	return rc;
}

/* The host's architecture as seccomp.py's host_arch names it, or -1 for one it lacks. */
static int host_arch(void)
{
	struct utsname u;
	if (uname(&u) < 0)
		return -1;
#if defined(__x86_64__)
	if (strcmp(u.machine, "x86_64") == 0 || strcmp(u.machine, "amd64") == 0)
		return A_X86_64;
#elif defined(__aarch64__)
	if (strcmp(u.machine, "aarch64") == 0 || strcmp(u.machine, "arm64") == 0)
		return A_AARCH64;
#endif
	return -1;
}

static void free_rules(struct rule *rules, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(rules[i].args);
	free(rules);
}

int seccomp_compile(const struct jval *seccomp, struct seccomp_prog *out, char *why, size_t whylen)
{
	out->insns = NULL;
	out->len = 0;
	out->flags = 0;
	if (!seccomp || seccomp->type == J_NULL || (seccomp->type == J_OBJECT && seccomp->n == 0))
		return 0; /* compile_seccomp: `if not seccomp: return None, 0` */
	if (seccomp->type != J_OBJECT)
		return UNSUPPORTED("linux.seccomp is not an object");

	int host = host_arch();
	if (host < 0)
		return UNSUPPORTED("no syscall table for this architecture");
	const struct jval *listener = json_get(seccomp, "listenerPath");
	if (listener && truthy(listener))
		return INVALID("seccomp: listenerPath (SCMP_ACT_NOTIFY) is not supported");

	/* filter_flags */
	const struct jval *flags = json_get(seccomp, "flags");
	unsigned bits = 0;
	if (!empty(flags)) {
		if (flags->type != J_ARRAY)
			return UNSUPPORTED("seccomp flags is not a list");
		for (size_t i = 0; i < flags->n; i++) {
			const struct jval *f = &flags->items[i];
			int b = f->type == J_STRING ? find_name(flag_names, 3, f->str) : -1;
			if (b < 0)
				return INVALID("seccomp flag is not supported");
			bits |= 1U << b;
		}
	}

	uint32_t deflt;
	if (action(json_get(seccomp, "defaultAction"), json_get(seccomp, "defaultErrnoRet"),
		   "defaultAction", &deflt, why, whylen) < 0)
		return -1;

	/* _arches: the host's own first, then listed ones it can run (x86 on x86_64). */
	int want[N_ARCHES], nwant = 0;
	want[nwant++] = host;
	const struct jval *names = json_get(seccomp, "architectures");
	if (!empty(names)) {
		if (names->type != J_ARRAY)
			return UNSUPPORTED("seccomp architectures is not a list");
		for (size_t i = 0; i < names->n; i++) {
			const struct jval *a = &names->items[i];
			if (a->type != J_STRING)
				return UNSUPPORTED("seccomp architectures holds a non-string");
			int k = -1;
			for (int j = 0; j < N_ARCHES; j++)
				if (strcmp(arches[j].name, a->str) == 0)
					k = j;
			if (k < 0) {
				if (find_name(uncompiled_arches, sizeof uncompiled_arches / sizeof uncompiled_arches[0],
					      a->str) < 0)
					return INVALID("seccomp: unknown architecture %.64s", a->str);
				continue;
			}
			int runs = k == host || (host == A_X86_64 && k == A_X86);
			int seen = 0;
			for (int j = 0; j < nwant; j++)
				seen |= want[j] == k;
			if (runs && !seen)
				want[nwant++] = k;
		}
	}

	/* The rules, checked once (Python checks them per section, with the same result). */
	const struct jval *syscalls = json_get(seccomp, "syscalls");
	size_t nrules = 0;
	struct rule *rules = NULL;
	if (!empty(syscalls)) {
		if (syscalls->type != J_ARRAY)
			return UNSUPPORTED("seccomp syscalls is not a list");
		rules = calloc(syscalls->n, sizeof *rules);
		if (!rules)
			return UNSUPPORTED("out of memory");
		nrules = syscalls->n;
		for (size_t i = 0; i < nrules; i++) {
			const struct jval *r = &syscalls->items[i];
			char where[48];
			snprintf(where, sizeof where, "syscalls[%zu]", i);
			if (r->type != J_OBJECT) {
				UNSUPPORTED("seccomp %s is not an object", where);
				goto fail;
			}
			const struct jval *n = json_get(r, "names");
			if (empty(n)) {
				INVALID("seccomp %s: names must be a non-empty list", where);
				goto fail;
			}
			if (n->type != J_ARRAY) {
				UNSUPPORTED("seccomp %s: names is not a list", where);
				goto fail;
			}
			for (size_t j = 0; j < n->n; j++)
				if (n->items[j].type != J_STRING) {
					UNSUPPORTED("seccomp %s: names holds a non-string", where);
					goto fail;
				}
			rules[i].names = n;
			if (action(json_get(r, "action"), json_get(r, "errnoRet"), where, &rules[i].ret,
				   why, whylen) < 0)
				goto fail;
			const struct jval *args = json_get(r, "args");
			if (empty(args))
				continue;
			if (args->type != J_ARRAY) {
				UNSUPPORTED("seccomp %s: args is not a list", where);
				goto fail;
			}
			rules[i].args = calloc(args->n, sizeof *rules[i].args);
			if (!rules[i].args) {
				UNSUPPORTED("out of memory");
				goto fail;
			}
			rules[i].nargs = args->n;
			for (size_t j = 0; j < args->n; j++) {
				char w[80];
				snprintf(w, sizeof w, "%s.args[%zu]", where, j);
				if (parse_arg(&args->items[j], w, &rules[i].args[j], why, whylen) < 0)
					goto fail;
			}
		}
	}

	/* Sections first (their lengths place the dispatch's jumps), then the dispatch. */
	struct prog bodies[N_ARCHES] = {{0}};
	int rc = 0;
	for (int s = 0; s < nwant && rc == 0; s++)
		rc = section(rules, nrules, &arches[want[s]], deflt, want[s] == A_X86_64, &bodies[s], why,
			     whylen);
	free_rules(rules, nrules);
	rules = NULL;
	size_t total = 2 + 2 * (size_t)nwant;
	for (int s = 0; s < nwant; s++)
		total += bodies[s].len;
	if (rc == 0 && total > MAX_INSNS)
		rc = INVALID("seccomp profile compiles to %zu BPF instructions; the kernel accepts at most %d",
			     total, MAX_INSNS);
	struct prog p = {0};
	if (rc == 0) {
		size_t before = 0;
		rc |= prog_push(&p, OP_LD_ABS, 0, 0, OFF_ARCH);
		for (int s = 0; s < nwant; s++) {
			rc |= prog_push(&p, OP_JEQ, 0, 1, arches[want[s]].audit);
			rc |= prog_push(&p, OP_JA, 0, 0, (uint32_t)(2 * (nwant - s) - 1 + before));
			before += bodies[s].len;
		}
		rc |= prog_push(&p, OP_RET, 0, 0, RET_KILL_PROCESS);
		for (int s = 0; s < nwant; s++)
			for (size_t k = 0; k < bodies[s].len; k++)
				rc |= prog_push(&p, bodies[s].v[k].code, bodies[s].v[k].jt, bodies[s].v[k].jf,
						bodies[s].v[k].k);
		if (rc)
			rc = UNSUPPORTED("out of memory");
	}
	for (int s = 0; s < N_ARCHES; s++)
		free(bodies[s].v);
	if (rc) {
		free(p.v);
		return -1;
	}
	out->insns = p.v;
	out->len = p.len;
	out->flags = bits;
	return 0;
fail:
	free_rules(rules, nrules);
	return -1;
}

void seccomp_prog_free(struct seccomp_prog *prog)
{
	free(prog->insns);
	prog->insns = NULL;
	prog->len = 0;
}

int seccomp_load(const struct seccomp_prog *prog)
{
	if (prog->len == 0)
		return 0;
	if (prog->len > MAX_INSNS) {
		errno = EINVAL;
		return -1;
	}
	struct sock_fprog fprog = {.len = (unsigned short)prog->len, .filter = prog->insns};
	long rc = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, prog->flags, &fprog);
	if (rc > 0) {
		/* TSYNC: the id of a thread that could not be synchronised */
		errno = ESRCH;
		return -1;
	}
	return rc == 0 ? 0 : -1;
}
