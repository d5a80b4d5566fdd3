/* xmlparse.c -- pv_xml_parse (declared in pv_xml.h): one complete element that this
 * server serialised itself (offline messages, stored subscription requests, the
 * session queue) back into a pv_xml tree, with expat in namespace mode.
 *
 * The input is our own output, so the stream parser's restricted-XML policing (RFC
 * 6120 11.1) and size limits are not needed; a DOCTYPE is still refused so a damaged
 * or planted row cannot declare entities, and nesting is capped so a tree never gets
 * deeper than the stream parser would have allowed in the first place.
 * Namespaces: expat reports "uri\x01local" (no XML 1.0 document may contain U+0001, so
 * the separator cannot be confused with data).  An element without a namespace keeps
 * ns NULL (inherit) while nothing above it has one -- pv_stanza_wire writes a stanza's
 * root and its jabber:client children that way -- but becomes "" (no namespace) under
 * an ancestor that has one (xmlns='' undeclared it), or it would inherit that
 * ancestor's namespace.  Attributes are named as the stream parser names them
 * (pv_xml.h): "xml:lang" for the xml namespace, "{uri}local" for any other, because
 * the serialiser writes such attributes (with a generated prefix) for stanzas that
 * came in with them.
 *
 * Threading: none shared; one parser per call. */
#include <limits.h>
#include <string.h>

#include <expat.h>

#include "peyvand/pv_xml.h"

#define SEP '\x01'
#define XML_NS_URI "http://www.w3.org/XML/1998/namespace"
/* Far above the stream parser's default (32): anything deeper did not come from us. */
#define MAX_DEPTH 256

typedef struct parse_ctx {
	XML_Parser p;
	pv_xml *root;
	pv_xml *cur;
	unsigned depth;
	bool failed;
} parse_ctx;

static void stop(parse_ctx *c)
{
	c->failed = true;
	XML_StopParser(c->p, XML_FALSE);
}

/* Splits expat's "uri\x01local" into ns (NULL when absent) and local name. */
static const char *split_name(const char *qname, char **ns)
{
	const char *sep = strchr(qname, SEP);
	if (!sep) {
		*ns = NULL;
		return qname;
	}
	*ns = pv_strndup(qname, (size_t)(sep - qname));
	return sep + 1;
}

/* Whether x or an ancestor has a namespace of its own (a non-empty one). */
static bool ns_in_scope(const pv_xml *x)
{
	for (; x; x = x->parent)
		if (x->ns)
			return x->ns[0] != '\0';
	return false;
}

static void on_start(void *ud, const XML_Char *name, const XML_Char **atts)
{
	parse_ctx *c = ud;
	if (c->failed)
		return;
	if (++c->depth > MAX_DEPTH) {
		stop(c);
		return;
	}
	char *ns = NULL;
	const char *local = split_name(name, &ns);
	if (!ns && ns_in_scope(c->cur))
		ns = pv_strdup(""); /* xmlns='' under a namespaced parent */
	pv_xml *x = pv_xml_new(local, ns);
	pv_free(ns);
	for (size_t i = 0; atts[i] && atts[i + 1]; i += 2) {
		char *ans = NULL;
		const char *alocal = split_name(atts[i], &ans);
		if (!ans) {
			pv_xml_set_attr(x, alocal, atts[i + 1]);
		} else {
			char *qn = strcmp(ans, XML_NS_URI) == 0 ? pv_sprintf("xml:%s", alocal)
								 : pv_sprintf("{%s}%s", ans, alocal);
			pv_xml_set_attr(x, qn, atts[i + 1]);
			pv_free(qn);
		}
		pv_free(ans);
	}
	if (c->cur)
		pv_xml_add(c->cur, x);
	else
		c->root = x;
	c->cur = x;
}

static void on_end(void *ud, const XML_Char *name)
{
	parse_ctx *c = ud;
	if (c->failed)
		return;
	c->depth--;
	c->cur = c->cur ? c->cur->parent : NULL;
}

static void on_text(void *ud, const XML_Char *s, int len)
{
	parse_ctx *c = ud;
	/* Character data outside the root is only whitespace (expat rejects the rest). */
	if (c->failed || !c->cur || len <= 0)
		return;
	pv_xml_add_text(c->cur, s, (size_t)len);
}

static void on_doctype(void *ud, const XML_Char *name, const XML_Char *sysid,
	const XML_Char *pubid, int has_internal_subset)
{
	stop(ud);
}

pv_xml *pv_xml_parse(const char *s, size_t n)
{
	if (!s)
		return NULL;
	parse_ctx c = {0};
	c.p = XML_ParserCreateNS("UTF-8", SEP);
	if (!c.p)
		return NULL;
	XML_SetUserData(c.p, &c);
	XML_SetElementHandler(c.p, on_start, on_end);
	XML_SetCharacterDataHandler(c.p, on_text);
	XML_SetStartDoctypeDeclHandler(c.p, on_doctype);

	/* XML_Parse takes an int length: feed in pieces for the (theoretical) huge row. */
	enum XML_Status st = XML_STATUS_OK;
	size_t off = 0;
	do {
		size_t chunk = n - off > (size_t)INT_MAX ? (size_t)INT_MAX : n - off;
		bool last = off + chunk == n;
		st = XML_Parse(c.p, s + off, (int)chunk, last);
		off += chunk;
	} while (st == XML_STATUS_OK && off < n);
	if (n == 0)
		st = XML_Parse(c.p, "", 0, 1);

	bool ok = st == XML_STATUS_OK && !c.failed && c.root && c.depth == 0;
	XML_ParserFree(c.p);
	if (!ok) {
		pv_xml_free(c.root);
		return NULL;
	}
	return c.root;
}
