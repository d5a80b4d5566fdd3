/* test_mod_version.c -- unit tests for src/modules/mod_version.c (XEP-0092): name and
 * version always, <os/> only when version.show_os is true. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "modules/mod_version.c"

#include "fake_core.h"

/* Text of the named child of the result's <query/>, or NULL (caller frees). */
static char *query_text(const pv_stanza *r, const char *name)
{
	pv_xml *q = pv_xml_child(r->xml, "query", NS_VERSION);
	assert_non_null(q);
	return pv_xml_child_text(q, name, NULL);
}

static const char req[] =
	"<iq type='get' id='v1' to='example.org'><query xmlns='jabber:iq:version'/></iq>";

static void test_version_default_hides_os(void **state)
{
	pv_host *h = fake_host_new("example.org", NULL, &pv_mod_version);
	pv_session *s = fake_session(h, "romeo@example.org/orchard", true, NULL);
	assert_string_equal(h->features[0], "jabber:iq:version");

	pv_stanza *r;
	assert_string_equal(fake_ask(h, s, req, NULL, &r), "result");
	char *name = query_text(r, "name"), *version = query_text(r, "version"), *os = query_text(r, "os");
	assert_string_equal(name, "peyvand");
	assert_string_equal(version, PV_VERSION);
	assert_true(strlen(version) > 0);
	assert_null(os);
	pv_free(name);
	pv_free(version);
	pv_stanza_unref(r);
	fake_host_free(h);
}

static void test_version_show_os(void **state)
{
	pv_host *h = fake_host_new("example.org", "version:\n  show_os: true\n", &pv_mod_version);
	pv_session *s = fake_session(h, "romeo@example.org/orchard", true, NULL);
	pv_stanza *r;
	assert_string_equal(fake_ask(h, s, req, NULL, &r), "result");
	struct utsname u;
	assert_int_equal(uname(&u), 0);
	char *os = query_text(r, "os");
	assert_string_equal(os, u.sysname);
	pv_free(os);
	pv_stanza_unref(r);
	fake_host_free(h);
}

static void test_version_show_os_false(void **state)
{
	pv_host *h = fake_host_new("example.org", "version:\n  show_os: false\n", &pv_mod_version);
	pv_session *s = fake_session(h, "romeo@example.org/orchard", true, NULL);
	pv_stanza *r;
	assert_string_equal(fake_ask(h, s, req, NULL, &r), "result");
	assert_null(query_text(r, "os"));
	pv_stanza_unref(r);
	fake_host_free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_version_default_hides_os),
		cmocka_unit_test(test_version_show_os),
		cmocka_unit_test(test_version_show_os_false),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
