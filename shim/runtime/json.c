/* A small JSON reader: see json.h. Recursive descent over the whole text. */
#include "json.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 256

struct parser {
	const char *p, *end, *start;
	char *err;
	size_t errlen;
	int failed;
};

static void fail(struct parser *ps, const char *why)
{
	if (!ps->failed && ps->errlen)
		snprintf(ps->err, ps->errlen, "%s at byte %ld", why, (long)(ps->p - ps->start));
	ps->failed = 1;
}

static void skip_ws(struct parser *ps)
{
	while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
		ps->p++;
}

static int put_utf8(char **out, unsigned cp)
{
	char *o = *out;
	if (cp < 0x80) {
		*o++ = (char)cp;
	} else if (cp < 0x800) {
		*o++ = (char)(0xc0 | (cp >> 6));
		*o++ = (char)(0x80 | (cp & 0x3f));
	} else if (cp < 0x10000) {
		*o++ = (char)(0xe0 | (cp >> 12));
		*o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
		*o++ = (char)(0x80 | (cp & 0x3f));
	} else {
		*o++ = (char)(0xf0 | (cp >> 18));
		*o++ = (char)(0x80 | ((cp >> 12) & 0x3f));
		*o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
		*o++ = (char)(0x80 | (cp & 0x3f));
	}
	*out = o;
	return 0;
}

static int hex4(const char *s, unsigned *out)
{
	unsigned v = 0;
	for (int i = 0; i < 4; i++) {
		char c = s[i];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else
			return -1;
	}
	*out = v;
	return 0;
}

/* A string literal at ps->p (the opening quote): its decoded text, malloc'd. */
static char *parse_string(struct parser *ps, size_t *len)
{
	const char *s = ps->p + 1;
	const char *q = s;
	while (q < ps->end && *q != '"') { /* find the end first: the output is never longer */
		if (*q == '\\')
			q++;
		q++;
	}
	if (q >= ps->end) {
		fail(ps, "unterminated string");
		return NULL;
	}
	char *buf = malloc((size_t)(q - s) + 1), *o = buf;
	if (!buf) {
		fail(ps, "out of memory");
		return NULL;
	}
	while (s < q) {
		unsigned char c = (unsigned char)*s;
		if (c < 0x20) {
			fail(ps, "control character in string");
			goto bad;
		}
		if (c != '\\') {
			*o++ = (char)c;
			s++;
			continue;
		}
		s++;
		switch (*s) {
		case '"': *o++ = '"'; s++; break;
		case '\\': *o++ = '\\'; s++; break;
		case '/': *o++ = '/'; s++; break;
		case 'b': *o++ = '\b'; s++; break;
		case 'f': *o++ = '\f'; s++; break;
		case 'n': *o++ = '\n'; s++; break;
		case 'r': *o++ = '\r'; s++; break;
		case 't': *o++ = '\t'; s++; break;
		case 'u': {
			unsigned cp, lo;
			if (q - s < 5 || hex4(s + 1, &cp) < 0) {
				fail(ps, "bad \\u escape");
				goto bad;
			}
			s += 5;
			if (cp >= 0xd800 && cp < 0xdc00 && q - s >= 6 && s[0] == '\\' && s[1] == 'u' &&
			    hex4(s + 2, &lo) == 0 && lo >= 0xdc00 && lo < 0xe000) {
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
				s += 6;
			}
			if (cp == 0 || (cp >= 0xd800 && cp < 0xe000)) {
				/* NUL cannot live in a C string; a lone surrogate is not UTF-8 */
				fail(ps, "\\u0000 or a lone surrogate in a string");
				goto bad;
			}
			put_utf8(&o, cp);
			break;
		}
		default:
			fail(ps, "bad escape");
			goto bad;
		}
	}
	*o = '\0';
	*len = (size_t)(o - buf);
	ps->p = q + 1;
	return buf;
bad:
	free(buf);
	return NULL;
}

static int parse_value(struct parser *ps, struct jval *v, int depth);

static int parse_number(struct parser *ps, struct jval *v)
{
	const char *s = ps->p, *q = s;
	int integral = 1;
	if (q < ps->end && *q == '-')
		q++;
	if (q >= ps->end || *q < '0' || *q > '9')
		return fail(ps, "bad number"), -1;
	if (*q == '0')
		q++;
	else
		while (q < ps->end && *q >= '0' && *q <= '9')
			q++;
	if (q < ps->end && *q == '.') {
		integral = 0;
		q++;
		if (q >= ps->end || *q < '0' || *q > '9')
			return fail(ps, "bad number"), -1;
		while (q < ps->end && *q >= '0' && *q <= '9')
			q++;
	}
	if (q < ps->end && (*q == 'e' || *q == 'E')) {
		integral = 0;
		q++;
		if (q < ps->end && (*q == '+' || *q == '-'))
			q++;
		if (q >= ps->end || *q < '0' || *q > '9')
			return fail(ps, "bad number"), -1;
		while (q < ps->end && *q >= '0' && *q <= '9')
			q++;
	}
	char tmp[64];
	size_t n = (size_t)(q - s);
	if (n >= sizeof tmp)
		n = sizeof tmp - 1; /* a longer literal is no integer we take; its double is close */
	memcpy(tmp, s, n);
	tmp[n] = '\0';
	v->type = J_NUMBER;
	v->number = strtod(tmp, NULL);
	if (integral && (size_t)(q - s) < sizeof tmp) {
		errno = 0;
		v->integer = strtoll(tmp, NULL, 10);
		v->is_int = errno == 0;
	}
	ps->p = q;
	return 0;
}

static int literal(struct parser *ps, const char *word, enum jtype t, struct jval *v)
{
	size_t n = strlen(word);
	if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
		return fail(ps, "unexpected character"), -1;
	ps->p += n;
	v->type = t;
	return 0;
}

static int grow(struct jval *v, size_t *cap, int object)
{
	if (v->n < *cap)
		return 0;
	size_t ncap = *cap ? *cap * 2 : 8;
	struct jval *items = realloc(v->items, ncap * sizeof *items);
	if (!items)
		return -1;
	v->items = items;
	if (object) {
		char **keys = realloc(v->keys, ncap * sizeof *keys);
		if (!keys)
			return -1;
		v->keys = keys;
	}
	*cap = ncap;
	return 0;
}

static int parse_container(struct parser *ps, struct jval *v, int depth, int object)
{
	char close = object ? '}' : ']';
	size_t cap = 0;
	v->type = object ? J_OBJECT : J_ARRAY;
	ps->p++;
	skip_ws(ps);
	if (ps->p < ps->end && *ps->p == close) {
		ps->p++;
		return 0;
	}
	for (;;) {
		if (grow(v, &cap, object) < 0)
			return fail(ps, "out of memory"), -1;
		char *key = NULL;
		if (object) {
			size_t klen;
			skip_ws(ps);
			if (ps->p >= ps->end || *ps->p != '"')
				return fail(ps, "expected a key"), -1;
			if (!(key = parse_string(ps, &klen)))
				return -1;
			skip_ws(ps);
			if (ps->p >= ps->end || *ps->p != ':') {
				free(key);
				return fail(ps, "expected ':'"), -1;
			}
			ps->p++;
			v->keys[v->n] = key;
		}
		struct jval *item = &v->items[v->n];
		memset(item, 0, sizeof *item);
		v->n++; /* counted now, so json_free frees a half-parsed item too */
		if (parse_value(ps, item, depth + 1) < 0)
			return -1;
		skip_ws(ps);
		if (ps->p < ps->end && *ps->p == ',') {
			ps->p++;
			continue;
		}
		if (ps->p < ps->end && *ps->p == close) {
			ps->p++;
			return 0;
		}
		return fail(ps, object ? "expected ',' or '}'" : "expected ',' or ']'"), -1;
	}
}

static int parse_value(struct parser *ps, struct jval *v, int depth)
{
	if (depth > MAX_DEPTH)
		return fail(ps, "nested too deeply"), -1;
	skip_ws(ps);
	if (ps->p >= ps->end)
		return fail(ps, "unexpected end"), -1;
	const char *start = ps->p;
	int rc;
	switch (*ps->p) {
	case '{': rc = parse_container(ps, v, depth, 1); break;
	case '[': rc = parse_container(ps, v, depth, 0); break;
	case '"':
		v->type = J_STRING;
		v->str = parse_string(ps, &v->len);
		rc = v->str ? 0 : -1;
		break;
	case 't': rc = literal(ps, "true", J_TRUE, v); break;
	case 'f': rc = literal(ps, "false", J_FALSE, v); break;
	case 'n': rc = literal(ps, "null", J_NULL, v); break;
	default: rc = parse_number(ps, v); break;
	}
	v->raw = start;
	v->rawlen = (size_t)(ps->p - start);
	return rc;
}

static void free_inner(struct jval *v)
{
	if (v->type == J_STRING)
		free(v->str);
	if (v->type == J_ARRAY || v->type == J_OBJECT) {
		for (size_t i = 0; i < v->n; i++) {
			free_inner(&v->items[i]);
			if (v->keys)
				free(v->keys[i]);
		}
		free(v->items);
		free(v->keys);
	}
}

struct jval *json_parse(const char *text, size_t len, char *err, size_t errlen)
{
	struct parser ps = {.p = text, .end = text + len, .start = text, .err = err, .errlen = errlen};
	struct jval *v = calloc(1, sizeof *v);
	if (errlen)
		err[0] = '\0';
	if (!v)
		return NULL;
	if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0) /* a BOM, as Python's utf-8-sig */
		ps.p += 3;
	if (parse_value(&ps, v, 0) == 0) {
		skip_ws(&ps);
		if (ps.p == ps.end)
			return v;
		fail(&ps, "extra data");
	}
	json_free(v);
	return NULL;
}

void json_free(struct jval *v)
{
	if (!v)
		return;
	free_inner(v);
	free(v);
}

const struct jval *json_get(const struct jval *obj, const char *key)
{
	if (!obj || obj->type != J_OBJECT)
		return NULL;
	for (size_t i = obj->n; i-- > 0;)
		if (strcmp(obj->keys[i], key) == 0)
			return &obj->items[i];
	return NULL;
}

size_t json_quote(char *buf, size_t size, const char *s, size_t len)
{
	size_t n = 0;
#define PUT(c) do { if (n + 1 < size) buf[n] = (c); n++; } while (0)
	PUT('"');
	for (size_t i = 0; i < len;) {
		unsigned char c = (unsigned char)s[i];
		unsigned cp = c;
		size_t step = 1;
		if (c >= 0x80) { /* decode UTF-8 (the reader made it; trust its shape) */
			if ((c & 0xe0) == 0xc0 && i + 1 < len) {
				cp = ((c & 0x1fu) << 6) | (s[i + 1] & 0x3fu);
				step = 2;
			} else if ((c & 0xf0) == 0xe0 && i + 2 < len) {
				cp = ((c & 0x0fu) << 12) | ((s[i + 1] & 0x3fu) << 6) | (s[i + 2] & 0x3fu);
				step = 3;
			} else if ((c & 0xf8) == 0xf0 && i + 3 < len) {
				cp = ((c & 0x07u) << 18) | ((s[i + 1] & 0x3fu) << 12) |
				     ((s[i + 2] & 0x3fu) << 6) | (s[i + 3] & 0x3fu);
				step = 4;
			}
		}
		i += step;
		char esc[16];
		const char *e = NULL;
		switch (cp) {
		case '"': e = "\\\""; break;
		case '\\': e = "\\\\"; break;
		case '\n': e = "\\n"; break;
		case '\r': e = "\\r"; break;
		case '\t': e = "\\t"; break;
		case '\b': e = "\\b"; break;
		case '\f': e = "\\f"; break;
		default:
			if (cp < 0x20 || cp >= 0x7f) {
				if (cp >= 0x10000) {
					unsigned v = cp - 0x10000;
					snprintf(esc, sizeof esc, "\\u%04x\\u%04x", 0xd800 + (v >> 10), 0xdc00 + (v & 0x3ff));
				} else {
					snprintf(esc, sizeof esc, "\\u%04x", cp);
				}
				e = esc;
			}
		}
		if (e)
			for (; *e; e++)
				PUT(*e);
		else
			PUT((char)cp);
	}
	PUT('"');
	if (size)
		buf[n < size ? n : size - 1] = '\0';
#undef PUT
	return n;
}
