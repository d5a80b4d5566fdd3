/* fuzz_config.c -- libFuzzer target for the configuration parser (src/core/config.c:
 * YAML through libyaml into a read-only tree) and the typed getters that modules call.
 * The file is operator input, and `peyvand --check-config` runs it on anything.
 *
 * Built and run by tests/fuzz/run.sh (clang -fsanitize=fuzzer,address,undefined).
 *
 * Input: the YAML text (not NUL-terminated).  When it parses, every node is visited and
 * every getter is called on it; checked:
 *   - a refused file has an error message "<config>:LINE: ..."; an accepted one is a map
 *   - map keys are unique; a dot-free key finds its value through pv_conf_get, and so
 *     does the full dotted path from the root when no key in the file has a dot
 *   - pv_conf_int agrees with an independent decimal parser (strtoll) on every scalar
 *   - pv_conf_bool accepts exactly true/yes/on/false/no/off (any case)
 *   - size and duration suffixes give value*unit without overflow
 *   - a getter that refused a value has recorded an error (pv_conf_errors)
 *   - every list contains each of its scalars (pv_conf_list_has) */
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/config.h"
#include "peyvand/pv_log.h"
#include "peyvand/pv_util.h"

#define UNSET INT64_MIN /* getter default; a value equal to it is compared via the reference */
/* Default for string getters; compared by address, so no scalar can equal it. */
static const char SENTINEL[] = "\x01unset";

typedef struct walk {
	const pv_conf *root;
	bool dotted; /* some map key has a '.': full paths are ambiguous (longest match) */
	bool refused; /* some getter refused a present value */
	unsigned nodes;
} walk;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	pv_log_set_level(PV_LOG_ERROR);
	return 0;
}

/* Reference integer parser: optional sign, decimal digits only, in range. */
static bool ref_int(const char *s, int64_t *out)
{
	const char *d = s + (*s == '+' || *s == '-');
	if (!*d)
		return false;
	for (const char *p = d; *p; p++)
		if (*p < '0' || *p > '9')
			return false;
	errno = 0;
	long long v = strtoll(s, NULL, 10);
	if (errno == ERANGE)
		return false;
	*out = v;
	return true;
}

/* Reference "digits + suffix" parser for sizes and durations. */
static bool ref_unit(const char *s, const char *const *sfx, const int64_t *mul, size_t n,
	int64_t *out)
{
	const char *p = s;
	while (*p >= '0' && *p <= '9')
		p++;
	if (p == s)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (strcasecmp(p, sfx[i]) != 0)
			continue;
		char *digits = pv_strndup(s, (size_t)(p - s));
		errno = 0;
		unsigned long long v = strtoull(digits, NULL, 10);
		bool range = errno != ERANGE;
		pv_free(digits);
		if (!range || v > (unsigned long long)INT64_MAX / (unsigned long long)mul[i])
			return false;
		*out = (int64_t)(v * (unsigned long long)mul[i]);
		return true;
	}
	return false;
}

static void check_scalar(walk *w, const pv_conf *n)
{
	static const char *const size_sfx[] = {"", "b", "k", "kb", "kib", "m", "mb", "mib", "g",
		"gb", "gib"};
	static const int64_t size_mul[] = {1, 1, 1024, 1024, 1024, 1 << 20, 1 << 20, 1 << 20,
		1 << 30, 1 << 30, 1 << 30};
	static const char *const ms_sfx[] = {"", "ms", "s", "m", "min", "h", "d"};
	static const int64_t ms_mul[] = {1000, 1, 1000, 60000, 60000, 3600000, 86400000};

	const char *v = pv_conf_scalar(n);
	if (!v)
		abort();
	const char *s = pv_conf_str(n, "", SENTINEL);
	if (s == SENTINEL)
		return; /* "", "~", null: not set, every getter gives its default */
	if (s != v)
		abort();

	int64_t want, got = pv_conf_int(n, "", UNSET);
	if (ref_int(v, &want)) {
		if (got != want)
			abort();
	} else {
		if (got != UNSET)
			abort();
		w->refused = true;
	}

	static const char *const yes[] = {"true", "yes", "on"}, *const no[] = {"false", "no", "off"};
	int ref_bool = -1;
	for (size_t i = 0; i < 3; i++) {
		if (strcasecmp(v, yes[i]) == 0)
			ref_bool = 1;
		if (strcasecmp(v, no[i]) == 0)
			ref_bool = 0;
	}
	bool b1 = pv_conf_bool(n, "", true), b2 = pv_conf_bool(n, "", false);
	if (ref_bool < 0) {
		if (!b1 || b2)
			abort(); /* the default, both times */
		w->refused = true;
	} else if (b1 != (ref_bool == 1) || b2 != (ref_bool == 1)) {
		abort();
	}

	got = pv_conf_size(n, "", UNSET);
	if (ref_unit(v, size_sfx, size_mul, PV_ARRAY_LEN(size_sfx), &want)) {
		if (got != want)
			abort();
	} else {
		if (got != UNSET)
			abort();
		w->refused = true;
	}
	got = pv_conf_ms(n, "", UNSET);
	if (ref_unit(v, ms_sfx, ms_mul, PV_ARRAY_LEN(ms_sfx), &want)) {
		if (got != want)
			abort();
	} else {
		if (got != UNSET)
			abort();
		w->refused = true;
	}
}

static bool any_dotted(const pv_conf *n)
{
	for (size_t i = 0; i < pv_conf_len(n); i++) {
		const char *k = pv_conf_key_at(n, i);
		if ((k && strchr(k, '.')) || any_dotted(pv_conf_at(n, i)))
			return true;
	}
	return false;
}

static void visit(walk *w, const pv_conf *n, const char *path, bool plain_path, int depth)
{
	if (!n || depth > 200)
		abort();
	w->nodes++;
	if (pv_conf_line(n) < 1)
		abort();
	/* The full path from the root finds this node when no key on the way has a dot
	 * (a dotted key such as a host name makes the longest-match rule pick). */
	if (!w->dotted && plain_path && *path && pv_conf_get(w->root, path) != n)
		abort();

	switch (pv_conf_type_of(n)) {
	case PV_CONF_SCALAR:
		if (pv_conf_len(n) != 0 || pv_conf_at(n, 0) || pv_conf_key_at(n, 0))
			abort();
		check_scalar(w, n);
		break;
	case PV_CONF_MAP: {
		size_t len = pv_conf_len(n);
		if (pv_conf_scalar(n) || pv_conf_at(n, len) || pv_conf_key_at(n, len))
			abort();
		for (size_t i = 0; i < len; i++) {
			const char *k = pv_conf_key_at(n, i);
			const pv_conf *c = pv_conf_at(n, i);
			if (!k || !c)
				abort();
			for (size_t j = 0; j < i; j++)
				if (strcmp(pv_conf_key_at(n, j), k) == 0)
					abort(); /* duplicates are refused */
			bool dotfree = *k && !strchr(k, '.');
			if (dotfree && pv_conf_get(n, k) != c)
				abort();
			/* Getters on a map or list value refuse it and keep the default. */
			if (pv_conf_type_of(c) != PV_CONF_SCALAR && dotfree) {
				if (pv_conf_str(n, k, SENTINEL) != SENTINEL ||
				    pv_conf_int(n, k, 42) != 42)
					abort();
				w->refused = true;
			}
			char *sub = *path ? pv_sprintf("%s.%s", path, k) : pv_strdup(k);
			visit(w, c, sub, plain_path && dotfree, depth + 1);
			pv_free(sub);
		}
		break;
	}
	case PV_CONF_LIST: {
		size_t len = pv_conf_len(n);
		if (pv_conf_scalar(n) || pv_conf_at(n, len) || pv_conf_key_at(n, 0))
			abort();
		for (size_t i = 0; i < len; i++) {
			const pv_conf *c = pv_conf_at(n, i);
			if (!c)
				abort();
			if (pv_conf_type_of(c) == PV_CONF_SCALAR &&
			    !pv_conf_list_has(n, pv_conf_scalar(c)))
				abort();
			/* List elements have no dotted path of their own. */
			visit(w, c, "", false, depth + 1);
		}
		break;
	}
	default:
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *err = NULL;
	pv_conf *c = pv_conf_parse((const char *)data, size, &err);
	if (!c) {
		if (!err || strncmp(err, "<config>:", 9) != 0)
			abort();
		pv_free(err);
		return 0;
	}
	if (err || pv_conf_type_of(c) != PV_CONF_MAP || pv_conf_errors(c))
		abort();
	walk w = {.root = c, .dotted = any_dotted(c)};
	visit(&w, c, "", true, 0);
	/* Unknown paths give defaults. */
	if (pv_conf_get(c, "\x02no.such.key") || pv_conf_int(c, "\x02no.such.key", 7) != 7)
		abort();
	const char *errs = pv_conf_errors(c);
	if (w.refused != (errs != NULL))
		abort();
	if (errs && strncmp(errs, "<config>:", 9) != 0)
		abort();
	pv_conf_free(c);
	return 0;
}
