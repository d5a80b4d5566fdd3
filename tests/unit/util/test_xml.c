/* test_xml.c -- unit tests for src/util/xml.c: building trees, attributes, lookup,
 * deep copy, and the serialiser (xmlns only where the namespace changes, xml:lang,
 * namespaced attributes, escaping of text and attribute values), and its memory rules
 * (interned names, one allocation per node) on built, parsed and mixed trees. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
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

static void assert_ser(const pv_xml *x, const char *scope, const char *want)
{
	char *got = ser(x, scope);
	assert_string_equal(got, want);
	pv_free(got);
}

static void test_build_and_lookup(void **state)
{
	pv_xml *m = pv_xml_new("message", "jabber:client");
	assert_string_equal(m->name, "message");
	assert_string_equal(m->ns, "jabber:client");

	pv_xml *body = pv_xml_add_child(m, "body", NULL);
	pv_xml_add_text(body, "hel", 3);
	pv_xml_add_text(body, "lo!", 2); /* only 2 bytes taken */
	pv_xml_add_text(body, "", 0);    /* no empty text nodes */
	/* Adjacent text merges into one node. */
	assert_non_null(body->first);
	assert_ptr_equal(body->first, body->last);
	assert_null(body->first->name);
	assert_int_equal(body->first->text_len, 5);
	assert_string_equal(body->first->text, "hello");

	pv_xml *x = pv_xml_add_child(m, "x", "jabber:x:oob");
	pv_xml_add_child(x, "url", NULL);
	pv_xml_add_text(m, "tail", 4);
	pv_xml *thread = pv_xml_add_child(m, "thread", NULL);

	/* Lookup by name, by name+ns (NULL ns on an element means: inherited). */
	assert_ptr_equal(pv_xml_child(m, "body", NULL), body);
	assert_ptr_equal(pv_xml_child(m, "body", "jabber:client"), body);
	assert_null(pv_xml_child(m, "body", "jabber:x:oob"));
	assert_ptr_equal(pv_xml_child(m, "x", "jabber:x:oob"), x);
	assert_null(pv_xml_child(m, "x", "jabber:client"));
	assert_null(pv_xml_child(m, "nope", NULL));
	assert_true(pv_xml_is(x->first, "url", "jabber:x:oob"));
	assert_false(pv_xml_is(x->first, "url", "jabber:client"));
	assert_true(pv_xml_is(m, "message", NULL));
	assert_false(pv_xml_is(body->first, "body", NULL)); /* a text node is no element */

	/* Element iteration skips text nodes. */
	assert_ptr_equal(pv_xml_first_element(m), body);
	assert_ptr_equal(pv_xml_next_element(body), x);
	assert_ptr_equal(pv_xml_next_element(x), thread);
	assert_null(pv_xml_next_element(thread));
	assert_null(pv_xml_first_element(thread));

	char *t = pv_xml_text(m);
	assert_string_equal(t, "tail");
	pv_free(t);
	t = pv_xml_child_text(m, "body", NULL);
	assert_string_equal(t, "hello");
	pv_free(t);
	t = pv_xml_child_text(m, "thread", NULL);
	assert_string_equal(t, ""); /* present but empty */
	pv_free(t);
	assert_null(pv_xml_child_text(m, "subject", NULL));

	/* Detach and free a middle child; siblings relink. */
	pv_xml_free(x);
	assert_ptr_equal(pv_xml_next_element(body), thread);
	pv_xml_detach(thread);
	assert_null(thread->parent);
	assert_ptr_equal(m->last->name, NULL); /* "tail" text is last now */
	pv_xml_add(m, thread);
	assert_ptr_equal(m->last, thread);
	assert_ptr_equal(thread->parent, m);

	assert_ser(m, "jabber:client", "<message><body>hello</body>tail<thread/></message>");
	pv_xml_free(m);
}

static void test_attrs(void **state)
{
	pv_xml *x = pv_xml_new("iq", NULL);
	assert_null(pv_xml_attr(x, "type"));
	pv_xml_set_attr(x, "type", "get");
	pv_xml_set_attr(x, "id", "a1");
	pv_xml_set_attr(x, "to", "example.com");
	assert_int_equal(x->nattrs, 3);
	assert_string_equal(pv_xml_attr(x, "type"), "get");

	const char *id = pv_xml_attr(x, "id");
	pv_xml_set_attr(x, "type", "set"); /* replace in place */
	assert_int_equal(x->nattrs, 3);
	assert_string_equal(pv_xml_attr(x, "type"), "set");
	pv_xml_set_attr(x, "type", NULL); /* remove */
	assert_int_equal(x->nattrs, 2);
	assert_null(pv_xml_attr(x, "type"));
	pv_xml_set_attr(x, "nonexistent", NULL); /* removing nothing is fine */
	assert_int_equal(x->nattrs, 2);
	/* Other attributes' value strings did not move (callers borrow them). */
	assert_ptr_equal(pv_xml_attr(x, "id"), id);
	assert_string_equal(pv_xml_attr(x, "to"), "example.com");
	pv_xml_set_attr(x, "xml:lang", "en");
	assert_string_equal(pv_xml_attr(x, "xml:lang"), "en");
	assert_ser(x, NULL, "<iq id='a1' to='example.com' xml:lang='en'/>");
	pv_xml_free(x);
}

static void test_dup(void **state)
{
	pv_xml *iq = pv_xml_new("iq", "jabber:client");
	pv_xml_set_attr(iq, "type", "result");
	pv_xml *q = pv_xml_add_child(iq, "query", "jabber:iq:roster");
	pv_xml *item = pv_xml_add_child(q, "item", NULL);
	pv_xml_set_attr(item, "jid", "a@b");
	pv_xml *g = pv_xml_add_child(item, "group", NULL);
	pv_xml_add_text(g, "Friends & Co", 12);

	pv_xml *d = pv_xml_dup(q); /* a subtree: comes back detached */
	assert_null(d->parent);
	assert_null(d->next);
	char *a = ser(q, "jabber:client"), *b = ser(d, "jabber:client");
	assert_string_equal(a, b);
	pv_free(a);
	pv_free(b);

	/* Deep: changing the copy leaves the original alone. */
	pv_xml_set_attr(pv_xml_first_element(d), "jid", "c@d");
	pv_xml_add_text(pv_xml_first_element(pv_xml_first_element(d)), "!", 1);
	assert_string_equal(pv_xml_attr(item, "jid"), "a@b");
	assert_ser(iq, "jabber:client",
		"<iq type='result'><query xmlns='jabber:iq:roster'><item jid='a@b'>"
		"<group>Friends &amp; Co</group></item></query></iq>");
	assert_ser(d, "jabber:client",
		"<query xmlns='jabber:iq:roster'><item jid='c@d'><group>Friends &amp; Co!</group>"
		"</item></query>");
	pv_xml_free(d);

	pv_xml *d2 = pv_xml_dup(iq);
	pv_xml_free(iq);
	assert_ser(d2, "jabber:client",
		"<iq type='result'><query xmlns='jabber:iq:roster'><item jid='a@b'>"
		"<group>Friends &amp; Co</group></item></query></iq>");
	pv_xml_free(d2);
	assert_null(pv_xml_dup(NULL));
}

/* ---- serialiser, table-driven ------------------------------------------------------ */

typedef struct {
	const char *name;
	pv_xml *(*build)(void);
	const char *scope;
	const char *want;
} ser_case;

static pv_xml *b_same_ns(void)
{
	pv_xml *m = pv_xml_new("message", "jabber:client");
	pv_xml_set_attr(m, "to", "juliet@example.com");
	pv_xml_add_text(pv_xml_add_child(m, "body", "jabber:client"), "hi", 2);
	return m;
}

static pv_xml *b_nested_ns(void)
{
	pv_xml *a = pv_xml_new("a", "urn:x");
	pv_xml *b = pv_xml_add_child(a, "b", "urn:y");
	pv_xml_add_child(b, "c", "urn:x"); /* back to the outer namespace: needs xmlns again */
	pv_xml_add_child(b, "d", "urn:y");
	pv_xml_add_child(a, "e", NULL);
	return a;
}

static pv_xml *b_no_ns(void)
{
	pv_xml *m = pv_xml_new("message", "jabber:client");
	pv_xml_add_child(m, "plain", ""); /* explicitly in no namespace */
	return m;
}

static pv_xml *b_escape(void)
{
	pv_xml *m = pv_xml_new("m", NULL);
	pv_xml_set_attr(m, "v", "a&b<c>\"d'e");
	pv_xml_set_attr(m, "ws", "t\tn\nr\r");
	const char *t = "1 < 2 & 3 > 0 \"q\" 'a'\n\r";
	pv_xml_add_text(m, t, strlen(t));
	return m;
}

static pv_xml *b_lang_and_nsattr(void)
{
	pv_xml *m = pv_xml_new("message", "jabber:client");
	pv_xml_set_attr(m, "xml:lang", "fa");
	pv_xml_set_attr(m, "{urn:ext}flag", "1");
	pv_xml_set_attr(m, "{urn:other}flag", "2");
	pv_xml_set_attr(m, "xmlns", "urn:spoof"); /* ns fields rule; never written */
	pv_xml_set_attr(m, "xmlns:p", "urn:spoof");
	return m;
}

static pv_xml *b_utf8(void)
{
	pv_xml *b = pv_xml_new("body", NULL);
	const char *t = "\xe2\x98\xba \xd8\xb3\xd9\x84\xd8\xa7\xd9\x85";
	pv_xml_add_text(b, t, strlen(t));
	return b;
}

/* <xml:foo> is well-formed input; xmlns='<the XML namespace>' would not be. */
static pv_xml *b_xml_ns_element(void)
{
	pv_xml *m = pv_xml_new("message", "jabber:client");
	pv_xml *x = pv_xml_add_child(m, "foo", "http://www.w3.org/XML/1998/namespace");
	pv_xml_add_child(x, "bar", "jabber:client");
	pv_xml_add_child(x, "baz", NULL); /* inherits the XML namespace: prefixed too */
	pv_xml_add_child(x, "qux", "urn:q");
	return m;
}

static const ser_case ser_cases[] = {
	{ "same ns as scope", b_same_ns, "jabber:client",
	  "<message to='juliet@example.com'><body>hi</body></message>" },
	{ "different scope", b_same_ns, "jabber:server",
	  "<message xmlns='jabber:client' to='juliet@example.com'><body>hi</body></message>" },
	{ "no scope", b_same_ns, NULL,
	  "<message xmlns='jabber:client' to='juliet@example.com'><body>hi</body></message>" },
	{ "nested namespaces", b_nested_ns, "urn:x",
	  "<a><b xmlns='urn:y'><c xmlns='urn:x'/><d/></b><e/></a>" },
	{ "no namespace child", b_no_ns, "jabber:client",
	  "<message><plain xmlns=''/></message>" },
	{ "escaping", b_escape, NULL,
	  "<m v='a&amp;b&lt;c&gt;&quot;d&apos;e' ws='t&#9;n&#10;r&#13;'>"
	  "1 &lt; 2 &amp; 3 &gt; 0 \"q\" 'a'\n&#13;</m>" },
	{ "xml:lang and namespaced attributes", b_lang_and_nsattr, "jabber:client",
	  "<message xml:lang='fa' xmlns:ns0='urn:ext' ns0:flag='1' xmlns:ns1='urn:other' "
	  "ns1:flag='2'/>" },
	{ "element in the XML namespace", b_xml_ns_element, "jabber:client",
	  "<message><xml:foo><bar/><xml:baz/><qux xmlns='urn:q'/></xml:foo></message>" },
	{ "utf-8 passes through", b_utf8, NULL,
	  "<body>\xe2\x98\xba \xd8\xb3\xd9\x84\xd8\xa7\xd9\x85</body>" },
};

static void test_serialize_table(void **state)
{
	for (size_t i = 0; i < PV_ARRAY_LEN(ser_cases); i++) {
		const ser_case *c = &ser_cases[i];
		pv_xml *x = c->build();
		char *got = ser(x, c->scope);
		if (strcmp(got, c->want) != 0)
			fail_msg("case '%s':\n got  %s\n want %s", c->name, got, c->want);
		pv_free(got);
		pv_xml_free(x);
	}
}

static void test_serialize_appends(void **state)
{
	pv_buf b;
	pv_buf_init(&b);
	pv_buf_puts(&b, "<x>");
	pv_xml *p = pv_xml_new("presence", "jabber:client");
	pv_xml_serialize(p, "jabber:client", &b);
	pv_xml_serialize(p, "jabber:client", &b);
	pv_xml_serialize(NULL, "jabber:client", &b);
	assert_string_equal(b.data, "<x><presence/><presence/>");
	pv_xml_free(p);
	pv_buf_fini(&b);
}

static void test_serialize_as(void **state)
{
	/* A stanza kept in jabber:client written into an s2s (jabber:server) stream. */
	pv_xml *m = b_same_ns();
	pv_xml_add_child(m, "x", "jabber:x:oob");
	pv_buf b;
	pv_buf_init(&b);
	pv_xml_serialize_as(m, "jabber:server", "jabber:client", "jabber:server", &b);
	assert_string_equal(b.data,
		"<message to='juliet@example.com'><body>hi</body><x xmlns='jabber:x:oob'/></message>");
	pv_xml_free(m);
	pv_buf_fini(&b);
}

static void test_escape(void **state)
{
	static const struct {
		const char *in;
		const char *want;
	} cases[] = {
		{ "", "" },
		{ "plain", "plain" },
		{ "&", "&amp;" },
		{ "<tag attr=\"v\" other='w'>", "&lt;tag attr=&quot;v&quot; other=&apos;w&apos;&gt;" },
		{ "a&&b", "a&amp;&amp;b" },
		{ "\xc3\xa9t\xc3\xa9", "\xc3\xa9t\xc3\xa9" },
	};
	for (size_t i = 0; i < PV_ARRAY_LEN(cases); i++) {
		pv_buf b;
		pv_buf_init(&b);
		pv_buf_puts(&b, "[");
		pv_xml_escape(cases[i].in, strlen(cases[i].in), &b);
		pv_buf_puts(&b, "]");
		char *want = pv_sprintf("[%s]", cases[i].want);
		assert_string_equal(b.data, want);
		pv_free(want);
		pv_buf_fini(&b);
	}
	/* Length-bounded: stops at n, not at a NUL. */
	pv_buf b;
	pv_buf_init(&b);
	pv_xml_escape("a<b<c", 3, &b);
	assert_string_equal(b.data, "a&lt;b");
	pv_buf_fini(&b);
}

/* What each mode should write for one byte (XML 1.0 2.4, 3.3.3), byte by byte: the
 * reference the 16-byte scan of xml.c is held to. */
static void ref_escape(const unsigned char *s, size_t n, char mode, pv_buf *out)
{
	for (size_t i = 0; i < n; i++) {
		const char *rep = NULL;
		switch (s[i]) {
		case '&': rep = "&amp;"; break;
		case '<': rep = "&lt;"; break;
		case '>': rep = "&gt;"; break;
		case '\r': rep = "&#13;"; break;
		case '"': rep = mode != 't' ? "&quot;" : NULL; break;
		case '\'': rep = mode != 't' ? "&apos;" : NULL; break;
		case '\n': rep = mode == 'a' ? "&#10;" : NULL; break;
		case '\t': rep = mode == 'a' ? "&#9;" : NULL; break;
		default: break;
		}
		if (rep)
			pv_buf_puts(out, rep);
		else
			pv_buf_append(out, (const char *)s + i, 1);
	}
}

/* Every byte value at every offset of a 16-byte step and across steps, in text, in an
 * attribute and through pv_xml_escape, among ASCII and non-ASCII filler: the scan must
 * find each byte a mode escapes and let every other byte through. */
static void test_escape_every_byte_everywhere(void **state)
{
	(void)state;
	static const char *const fillers[] = { "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKL",
		"\xd8\xb3\xd9\x84\xd8\xa7\xd9\x85 \xd8\xaf\xd9\x86\xdb\x8c\xd8\xa7 \xd8\xb3\xd9\x84"
		"\xd8\xa7\xd9\x85 \xd8\xaf\xd9\x86\xdb\x8c\xd8\xa7 \xd8\xb3\xd9\x84\xd8\xa7" };
	for (size_t f = 0; f < PV_ARRAY_LEN(fillers); f++) {
		size_t len = strlen(fillers[f]);
		for (unsigned c = 1; c < 256; c++) {
			for (size_t at = 0; at < len; at++) {
				unsigned char in[64];
				memcpy(in, fillers[f], len);
				in[at] = (unsigned char)c;
				if (at + 17 < len)
					in[at + 17] = (unsigned char)c; /* a second one, a step later */
				in[len] = 0;
				pv_buf got, want;
				pv_buf_init(&got);
				pv_buf_init(&want);
				pv_xml_escape((const char *)in, len, &got);
				ref_escape(in, len, 'x', &want);
				assert_string_equal(got.data, want.data);

				pv_xml *x = pv_xml_new("e", "jabber:client");
				pv_xml_set_attr(x, "a", (const char *)in);
				pv_xml_add_text(x, (const char *)in, len);
				pv_buf_reset(&got);
				pv_buf_reset(&want);
				pv_xml_serialize(x, "jabber:client", &got);
				pv_buf_puts(&want, "<e a='");
				ref_escape(in, len, 'a', &want);
				pv_buf_puts(&want, "'>");
				ref_escape(in, len, 't', &want);
				pv_buf_puts(&want, "</e>");
				assert_string_equal(got.data, want.data);
				pv_xml_free(x);
				pv_buf_fini(&got);
				pv_buf_fini(&want);
			}
		}
	}
}

/* ---- memory: interned names, one allocation per node (issue 5) -------------------------
 * Which pointers are interned, inline or heap is checked where it is visible; that every
 * replaced or freed string goes back the right way is what ASan (Debug build) and
 * valgrind --leak-check=full check on these same cases. */

static bool inside(const pv_xml *x, const void *p)
{
	return (const char *)p >= (const char *)x && (const char *)p < (const char *)x + x->size;
}

static void test_intern(void **state)
{
	static const char *common[] = { "", "message", "presence", "iq", "body", "jabber:client",
		"jabber:server", "http://etherx.jabber.org/streams", "urn:xmpp:receipts",
		"urn:xmpp:chat-markers:0", "http://jabber.org/protocol/chatstates", "urn:xmpp:sid:0",
		"urn:xmpp:delay", "urn:xmpp:sm:3", "id", "to", "from", "type", "xml:lang" };
	for (size_t i = 0; i < PV_ARRAY_LEN(common); i++) {
		const char *p = pv_xml_intern(common[i], strlen(common[i]));
		assert_non_null(p);
		assert_string_equal(p, common[i]);
		assert_ptr_not_equal(p, common[i]); /* the pool's copy, not the caller's */
		assert_ptr_equal(pv_xml_intern(common[i], strlen(common[i])), p); /* one copy */
	}
	/* Exact length: prefixes, extensions and bytes that are not NUL-terminated. */
	assert_null(pv_xml_intern("messag", 6));
	assert_null(pv_xml_intern("messages", 8));
	assert_string_equal(pv_xml_intern("message-x", 7), "message");
	assert_null(pv_xml_intern("Message", 7));
	assert_null(pv_xml_intern("urn:example:not-common", 22));
	assert_string_equal(pv_xml_intern("jabber:client\x01message", 13), "jabber:client");
	/* Longer than every entry, and every prefix of it: a lookup compares lengths
	 * before bytes, so it never reads past an entry (or the pool) -- ASan checks. */
	char big[400];
	memset(big, 'x', sizeof(big));
	memcpy(big, "urn:ietf:params:xml:ns:xmpp-stanzas", 35);
	for (size_t n = 0; n <= sizeof(big); n++) {
		const char *p = pv_xml_intern(big, n);
		assert_true(p == NULL || (strlen(p) == n && memcmp(p, big, n) == 0));
	}
	assert_non_null(pv_xml_intern(big, 35));
	assert_non_null(pv_xml_intern(big, 0));
}

static void test_mem_built(void **state)
{
	/* Common names interned, others inline in the node. */
	pv_xml *m = pv_xml_new("message", "jabber:client");
	assert_ptr_equal(m->name, pv_xml_intern("message", 7));
	assert_ptr_equal(m->ns, pv_xml_intern("jabber:client", 13));
	pv_xml *c = pv_xml_add_child(m, "custom-element", "urn:example:custom");
	assert_null(pv_xml_intern(c->name, strlen(c->name)));
	assert_true(inside(c, c->name));
	assert_true(inside(c, c->ns));
	assert_string_equal(c->name, "custom-element");
	assert_string_equal(c->ns, "urn:example:custom");

	/* Attributes: interned and plain names, values replaced until the node's room is
	 * used up and past it (then heap), removed, and more of them than the node was
	 * made with (the attrs array moves to the heap). */
	pv_xml_set_attr(c, "to", "juliet@example.com");
	pv_xml_set_attr(c, "data-custom", "1");
	assert_ptr_equal(c->attrs[0], pv_xml_intern("to", 2));
	assert_true(inside(c, c->attrs[2]));
	const char *first = pv_xml_attr(c, "data-custom");
	char v[64];
	for (int i = 0; i < 40; i++) {
		snprintf(v, sizeof(v), "value number %d of a long attribute", i);
		pv_xml_set_attr(c, "to", v);
		assert_string_equal(pv_xml_attr(c, "to"), v);
		assert_ptr_equal(pv_xml_attr(c, "data-custom"), first); /* others never move */
	}
	assert_false(inside(c, pv_xml_attr(c, "to"))); /* room used up: heap */
	for (int i = 0; i < 12; i++) {
		char n[32];
		snprintf(n, sizeof(n), "extra-%d", i);
		snprintf(v, sizeof(v), "v%d", i);
		pv_xml_set_attr(c, n, v);
	}
	assert_int_equal(c->nattrs, 14);
	assert_false(inside(c, c->attrs));
	assert_ptr_equal(pv_xml_attr(c, "data-custom"), first);
	for (int i = 0; i < 12; i += 2) { /* remove every other one */
		char n[32];
		snprintf(n, sizeof(n), "extra-%d", i);
		pv_xml_set_attr(c, n, NULL);
	}
	pv_xml_set_attr(c, "to", NULL);
	assert_int_equal(c->nattrs, 7);
	assert_ser(c, "jabber:client",
		"<custom-element xmlns='urn:example:custom' data-custom='1' extra-1='v1' "
		"extra-3='v3' extra-5='v5' extra-7='v7' extra-9='v9' extra-11='v11'/>");

	/* Namespaces: interned <-> inline <-> heap <-> inherit. */
	pv_xml_set_ns(c, "jabber:client");
	assert_ptr_equal(c->ns, pv_xml_intern("jabber:client", 13));
	pv_xml_set_ns(c, "urn:example:a-namespace-that-is-not-interned-and-long-enough");
	assert_string_equal(c->ns, "urn:example:a-namespace-that-is-not-interned-and-long-enough");
	pv_xml_set_ns(c, c->ns); /* the same pointer: a no-op, not a use after free */
	pv_xml_set_ns(c, "urn:example:b");
	assert_string_equal(c->ns, "urn:example:b");
	pv_xml_set_ns(c, NULL);
	assert_null(c->ns);
	pv_xml_set_ns(c, "urn:example:custom");

	/* Move the built subtree into another tree, copy, free in every order. */
	pv_xml *other = pv_xml_new("iq", NULL);
	pv_xml_add(other, c); /* moves: detached from m */
	assert_null(m->first);
	pv_xml *d = pv_xml_dup(other);
	pv_xml_free(other);
	assert_ser(d, "jabber:client",
		"<iq><custom-element xmlns='urn:example:custom' data-custom='1' extra-1='v1' "
		"extra-3='v3' extra-5='v5' extra-7='v7' extra-9='v9' extra-11='v11'/></iq>");
	/* The copy has its own strings: interned ones shared, the rest its own. */
	pv_xml *dc = d->first;
	assert_true(inside(dc, dc->name));
	assert_true(inside(dc, pv_xml_attr(dc, "extra-1")));
	pv_xml_set_attr(d, "from", "romeo@example.net/orchard"); /* a copy has room for this */
	assert_true(inside(d, pv_xml_attr(d, "from")));
	pv_xml_free(d);
	pv_xml_free(m);
}

/* Stream-parse one element (through pv_xmlstream, the parser c2s uses). */
static void grab(void *ud, pv_xml *el)
{
	pv_xml **slot = ud;
	*slot = el;
}

static pv_xml *parse_el(const char *xml)
{
	static const pv_xmlstream_cb cb = { NULL, grab, NULL };
	pv_xml *el = NULL;
	pv_xmlstream *xs = pv_xmlstream_new(&cb, &el, NULL);
	char *doc = pv_sprintf("<stream:stream xmlns='jabber:client' "
			       "xmlns:stream='http://etherx.jabber.org/streams'>%s", xml);
	assert_int_equal(pv_xmlstream_feed(xs, doc, strlen(doc)), PV_XS_OK);
	pv_free(doc);
	pv_xmlstream_free(xs);
	assert_non_null(el);
	return el;
}

static void test_mem_mixed(void **state)
{
	pv_xml *p = parse_el("<message to='u2@localhost' id='x' type='chat' xml:lang='en' "
			     "xmlns:e='urn:example:e' e:flag='on'><body>hello</body>"
			     "<e:payload e:n='1' plain='2'><e:inner>text</e:inner></e:payload>"
			     "<active xmlns='http://jabber.org/protocol/chatstates'/></message>");
	/* Parsed: interned names and ns, attribute strings inline, Clark names inline. */
	assert_ptr_equal(p->name, pv_xml_intern("message", 7));
	assert_ptr_equal(p->ns, pv_xml_intern("jabber:client", 13));
	assert_ptr_equal(p->attrs[0], pv_xml_intern("to", 2));
	assert_true(inside(p, p->attrs[1]));
	assert_ptr_equal(p->attrs[6], pv_xml_intern("xml:lang", 8));
	assert_string_equal(p->attrs[8], "{urn:example:e}flag");
	assert_true(inside(p, p->attrs[8]));
	assert_true(inside(p, p->attrs));
	pv_xml *body = pv_xml_child(p, "body", NULL), *payload = pv_xml_child(p, "payload", NULL);
	assert_ptr_equal(body->ns, pv_xml_intern("jabber:client", 13));
	assert_true(inside(body->first, body->first->text));
	assert_true(inside(payload, payload->ns));

	/* Built nodes into the parsed tree, parsed nodes into a built tree. */
	pv_xml *delay = pv_xml_add_child(p, "delay", "urn:xmpp:delay");
	pv_xml_set_attr(delay, "stamp", "2026-01-01T00:00:00Z");
	pv_xml_detach(payload);
	pv_xml *fw = pv_xml_new("forwarded", "urn:xmpp:forward:0");
	pv_xml_add(fw, payload);
	pv_xml_set_attr(payload, "plain", "changed");
	pv_xml_set_attr(payload, "{urn:example:e}n", NULL);
	pv_xml_add_text(pv_xml_child(payload, "inner", NULL), " more", 5);
	pv_xml_add(p, fw);
	/* The server stamps from: parsed roots keep room for it. */
	pv_xml_set_attr(p, "from", "u1@localhost/phone");
	assert_true(inside(p, pv_xml_attr(p, "from")));
	assert_true(inside(p, p->attrs));

	const char *want =
		"<message to='u2@localhost' id='x' type='chat' xml:lang='en' "
		"xmlns:ns0='urn:example:e' ns0:flag='on' from='u1@localhost/phone'>"
		"<body>hello</body>"
		"<active xmlns='http://jabber.org/protocol/chatstates'/>"
		"<delay xmlns='urn:xmpp:delay' stamp='2026-01-01T00:00:00Z'/>"
		"<forwarded xmlns='urn:xmpp:forward:0'>"
		"<payload xmlns='urn:example:e' plain='changed'><inner>text more</inner></payload>"
		"</forwarded></message>";
	assert_ser(p, "jabber:client", want);
	pv_xml *d = pv_xml_dup(p);
	pv_xml_free(p);
	assert_ser(d, "jabber:client", want);
	/* Take a parsed-then-copied subtree out and free the pieces separately. */
	pv_xml *f = pv_xml_child(d, "forwarded", NULL);
	pv_xml_detach(f);
	pv_xml_free(d);
	assert_ser(f, "jabber:client",
		"<forwarded xmlns='urn:xmpp:forward:0'><payload xmlns='urn:example:e' "
		"plain='changed'><inner>text more</inner></payload></forwarded>");
	pv_xml_free(f);
}

/* Carving (xml.c): a parsed <message> holds its small children in its own allocation;
 * what does not fit, presence trees and built trees are allocated per node. */
static void test_mem_carved(void **state)
{
	pv_xml *m = parse_el("<message to='u2@localhost' type='chat'><body>hello</body>"
			     "<request xmlns='urn:xmpp:receipts'/></message>");
	assert_true(m->hosting && !m->carved);
	pv_xml *body = pv_xml_child(m, "body", NULL), *req = pv_xml_child(m, "request", NULL);
	assert_true(body->carved && inside(m, body) && inside(m, body->first));
	assert_true(body->first->carved && inside(body->first, body->first->text));
	assert_true(req->carved && inside(m, req));
	/* The from the server stamps still fits in the root's own kept room. */
	pv_xml_set_attr(m, "from", "u1@localhost/phone");
	assert_true(inside(m, pv_xml_attr(m, "from")));
	/* Carved nodes change, grow and go like any other: a text merge moves to the heap,
	 * a detached carved child is freed on its own, then the root with the rest. */
	pv_xml_add_text(body, " world", 6);
	assert_false(inside(m, body->first->text));
	pv_xml_set_attr(body, "xml:lang", "en");
	pv_xml_detach(req);
	pv_xml_free(req);
	pv_xml_add_child(body, "x", "urn:example:x"); /* built: its own allocation */
	assert_false(inside(m, body->last));
	assert_ser(m, "jabber:client",
		"<message to='u2@localhost' type='chat' from='u1@localhost/phone'>"
		"<body xml:lang='en'>hello world<x xmlns='urn:example:x'/></body></message>");
	pv_xml_free(m);

	/* More than the carving room: the first children are carved, the rest are not. */
	pv_buf b;
	pv_buf_init(&b);
	pv_buf_puts(&b, "<message>");
	for (int i = 0; i < 40; i++)
		pv_buf_printf(&b, "<e%d xmlns='urn:example:%d'>t</e%d>", i, i, i);
	pv_buf_puts(&b, "</message>");
	m = parse_el(b.data);
	pv_buf_fini(&b);
	size_t carved = 0, plain = 0;
	for (pv_xml *c = m->first; c; c = c->next)
		c->carved ? carved++ : plain++;
	assert_true(carved > 0 && plain > 0 && carved + plain == 40);
	pv_xml *d = pv_xml_dup(m); /* a copy owns every node */
	pv_xml_free(m);
	for (pv_xml *c = d->first; c; c = c->next)
		assert_false(c->carved);
	pv_xml_free(d);

	/* Records that belong with a message (its pv_stanza, its addresses) are carved
	 * the same way, until the room past what the root keeps runs out. */
	m = parse_el("<message to='u2@localhost'><body>hi</body></message>");
	void *r1 = pv_xml_carve(m, 24), *r2 = pv_xml_carve(m, 3);
	assert_true(pv_xml_holds(m, r1) && pv_xml_holds(m, r2));
	assert_true(((uintptr_t)r2 & (_Alignof(pv_xml) - 1)) == 0 && (char *)r2 >= (char *)r1 + 24);
	assert_null(pv_xml_carve(m, m->size)); /* more than is left: nothing taken */
	void *heap = pv_malloc(8);
	assert_false(pv_xml_holds(m, heap) || pv_xml_holds(NULL, r1) || pv_xml_holds(m, NULL));
	pv_free(heap);
	pv_xml_set_attr(m, "from", "u1@localhost/phone"); /* the kept room is still there */
	assert_true(inside(m, pv_xml_attr(m, "from")));
	pv_xml_free(m);

	/* Presence is kept by sessions for long: no carving room, no host. */
	pv_xml *p = parse_el("<presence><show>away</show></presence>");
	assert_false(p->hosting);
	assert_null(pv_xml_carve(p, 8));
	assert_false(pv_xml_child(p, "show", NULL)->carved);
	pv_xml_free(p);
}

static void test_mem_text_merge(void **state)
{
	pv_xml *b = pv_xml_new("body", NULL);
	pv_xml_add_text(b, "one", 3);
	pv_xml *t = b->first;
	assert_true(inside(t, t->text)); /* the first run lives in the node */
	pv_xml_add_text(b, " two", 4);  /* moves to the heap */
	assert_false(inside(t, t->text));
	pv_xml_add_text(b, " three", 6); /* grows the heap block */
	assert_ptr_equal(b->first, b->last);
	assert_int_equal(t->text_len, 13);
	assert_string_equal(t->text, "one two three");
	pv_xml *d = pv_xml_dup(b); /* the copy's text is inline again */
	assert_true(inside(d->first, d->first->text));
	pv_xml_add_child(d, "x", NULL);
	pv_xml_add_text(d, "<&>", 3);
	assert_ser(d, NULL, "<body>one two three<x/>&lt;&amp;&gt;</body>");
	pv_xml_free(d);

	/* Parsed text (expat reports "a", "&amp;", "b" separately; the stream parser joins
	 * them before building the node), then merged with built text. */
	pv_xml *p = parse_el("<message><body>a&amp;b</body></message>");
	pv_xml *pb = pv_xml_child(p, "body", NULL);
	assert_ptr_equal(pb->first, pb->last);
	assert_true(inside(pb->first, pb->first->text));
	pv_xml_add_text(pb, "c", 1);
	assert_string_equal(pb->first->text, "a&bc");
	assert_ser(p, "jabber:client", "<message><body>a&amp;bc</body></message>");
	pv_xml_free(p);
	pv_xml_free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_build_and_lookup),
		cmocka_unit_test(test_attrs),
		cmocka_unit_test(test_dup),
		cmocka_unit_test(test_serialize_table),
		cmocka_unit_test(test_serialize_appends),
		cmocka_unit_test(test_serialize_as),
		cmocka_unit_test(test_escape),
		cmocka_unit_test(test_escape_every_byte_everywhere),
		cmocka_unit_test(test_intern),
		cmocka_unit_test(test_mem_built),
		cmocka_unit_test(test_mem_mixed),
		cmocka_unit_test(test_mem_carved),
		cmocka_unit_test(test_mem_text_merge),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
