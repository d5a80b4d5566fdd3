/* test_mod_vcard.c -- unit tests for src/modules/mod_vcard.c (XEP-0054): the owner's
 * empty vCard vs. service-unavailable for others, publish and read back, owner-only
 * set, deletion by an empty vCard, and the vcard.max_size limit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "modules/mod_vcard.c"

#include "fake_core.h"

#define PETER "stpeter@jabber.org"

static const char get_own[] = "<iq type='get' id='v1'><vCard xmlns='vcard-temp'/></iq>";
static const char get_peter[] = "<iq type='get' id='v3' to='" PETER "'><vCard xmlns='vcard-temp'/></iq>";
static const char set_fn[] = "<iq type='set' id='v2'><vCard xmlns='vcard-temp'>"
			     "<FN>Peter Saint-Andre</FN><N><FAMILY>Saint-Andre</FAMILY><MIDDLE/></N>"
			     "</vCard></iq>";

static void test_owner_gets_empty_vcard(void **state)
{
	pv_host *h = fake_host_new("jabber.org", NULL, &pv_mod_vcard);
	pv_session *peter = fake_session(h, PETER "/roundabout", true, NULL);
	assert_string_equal(h->features[0], "vcard-temp");
	pv_stanza *r;
	assert_string_equal(fake_ask(h, peter, get_own, PETER, &r), "result");
	pv_xml *v = pv_xml_child(r->xml, "vCard", NS_VCARD);
	assert_non_null(v);
	assert_null(pv_xml_first_element(v));
	pv_stanza_unref(r);
	fake_host_free(h);
}

static void test_publish_and_read(void **state)
{
	pv_host *h = fake_host_new("jabber.org", NULL, &pv_mod_vcard);
	pv_session *peter = fake_session(h, PETER "/roundabout", true, NULL);
	pv_session *jer = fake_session(h, "jer@jabber.org/home", true, NULL);

	/* Nobody's vCard yet: an error for others (section 3.3). */
	pv_stanza *r;
	assert_string_equal(fake_ask(h, jer, get_peter, NULL, &r), "service-unavailable");
	assert_string_equal(fake_error_type(r), "cancel");
	pv_stanza_unref(r);

	assert_string_equal(fake_ask(h, peter, set_fn, PETER, NULL), "result");
	assert_int_equal(fake.holds_taken, 1);
	assert_int_equal(fake.holds_released, 1);

	/* Anyone may read it, including a remote entity. */
	pv_session *readers[] = {jer, peter, NULL};
	for (size_t i = 0; i < PV_ARRAY_LEN(readers); i++) {
		assert_string_equal(fake_ask(h, readers[i], get_peter, NULL, &r), "result");
		assert_string_equal(pv_xml_attr(r->xml, "from"), PETER);
		pv_xml *v = pv_xml_child(r->xml, "vCard", NS_VCARD);
		assert_non_null(v);
		char *fn = pv_xml_child_text(v, "FN", NULL);
		assert_string_equal(fn, "Peter Saint-Andre");
		pv_free(fn);
		pv_xml *n = pv_xml_child(v, "N", NULL);
		assert_non_null(n);
		assert_non_null(pv_xml_child(n, "MIDDLE", NULL));
		pv_stanza_unref(r);
	}
	fake_host_free(h);
}

static void test_set_others_forbidden(void **state)
{
	pv_host *h = fake_host_new("jabber.org", NULL, &pv_mod_vcard);
	pv_session *jer = fake_session(h, "jer@jabber.org/home", true, NULL);
	pv_stanza *r;
	assert_string_equal(fake_ask(h, jer,
		"<iq type='set' id='x' to='" PETER "'><vCard xmlns='vcard-temp'><FN>Jer</FN></vCard></iq>",
		NULL, &r), "forbidden");
	assert_string_equal(fake_error_type(r), "auth");
	pv_stanza_unref(r);
	assert_string_equal(fake_ask(h, NULL,
		"<iq type='set' id='y' to='" PETER "' from='evil@remote.example/x'>"
		"<vCard xmlns='vcard-temp'><FN>Evil</FN></vCard></iq>", NULL, NULL), "forbidden");
	assert_int_equal(fake_store.nkv, 0);
	fake_host_free(h);
}

static void test_empty_set_deletes(void **state)
{
	pv_host *h = fake_host_new("jabber.org", NULL, &pv_mod_vcard);
	pv_session *peter = fake_session(h, PETER "/roundabout", true, NULL);
	pv_session *jer = fake_session(h, "jer@jabber.org/home", true, NULL);
	assert_string_equal(fake_ask(h, peter, set_fn, PETER, NULL), "result");
	assert_int_equal(fake_store.nkv, 1);
	assert_string_equal(fake_ask(h, peter, "<iq type='set' id='d'><vCard xmlns='vcard-temp'>\n</vCard></iq>",
		PETER, NULL), "result");
	assert_int_equal(fake_store.nkv, 0);
	assert_int_equal(fake.holds_taken, 2);
	assert_string_equal(fake_ask(h, jer, get_peter, NULL, NULL), "service-unavailable");
	fake_host_free(h);
}

static void test_size_limit(void **state)
{
	pv_host *h = fake_host_new("jabber.org", "vcard:\n  max_size: 1k\n", &pv_mod_vcard);
	vcard_state *vs = h->mod_state;
	assert_int_equal(vs->max_size, 1024);
	pv_session *peter = fake_session(h, PETER "/roundabout", true, NULL);

	pv_buf big;
	pv_buf_init(&big);
	pv_buf_puts(&big, "<iq type='set' id='big'><vCard xmlns='vcard-temp'><DESC>");
	for (int i = 0; i < 1100; i++)
		pv_buf_puts(&big, "x");
	pv_buf_puts(&big, "</DESC></vCard></iq>");
	pv_stanza *r;
	assert_string_equal(fake_ask(h, peter, big.data, PETER, &r), "policy-violation");
	assert_string_equal(fake_error_type(r), "modify");
	pv_stanza_unref(r);
	pv_buf_fini(&big);
	assert_int_equal(fake_store.nkv, 0);
	assert_int_equal(fake.holds_taken, 0);

	assert_string_equal(fake_ask(h, peter, set_fn, PETER, NULL), "result");
	fake_host_free(h);
}

static void test_default_and_bad_size(void **state)
{
	pv_host *h = fake_host_new("jabber.org", NULL, &pv_mod_vcard);
	assert_int_equal(((vcard_state *)h->mod_state)->max_size, 64 * 1024);
	fake_host_free(h);
	h = fake_host_new("jabber.org", "vcard:\n  max_size: 0\n", &pv_mod_vcard);
	assert_int_equal(((vcard_state *)h->mod_state)->max_size, 64 * 1024);
	fake_host_free(h);
}

static void test_wrong_element(void **state)
{
	pv_host *h = fake_host_new("jabber.org", NULL, &pv_mod_vcard);
	pv_session *peter = fake_session(h, PETER "/roundabout", true, NULL);
	assert_string_equal(fake_ask(h, peter, "<iq type='get' id='w'><VCARD xmlns='vcard-temp'/></iq>",
		PETER, NULL), "feature-not-implemented");
	fake_host_free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_owner_gets_empty_vcard),
		cmocka_unit_test(test_publish_and_read),
		cmocka_unit_test(test_set_others_forbidden),
		cmocka_unit_test(test_empty_set_deletes),
		cmocka_unit_test(test_size_limit),
		cmocka_unit_test(test_default_and_bad_size),
		cmocka_unit_test(test_wrong_element),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
