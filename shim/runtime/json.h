/*
 * A small JSON reader for config.json and the runtime's own records: the whole document
 * parsed into a tree (RFC 8259; no NaN/Infinity, no "\u0000" in strings, nesting at most
 * 256 deep). Anything it refuses the caller hands to the Python runtime, which then says
 * what is wrong in its own words: this reader never has to explain a bad document.
 *
 * Every value keeps its raw text (raw, rawlen) so a section can be compared byte for byte
 * or copied out verbatim. Objects keep their keys in document order; json_get returns the
 * last value of a repeated key, as Python's json module does.
 */
#ifndef CONCH_JSON_H
#define CONCH_JSON_H

#include <stddef.h>

enum jtype { J_NULL, J_FALSE, J_TRUE, J_NUMBER, J_STRING, J_ARRAY, J_OBJECT };

struct jval {
	enum jtype type;
	const char *raw;      /* the value's text in the document (not NUL-terminated) */
	size_t rawlen;
	char *str;            /* J_STRING: the decoded UTF-8 text, NUL-terminated */
	size_t len;           /* J_STRING: its length */
	int is_int;           /* J_NUMBER: no fraction or exponent, and it fits in a long long */
	long long integer;    /* J_NUMBER with is_int */
	double number;        /* J_NUMBER */
	size_t n;             /* J_ARRAY, J_OBJECT: the number of items */
	struct jval *items;   /* J_ARRAY: the elements; J_OBJECT: the values */
	char **keys;          /* J_OBJECT: the keys (decoded, NUL-terminated) */
};

/* The tree of text[0..len), or NULL (with a short reason in err) when it is not JSON
 * this reader takes. */
struct jval *json_parse(const char *text, size_t len, char *err, size_t errlen);
void json_free(struct jval *v);

/* obj[key] (the last one when repeated), or NULL when obj is not an object or has none. */
const struct jval *json_get(const struct jval *obj, const char *key);

/* Write s as a JSON string literal (quotes included) to buf, Python's json.dumps way with
 * ensure_ascii (non-ASCII as \uXXXX escapes); returns the length it needs (like snprintf). */
size_t json_quote(char *buf, size_t size, const char *s, size_t len);

#endif
