/* test_mod_register.c -- unit tests for src/modules/mod_register.c (XEP-0077): the
 * rate-limit spec parser and table, account creation before authentication (offered
 * only when allowed and over TLS; conflicts, malformed names, missing fields, one
 * account per stream, per-IP rate limit), and for an authenticated account the
 * registration info, password change and cancellation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "modules/mod_register.c"

#include "fake_core.h"

#define HOST "shakespeare.lit"
#define ALLOW "register:\n  allow: true\n"

/* ---- pure helpers ---- */

static void test_rl_parse(void **state)
{
	static const struct {
		const char *spec;
		int rc;
		unsigned count;
		uint64_t window_ms;
	} cases[] = {
		{"5/1m", 0, 5, 60000},
		{"10/30s", 0, 10, 30000},
		{"3/m", 0, 3, 60000},
		{"2/90", 0, 2, 90000},
		{"1/500ms", 0, 1, 500},
		{"100/2h", 0, 100, 7200000},
		{"7/1d", 0, 7, 86400000},
		{"4/5min", 0, 4, 300000},
		{"", PV_EINVAL, 0, 0},
		{"0/1m", PV_EINVAL, 0, 0},
		{"-1/1m", PV_EINVAL, 0, 0},
		{"5", PV_EINVAL, 0, 0},
		{"5/0s", PV_EINVAL, 0, 0},
		{"x/1m", PV_EINVAL, 0, 0},
		{"5/1w", PV_EINVAL, 0, 0},
		{"5/1m ", PV_EINVAL, 0, 0},
		{"5/400d", PV_EINVAL, 0, 0},
		{"2000000/1m", PV_EINVAL, 0, 0},
	};
	for (size_t i = 0; i < PV_ARRAY_LEN(cases); i++) {
		unsigned count = 0;
		uint64_t window = 0;
		int rc = rl_parse(cases[i].spec, &count, &window);
		assert_int_equal(rc, cases[i].rc);
		if (rc == 0) {
			assert_int_equal(count, cases[i].count);
			assert_int_equal(window, cases[i].window_ms);
		}
	}
	assert_int_equal(rl_parse(NULL, &(unsigned){0}, &(uint64_t){0}), PV_EINVAL);
}

static void test_rl_window(void **state)
{
	rl_table t = {.limit = 2, .window_ms = 1000};
	assert_true(rl_allow(&t, "192.0.2.1", 0));
	assert_true(rl_allow(&t, "192.0.2.1", 10));
	assert_false(rl_allow(&t, "192.0.2.1", 20));
	assert_false(rl_allow(&t, "192.0.2.1", 999));
	assert_true(rl_allow(&t, "192.0.2.2", 30)); /* other IPs are separate */
	assert_true(rl_allow(&t, "192.0.2.1", 1000)); /* a new window */
	assert_true(rl_allow(&t, "192.0.2.1", 1001));
	assert_false(rl_allow(&t, "192.0.2.1", 1002));
	assert_int_equal(t.n, 2);
	rl_fini(&t);
}

static void test_rl_table_bounded(void **state)
{
	rl_table t = {.limit = 1, .window_ms = 1000000};
	char ip[32];
	for (unsigned i = 0; i < RL_MAX_ENTRIES; i++) {
		snprintf(ip, sizeof(ip), "10.%u.%u.%u", i >> 16, (i >> 8) & 255, i & 255);
		assert_true(rl_allow(&t, ip, 1 + i));
	}
	assert_int_equal(t.n, RL_MAX_ENTRIES);
	/* Full of live windows: the oldest (10.0.0.0) is forgotten for the newcomer. */
	assert_true(rl_allow(&t, "198.51.100.7", 5000));
	assert_int_equal(t.n, RL_MAX_ENTRIES);
	assert_false(rl_allow(&t, "198.51.100.7", 5001));
	assert_true(rl_allow(&t, "10.0.0.0", 5002));
	/* Once windows expire they are dropped wholesale. */
	assert_true(rl_allow(&t, "203.0.113.9", 3000000));
	assert_int_equal(t.n, 1);
	rl_fini(&t);
}

/* ---- before authentication ---- */

static const char form_get[] = "<iq type='get' id='reg1' to='" HOST "'><query xmlns='jabber:iq:register'/></iq>";

static char *reg_set(const char *id, const char *user, const char *pass)
{
	return pv_sprintf("<iq type='set' id='%s'><query xmlns='jabber:iq:register'>"
			  "<username>%s</username><password>%s</password></query></iq>", id, user, pass);
}

/* Outcome of a registration attempt on session s. */
static const char *try_register(pv_host *h, pv_session *s, const char *user, const char *pass)
{
	char *x = reg_set("r", user, pass);
	const char *out = fake_ask(h, s, x, NULL, NULL);
	pv_free(x);
	return out;
}

/* Fires "stream-features" for s; whether the register feature was added. */
static bool offers_feature(pv_host *h, pv_session *s)
{
	pv_xml *feat = pv_xml_new("features", PV_NS_STREAM);
	pv_event ev = {.name = "stream-features", .host = h, .origin = s, .payload = feat};
	assert_int_equal(pv_fire(h, ev.name, &ev), PV_PASS);
	bool on = pv_xml_child(feat, "register", NS_FEATURE_REGISTER) != NULL;
	pv_xml_free(feat);
	return on;
}

static void test_disabled_by_default(void **state)
{
	pv_host *h = fake_host_new(HOST, NULL, &pv_mod_register);
	pv_session *s = fake_session(h, NULL, true, "192.0.2.1");
	/* The disco feature is there (password change works), the stream feature not. */
	assert_string_equal(h->features[0], "jabber:iq:register");
	assert_false(offers_feature(h, s));
	pv_stanza *r;
	assert_string_equal(fake_ask(h, s, form_get, NULL, &r), "service-unavailable");
	assert_string_equal(fake_error_type(r), "cancel");
	pv_stanza_unref(r);
	assert_string_equal(try_register(h, s, "bill", "Calliope"), "service-unavailable");
	assert_int_equal(fake_store.nusers, 0);
	fake_host_free(h);
}

static void test_needs_tls(void **state)
{
	pv_host *h = fake_host_new(HOST, ALLOW, &pv_mod_register);
	pv_session *plain = fake_session(h, NULL, false, "192.0.2.1");
	assert_false(offers_feature(h, plain));
	assert_string_equal(fake_ask(h, plain, form_get, NULL, NULL), "service-unavailable");
	assert_string_equal(try_register(h, plain, "bill", "Calliope"), "service-unavailable");
	fake_host_free(h);

	h = fake_host_new(HOST, "register:\n  allow: true\n  allow_insecure: true\n", &pv_mod_register);
	plain = fake_session(h, NULL, false, "192.0.2.1");
	assert_true(offers_feature(h, plain));
	assert_string_equal(try_register(h, plain, "bill", "Calliope"), "result");
	fake_host_free(h);
}

static void test_form_and_create(void **state)
{
	pv_host *h = fake_host_new(HOST, ALLOW, &pv_mod_register);
	pv_session *s = fake_session(h, NULL, true, "192.0.2.1");
	assert_true(offers_feature(h, s));

	pv_stanza *r;
	assert_string_equal(fake_ask(h, s, form_get, NULL, &r), "result");
	pv_xml *q = pv_xml_child(r->xml, "query", NS_REGISTER);
	assert_non_null(q);
	assert_non_null(pv_xml_child(q, "instructions", NULL));
	assert_non_null(pv_xml_child(q, "username", NULL));
	assert_non_null(pv_xml_child(q, "password", NULL));
	assert_null(pv_xml_child(q, "registered", NULL));
	pv_stanza_unref(r);

	/* The username is normalised (RFC 7622 localpart). */
	assert_string_equal(try_register(h, s, "Bill", "Calliope"), "result");
	assert_string_equal(fake_password_of(HOST, "bill"), "Calliope");
	assert_int_equal(fake_store.users[0].creds[0].iterations, 4096);

	/* One account per stream, and no more offering it there. */
	assert_false(offers_feature(h, s));
	assert_string_equal(try_register(h, s, "bill2", "x"), "not-acceptable");

	/* Taken, whatever the case. */
	pv_session *s2 = fake_session(h, NULL, true, "192.0.2.2");
	char *x = reg_set("r2", "BILL", "m1cro$oft");
	assert_string_equal(fake_ask(h, s2, x, NULL, &r), "conflict");
	assert_string_equal(fake_error_type(r), "cancel");
	/* Errors never echo the request (it holds a password). */
	assert_null(pv_xml_child(r->xml, "query", NULL));
	pv_stanza_unref(r);
	pv_free(x);
	assert_string_equal(fake_password_of(HOST, "bill"), "Calliope");
	assert_int_equal(fake_store.nusers, 1);
	fake_host_free(h);
}

static void test_create_errors(void **state)
{
	pv_host *h = fake_host_new(HOST, ALLOW, &pv_mod_register);
	pv_session *s = fake_session(h, NULL, true, "192.0.2.1");
	static const struct {
		const char *xml, *cond, *etype;
	} cases[] = {
		{"<iq type='set' id='e1'><query xmlns='jabber:iq:register'><username>bill</username></query></iq>",
			"not-acceptable", "modify"},
		{"<iq type='set' id='e2'><query xmlns='jabber:iq:register'><username>bill</username><password/></query></iq>",
			"not-acceptable", "modify"},
		{"<iq type='set' id='e3'><query xmlns='jabber:iq:register'><username></username><password>p</password></query></iq>",
			"not-acceptable", "modify"},
		{"<iq type='set' id='e4'><query xmlns='jabber:iq:register'><username>bill@x</username><password>p</password></query></iq>",
			"jid-malformed", "modify"},
		{"<iq type='set' id='e5'><query xmlns='jabber:iq:register'><username>b ill</username><password>p</password></query></iq>",
			"jid-malformed", "modify"},
		{"<iq type='set' id='e6'><query xmlns='jabber:iq:register'><remove/></query></iq>",
			"unexpected-request", "modify"},
		{"<iq type='set' id='e7'><query xmlns='jabber:iq:register'><username>bill</username><password>a&#x9;b</password></query></iq>",
			"not-acceptable", "modify"},
		{"<iq type='set' id='e8'><register xmlns='jabber:iq:register'/></iq>",
			"feature-not-implemented", "cancel"},
	};
	for (size_t i = 0; i < PV_ARRAY_LEN(cases); i++) {
		pv_stanza *r;
		assert_string_equal(fake_ask(h, s, cases[i].xml, NULL, &r), cases[i].cond);
		assert_string_equal(fake_error_type(r), cases[i].etype);
		pv_stanza_unref(r);
	}
	assert_int_equal(fake_store.nusers, 0);
	fake_store.fail_next = PV_EIO;
	assert_string_equal(try_register(h, s, "bill", "p"), "internal-server-error");
	assert_int_equal(fake_store.nusers, 0);
	fake_host_free(h);
}

static void test_rate_limit(void **state)
{
	pv_host *h = fake_host_new(HOST, ALLOW "  rate_per_ip: 2/1h\n", &pv_mod_register);
	static const char *const names[] = {"a1", "a2", "a3"};
	const char *outcome[3];
	static char buf[3][32];
	for (size_t i = 0; i < 3; i++) {
		pv_session *s = fake_session(h, NULL, true, "192.0.2.1");
		snprintf(buf[i], sizeof(buf[i]), "%s", try_register(h, s, names[i], "pw"));
		outcome[i] = buf[i];
	}
	assert_string_equal(outcome[0], "result");
	assert_string_equal(outcome[1], "result");
	assert_string_equal(outcome[2], "resource-constraint");
	/* A conflict counts too: probing taken names costs the same. */
	pv_session *other = fake_session(h, NULL, true, "192.0.2.9");
	assert_string_equal(try_register(h, other, "a1", "pw"), "conflict");
	pv_session *other2 = fake_session(h, NULL, true, "192.0.2.9");
	assert_string_equal(try_register(h, other2, "b1", "pw"), "result");
	pv_session *other3 = fake_session(h, NULL, true, "192.0.2.9");
	pv_stanza *r;
	char *x = reg_set("r", "b2", "pw");
	assert_string_equal(fake_ask(h, other3, x, NULL, &r), "resource-constraint");
	assert_string_equal(fake_error_type(r), "wait");
	pv_stanza_unref(r);
	pv_free(x);
	assert_int_equal(fake_store.nusers, 3);
	fake_host_free(h);
}

static void test_bad_rate_falls_back(void **state)
{
	pv_host *h = fake_host_new(HOST, ALLOW "  rate_per_ip: lots\n", &pv_mod_register);
	reg_state *rs = h->mod_state;
	assert_int_equal(rs->rl.limit, 5);
	assert_int_equal(rs->rl.window_ms, 60000);
	fake_host_free(h);
}

/* ---- after authentication ---- */

typedef struct fixture {
	pv_host *h;
	pv_session *bill; /* authenticated, TLS */
} fixture;

static int setup_account(void **state)
{
	fixture *f = pv_calloc(1, sizeof(*f));
	f->h = fake_host_new(HOST, NULL, &pv_mod_register); /* creation off: irrelevant here */
	pv_scram_cred c[2];
	pv_scram_make_creds("theglobe", 4096, c);
	assert_int_equal(pv_store_user_create(&fake_store, HOST, "bill", c, 2), 0);
	f->bill = fake_session(f->h, "bill@" HOST "/globe", true, "192.0.2.1");
	*state = f;
	return 0;
}

static int teardown_account(void **state)
{
	fixture *f = *state;
	fake_host_free(f->h);
	pv_free(f);
	return 0;
}

static void test_registered_info(void **state)
{
	fixture *f = *state;
	pv_stanza *r;
	assert_string_equal(fake_ask(f->h, f->bill, form_get, NULL, &r), "result");
	pv_xml *q = pv_xml_child(r->xml, "query", NS_REGISTER);
	assert_non_null(pv_xml_child(q, "registered", NULL));
	char *u = pv_xml_child_text(q, "username", NULL);
	assert_string_equal(u, "bill");
	pv_free(u);
	char *p = pv_xml_child_text(q, "password", NULL);
	assert_string_equal(p, ""); /* never the password itself */
	pv_free(p);
	pv_stanza_unref(r);
	assert_false(offers_feature(f->h, f->bill));
}

static void test_change_password(void **state)
{
	fixture *f = *state;
	assert_string_equal(fake_ask(f->h, f->bill,
		"<iq type='set' id='change1' to='" HOST "'><query xmlns='jabber:iq:register'>"
		"<username>bill</username><password>newpass</password></query></iq>", NULL, NULL),
		"result");
	assert_string_equal(fake_password_of(HOST, "bill"), "newpass");
	/* No `to`, addressed to the bare JID by the core; a JID as username. */
	assert_string_equal(fake_ask(f->h, f->bill,
		"<iq type='set' id='change2'><query xmlns='jabber:iq:register'>"
		"<username>bill@" HOST "</username><password>groundlings</password></query></iq>",
		"bill@" HOST, NULL), "result");
	assert_string_equal(fake_password_of(HOST, "bill"), "groundlings");
	/* Without <username/>. */
	assert_string_equal(fake_ask(f->h, f->bill,
		"<iq type='set' id='change3' to='" HOST "'><query xmlns='jabber:iq:register'>"
		"<password>third</password></query></iq>", NULL, NULL), "result");
	assert_string_equal(fake_password_of(HOST, "bill"), "third");
}

static void test_change_password_errors(void **state)
{
	fixture *f = *state;
	static const struct {
		const char *xml, *cond, *etype;
	} cases[] = {
		/* "MUST NOT change the password to a null value" */
		{"<iq type='set' id='c1' to='" HOST "'><query xmlns='jabber:iq:register'>"
		 "<username>bill</username><password/></query></iq>", "bad-request", "modify"},
		{"<iq type='set' id='c2' to='" HOST "'><query xmlns='jabber:iq:register'>"
		 "<username>bill</username></query></iq>", "bad-request", "modify"},
		{"<iq type='set' id='c3' to='" HOST "'><query xmlns='jabber:iq:register'>"
		 "<username>juliet</username><password>x</password></query></iq>", "forbidden", "auth"},
		{"<iq type='set' id='c4' to='" HOST "'><query xmlns='jabber:iq:register'>"
		 "<username>bill@other.example</username><password>x</password></query></iq>", "forbidden", "auth"},
		{"<iq type='set' id='c5' to='" HOST "'><query xmlns='jabber:iq:register'>"
		 "<remove/><username>bill</username></query></iq>", "bad-request", "modify"},
	};
	for (size_t i = 0; i < PV_ARRAY_LEN(cases); i++) {
		pv_stanza *r;
		assert_string_equal(fake_ask(f->h, f->bill, cases[i].xml, NULL, &r), cases[i].cond);
		assert_string_equal(fake_error_type(r), cases[i].etype);
		pv_stanza_unref(r);
	}
	assert_string_equal(fake_password_of(HOST, "bill"), "theglobe");
	assert_int_equal(fake.fired_user_deleted, 0);

	/* Over an unencrypted stream: not-authorized (section 3.3 table). */
	f->bill->secure = false;
	pv_stanza *r;
	assert_string_equal(fake_ask(f->h, f->bill,
		"<iq type='set' id='c6' to='" HOST "'><query xmlns='jabber:iq:register'>"
		"<password>sniffed</password></query></iq>", NULL, &r), "not-authorized");
	assert_string_equal(fake_error_type(r), "modify");
	pv_stanza_unref(r);
	assert_string_equal(fake_password_of(HOST, "bill"), "theglobe");
}

static void test_cancel_registration(void **state)
{
	fixture *f = *state;
	pv_scram_cred c[2];
	pv_scram_make_creds("x", 4096, c);
	assert_int_equal(pv_store_user_create(&fake_store, HOST, "juliet", c, 2), 0);
	pv_store_kv_put(&fake_store, HOST, "bill", "vcard", "", "<vCard/>", 8, NULL, NULL);

	/* XEP-0077 3.2: no `to`; the core addresses it to the sender's bare JID. */
	assert_string_equal(fake_ask(f->h, f->bill,
		"<iq type='set' id='unreg1'><query xmlns='jabber:iq:register'><remove/></query></iq>",
		"bill@" HOST, NULL), "result");
	assert_null(fake_password_of(HOST, "bill"));
	assert_non_null(fake_password_of(HOST, "juliet"));
	assert_int_equal(fake_store.nkv, 0);
	assert_int_equal(fake.fired_user_deleted, 1);
	assert_string_equal(fake.last_deleted, "bill");
}

static void test_not_ours(void **state)
{
	fixture *f = *state;
	/* Someone else's bare JID, or a remote entity: the core's default answers. */
	pv_session *juliet = fake_session(f->h, "juliet@" HOST "/balcony", true, NULL);
	assert_string_equal(fake_ask(f->h, juliet,
		"<iq type='set' id='n1' to='bill@" HOST "'><query xmlns='jabber:iq:register'><remove/></query></iq>",
		NULL, NULL), "unhandled");
	assert_string_equal(fake_ask(f->h, NULL, form_get, NULL, NULL), "unhandled");
	assert_non_null(fake_password_of(HOST, "bill"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rl_parse),
		cmocka_unit_test(test_rl_window),
		cmocka_unit_test(test_rl_table_bounded),
		cmocka_unit_test(test_disabled_by_default),
		cmocka_unit_test(test_needs_tls),
		cmocka_unit_test(test_form_and_create),
		cmocka_unit_test(test_create_errors),
		cmocka_unit_test(test_rate_limit),
		cmocka_unit_test(test_bad_rate_falls_back),
		cmocka_unit_test_setup_teardown(test_registered_info, setup_account, teardown_account),
		cmocka_unit_test_setup_teardown(test_change_password, setup_account, teardown_account),
		cmocka_unit_test_setup_teardown(test_change_password_errors, setup_account, teardown_account),
		cmocka_unit_test_setup_teardown(test_cancel_registration, setup_account, teardown_account),
		cmocka_unit_test_setup_teardown(test_not_ours, setup_account, teardown_account),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
