/* test_mod_disco.c -- unit tests for src/modules/mod_disco.c (XEP-0030): the host's
 * identity and features (sorted, without duplicates), unknown nodes, empty items, and
 * account info/items answered for the owner only. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "modules/mod_disco.c"

#include "fake_core.h"

/* ---- the pure helper ---- */

static void test_sort_unique(void **state)
{
	static const struct {
		const char *in[6];
		size_t n;
		const char *out[6];
		size_t nout;
	} cases[] = {
		{{NULL}, 0, {NULL}, 0},
		{{"a"}, 1, {"a"}, 1},
		{{"b", "a"}, 2, {"a", "b"}, 2},
		{{"x", "x", "x"}, 3, {"x"}, 1},
		{{"urn:xmpp:ping", "jabber:iq:version", "urn:xmpp:ping", "a", "jabber:iq:version"}, 5,
			{"a", "jabber:iq:version", "urn:xmpp:ping"}, 3},
	};
	for (size_t c = 0; c < PV_ARRAY_LEN(cases); c++) {
		const char *v[6];
		memcpy(v, cases[c].in, sizeof(v));
		size_t n = sort_unique(v, cases[c].n);
		assert_int_equal(n, cases[c].nout);
		for (size_t i = 0; i < n; i++)
			assert_string_equal(v[i], cases[c].out[i]);
	}
}

/* ---- host ---- */

static const char info_req[] = "<iq type='get' id='i1' to='example.org'>"
			       "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>";

/* Collects the var attributes of <feature/> children of q, in order. */
static size_t features_of(const pv_xml *q, const char **out, size_t cap)
{
	size_t n = 0;
	for (pv_xml *c = pv_xml_first_element(q); c; c = pv_xml_next_element(c))
		if (strcmp(c->name, "feature") == 0 && n < cap)
			out[n++] = pv_xml_attr(c, "var");
	return n;
}

static size_t count_children(const pv_xml *q, const char *name)
{
	size_t n = 0;
	for (pv_xml *c = pv_xml_first_element(q); c; c = pv_xml_next_element(c))
		n += strcmp(c->name, name) == 0;
	return n;
}

static void test_host_info(void **state)
{
	pv_host *h = fake_host_new("example.org", NULL, &pv_mod_disco);
	pv_session *s = fake_session(h, "romeo@example.org/orchard", true, NULL);
	/* Features other modules registered, unsorted and one twice. */
	pv_host_add_feature(h, "urn:xmpp:ping");
	pv_host_add_feature(h, "jabber:iq:version");
	pv_host_add_feature(h, "urn:xmpp:ping");

	pv_stanza *r;
	assert_string_equal(fake_ask(h, s, info_req, NULL, &r), "result");
	assert_string_equal(r->id, "i1");
	pv_xml *q = pv_xml_child(r->xml, "query", PV_NS_DISCO_INFO);
	assert_non_null(q);
	assert_null(pv_xml_attr(q, "node"));

	assert_int_equal(count_children(q, "identity"), 1);
	pv_xml *id = pv_xml_child(q, "identity", NULL);
	assert_string_equal(pv_xml_attr(id, "category"), "server");
	assert_string_equal(pv_xml_attr(id, "type"), "im");
	assert_string_equal(pv_xml_attr(id, "name"), "peyvand");

	const char *f[16];
	size_t n = features_of(q, f, 16);
	static const char *const want[] = {
		"http://jabber.org/protocol/disco#info",
		"http://jabber.org/protocol/disco#items",
		"jabber:iq:version",
		"urn:xmpp:ping",
	};
	assert_int_equal(n, PV_ARRAY_LEN(want));
	for (size_t i = 0; i < n; i++)
		assert_string_equal(f[i], want[i]);
	pv_stanza_unref(r);
	fake_host_free(h);
}

static void test_host_identity_not_doubled(void **state)
{
	/* The core (or another module) already named the server: keep that one. */
	pv_host *h = fake_host_new("example.org", NULL, NULL);
	pv_host_add_identity(h, "server", "im", "Example IM");
	h->mod = &pv_mod_disco;
	assert_int_equal(pv_mod_disco.load(h, NULL, &h->mod_state), 0);
	assert_int_equal(h->nidentities, 1);

	pv_session *s = fake_session(h, "romeo@example.org/orchard", true, NULL);
	pv_stanza *r;
	assert_string_equal(fake_ask(h, s, info_req, NULL, &r), "result");
	pv_xml *q = pv_xml_child(r->xml, "query", PV_NS_DISCO_INFO);
	assert_int_equal(count_children(q, "identity"), 1);
	assert_string_equal(pv_xml_attr(pv_xml_child(q, "identity", NULL), "name"), "Example IM");
	pv_stanza_unref(r);
	fake_host_free(h);
}

static void test_identity_without_name(void **state)
{
	pv_host *h = fake_host_new("example.org", NULL, &pv_mod_disco);
	pv_host_add_identity(h, "store", "file", ""); /* how the core keeps a NULL name */
	pv_session *s = fake_session(h, "romeo@example.org/orchard", true, NULL);
	pv_stanza *r;
	assert_string_equal(fake_ask(h, s, info_req, NULL, &r), "result");
	pv_xml *q = pv_xml_child(r->xml, "query", PV_NS_DISCO_INFO);
	assert_int_equal(count_children(q, "identity"), 2);
	pv_xml *id = pv_xml_next_element(pv_xml_first_element(q));
	assert_string_equal(pv_xml_attr(id, "category"), "store");
	assert_null(pv_xml_attr(id, "name"));
	pv_stanza_unref(r);
	fake_host_free(h);
}

static void test_host_unknown_node(void **state)
{
	pv_host *h = fake_host_new("example.org", NULL, &pv_mod_disco);
	pv_session *s = fake_session(h, "romeo@example.org/orchard", true, NULL);
	pv_stanza *r;
	assert_string_equal(fake_ask(h, s,
		"<iq type='get' id='i2' to='example.org'><query "
		"xmlns='http://jabber.org/protocol/disco#info' node='http://jabber.org/protocol/commands'/></iq>",
		NULL, &r), "item-not-found");
	assert_string_equal(fake_error_type(r), "cancel");
	pv_stanza_unref(r);
	assert_string_equal(fake_ask(h, s,
		"<iq type='get' id='i3' to='example.org'><query "
		"xmlns='http://jabber.org/protocol/disco#items' node='music'/></iq>", NULL, NULL),
		"item-not-found");
	fake_host_free(h);
}

static void test_host_items_empty(void **state)
{
	pv_host *h = fake_host_new("example.org", NULL, &pv_mod_disco);
	pv_session *s = fake_session(h, "romeo@example.org/orchard", true, NULL);
	pv_stanza *r;
	assert_string_equal(fake_ask(h, s,
		"<iq type='get' id='it1' to='example.org'><query "
		"xmlns='http://jabber.org/protocol/disco#items'/></iq>", NULL, &r), "result");
	pv_xml *q = pv_xml_child(r->xml, "query", PV_NS_DISCO_ITEMS);
	assert_non_null(q); /* XEP-0030 4.1: an empty <query/>, not an error */
	assert_null(pv_xml_first_element(q));
	pv_stanza_unref(r);
	fake_host_free(h);
}

/* ---- account ---- */

static int add_mam(pv_event *ev, void *ud)
{
	pv_xml_set_attr(pv_xml_add_child(ev->payload, "feature", NULL), "var", "urn:xmpp:mam:2");
	(*(int *)ud)++;
	return PV_PASS;
}

static void test_account_info_owner(void **state)
{
	pv_host *h = fake_host_new("example.org", NULL, &pv_mod_disco);
	pv_session *s = fake_session(h, "juliet@example.org/balcony", true, NULL);
	int calls = 0;
	pv_hook(h, "account-disco-info", 0, add_mam, &calls);

	pv_stanza *r;
	/* No `to`: the core addresses it to the sender's bare JID. */
	assert_string_equal(fake_ask(h, s,
		"<iq type='get' id='a1'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
		"juliet@example.org", &r), "result");
	assert_int_equal(calls, 1);
	assert_string_equal(pv_xml_attr(r->xml, "from"), "juliet@example.org");
	pv_xml *q = pv_xml_child(r->xml, "query", PV_NS_DISCO_INFO);
	pv_xml *id = pv_xml_child(q, "identity", NULL);
	assert_string_equal(pv_xml_attr(id, "category"), "account");
	assert_string_equal(pv_xml_attr(id, "type"), "registered");
	const char *f[8];
	size_t n = features_of(q, f, 8);
	assert_int_equal(n, 3);
	assert_string_equal(f[0], PV_NS_DISCO_INFO);
	assert_string_equal(f[1], PV_NS_DISCO_ITEMS);
	assert_string_equal(f[2], "urn:xmpp:mam:2");
	pv_stanza_unref(r);
	pv_unhook(h, "account-disco-info", add_mam, &calls);
	fake_host_free(h);
}

static void test_account_info_others_refused(void **state)
{
	pv_host *h = fake_host_new("example.org", NULL, &pv_mod_disco);
	pv_session *romeo = fake_session(h, "romeo@example.org/orchard", true, NULL);
	static const char req[] = "<iq type='get' id='a2' to='juliet@example.org'>"
				  "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>";
	pv_stanza *r;
	assert_string_equal(fake_ask(h, romeo, req, NULL, &r), "service-unavailable");
	assert_string_equal(fake_error_type(r), "cancel");
	pv_stanza_unref(r);
	/* A remote entity (no local origin) likewise. */
	assert_string_equal(fake_ask(h, NULL, req, NULL, NULL), "service-unavailable");
	/* Items too. */
	assert_string_equal(fake_ask(h, romeo,
		"<iq type='get' id='a3' to='juliet@example.org'>"
		"<query xmlns='http://jabber.org/protocol/disco#items'/></iq>", NULL, NULL),
		"service-unavailable");
	fake_host_free(h);
}

static void test_account_items_available_resources(void **state)
{
	pv_host *h = fake_host_new("example.org", NULL, &pv_mod_disco);
	pv_session *a = fake_session(h, "juliet@example.org/balcony", true, NULL);
	pv_session *b = fake_session(h, "juliet@example.org/chamber", true, NULL);
	pv_session *c = fake_session(h, "juliet@example.org/hidden", true, NULL);
	fake_session(h, "romeo@example.org/orchard", true, NULL);
	c->available = false;
	(void)b;

	pv_stanza *r;
	assert_string_equal(fake_ask(h, a,
		"<iq type='get' id='a4' to='juliet@example.org'>"
		"<query xmlns='http://jabber.org/protocol/disco#items'/></iq>", NULL, &r), "result");
	pv_xml *q = pv_xml_child(r->xml, "query", PV_NS_DISCO_ITEMS);
	assert_int_equal(count_children(q, "item"), 2);
	bool balcony = false, chamber = false;
	for (pv_xml *i = pv_xml_first_element(q); i; i = pv_xml_next_element(i)) {
		balcony |= strcmp(pv_xml_attr(i, "jid"), "juliet@example.org/balcony") == 0;
		chamber |= strcmp(pv_xml_attr(i, "jid"), "juliet@example.org/chamber") == 0;
	}
	assert_true(balcony && chamber);
	pv_stanza_unref(r);
	fake_host_free(h);
}

static void test_wrong_element(void **state)
{
	pv_host *h = fake_host_new("example.org", NULL, &pv_mod_disco);
	pv_session *s = fake_session(h, "romeo@example.org/orchard", true, NULL);
	assert_string_equal(fake_ask(h, s,
		"<iq type='get' id='w1' to='example.org'>"
		"<info xmlns='http://jabber.org/protocol/disco#info'/></iq>", NULL, NULL),
		"feature-not-implemented");
	fake_host_free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sort_unique),
		cmocka_unit_test(test_host_info),
		cmocka_unit_test(test_host_identity_not_doubled),
		cmocka_unit_test(test_identity_without_name),
		cmocka_unit_test(test_host_unknown_node),
		cmocka_unit_test(test_host_items_empty),
		cmocka_unit_test(test_account_info_owner),
		cmocka_unit_test(test_account_info_others_refused),
		cmocka_unit_test(test_account_items_available_resources),
		cmocka_unit_test(test_wrong_element),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
