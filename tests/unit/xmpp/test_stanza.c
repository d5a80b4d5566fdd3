/* test_stanza.c -- unit tests for src/xmpp/stanza.c: address parsing and normalisation,
 * invalid JIDs, stanza kinds, refcounting, copies, the wire cache, the jabber:server ->
 * jabber:client mapping, the shape of error replies (RFC 6120 8.3) and iq results, and
 * the server stamping 'from' on a parsed stanza without another allocation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "peyvand/pv_stanza.h"
#include "peyvand/pv_util.h"

/* Parse one stanza from XML text through the real stream parser, so tests see exactly
 * the trees c2s will hand to pv_stanza_new. */
static void grab(void *ud, pv_xml *el)
{
	pv_xml **slot = ud;
	PV_ASSERT(*slot == NULL);
	*slot = el;
}

static pv_xml *parse(const char *content_ns, const char *xml)
{
	static const pv_xmlstream_cb cb = { NULL, grab, NULL };
	pv_xml *el = NULL;
	pv_xmlstream *xs = pv_xmlstream_new(&cb, &el, NULL);
	char *doc = pv_sprintf("<stream:stream xmlns='%s' "
			       "xmlns:stream='http://etherx.jabber.org/streams'>%s",
		content_ns, xml);
	assert_int_equal(pv_xmlstream_feed(xs, doc, strlen(doc)), PV_XS_OK);
	pv_free(doc);
	pv_xmlstream_free(xs);
	assert_non_null(el);
	return el;
}

static pv_stanza *stanza(const char *xml)
{
	const char *bad = NULL;
	pv_stanza *s = pv_stanza_new(parse(PV_NS_CLIENT, xml), &bad);
	assert_non_null(s);
	return s;
}

static void assert_wire(pv_stanza *s, const char *want)
{
	const pv_buf *w = pv_stanza_wire(s);
	assert_string_equal(w->data, want);
	assert_int_equal(w->len, strlen(want));
}

static void test_addresses(void **state)
{
	pv_stanza *s = stanza("<message to='Juliet@Example.COM/Balcony' from='romeo@example.net/orchard' "
			      "type='chat' id='m1'><body>hi</body></message>");
	assert_int_equal(s->refs, 1);
	assert_int_equal(s->kind, PV_ST_MESSAGE);
	assert_true(s->has_to);
	assert_true(s->has_from);
	assert_string_equal(s->to.local, "juliet");
	assert_string_equal(s->to.domain, "example.com");
	assert_string_equal(s->to.resource, "Balcony"); /* resources keep their case */
	assert_string_equal(s->to.bare, "juliet@example.com");
	assert_string_equal(s->from.full, "romeo@example.net/orchard");
	assert_string_equal(s->type, "chat");
	assert_string_equal(s->id, "m1");
	/* The attribute now carries the normalised spelling. */
	assert_string_equal(pv_xml_attr(s->xml, "to"), "juliet@example.com/Balcony");
	assert_ptr_equal(s->type, pv_xml_attr(s->xml, "type"));
	pv_stanza_unref(s);

	s = stanza("<presence/>");
	assert_int_equal(s->kind, PV_ST_PRESENCE);
	assert_false(s->has_to);
	assert_false(s->has_from);
	assert_null(s->to.domain);
	assert_null(s->from.domain);
	assert_null(s->type);
	assert_null(s->id);
	pv_stanza_unref(s);
}

static void test_invalid_jids(void **state)
{
	static const struct {
		const char *xml;
		const char *bad;
	} cases[] = {
		{ "<message to=''/>", "to" },
		{ "<message to='@example.com'/>", "to" },
		{ "<message to='user@'/>", "to" },
		{ "<message to='user@example.com/'/>", "to" },
		{ "<message to='a b@example.com'/>", "to" },
		{ "<message to='ok@example.com' from='x@exa mple.com'/>", "from" },
		{ "<iq from='juliet@example.com/' type='get' id='1'/>", "from" },
		{ "<presence to='bad@@example.com' from='also@bad@'/>", "to" },
	};
	for (size_t i = 0; i < PV_ARRAY_LEN(cases); i++) {
		pv_xml *x = parse(PV_NS_CLIENT, cases[i].xml);
		char *before = NULL;
		pv_buf b;
		pv_buf_init(&b);
		pv_xml_serialize(x, PV_NS_CLIENT, &b);
		before = pv_buf_take(&b);

		const char *bad = NULL;
		assert_null(pv_stanza_new(x, &bad));
		if (!bad || strcmp(bad, cases[i].bad) != 0)
			fail_msg("%s: bad_attr %s, want %s", cases[i].xml, bad ? bad : "(null)",
				cases[i].bad);
		/* The caller still owns the tree, and it is unchanged. */
		pv_xml_serialize(x, PV_NS_CLIENT, &b);
		assert_string_equal(b.data, before);
		pv_buf_fini(&b);
		pv_free(before);
		pv_xml_free(x);
	}
}

static void test_kinds(void **state)
{
	static const struct {
		const char *ns;
		const char *xml;
		pv_stanza_kind kind;
	} cases[] = {
		{ PV_NS_CLIENT, "<message/>", PV_ST_MESSAGE },
		{ PV_NS_CLIENT, "<presence/>", PV_ST_PRESENCE },
		{ PV_NS_CLIENT, "<iq type='get' id='1'/>", PV_ST_IQ },
		{ PV_NS_SERVER, "<message/>", PV_ST_MESSAGE },
		{ PV_NS_CLIENT, "<r xmlns='urn:xmpp:sm:3'/>", PV_ST_OTHER },
		{ PV_NS_CLIENT, "<foo/>", PV_ST_OTHER },
		{ PV_NS_CLIENT, "<message xmlns='urn:not-a-stanza'/>", PV_ST_OTHER },
		{ PV_NS_CLIENT, "<Message/>", PV_ST_OTHER },
	};
	for (size_t i = 0; i < PV_ARRAY_LEN(cases); i++) {
		pv_stanza *s = pv_stanza_new(parse(cases[i].ns, cases[i].xml), NULL);
		assert_non_null(s);
		if (s->kind != cases[i].kind)
			fail_msg("%s: kind %d, want %d", cases[i].xml, s->kind, cases[i].kind);
		pv_stanza_unref(s);
	}
	/* A built tree without a namespace becomes jabber:client. */
	pv_xml *x = pv_xml_new("iq", NULL);
	pv_stanza *s = pv_stanza_new(x, NULL);
	assert_int_equal(s->kind, PV_ST_IQ);
	assert_string_equal(s->xml->ns, PV_NS_CLIENT);
	pv_stanza_unref(s);
}

static void test_server_namespace_mapped(void **state)
{
	/* From an s2s stream: every jabber:server element becomes jabber:client, so c2s
	 * writes it without xmlns; s2s writes it back with pv_xml_serialize_as. */
	pv_stanza *s = pv_stanza_new(parse(PV_NS_SERVER,
		"<message from='a@x.example' to='b@y.example'><body>hi</body>"
		"<forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:server'><body>in"
		"</body></message></forwarded></message>"), NULL);
	assert_non_null(s);
	assert_string_equal(s->xml->ns, PV_NS_CLIENT);
	assert_wire(s, "<message from='a@x.example' to='b@y.example'><body>hi</body>"
		"<forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client'><body>in"
		"</body></message></forwarded></message>");
	pv_buf b;
	pv_buf_init(&b);
	pv_xml_serialize_as(s->xml, PV_NS_SERVER, PV_NS_CLIENT, PV_NS_SERVER, &b);
	assert_string_equal(b.data, "<message from='a@x.example' to='b@y.example'><body>hi</body>"
		"<forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:server'><body>in"
		"</body></message></forwarded></message>");
	pv_buf_fini(&b);
	pv_stanza_unref(s);
}

static void test_ref_copy_and_set(void **state)
{
	pv_stanza *s = stanza("<message to='bob@example.com' from='alice@example.com/phone' "
			      "id='x1' type='chat'><body>hello</body></message>");
	assert_ptr_equal(pv_stanza_ref(s), s);
	assert_int_equal(s->refs, 2);
	pv_stanza_unref(s);
	assert_int_equal(s->refs, 1);

	const pv_buf *w1 = pv_stanza_wire(s);
	const char *bytes = w1->data;
	assert_wire(s, "<message to='bob@example.com' from='alice@example.com/phone' id='x1' "
		       "type='chat'><body>hello</body></message>");
	/* Cached: the same bytes come back, not a new serialisation. */
	assert_ptr_equal(pv_stanza_wire(s), w1);
	assert_ptr_equal(pv_stanza_wire(s)->data, bytes);

	pv_stanza *c = pv_stanza_copy(s);
	assert_int_equal(c->refs, 1);
	assert_ptr_not_equal(c->xml, s->xml);
	assert_int_equal(c->kind, PV_ST_MESSAGE);
	assert_string_equal(c->to.full, "bob@example.com");
	assert_ptr_not_equal(c->to.full, s->to.full);
	assert_string_equal(c->from.resource, "phone");
	assert_string_equal(c->id, "x1");
	assert_ptr_equal(c->id, pv_xml_attr(c->xml, "id"));
	assert_int_equal(c->wire.len, 0); /* a copy starts without a cache */

	/* Changing the copy touches neither the original nor its cached bytes. */
	pv_stanza_set_to(c, "Bob@Example.com/Laptop");
	pv_stanza_set_from(c, NULL);
	assert_string_equal(c->to.full, "bob@example.com/Laptop");
	assert_false(c->has_from);
	assert_null(c->from.domain);
	assert_null(pv_xml_attr(c->xml, "from"));
	assert_string_equal(c->id, "x1"); /* borrowed pointers survive attribute edits */
	assert_string_equal(c->type, "chat");
	assert_wire(c, "<message to='bob@example.com/Laptop' id='x1' type='chat'><body>hello</body>"
		       "</message>");
	assert_wire(s, "<message to='bob@example.com' from='alice@example.com/phone' id='x1' "
		       "type='chat'><body>hello</body></message>");

	/* set on the cached stanza invalidates the cache; self-aliasing arguments work. */
	pv_stanza_set_from(s, s->from.bare);
	pv_stanza_set_to(s, s->to.full);
	assert_string_equal(s->from.full, "alice@example.com");
	assert_wire(s, "<message to='bob@example.com' from='alice@example.com' id='x1' "
		       "type='chat'><body>hello</body></message>");
	pv_stanza_set_from(c, "carol@example.org");
	assert_true(c->has_from);
	assert_string_equal(pv_xml_attr(c->xml, "from"), "carol@example.org");

	pv_stanza_unref(c);
	pv_stanza_unref(s);
	pv_stanza_unref(NULL);
}

/* ---- replies ------------------------------------------------------------------------ */

typedef struct {
	const char *name;
	const char *in;
	const char *etype, *cond, *text;
	const char *want; /* NULL: no reply allowed */
} err_case;

#define STANZAS "urn:ietf:params:xml:ns:xmpp-stanzas"

static const err_case err_cases[] = {
	{ "message keeps payload", "<message from='romeo@example.net/orchard' "
	  "to='juliet@example.com' id='m1' type='chat' xml:lang='en'><body>hi &amp; bye</body>"
	  "</message>", "cancel", "service-unavailable", NULL,
	  "<message id='m1' to='romeo@example.net/orchard' from='juliet@example.com' type='error' "
	  "xml:lang='en'><body>hi &amp; bye</body><error type='cancel'><service-unavailable "
	  "xmlns='" STANZAS "'/></error></message>" },
	{ "presence with text", "<presence from='a@x.example/r' to='b@y.example' type='subscribe'/>",
	  "auth", "forbidden", "No <thanks>",
	  "<presence to='a@x.example/r' from='b@y.example' type='error'><error type='auth'>"
	  "<forbidden xmlns='" STANZAS "'/><text xmlns='" STANZAS "'>No &lt;thanks&gt;</text>"
	  "</error></presence>" },
	{ "iq get keeps only the request element", "<iq from='a@x.example/r' type='get' id='q1'>"
	  "<query xmlns='jabber:iq:version'/><extra xmlns='urn:x'/></iq>",
	  "cancel", "feature-not-implemented", "",
	  "<iq id='q1' to='a@x.example/r' type='error'><query xmlns='jabber:iq:version'/>"
	  "<error type='cancel'><feature-not-implemented xmlns='" STANZAS "'/></error></iq>" },
	{ "iq set without payload", "<iq to='x.example' type='set' id='s1'/>", "modify",
	  "bad-request", NULL,
	  "<iq id='s1' from='x.example' type='error'><error type='modify'><bad-request xmlns='"
	  STANZAS "'/></error></iq>" },
	{ "iq without type still gets an error", "<iq id='t'/>", "modify", "bad-request", NULL,
	  "<iq id='t' type='error'><error type='modify'><bad-request xmlns='" STANZAS "'/></error>"
	  "</iq>" },
	{ "defaults for type and condition", "<message id='d'/>", NULL, NULL, NULL,
	  "<message id='d' type='error'><error type='cancel'><undefined-condition xmlns='"
	  STANZAS "'/></error></message>" },
	{ "never answer an error", "<message type='error' id='e'><error type='cancel'/></message>",
	  "cancel", "service-unavailable", NULL, NULL },
	{ "never answer an iq error", "<iq type='error' id='e'/>", "cancel", "service-unavailable",
	  NULL, NULL },
	{ "never answer an iq result", "<iq type='result' id='r'/>", "cancel",
	  "service-unavailable", NULL, NULL },
};

static void test_error_replies(void **state)
{
	for (size_t i = 0; i < PV_ARRAY_LEN(err_cases); i++) {
		const err_case *c = &err_cases[i];
		pv_stanza *s = stanza(c->in);
		pv_stanza *e = pv_stanza_error(s, c->etype, c->cond, c->text);
		if (!c->want) {
			if (e)
				fail_msg("%s: got a reply, want none", c->name);
			pv_stanza_unref(s);
			continue;
		}
		if (!e)
			fail_msg("%s: no reply", c->name);
		if (strcmp(pv_stanza_wire(e)->data, c->want) != 0)
			fail_msg("%s:\n got  %s\n want %s", c->name, pv_stanza_wire(e)->data, c->want);
		assert_int_equal(e->refs, 1);
		assert_int_equal(e->kind, s->kind);
		assert_string_equal(e->type, "error");
		assert_int_equal(e->has_to, s->has_from);
		assert_int_equal(e->has_from, s->has_to);
		if (s->has_from)
			assert_true(pv_jid_eq(&e->to, &s->from));
		/* An error reply is itself never answered. */
		assert_null(pv_stanza_error(e, "cancel", "bad-request", NULL));
		/* The original is untouched. */
		assert_string_not_equal(pv_stanza_wire(s)->data, pv_stanza_wire(e)->data);
		pv_stanza_unref(e);
		pv_stanza_unref(s);
	}
}

static void test_iq_result(void **state)
{
	static const struct {
		const char *in;
		const char *want;
	} cases[] = {
		{ "<iq from='a@x.example/r' to='x.example' type='get' id='p1'>"
		  "<ping xmlns='urn:xmpp:ping'/></iq>",
		  "<iq id='p1' to='a@x.example/r' from='x.example' type='result'/>" },
		{ "<iq type='set' id='s'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>",
		  "<iq id='s' type='result'/>" },
		{ "<iq type='result' id='r'/>", NULL },
		{ "<iq type='error' id='e'/>", NULL },
		{ "<iq id='n'/>", NULL },
		{ "<message type='get' id='m'/>", NULL },
	};
	for (size_t i = 0; i < PV_ARRAY_LEN(cases); i++) {
		pv_stanza *s = stanza(cases[i].in);
		pv_stanza *r = pv_stanza_iq_result(s);
		if (!cases[i].want) {
			assert_null(r);
		} else {
			assert_non_null(r);
			assert_int_equal(r->kind, PV_ST_IQ);
			assert_string_equal(r->id, s->id);
			assert_wire(r, cases[i].want);
			pv_stanza_unref(r);
		}
		pv_stanza_unref(s);
	}
}

/* ---- memory (issue 5): the server stamping a parsed stanza ------------------------- */

static bool inside(const pv_xml *x, const void *p)
{
	return (const char *)p >= (const char *)x && (const char *)p < (const char *)x + x->size;
}

static void test_server_adds_from(void **state)
{
	/* What c2s does with every client message: parse, stamp from, serialise. */
	pv_stanza *s = stanza("<message to='u2@localhost' id='x' type='chat'><body>hello</body></message>");
	const char *type = s->type, *id = s->id;
	char **attrs = s->xml->attrs;
	/* From the session's parsed address (a copy: the session's may go first). */
	pv_jid me;
	assert_int_equal(pv_jid_parse_str(&me, "u1@localhost/phone"), 0);
	pv_stanza_set_from_jid(s, &me);
	pv_jid_fini(&me);
	assert_true(s->has_from);
	assert_string_equal(s->from.full, "u1@localhost/phone");
	assert_string_equal(s->from.bare, "u1@localhost");
	assert_string_equal(s->from.resource, "phone");
	/* No allocation for it: the parsed root had a spare pair and room for the value. */
	assert_ptr_equal(s->xml->attrs, attrs);
	assert_true(inside(s->xml, pv_xml_attr(s->xml, "from")));
	assert_ptr_equal(s->type, type);
	assert_ptr_equal(s->id, id);
	assert_wire(s, "<message to='u2@localhost' id='x' type='chat' from='u1@localhost/phone'>"
		       "<body>hello</body></message>");

	/* Restamped with an address longer than the room left, then the recipient
	 * rewritten, then from removed and set again: the wire cache follows each. */
	pv_stanza_set_from(s, "a-rather-long-localpart-for-this-test@a-long-domain.example/"
			      "and-a-long-resource-name");
	pv_stanza_set_to(s, "u3@localhost");
	assert_ptr_equal(s->type, type);
	assert_wire(s, "<message to='u3@localhost' id='x' type='chat' "
		       "from='a-rather-long-localpart-for-this-test@a-long-domain.example/"
		       "and-a-long-resource-name'><body>hello</body></message>");
	pv_stanza_set_from(s, NULL);
	assert_false(s->has_from);
	assert_wire(s, "<message to='u3@localhost' id='x' type='chat'><body>hello</body></message>");
	pv_stanza_set_from(s, "u1@localhost/phone");
	assert_wire(s, "<message to='u3@localhost' id='x' type='chat' from='u1@localhost/phone'>"
		       "<body>hello</body></message>");

	/* A copy (made to be changed) is stamped the same way. */
	pv_stanza *c = pv_stanza_copy(s);
	pv_stanza_set_from(c, "u9@localhost/tablet");
	assert_true(inside(c->xml, pv_xml_attr(c->xml, "from")));
	assert_wire(c, "<message to='u3@localhost' id='x' type='chat' from='u9@localhost/tablet'>"
		       "<body>hello</body></message>");
	pv_stanza_unref(c);
	pv_stanza_unref(s);

	/* Unnormalised addresses are rewritten in place of the parsed value. */
	s = stanza("<iq to='Juliet@Example.COM' type='get' id='q'><ping xmlns='urn:xmpp:ping'/></iq>");
	pv_stanza_set_from(s, "u1@localhost/phone");
	assert_wire(s, "<iq to='juliet@example.com' type='get' id='q' from='u1@localhost/phone'>"
		       "<ping xmlns='urn:xmpp:ping'/></iq>");
	pv_stanza_unref(s);
}

static void test_server_ns_interned(void **state)
{
	/* The jabber:server -> jabber:client swap points at the interned string; elements
	 * in other namespaces keep theirs. */
	pv_stanza *s = pv_stanza_new(parse(PV_NS_SERVER,
		"<presence from='a@x.example' to='b@y.example'><x xmlns='urn:example:custom'>"
		"<status xmlns='jabber:server'>away</status></x></presence>"), NULL);
	assert_non_null(s);
	const char *client = pv_xml_intern(PV_NS_CLIENT, strlen(PV_NS_CLIENT));
	assert_ptr_equal(s->xml->ns, client);
	pv_xml *x = pv_xml_first_element(s->xml);
	assert_string_equal(x->ns, "urn:example:custom");
	assert_ptr_equal(pv_xml_first_element(x)->ns, client);
	assert_wire(s, "<presence from='a@x.example' to='b@y.example'><x xmlns='urn:example:custom'>"
		       "<status xmlns='jabber:client'>away</status></x></presence>");
	pv_stanza_unref(s);

	/* A built tree without a namespace gets jabber:client (interned) too. */
	pv_xml *b = pv_xml_new("message", NULL);
	pv_xml_set_attr(b, "to", "b@y.example");
	s = pv_stanza_new(b, NULL);
	assert_ptr_equal(s->xml->ns, client);
	assert_wire(s, "<message to='b@y.example'/>");
	pv_stanza_unref(s);
}

/* A parsed <message> is a host (pv_xml.h, carving): its pv_stanza record and both
 * addresses are cut from the root's allocation, so freeing the stanza frees them with
 * the tree (ASan and valgrind see a double or a wrong free here otherwise). */
static void test_message_record_carved(void **state)
{
	(void)state;
	pv_stanza *s = stanza("<message to='u2@localhost/desk' from='u1@localhost/phone' "
			      "type='chat' id='m1'><body>hello</body>"
			      "<request xmlns='urn:xmpp:receipts'/></message>");
	assert_true(s->xml->hosting);
	assert_true(pv_xml_holds(s->xml, s));
	assert_true(pv_xml_holds(s->xml, s->to.full) && pv_xml_holds(s->xml, s->to.resource));
	assert_true(pv_xml_holds(s->xml, s->from.full));
	assert_string_equal(s->to.bare, "u2@localhost");
	assert_string_equal(s->from.resource, "phone");

	/* c2s stamps from with the session's address: carved as well, and the one it
	 * replaces is not freed (it was never a heap block). */
	pv_jid me;
	assert_int_equal(pv_jid_parse_str(&me, "u1@localhost/tablet"), 0);
	pv_stanza_set_from_jid(s, &me);
	pv_jid_fini(&me);
	assert_true(pv_xml_holds(s->xml, s->from.full));
	assert_string_equal(s->from.full, "u1@localhost/tablet");
	/* Readdressed by a string: a heap JID again, freed on its own later. */
	pv_stanza_set_to(s, "u3@localhost");
	assert_false(pv_xml_holds(s->xml, s->to.full));
	pv_stanza *r = pv_stanza_ref(s);
	pv_stanza_unref(s);
	assert_wire(r, "<message to='u3@localhost' from='u1@localhost/tablet' type='chat' "
		       "id='m1'><body>hello</body><request xmlns='urn:xmpp:receipts'/></message>");
	/* A copy is all heap: it outlives the original. */
	pv_stanza *c = pv_stanza_copy(r);
	pv_stanza_unref(r);
	assert_false(pv_xml_holds(c->xml, c));
	assert_string_equal(c->from.full, "u1@localhost/tablet");
	pv_stanza_unref(c);

	/* A message whose children took the room: the record and addresses (one with a
	 * resource longer than any crumb of room left) go to the heap and are freed as
	 * such. */
	char res[201];
	memset(res, 'r', 200);
	res[200] = '\0';
	pv_buf b;
	pv_buf_init(&b);
	pv_buf_printf(&b, "<message to='u2@localhost/%s'>", res);
	for (int i = 0; i < 40; i++)
		pv_buf_printf(&b, "<e%d xmlns='urn:example:%d'>t</e%d>", i, i, i);
	pv_buf_puts(&b, "</message>");
	s = stanza(b.data);
	pv_buf_fini(&b);
	assert_false(pv_xml_holds(s->xml, s));
	assert_false(pv_xml_holds(s->xml, s->to.full));
	pv_stanza_set_from_jid(s, &s->to); /* from a JID of the stanza itself */
	assert_false(pv_xml_holds(s->xml, s->from.full));
	assert_string_equal(s->from.resource, res);
	pv_stanza_unref(s);

	/* Presence and iq are not hosts. */
	s = stanza("<presence to='u2@localhost'/>");
	assert_false(pv_xml_holds(s->xml, s) || pv_xml_holds(s->xml, s->to.full));
	pv_stanza_unref(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_addresses),
		cmocka_unit_test(test_invalid_jids),
		cmocka_unit_test(test_kinds),
		cmocka_unit_test(test_server_namespace_mapped),
		cmocka_unit_test(test_ref_copy_and_set),
		cmocka_unit_test(test_error_replies),
		cmocka_unit_test(test_iq_result),
		cmocka_unit_test(test_server_adds_from),
		cmocka_unit_test(test_server_ns_interned),
		cmocka_unit_test(test_message_record_carved),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
