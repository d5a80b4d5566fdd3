/* test_mod_private.c -- unit tests for src/modules/mod_private.c (XEP-0049): store and
 * read back by namespace (with escaping intact), the empty element when nothing is
 * stored, several elements/namespaces in one set, holds for the XEP-0198 ack, and the
 * error cases (forbidden, not-acceptable, bad-request). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "modules/mod_private.c"

#include "fake_core.h"

#define HAMLET "hamlet@shakespeare.lit"

typedef struct fixture {
	pv_host *h;
	pv_session *hamlet, *macbeth;
} fixture;

static int setup(void **state)
{
	fixture *f = pv_calloc(1, sizeof(*f));
	f->h = fake_host_new("shakespeare.lit", NULL, &pv_mod_private);
	f->hamlet = fake_session(f->h, HAMLET "/denmark", true, NULL);
	f->macbeth = fake_session(f->h, "macbeth@shakespeare.lit/scotland", true, NULL);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;
	fake_host_free(f->h);
	pv_free(f);
	return 0;
}

/* Hamlet's own request (no `to`: the core fills in his bare JID). */
static const char *ask(fixture *f, const char *xml, pv_stanza **out)
{
	return fake_ask(f->h, f->hamlet, xml, HAMLET, out);
}

/* The result's <query/>, asserting the reply was a result. */
static pv_xml *result_query(const pv_stanza *r)
{
	assert_string_equal(r->type, "result");
	pv_xml *q = pv_xml_child(r->xml, "query", NS_PRIVATE);
	assert_non_null(q);
	return q;
}

static void test_store_and_get(void **state)
{
	fixture *f = *state;
	assert_string_equal(ask(f,
		"<iq type='set' id='1001'><query xmlns='jabber:iq:private'>"
		"<exodus xmlns='exodus:prefs'><defaultnick a='&lt;&amp;&quot;'>Hamlet &amp; &lt;co&gt;</defaultnick></exodus>"
		"</query></iq>", NULL), "result");
	/* The ack waits for the write: one hold, released by the commit. */
	assert_int_equal(fake.holds_taken, 1);
	assert_int_equal(fake.holds_released, 1);

	pv_stanza *r;
	assert_string_equal(ask(f,
		"<iq type='get' id='1002'><query xmlns='jabber:iq:private'><exodus xmlns='exodus:prefs'/></query></iq>",
		&r), "result");
	pv_xml *q = result_query(r);
	pv_xml *ex = pv_xml_first_element(q);
	assert_true(pv_xml_is(ex, "exodus", "exodus:prefs"));
	assert_null(pv_xml_next_element(ex));
	pv_xml *nick = pv_xml_child(ex, "defaultnick", NULL);
	assert_non_null(nick);
	char *t = pv_xml_text(nick);
	assert_string_equal(t, "Hamlet & <co>");
	assert_string_equal(pv_xml_attr(nick, "a"), "<&\"");
	pv_free(t);
	pv_stanza_unref(r);
}

static void test_get_nothing_stored(void **state)
{
	fixture *f = *state;
	pv_stanza *r;
	assert_string_equal(ask(f,
		"<iq type='get' id='g1'><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query></iq>",
		&r), "result");
	pv_xml *st = pv_xml_first_element(result_query(r));
	assert_true(pv_xml_is(st, "storage", "storage:bookmarks"));
	assert_null(pv_xml_first_element(st));
	pv_stanza_unref(r);
}

static void test_replace_and_multiple(void **state)
{
	fixture *f = *state;
	assert_string_equal(ask(f,
		"<iq type='set' id='s1'><query xmlns='jabber:iq:private'>"
		"<storage xmlns='storage:bookmarks'><conference jid='a@conf'/></storage></query></iq>", NULL),
		"result");
	/* Section 2.3: a set may carry several elements of one namespace; a second namespace
	 * in the same set is stored on its own. */
	assert_string_equal(ask(f,
		"<iq type='set' id='s2'><query xmlns='jabber:iq:private'>"
		"<storage xmlns='storage:bookmarks'><conference jid='b@conf'/></storage>"
		"<notes xmlns='storage:rosternotes'/>"
		"<storage xmlns='storage:bookmarks'><conference jid='c@conf'/></storage>"
		"</query></iq>", NULL), "result");
	assert_int_equal(fake.holds_taken, 3);
	assert_int_equal(fake.holds_released, 3);

	pv_stanza *r;
	assert_string_equal(ask(f,
		"<iq type='get' id='g2'><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query></iq>",
		&r), "result");
	pv_xml *q = result_query(r);
	pv_xml *a = pv_xml_first_element(q), *b = pv_xml_next_element(a);
	assert_non_null(b);
	assert_null(pv_xml_next_element(b));
	/* Replaced, not merged: a@conf is gone. */
	assert_string_equal(pv_xml_attr(pv_xml_first_element(a), "jid"), "b@conf");
	assert_string_equal(pv_xml_attr(pv_xml_first_element(b), "jid"), "c@conf");
	pv_stanza_unref(r);

	assert_string_equal(ask(f,
		"<iq type='get' id='g3'><query xmlns='jabber:iq:private'><notes xmlns='storage:rosternotes'/></query></iq>",
		&r), "result");
	assert_true(pv_xml_is(pv_xml_first_element(result_query(r)), "notes", "storage:rosternotes"));
	pv_stanza_unref(r);
}

static void test_errors(void **state)
{
	fixture *f = *state;
	static const struct {
		const char *xml;
		const char *cond, *etype;
	} cases[] = {
		/* no child element (section 2.3: MUST not-acceptable) */
		{"<iq type='get' id='e1'><query xmlns='jabber:iq:private'/></iq>", "not-acceptable", "modify"},
		{"<iq type='set' id='e2'><query xmlns='jabber:iq:private'/></iq>", "not-acceptable", "modify"},
		/* reserved namespaces: unqualified (= jabber:iq:private), jabber:client */
		{"<iq type='set' id='e3'><query xmlns='jabber:iq:private'><foo/></query></iq>", "not-acceptable", "modify"},
		{"<iq type='get' id='e4'><query xmlns='jabber:iq:private'><x xmlns='jabber:client'/></query></iq>",
			"not-acceptable", "modify"},
		{"<iq type='set' id='e5'><query xmlns='jabber:iq:private'><a xmlns='ok:ns'/><x xmlns='jabber:server'/></query></iq>",
			"not-acceptable", "modify"},
		/* a get for two namespaces */
		{"<iq type='get' id='e6'><query xmlns='jabber:iq:private'><a xmlns='x:1'/><b xmlns='x:2'/></query></iq>",
			"bad-request", "modify"},
		/* not our element */
		{"<iq type='get' id='e7'><data xmlns='jabber:iq:private'><a xmlns='x:1'/></data></iq>",
			"feature-not-implemented", "cancel"},
	};
	for (size_t i = 0; i < PV_ARRAY_LEN(cases); i++) {
		pv_stanza *r;
		assert_string_equal(ask(f, cases[i].xml, &r), cases[i].cond);
		assert_string_equal(fake_error_type(r), cases[i].etype);
		pv_stanza_unref(r);
	}
	/* A refused set (e5) stored nothing, not even its acceptable part. */
	assert_int_equal(fake_store.nkv, 0);
	assert_int_equal(fake.holds_taken, 0);
}

static void test_other_user_forbidden(void **state)
{
	fixture *f = *state;
	static const char *const reqs[] = {
		"<iq type='set' id='o1' to='" HAMLET "'><query xmlns='jabber:iq:private'>"
		"<exodus xmlns='exodus:prefs'><defaultnick>Macbeth</defaultnick></exodus></query></iq>",
		"<iq type='get' id='o2' to='" HAMLET "'><query xmlns='jabber:iq:private'>"
		"<exodus xmlns='exodus:prefs'/></query></iq>",
	};
	for (size_t i = 0; i < PV_ARRAY_LEN(reqs); i++) {
		pv_stanza *r;
		assert_string_equal(fake_ask(f->h, f->macbeth, reqs[i], NULL, &r), "forbidden");
		assert_string_equal(fake_error_type(r), "auth");
		pv_stanza_unref(r);
		/* From another server too. */
		assert_string_equal(fake_ask(f->h, NULL, reqs[i], NULL, NULL), "forbidden");
	}
	assert_int_equal(fake_store.nkv, 0);
}

static void test_users_are_separate(void **state)
{
	fixture *f = *state;
	assert_string_equal(ask(f,
		"<iq type='set' id='u1'><query xmlns='jabber:iq:private'><p xmlns='x:p'>h</p></query></iq>", NULL),
		"result");
	pv_stanza *r;
	assert_string_equal(fake_ask(f->h, f->macbeth,
		"<iq type='get' id='u2'><query xmlns='jabber:iq:private'><p xmlns='x:p'/></query></iq>",
		"macbeth@shakespeare.lit", &r), "result");
	pv_xml *p = pv_xml_first_element(result_query(r));
	assert_null(p->first); /* Macbeth sees his own (empty) data, not Hamlet's */
	pv_stanza_unref(r);
}

static void test_ns_acceptable(void **state)
{
	assert_true(ns_acceptable("storage:bookmarks"));
	assert_true(ns_acceptable("http://example.org/prefs"));
	assert_false(ns_acceptable(NULL));
	assert_false(ns_acceptable(""));
	assert_false(ns_acceptable("jabber:client"));
	assert_false(ns_acceptable("jabber:server"));
	assert_false(ns_acceptable("jabber:iq:private"));
	char longns[MAX_NS_LEN + 2];
	memset(longns, 'a', sizeof(longns) - 1);
	longns[sizeof(longns) - 1] = 0;
	assert_false(ns_acceptable(longns));
	longns[MAX_NS_LEN] = 0;
	assert_true(ns_acceptable(longns));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_store_and_get, setup, teardown),
		cmocka_unit_test_setup_teardown(test_get_nothing_stored, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replace_and_multiple, setup, teardown),
		cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_other_user_forbidden, setup, teardown),
		cmocka_unit_test_setup_teardown(test_users_are_separate, setup, teardown),
		cmocka_unit_test(test_ns_acceptable),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
