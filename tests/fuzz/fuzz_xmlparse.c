/* fuzz_xmlparse.c -- libFuzzer target for pv_xml_parse (src/util/xmlparse.c), which
 * reads stored stanzas back (offline messages, private XML, vCards, subscription
 * requests) -- file input that a damaged or planted database row controls -- and for the
 * serialiser (src/util/xml.c) that wrote them.
 *
 * Built and run by tests/fuzz/run.sh (clang -fsanitize=fuzzer,address,undefined).
 *
 * Input: one XML document (not NUL-terminated).  Checked:
 *   - round trip: parse -> serialise -> parse -> serialise gives the same bytes, and the
 *     second parse succeeds; pv_xml_dup serialises identically
 *   - the tree means what the XML means: an independent expat pass (namespace mode)
 *     records every element's expanded name, its attributes in pv_xml.h's naming
 *     ("xml:lang", "{uri}local", plain) and all character data; walking the tree (an
 *     element's namespace being its own or the nearest ancestor's) must give the same
 *   - pv_xml_parse accepts exactly what expat accepts, minus a DOCTYPE and nesting
 *     deeper than 256 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <expat.h>

#include "peyvand/pv_xml.h"

#define SEP '\x01'
#define XML_NS "http://www.w3.org/XML/1998/namespace"
#define MAX_DEPTH 256

typedef struct ref {
	pv_buf log;
	unsigned depth, max_depth;
	bool doctype;
} ref;

/* "uri\x01local" -> name as pv_xml.h spells an attribute. */
static void attr_name(const char *q, pv_buf *out)
{
	const char *sep = strchr(q, SEP);
	if (!sep)
		pv_buf_puts(out, q);
	else if ((size_t)(sep - q) == strlen(XML_NS) && memcmp(q, XML_NS, strlen(XML_NS)) == 0)
		pv_buf_printf(out, "xml:%s", sep + 1);
	else
		pv_buf_printf(out, "{%.*s}%s", (int)(sep - q), q, sep + 1);
}

static void ref_start(void *ud, const XML_Char *name, const XML_Char **atts)
{
	ref *r = ud;
	if (++r->depth > r->max_depth)
		r->max_depth = r->depth;
	const char *sep = strchr(name, SEP);
	if (sep)
		pv_buf_printf(&r->log, "<{%.*s}%s", (int)(sep - name), name, sep + 1);
	else
		pv_buf_printf(&r->log, "<{}%s", name);
	for (size_t i = 0; atts[i]; i += 2) {
		pv_buf_puts(&r->log, " ");
		attr_name(atts[i], &r->log);
		pv_buf_puts(&r->log, "=");
		pv_buf_puts(&r->log, atts[i + 1]);
		pv_buf_append(&r->log, "", 1);
	}
	pv_buf_puts(&r->log, ">");
}

static void ref_end(void *ud, const XML_Char *name)
{
	ref *r = ud;
	r->depth--;
	pv_buf_puts(&r->log, "</>");
}

static void ref_text(void *ud, const XML_Char *s, int len)
{
	ref *r = ud;
	if (r->depth > 0)
		pv_buf_append(&r->log, s, (size_t)len);
}

static void ref_doctype(void *ud, const XML_Char *name, const XML_Char *sysid,
	const XML_Char *pubid, int has_internal_subset)
{
	((ref *)ud)->doctype = true;
}

static bool ref_parse(const uint8_t *data, size_t size, ref *r)
{
	XML_Parser p = XML_ParserCreateNS("UTF-8", SEP);
	XML_SetUserData(p, r);
	XML_SetElementHandler(p, ref_start, ref_end);
	XML_SetCharacterDataHandler(p, ref_text);
	XML_SetStartDoctypeDeclHandler(p, ref_doctype);
	bool ok = XML_Parse(p, (const char *)data, (int)size, 1) == XML_STATUS_OK;
	XML_ParserFree(p);
	return ok;
}

/* The same log from the tree.  ns: the namespace in scope ("" for none). */
static void tree_log(const pv_xml *x, const char *scope, pv_buf *log)
{
	if (!x->name) {
		pv_buf_append(log, x->text, x->text_len);
		return;
	}
	const char *ns = x->ns ? x->ns : scope;
	pv_buf_printf(log, "<{%s}%s", ns, x->name);
	for (size_t i = 0; i < x->nattrs; i++) {
		pv_buf_printf(log, " %s=%s", x->attrs[2 * i], x->attrs[2 * i + 1]);
		pv_buf_append(log, "", 1);
	}
	pv_buf_puts(log, ">");
	for (const pv_xml *c = x->first; c; c = c->next)
		tree_log(c, ns, log);
	pv_buf_puts(log, "</>");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 1 << 20)
		return 0;
	ref r = {0};
	pv_buf_init(&r.log);
	bool ref_ok = ref_parse(data, size, &r);

	pv_xml *x = pv_xml_parse((const char *)data, size);
	bool want = ref_ok && !r.doctype && r.max_depth <= MAX_DEPTH;
	if ((x != NULL) != want)
		abort();
	if (!x) {
		pv_buf_fini(&r.log);
		return 0;
	}

	pv_buf tl;
	pv_buf_init(&tl);
	tree_log(x, "", &tl);
	if (tl.len != r.log.len || memcmp(tl.data, r.log.data, tl.len) != 0)
		abort(); /* the tree says something else than the document */

	pv_buf s1, s2, s3;
	pv_buf_init(&s1);
	pv_buf_init(&s2);
	pv_buf_init(&s3);
	pv_xml_serialize(x, NULL, &s1);
	pv_xml *y = pv_xml_parse(s1.data, s1.len);
	if (!y)
		abort(); /* our own output must read back */
	pv_xml_serialize(y, NULL, &s2);
	if (s1.len != s2.len || memcmp(s1.data, s2.data, s1.len) != 0)
		abort();
	pv_buf_reset(&tl);
	tree_log(y, "", &tl);
	if (tl.len != r.log.len || memcmp(tl.data, r.log.data, tl.len) != 0)
		abort(); /* and mean the same */
	pv_xml *d = pv_xml_dup(x);
	pv_xml_serialize(d, NULL, &s3);
	if (s1.len != s3.len || memcmp(s1.data, s3.data, s1.len) != 0)
		abort();

	pv_xml_free(d);
	pv_xml_free(y);
	pv_xml_free(x);
	pv_buf_fini(&s1);
	pv_buf_fini(&s2);
	pv_buf_fini(&s3);
	pv_buf_fini(&tl);
	pv_buf_fini(&r.log);
	return 0;
}
