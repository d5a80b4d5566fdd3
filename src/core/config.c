/* config.c -- the configuration file: YAML (libyaml event parser) into a read-only
 * tree of maps, lists and scalars that remember their source line.
 *
 * We accept the plain subset an operator needs and refuse the rest loudly, with
 * "file:line: message": anchors/aliases (a surprise in a security config), explicit
 * tags (no "!include" magic), duplicate map keys (YAML says they are an error; most
 * parsers silently keep the last), non-scalar map keys, several documents, NUL bytes.
 * Plain scalars "", "~" and "null" mean "not set": getters return their default.
 *
 * Threading: a tree is immutable after load and may be read from any thread.  The
 * only mutable part is the list of getter errors, behind a mutex.  All nodes belong
 * to the root; only pv_conf_free(root) frees them. */
#include "core/config.h"
#include "peyvand/pv_log.h"
#include "peyvand/pv_module.h"
#include "peyvand/pv_util.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <yaml.h>

#define CONF_MAX_DEPTH 64
#define CONF_MAX_FILE (16u * 1024 * 1024)
#define CONF_MAX_ERRORS (64u * 1024) /* getter errors kept, bytes */

typedef struct conf_doc {
	char *file;
	pthread_mutex_t lock; /* guards errors */
	pv_buf errors;
} conf_doc;

struct pv_conf {
	pv_conf_type type;
	int line;
	bool is_null;   /* plain "", "~" or "null" */
	char *scalar;   /* PV_CONF_SCALAR */
	char *path;     /* full dotted path, for error messages */
	size_t n, cap;  /* PV_CONF_MAP / PV_CONF_LIST entries */
	char **keys;    /* map only */
	pv_conf **vals;
	conf_doc *doc;
	bool is_root;
};

/* ---- tree building ---------------------------------------------------------- */

typedef struct pctx {
	yaml_parser_t parser;
	conf_doc *doc;
	char *err;
} pctx;

static void __attribute__((format(printf, 3, 4))) set_err(pctx *c, size_t line, const char *fmt, ...)
{
	if (c->err)
		return; /* keep the first error: later ones are usually consequences */
	va_list ap;
	va_start(ap, fmt);
	char msg[512];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	c->err = pv_sprintf("%s:%zu: %s", c->doc->file, line, msg);
}

static int next_event(pctx *c, yaml_event_t *ev)
{
	if (yaml_parser_parse(&c->parser, ev))
		return 0;
	yaml_parser_t *p = &c->parser;
	const char *problem = p->problem ? p->problem : "syntax error";
	if (p->context)
		set_err(c, p->problem_mark.line + 1, "%s (%s at line %zu)", problem, p->context,
			p->context_mark.line + 1);
	else
		set_err(c, p->problem_mark.line + 1, "%s", problem);
	return -1;
}

static pv_conf *node_new(pctx *c, pv_conf_type type, const yaml_event_t *ev, const char *path)
{
	pv_conf *n = pv_calloc(1, sizeof(*n));
	n->type = type;
	n->line = (int)(ev->start_mark.line + 1);
	n->path = pv_strdup(path);
	n->doc = c->doc;
	return n;
}

static void node_free(pv_conf *n)
{
	if (!n)
		return;
	for (size_t i = 0; i < n->n; i++) {
		if (n->keys)
			pv_free(n->keys[i]);
		node_free(n->vals[i]);
	}
	pv_free(n->keys);
	pv_free(n->vals);
	pv_free(n->scalar);
	pv_free(n->path);
	pv_free(n);
}

/* Append key (may be NULL for lists, then ownership of nothing) and val. */
static void node_push(pv_conf *n, char *key, pv_conf *val)
{
	if (n->n == n->cap) {
		n->cap = n->cap ? n->cap * 2 : 8;
		n->vals = pv_realloc(n->vals, n->cap * sizeof(*n->vals));
		if (n->type == PV_CONF_MAP)
			n->keys = pv_realloc(n->keys, n->cap * sizeof(*n->keys));
	}
	if (n->type == PV_CONF_MAP)
		n->keys[n->n] = key;
	n->vals[n->n++] = val;
}

static bool scalar_is_null(const yaml_event_t *ev)
{
	if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	const char *v = (const char *)ev->data.scalar.value;
	return ev->data.scalar.length == 0 || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
	       strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

/* Refuse what we do not support on any node event; returns -1 with c->err set. */
static int check_plain(pctx *c, const yaml_event_t *ev)
{
	const yaml_char_t *anchor = NULL, *tag = NULL;
	size_t line = ev->start_mark.line + 1;

	switch (ev->type) {
	case YAML_ALIAS_EVENT:
		set_err(c, line, "aliases (*%s) are not supported", (const char *)ev->data.alias.anchor);
		return -1;
	case YAML_SCALAR_EVENT:
		anchor = ev->data.scalar.anchor;
		tag = ev->data.scalar.tag;
		if (memchr(ev->data.scalar.value, '\0', ev->data.scalar.length)) {
			set_err(c, line, "NUL byte in value");
			return -1;
		}
		break;
	case YAML_SEQUENCE_START_EVENT:
		anchor = ev->data.sequence_start.anchor;
		tag = ev->data.sequence_start.tag;
		break;
	case YAML_MAPPING_START_EVENT:
		anchor = ev->data.mapping_start.anchor;
		tag = ev->data.mapping_start.tag;
		break;
	default:
		set_err(c, line, "unexpected YAML event");
		return -1;
	}
	if (anchor) {
		set_err(c, line, "anchors (&%s) are not supported", (const char *)anchor);
		return -1;
	}
	if (tag) {
		set_err(c, line, "tags (%s) are not supported", (const char *)tag);
		return -1;
	}
	return 0;
}

static pv_conf *parse_node(pctx *c, yaml_event_t *ev, const char *path, int depth);

static pv_conf *parse_map(pctx *c, yaml_event_t *start, const char *path, int depth)
{
	pv_conf *m = node_new(c, PV_CONF_MAP, start, path);
	yaml_event_t kev, vev;
	char *key = NULL, *sub = NULL;

	for (;;) {
		if (next_event(c, &kev) < 0)
			goto fail;
		if (kev.type == YAML_MAPPING_END_EVENT) {
			yaml_event_delete(&kev);
			break;
		}
		size_t kline = kev.start_mark.line + 1;
		if (kev.type != YAML_SCALAR_EVENT) {
			set_err(c, kline, "map keys must be plain strings");
			yaml_event_delete(&kev);
			goto fail;
		}
		if (check_plain(c, &kev) < 0) {
			yaml_event_delete(&kev);
			goto fail;
		}
		key = pv_strndup((const char *)kev.data.scalar.value, kev.data.scalar.length);
		yaml_event_delete(&kev);
		for (size_t i = 0; i < m->n; i++) {
			if (strcmp(m->keys[i], key) == 0) {
				set_err(c, kline, "duplicate key '%s' (first at line %d)", key,
					m->vals[i]->line);
				goto fail;
			}
		}
		sub = *path ? pv_sprintf("%s.%s", path, key) : pv_strdup(key);
		if (next_event(c, &vev) < 0)
			goto fail;
		pv_conf *val = parse_node(c, &vev, sub, depth + 1);
		if (!val)
			goto fail;
		node_push(m, key, val);
		key = NULL;
		pv_free(sub);
		sub = NULL;
	}
	return m;
fail:
	pv_free(key);
	pv_free(sub);
	node_free(m);
	return NULL;
}

static pv_conf *parse_list(pctx *c, yaml_event_t *start, const char *path, int depth)
{
	pv_conf *l = node_new(c, PV_CONF_LIST, start, path);
	yaml_event_t ev;

	for (;;) {
		if (next_event(c, &ev) < 0)
			goto fail;
		if (ev.type == YAML_SEQUENCE_END_EVENT) {
			yaml_event_delete(&ev);
			break;
		}
		char *sub = pv_sprintf("%s[%zu]", path, l->n);
		pv_conf *val = parse_node(c, &ev, sub, depth + 1);
		pv_free(sub);
		if (!val)
			goto fail;
		node_push(l, NULL, val);
	}
	return l;
fail:
	node_free(l);
	return NULL;
}

/* Build the node that starts with *ev; consumes (deletes) *ev. */
static pv_conf *parse_node(pctx *c, yaml_event_t *ev, const char *path, int depth)
{
	pv_conf *n = NULL;

	if (check_plain(c, ev) < 0)
		goto out;
	if (depth > CONF_MAX_DEPTH) {
		set_err(c, ev->start_mark.line + 1, "nested too deeply (max %d)", CONF_MAX_DEPTH);
		goto out;
	}
	switch (ev->type) {
	case YAML_SCALAR_EVENT:
		n = node_new(c, PV_CONF_SCALAR, ev, path);
		n->scalar = pv_strndup((const char *)ev->data.scalar.value, ev->data.scalar.length);
		n->is_null = scalar_is_null(ev);
		break;
	case YAML_SEQUENCE_START_EVENT:
		n = parse_list(c, ev, path, depth);
		break;
	case YAML_MAPPING_START_EVENT:
		n = parse_map(c, ev, path, depth);
		break;
	default:
		break; /* check_plain refused it */
	}
out:
	yaml_event_delete(ev);
	return n;
}

static pv_conf *parse_named(const char *file, const char *text, size_t len, char **err)
{
	pctx c = {0};
	yaml_event_t ev;
	pv_conf *root = NULL;
	bool parser_ok = false;

	*err = NULL;
	c.doc = pv_calloc(1, sizeof(*c.doc));
	c.doc->file = pv_strdup(file);
	pv_buf_init(&c.doc->errors);
	pthread_mutex_init(&c.doc->lock, NULL);

	if (!yaml_parser_initialize(&c.parser)) {
		set_err(&c, 0, "cannot initialise YAML parser");
		goto fail;
	}
	parser_ok = true;
	yaml_parser_set_input_string(&c.parser, (const unsigned char *)text, len);

	if (next_event(&c, &ev) < 0)
		goto fail;
	PV_ASSERT(ev.type == YAML_STREAM_START_EVENT);
	yaml_event_delete(&ev);

	if (next_event(&c, &ev) < 0)
		goto fail;
	if (ev.type == YAML_DOCUMENT_START_EVENT) {
		yaml_event_delete(&ev);
		if (next_event(&c, &ev) < 0)
			goto fail;
		root = parse_node(&c, &ev, "", 0);
		if (!root)
			goto fail;
		if (next_event(&c, &ev) < 0)
			goto fail;
		PV_ASSERT(ev.type == YAML_DOCUMENT_END_EVENT);
		yaml_event_delete(&ev);
		if (next_event(&c, &ev) < 0)
			goto fail;
		if (ev.type != YAML_STREAM_END_EVENT) {
			set_err(&c, ev.start_mark.line + 1, "only one YAML document is allowed");
			yaml_event_delete(&ev);
			goto fail;
		}
	}
	yaml_event_delete(&ev); /* STREAM_END */

	if (root && root->type == PV_CONF_SCALAR && root->is_null) {
		node_free(root); /* "---" alone, or only comments */
		root = NULL;
	}
	if (!root) {
		yaml_event_t fake = {0};
		fake.start_mark.line = 0;
		root = node_new(&c, PV_CONF_MAP, &fake, "");
	}
	if (root->type != PV_CONF_MAP) {
		set_err(&c, (size_t)root->line, "the top level must be a map of settings");
		goto fail;
	}
	root->is_root = true;
	yaml_parser_delete(&c.parser);
	return root;

fail:
	if (parser_ok)
		yaml_parser_delete(&c.parser);
	node_free(root);
	pthread_mutex_destroy(&c.doc->lock);
	pv_free(c.doc->file);
	pv_free(c.doc);
	*err = c.err ? c.err : pv_sprintf("%s: cannot parse", file);
	return NULL;
}

pv_conf *pv_conf_parse(const char *text, size_t len, char **err)
{
	return parse_named("<config>", text, len, err);
}

pv_conf *pv_conf_load(const char *path, char **err)
{
	pv_buf b;
	pv_conf *c = NULL;
	char chunk[8192];
	size_t n;

	*err = NULL;
	pv_buf_init(&b);
	FILE *f = fopen(path, "re");
	if (!f) {
		*err = pv_sprintf("%s: cannot open: %s", path, strerror(errno));
		goto out;
	}
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		if (b.len + n > CONF_MAX_FILE) {
			*err = pv_sprintf("%s: file larger than %u bytes", path, CONF_MAX_FILE);
			goto out;
		}
		pv_buf_append(&b, chunk, n);
	}
	if (ferror(f)) {
		*err = pv_sprintf("%s: read error: %s", path, strerror(errno));
		goto out;
	}
	c = parse_named(path, b.data ? b.data : "", b.len, err);
out:
	if (f)
		fclose(f);
	pv_buf_fini(&b);
	return c;
}

void pv_conf_free(pv_conf *c)
{
	if (!c)
		return;
	PV_ASSERT(c->is_root); /* nodes belong to the tree */
	conf_doc *doc = c->doc;
	node_free(c);
	pthread_mutex_destroy(&doc->lock);
	pv_buf_fini(&doc->errors);
	pv_free(doc->file);
	pv_free(doc);
}

/* ---- lookup ------------------------------------------------------------------ */

pv_conf_type pv_conf_type_of(const pv_conf *n)
{
	return n ? n->type : PV_CONF_SCALAR;
}

/* Walk a dotted path.  Keys may themselves contain dots (host names such as
 * "example.com"), so at each map we take the longest key that matches the rest
 * of the path up to a dot or its end. */
const pv_conf *pv_conf_get(const pv_conf *n, const char *path)
{
	if (!n || !path || !*path)
		return n;
	while (*path) {
		if (n->type != PV_CONF_MAP)
			return NULL;
		const pv_conf *best = NULL;
		size_t best_len = 0;
		for (size_t i = 0; i < n->n; i++) {
			size_t kl = strlen(n->keys[i]);
			if (kl > best_len && strncmp(path, n->keys[i], kl) == 0 &&
			    (path[kl] == '\0' || path[kl] == '.')) {
				best = n->vals[i];
				best_len = kl;
			}
		}
		if (!best)
			return NULL;
		n = best;
		path += best_len;
		if (*path == '.')
			path++;
	}
	return n;
}

static bool absent(const pv_conf *n)
{
	return !n || (n->type == PV_CONF_SCALAR && n->is_null);
}

/* Record "file:line: path: expected X" once per node and kind. */
static void record(const pv_conf *n, const char *what)
{
	conf_doc *doc = n->doc;
	char msg[1024];
	snprintf(msg, sizeof(msg), "%s:%d: %s: %s", doc->file, n->line, *n->path ? n->path : "(top)",
		 what);
	size_t ml = strlen(msg);

	pthread_mutex_lock(&doc->lock);
	/* Getters run repeatedly (per connection, per reload); keep each message once. */
	const char *p = doc->errors.data;
	while (p && *p) {
		const char *nl = strchr(p, '\n');
		size_t l = nl ? (size_t)(nl - p) : strlen(p);
		if (l == ml && memcmp(p, msg, ml) == 0)
			goto out;
		p = nl ? nl + 1 : p + l;
	}
	if (doc->errors.len + ml + 1 > CONF_MAX_ERRORS)
		goto out;
	if (doc->errors.len)
		pv_buf_puts(&doc->errors, "\n");
	pv_buf_append(&doc->errors, msg, ml);
	pv_debug("config", "%s", msg);
out:
	pthread_mutex_unlock(&doc->lock);
}

const char *pv_conf_errors(const pv_conf *root)
{
	if (!root)
		return NULL;
	conf_doc *doc = root->doc;
	const char *s = NULL;
	pthread_mutex_lock(&doc->lock);
	if (doc->errors.len)
		s = doc->errors.data;
	pthread_mutex_unlock(&doc->lock);
	return s;
}

/* ---- typed getters ------------------------------------------------------------ */

const char *pv_conf_str(const pv_conf *n, const char *path, const char *def)
{
	const pv_conf *v = pv_conf_get(n, path);
	if (absent(v))
		return def;
	if (v->type != PV_CONF_SCALAR) {
		record(v, "expected a string");
		return def;
	}
	return v->scalar;
}

/* Leading digits of s as a non-negative number; *end is set past them. */
static int parse_digits(const char *s, uint64_t *out, const char **end)
{
	uint64_t v = 0;
	const char *p = s;
	if (*p < '0' || *p > '9')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		unsigned d = (unsigned)(*p - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*out = v;
	*end = p;
	return 0;
}

static int parse_i64(const char *s, int64_t *out)
{
	bool neg = false;
	uint64_t v;
	const char *end;
	if (*s == '-' || *s == '+')
		neg = *s++ == '-';
	if (parse_digits(s, &v, &end) < 0 || *end)
		return -1;
	if (neg) {
		if (v > (uint64_t)INT64_MAX + 1)
			return -1;
		*out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
	} else {
		if (v > (uint64_t)INT64_MAX)
			return -1;
		*out = (int64_t)v;
	}
	return 0;
}

int64_t pv_conf_int(const pv_conf *n, const char *path, int64_t def)
{
	const pv_conf *v = pv_conf_get(n, path);
	int64_t out;
	if (absent(v))
		return def;
	if (v->type != PV_CONF_SCALAR || parse_i64(v->scalar, &out) < 0) {
		record(v, "expected an integer");
		return def;
	}
	return out;
}

bool pv_conf_bool(const pv_conf *n, const char *path, bool def)
{
	static const char *const yes[] = {"true", "yes", "on"};
	static const char *const no[] = {"false", "no", "off"};
	const pv_conf *v = pv_conf_get(n, path);
	if (absent(v))
		return def;
	if (v->type == PV_CONF_SCALAR) {
		for (size_t i = 0; i < PV_ARRAY_LEN(yes); i++) {
			if (strcasecmp(v->scalar, yes[i]) == 0)
				return true;
			if (strcasecmp(v->scalar, no[i]) == 0)
				return false;
		}
	}
	record(v, "expected a boolean (true/false/yes/no)");
	return def;
}

typedef struct unit {
	const char *suffix;
	uint64_t mul;
} unit;

/* Number with an optional unit suffix from table (matched case-insensitively). */
static int parse_with_unit(const char *s, const unit *units, size_t nunits, int64_t *out)
{
	uint64_t v;
	const char *end;
	if (parse_digits(s, &v, &end) < 0)
		return -1;
	for (size_t i = 0; i < nunits; i++) {
		if (strcasecmp(end, units[i].suffix) != 0)
			continue;
		if (v > (uint64_t)INT64_MAX / units[i].mul)
			return -1;
		*out = (int64_t)(v * units[i].mul);
		return 0;
	}
	return -1;
}

int64_t pv_conf_size(const pv_conf *n, const char *path, int64_t def)
{
	static const unit units[] = {
		{"", 1},
		{"b", 1},
		{"k", 1024},
		{"kb", 1024},
		{"kib", 1024},
		{"m", 1024 * 1024},
		{"mb", 1024 * 1024},
		{"mib", 1024 * 1024},
		{"g", 1024 * 1024 * 1024},
		{"gb", 1024 * 1024 * 1024},
		{"gib", 1024 * 1024 * 1024},
	};
	const pv_conf *v = pv_conf_get(n, path);
	int64_t out;
	if (absent(v))
		return def;
	if (v->type != PV_CONF_SCALAR || parse_with_unit(v->scalar, units, PV_ARRAY_LEN(units), &out) < 0) {
		record(v, "expected a size (e.g. 4096, 256k, 1m, 1g)");
		return def;
	}
	return out;
}

int64_t pv_conf_ms(const pv_conf *n, const char *path, int64_t def_ms)
{
	/* A bare number means seconds, as in Prosody's timeouts. */
	static const unit units[] = {
		{"", 1000},
		{"ms", 1},
		{"s", 1000},
		{"m", 60 * 1000},
		{"min", 60 * 1000},
		{"h", 60 * 60 * 1000},
		{"d", 24 * 60 * 60 * 1000},
	};
	const pv_conf *v = pv_conf_get(n, path);
	int64_t out;
	if (absent(v))
		return def_ms;
	if (v->type != PV_CONF_SCALAR || parse_with_unit(v->scalar, units, PV_ARRAY_LEN(units), &out) < 0) {
		record(v, "expected a duration (e.g. 500ms, 30s, 5m, 2h, 3d)");
		return def_ms;
	}
	return out;
}

/* ---- maps and lists -------------------------------------------------------------- */

size_t pv_conf_len(const pv_conf *n)
{
	return n && n->type != PV_CONF_SCALAR ? n->n : 0;
}

const char *pv_conf_key_at(const pv_conf *n, size_t i)
{
	return n && n->type == PV_CONF_MAP && i < n->n ? n->keys[i] : NULL;
}

const pv_conf *pv_conf_at(const pv_conf *n, size_t i)
{
	return n && n->type != PV_CONF_SCALAR && i < n->n ? n->vals[i] : NULL;
}

const char *pv_conf_scalar(const pv_conf *n)
{
	return n && n->type == PV_CONF_SCALAR ? n->scalar : NULL;
}

bool pv_conf_list_has(const pv_conf *list, const char *value)
{
	if (!list || list->type != PV_CONF_LIST || !value)
		return false;
	for (size_t i = 0; i < list->n; i++) {
		const pv_conf *v = list->vals[i];
		if (v->type == PV_CONF_SCALAR && strcmp(v->scalar, value) == 0)
			return true;
	}
	return false;
}

int pv_conf_line(const pv_conf *n)
{
	return n ? n->line : 0;
}

/* ---- module API (include/peyvand/pv_module.h) -------------------------------------- */

const char *pv_cfg_str(const pv_conf *c, const char *path, const char *def)
{
	return pv_conf_str(c, path, def);
}

long long pv_cfg_int(const pv_conf *c, const char *path, long long def)
{
	return pv_conf_int(c, path, def);
}

bool pv_cfg_bool(const pv_conf *c, const char *path, bool def)
{
	return pv_conf_bool(c, path, def);
}

long long pv_cfg_size(const pv_conf *c, const char *path, long long def)
{
	return pv_conf_size(c, path, def);
}
