/* xml.c -- the XML element tree (pv_xml.h) and its serialiser.
 *
 * The tree is namespace-resolved: an element carries its namespace URI, never a prefix,
 * so the serialiser decides where xmlns='...' is needed (only where the namespace differs
 * from the one in scope) and the output is canonical, prefix-free XML.  Two exceptions
 * need a prefix: xml:lang (attribute name "xml:lang", prefix bound by XML itself) and
 * attributes in any other namespace, which the stream parser stores in Clark notation
 * "{uri}local" (no XML name can start with '{', so these never collide with plain
 * names); the serialiser declares a generated prefix for them on the element.
 *
 * ns on an element: NULL inherits the namespace in scope (convenient for builders);
 * "" means "no namespace" (written as xmlns='' when something else is in scope).
 * An element in the XML namespace itself (<xml:foo/> is well-formed input) is written
 * with the xml: prefix: that namespace must never be declared as the default one
 * (Namespaces in XML 1.0, section 3), so xmlns='...XML/1998/namespace' would make
 * every parser, ours included, reject the output.
 *
 * Escaping follows XML 1.0 sections 2.4 and 3.3.3: text escapes & < > (and CR, which a
 * parser would otherwise turn into LF); attribute values also escape both quotes and
 * TAB/LF, which attribute-value normalisation would otherwise turn into spaces.
 *
 * Ownership: a tree is owned by its root.  Not thread-safe. */
#include "peyvand/pv_xml.h"

#include <stdio.h>
#include <string.h>
#include <sys/types.h>

/* ---- building ----------------------------------------------------------------------- */

pv_xml *pv_xml_new(const char *name, const char *ns)
{
	PV_ASSERT(name != NULL);
	pv_xml *x = pv_calloc(1, sizeof(*x));
	x->name = pv_strdup(name);
	x->ns = pv_strdup(ns);
	return x;
}

static pv_xml *text_new(const char *text, size_t len)
{
	pv_xml *t = pv_calloc(1, sizeof(*t));
	t->text = pv_strndup(text, len);
	t->text_len = len;
	return t;
}

void pv_xml_detach(pv_xml *x)
{
	pv_xml *p = x->parent;
	if (!p)
		return;
	pv_xml *prev = NULL;
	for (pv_xml *c = p->first; c && c != x; c = c->next)
		prev = c;
	if (prev)
		prev->next = x->next;
	else
		p->first = x->next;
	if (p->last == x)
		p->last = prev;
	x->parent = NULL;
	x->next = NULL;
}

static void free_node(pv_xml *x)
{
	/* Iterative over siblings, recursive over depth: parsed trees are depth-limited. */
	pv_xml *c = x->first;
	while (c) {
		pv_xml *next = c->next;
		free_node(c);
		c = next;
	}
	for (size_t i = 0; i < 2 * x->nattrs; i++)
		pv_free(x->attrs[i]);
	pv_free(x->attrs);
	pv_free(x->name);
	pv_free(x->ns);
	pv_free(x->text);
	pv_free(x);
}

void pv_xml_free(pv_xml *x)
{
	if (!x)
		return;
	pv_xml_detach(x);
	free_node(x);
}

pv_xml *pv_xml_add(pv_xml *parent, pv_xml *child)
{
	PV_ASSERT(parent && parent->name && child);
	if (child->parent)
		pv_xml_detach(child);
	child->parent = parent;
	child->next = NULL;
	if (parent->last)
		parent->last->next = child;
	else
		parent->first = child;
	parent->last = child;
	return child;
}

pv_xml *pv_xml_add_child(pv_xml *parent, const char *name, const char *ns)
{
	return pv_xml_add(parent, pv_xml_new(name, ns));
}

void pv_xml_add_text(pv_xml *parent, const char *text, size_t len)
{
	if (len == 0)
		return;
	pv_xml *last = parent->last;
	if (last && !last->name) {
		/* Merge with a preceding text node: adjacent character data is one text. */
		last->text = pv_realloc(last->text, last->text_len + len + 1);
		memcpy(last->text + last->text_len, text, len);
		last->text_len += len;
		last->text[last->text_len] = '\0';
		return;
	}
	pv_xml_add(parent, text_new(text, len));
}

pv_xml *pv_xml_dup(const pv_xml *x)
{
	if (!x)
		return NULL;
	pv_xml *d;
	if (!x->name)
		return text_new(x->text, x->text_len);
	d = pv_xml_new(x->name, x->ns);
	if (x->nattrs) {
		d->attrs = pv_calloc(2 * x->nattrs, sizeof(char *));
		for (size_t i = 0; i < 2 * x->nattrs; i++)
			d->attrs[i] = pv_strdup(x->attrs[i]);
		d->nattrs = x->nattrs;
	}
	for (const pv_xml *c = x->first; c; c = c->next)
		pv_xml_add(d, pv_xml_dup(c));
	return d;
}

/* ---- attributes ----------------------------------------------------------------------- */

static ssize_t attr_index(const pv_xml *x, const char *name)
{
	for (size_t i = 0; i < x->nattrs; i++)
		if (strcmp(x->attrs[2 * i], name) == 0)
			return (ssize_t)i;
	return -1;
}

const char *pv_xml_attr(const pv_xml *x, const char *name)
{
	if (!x || !x->name)
		return NULL;
	ssize_t i = attr_index(x, name);
	return i < 0 ? NULL : x->attrs[2 * i + 1];
}

void pv_xml_set_attr(pv_xml *x, const char *name, const char *value)
{
	PV_ASSERT(x && x->name && name);
	ssize_t i = attr_index(x, name);
	if (i >= 0) {
		/* Only this attribute's strings change: pointers to other values that
		 * callers borrowed (pv_stanza keeps type/id) stay valid. */
		pv_free(x->attrs[2 * i + 1]);
		if (value) {
			x->attrs[2 * i + 1] = pv_strdup(value);
			return;
		}
		pv_free(x->attrs[2 * i]);
		memmove(&x->attrs[2 * i], &x->attrs[2 * i + 2],
			(x->nattrs - (size_t)i - 1) * 2 * sizeof(char *));
		x->nattrs--;
		return;
	}
	if (!value)
		return;
	x->attrs = pv_realloc(x->attrs, (x->nattrs + 1) * 2 * sizeof(char *));
	x->attrs[2 * x->nattrs] = pv_strdup(name);
	x->attrs[2 * x->nattrs + 1] = pv_strdup(value);
	x->nattrs++;
}

/* ---- lookup ----------------------------------------------------------------------------- */

/* The namespace an element is really in: its own, or the nearest ancestor's when NULL. */
static const char *effective_ns(const pv_xml *x)
{
	for (; x; x = x->parent)
		if (x->name && x->ns)
			return x->ns;
	return NULL;
}

static bool ns_eq(const char *a, const char *b)
{
	/* NULL (nothing in scope) and "" (explicitly no namespace) mean the same here. */
	return strcmp(a ? a : "", b ? b : "") == 0;
}

int pv_xml_is(const pv_xml *x, const char *name, const char *ns)
{
	if (!x || !x->name || strcmp(x->name, name) != 0)
		return 0;
	return !ns || ns_eq(effective_ns(x), ns);
}

pv_xml *pv_xml_child(const pv_xml *x, const char *name, const char *ns)
{
	if (!x)
		return NULL;
	for (pv_xml *c = x->first; c; c = c->next)
		if (pv_xml_is(c, name, ns))
			return c;
	return NULL;
}

pv_xml *pv_xml_first_element(const pv_xml *x)
{
	if (!x)
		return NULL;
	for (pv_xml *c = x->first; c; c = c->next)
		if (c->name)
			return c;
	return NULL;
}

pv_xml *pv_xml_next_element(const pv_xml *x)
{
	if (!x)
		return NULL;
	for (pv_xml *c = x->next; c; c = c->next)
		if (c->name)
			return c;
	return NULL;
}

char *pv_xml_text(const pv_xml *x)
{
	pv_buf b;
	pv_buf_init(&b);
	if (x)
		for (const pv_xml *c = x->first; c; c = c->next)
			if (!c->name)
				pv_buf_append(&b, c->text, c->text_len);
	return pv_buf_take(&b);
}

char *pv_xml_child_text(const pv_xml *x, const char *name, const char *ns)
{
	pv_xml *c = pv_xml_child(x, name, ns);
	return c ? pv_xml_text(c) : NULL;
}

/* ---- serialising ---------------------------------------------------------------------- */

enum { ESC_TEXT, ESC_ATTR, ESC_ALL };

static void escape(const char *s, size_t n, int mode, pv_buf *out)
{
	size_t run = 0; /* start of the pending run of bytes that need no escaping */
	for (size_t i = 0; i < n; i++) {
		const char *rep = NULL;
		switch (s[i]) {
		case '&': rep = "&amp;"; break;
		case '<': rep = "&lt;"; break;
		case '>': rep = "&gt;"; break;
		case '"': rep = mode != ESC_TEXT ? "&quot;" : NULL; break;
		case '\'': rep = mode != ESC_TEXT ? "&apos;" : NULL; break;
		case '\r': rep = "&#13;"; break;
		case '\n': rep = mode == ESC_ATTR ? "&#10;" : NULL; break;
		case '\t': rep = mode == ESC_ATTR ? "&#9;" : NULL; break;
		default: break;
		}
		if (!rep)
			continue;
		pv_buf_append(out, s + run, i - run);
		pv_buf_puts(out, rep);
		run = i + 1;
	}
	pv_buf_append(out, s + run, n - run);
}

void pv_xml_escape(const char *s, size_t n, pv_buf *out)
{
	escape(s, n, ESC_ALL, out);
}

static void put_attr(pv_buf *out, const char *name, const char *value)
{
	pv_buf_puts(out, " ");
	pv_buf_puts(out, name);
	pv_buf_puts(out, "='");
	escape(value, strlen(value), ESC_ATTR, out);
	pv_buf_puts(out, "'");
}

/* The content-namespace swap of pv_xml_serialize_as; from NULL means none. */
typedef struct {
	const char *from, *to;
} ns_map;

#define NS_XML "http://www.w3.org/XML/1998/namespace"

/* scope: the default namespace in effect in the output; inherit: the namespace an
 * element with ns NULL is in (its parent's).  They differ only below an xml:-prefixed
 * element, which leaves the default namespace alone. */
static void serialize(const pv_xml *x, const char *scope, const char *inherit,
	const ns_map *map, pv_buf *out)
{
	if (!x->name) {
		escape(x->text, x->text_len, ESC_TEXT, out);
		return;
	}
	const char *ns = x->ns ? x->ns : inherit;
	if (x->ns && map->from && strcmp(x->ns, map->from) == 0)
		ns = map->to;
	bool xml_prefix = ns && strcmp(ns, NS_XML) == 0;
	pv_buf_puts(out, xml_prefix ? "<xml:" : "<");
	pv_buf_puts(out, x->name);
	if (!xml_prefix && !ns_eq(ns, scope))
		put_attr(out, "xmlns", ns ? ns : "");
	unsigned nprefix = 0;
	for (size_t i = 0; i < x->nattrs; i++) {
		const char *name = x->attrs[2 * i], *value = x->attrs[2 * i + 1];
		/* Namespace declarations come from ns fields only; a stray xmlns attribute
		 * would duplicate or contradict the one written above. */
		if (strcmp(name, "xmlns") == 0 || strncmp(name, "xmlns:", 6) == 0)
			continue;
		/* The last '}': a URI may contain '}', an XML name may not. */
		const char *close = name[0] == '{' ? strrchr(name, '}') : NULL;
		if (!close) {
			put_attr(out, name, value);
			continue;
		}
		/* Clark-notation attribute: bind a fresh prefix on this element.  The output
		 * uses no other prefixes (besides xml:), so "nsN" cannot clash. */
		pv_buf_printf(out, " xmlns:ns%u='", nprefix);
		escape(name + 1, (size_t)(close - name - 1), ESC_ATTR, out);
		pv_buf_printf(out, "' ns%u:%s='", nprefix, close + 1);
		escape(value, strlen(value), ESC_ATTR, out);
		pv_buf_puts(out, "'");
		nprefix++;
	}
	if (!x->first) {
		pv_buf_puts(out, "/>");
		return;
	}
	pv_buf_puts(out, ">");
	for (const pv_xml *c = x->first; c; c = c->next)
		serialize(c, xml_prefix ? scope : ns, ns, map, out);
	pv_buf_puts(out, xml_prefix ? "</xml:" : "</");
	pv_buf_puts(out, x->name);
	pv_buf_puts(out, ">");
}

void pv_xml_serialize(const pv_xml *x, const char *parent_ns, pv_buf *out)
{
	static const ns_map none = { NULL, NULL };
	if (x)
		serialize(x, parent_ns, parent_ns, &none, out);
}

void pv_xml_serialize_as(const pv_xml *x, const char *parent_ns, const char *from_ns,
	const char *to_ns, pv_buf *out)
{
	ns_map map = { from_ns, to_ns };
	if (x)
		serialize(x, parent_ns, parent_ns, &map, out);
}
