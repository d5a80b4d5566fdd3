/* test_mod_ping.c -- unit tests for src/modules/mod_ping.c (XEP-0199): the host answers
 * a ping with an empty result, advertises urn:xmpp:ping, and unload removes its hook.
 * Runs the module against the fake core in fake_core.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "modules/mod_ping.c"

#include "fake_core.h"

static bool has_feature(const pv_host *h, const char *var)
{
	for (size_t i = 0; i < h->nfeatures; i++)
		if (strcmp(h->features[i], var) == 0)
			return true;
	return false;
}

static void test_ping_result(void **state)
{
	pv_host *h = fake_host_new("example.org", NULL, &pv_mod_ping);
	pv_session *s = fake_session(h, "juliet@example.org/balcony", true, "192.0.2.1");
	assert_true(has_feature(h, "urn:xmpp:ping"));

	pv_stanza *r;
	assert_string_equal(fake_ask(h, s,
		"<iq type='get' id='c2s1' to='example.org'><ping xmlns='urn:xmpp:ping'/></iq>", NULL, &r),
		"result");
	assert_string_equal(r->id, "c2s1");
	assert_string_equal(pv_xml_attr(r->xml, "to"), "juliet@example.org/balcony");
	assert_string_equal(pv_xml_attr(r->xml, "from"), "example.org");
	assert_null(pv_xml_first_element(r->xml)); /* XEP-0199 4.2: an empty result */
	pv_stanza_unref(r);
	fake_host_free(h);
}

static void test_ping_wrong_element(void **state)
{
	pv_host *h = fake_host_new("example.org", NULL, &pv_mod_ping);
	pv_session *s = fake_session(h, "juliet@example.org/balcony", true, NULL);
	pv_stanza *r;
	assert_string_equal(fake_ask(h, s,
		"<iq type='get' id='p2' to='example.org'><pong xmlns='urn:xmpp:ping'/></iq>", NULL, &r),
		"feature-not-implemented");
	assert_string_equal(fake_error_type(r), "cancel");
	pv_stanza_unref(r);
	fake_host_free(h);
}

static void test_ping_unloaded(void **state)
{
	pv_host *h = fake_host_new("example.org", NULL, NULL);
	void *st;
	assert_int_equal(pv_mod_ping.load(h, NULL, &st), 0);
	assert_int_equal(h->nhooks, 1);
	pv_mod_ping.unload(h, st);
	assert_int_equal(h->nhooks, 0);
	pv_session *s = fake_session(h, "juliet@example.org/balcony", true, NULL);
	assert_string_equal(fake_ask(h, s,
		"<iq type='get' id='p3' to='example.org'><ping xmlns='urn:xmpp:ping'/></iq>", NULL, NULL),
		"unhandled");
	fake_host_free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ping_result),
		cmocka_unit_test(test_ping_wrong_element),
		cmocka_unit_test(test_ping_unloaded),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
