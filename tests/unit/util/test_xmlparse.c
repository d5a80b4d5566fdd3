/* test_xmlparse.c -- unit tests for src/util/xmlparse.c (pv_xml_parse): stored
 * stanzas read back mean what they meant when stored -- namespaces (inherit at the
 * root, xmlns='' below a namespaced parent), namespaced attributes in pv_xml.h's
 * "{uri}local" form, xml:-prefixed names -- and what is refused (DOCTYPE, junk,
 * nesting deeper than 256).  Each round-trip case also re-serialises and re-parses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "peyvand/pv_util.h"
#include "peyvand/pv_xml.h"

static char *ser(const pv_xml *x, const char *scope)
{
	pv_buf b;
	pv_buf_init(&b);
	pv_xml_serialize(x, scope, &b);
	return pv_buf_take(&b);
}

typedef struct {
	const char *name;
	const char *in;
	const char *scope; /* serialised into this default namespace */
	const char *want;  /* NULL: must be refused */
} parse_case;

static const parse_case cases[] = {
	{ "stored stanza: root and children inherit", "<message to='a@b'><body>hi</body></message>",
	  "jabber:client", "<message to='a@b'><body>hi</body></message>" },
	{ "payload namespaces kept",
	  "<message><x xmlns='urn:y'><z/></x><body>b</body></message>", "jabber:client",
	  "<message><x xmlns='urn:y'><z/></x><body>b</body></message>" },
	/* Found by tests/fuzz/fuzz_xmlparse.c: <y xmlns=''/> used to come back in urn:y. */
	{ "xmlns='' below a namespaced parent", "<x xmlns='urn:y'><y xmlns=''><z/></y></x>",
	  NULL, "<x xmlns='urn:y'><y xmlns=''><z/></y></x>" },
	/* Found by fuzz_xmlparse.c: p:attr lost its namespace and overwrote attr. */
	{ "namespaced attribute beside a plain one",
	  "<message xmlns:p='urn:x' p:attr='1' attr='2'/>", "jabber:client",
	  "<message xmlns:ns0='urn:x' ns0:attr='1' attr='2'/>" },
	{ "xml:lang", "<message xml:lang='fa'/>", "jabber:client", "<message xml:lang='fa'/>" },
	/* Found by fuzz_xmlparse.c / fuzz_xmlstream.c: written as xmlns='<XML ns>' before. */
	{ "element in the XML namespace", "<x xmlns='urn:y'><xml:foo><bar/></xml:foo></x>", NULL,
	  "<x xmlns='urn:y'><xml:foo><bar/></xml:foo></x>" },
	{ "prefixed elements", "<s:iq xmlns:s='jabber:client' type='get'><q:p xmlns:q='urn:p'/></s:iq>",
	  "jabber:client", "<iq type='get'><p xmlns='urn:p'/></iq>" },
	{ "escapes", "<a b='&quot;&#9;&#13;'>&lt;&amp;&#13;</a>", NULL,
	  "<a b='&quot;&#9;&#13;'>&lt;&amp;&#13;</a>" },
	{ "DOCTYPE refused", "<!DOCTYPE a [<!ENTITY e 'x'>]><a>&e;</a>", NULL, NULL },
	{ "two roots refused", "<a/><b/>", NULL, NULL },
	{ "unclosed refused", "<a><b></a>", NULL, NULL },
	{ "empty refused", "", NULL, NULL },
	{ "undeclared prefix refused", "<p:a/>", NULL, NULL },
};

static void test_parse_table(void **state)
{
	for (size_t i = 0; i < PV_ARRAY_LEN(cases); i++) {
		const parse_case *c = &cases[i];
		pv_xml *x = pv_xml_parse(c->in, strlen(c->in));
		if (!c->want) {
			if (x)
				fail_msg("case '%s': accepted", c->name);
			continue;
		}
		if (!x)
			fail_msg("case '%s': refused", c->name);
		char *got = ser(x, c->scope);
		if (strcmp(got, c->want) != 0)
			fail_msg("case '%s':\n got  %s\n want %s", c->name, got, c->want);
		/* Our own output reads back to the same tree. */
		char *again = ser(x, NULL);
		pv_xml *y = pv_xml_parse(again, strlen(again));
		if (!y)
			fail_msg("case '%s': own output refused: %s", c->name, again);
		char *got2 = ser(y, c->scope);
		if (strcmp(got2, c->want) != 0)
			fail_msg("case '%s' (re-parsed):\n got  %s\n want %s", c->name, got2, c->want);
		pv_free(got);
		pv_free(got2);
		pv_free(again);
		pv_xml_free(y);
		pv_xml_free(x);
	}
}

static void test_namespaces_in_tree(void **state)
{
	const char *in = "<message><x xmlns='urn:y'><y xmlns=''/></x><body/></message>";
	pv_xml *m = pv_xml_parse(in, strlen(in));
	assert_non_null(m);
	assert_null(m->ns); /* the root inherits (jabber:client where it is delivered) */
	pv_xml *x = pv_xml_child(m, "x", "urn:y");
	assert_non_null(x);
	pv_xml *y = pv_xml_first_element(x);
	assert_non_null(y);
	assert_string_equal(y->ns, "");            /* no namespace, not urn:y */
	assert_true(pv_xml_is(y, "y", ""));
	assert_false(pv_xml_is(y, "y", "urn:y"));
	pv_xml *body = pv_xml_child(m, "body", NULL);
	assert_non_null(body);
	assert_null(body->ns); /* still inherits from the root */
	pv_xml_free(m);

	const char *in2 = "<m xmlns:p='urn:x' p:a='1' a='2' xml:lang='en'/>";
	m = pv_xml_parse(in2, strlen(in2));
	assert_non_null(m);
	assert_string_equal(pv_xml_attr(m, "{urn:x}a"), "1");
	assert_string_equal(pv_xml_attr(m, "a"), "2");
	assert_string_equal(pv_xml_attr(m, "xml:lang"), "en");
	pv_xml_free(m);
}

static void test_depth_limit(void **state)
{
	pv_buf b;
	pv_buf_init(&b);
	for (int depth = 256; depth <= 257; depth++) {
		pv_buf_reset(&b);
		for (int i = 0; i < depth; i++)
			pv_buf_puts(&b, "<a>");
		for (int i = 0; i < depth; i++)
			pv_buf_puts(&b, "</a>");
		pv_xml *x = pv_xml_parse(b.data, b.len);
		if (depth == 256)
			assert_non_null(x);
		else
			assert_null(x);
		pv_xml_free(x);
	}
	pv_buf_fini(&b);
	assert_null(pv_xml_parse(NULL, 0));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_table),
		cmocka_unit_test(test_namespaces_in_tree),
		cmocka_unit_test(test_depth_limit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
