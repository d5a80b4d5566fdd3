/* test_sqlite_registry.c -- unit tests of the exchange registry section of the SQLite
 * store (src/storage/sqlite.c, "exchange registry (issue 6)" in pv_store.h, schema
 * 005_directory.sql), with loop == NULL (writes complete inline).
 * Covered: publish and lookup order, the preferred rule of pv_store_registry_preferred
 * (preferred first, then newest; newest when none is preferred), one entry per account
 * (a new blinded number moves it), stale updates ignored, withdrawal by JID and by
 * (blinded, JID), separation of exchange hosts, survival across reopen, and a
 * provider's blinded index of its findable numbers (schema 006). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "peyvand/pv_store.h"

#define X "exchange.test"
#define B1 "k2mklf23xjo5aqqu7ibbio3fneykdzbulb6oiz5ppmrhtaqxngaa"
#define B2 "t7ql22omf43pxqpq73xskwbwie52yghmm6tojwm6ad5dos5rwoba"

static char dir[64];

static void done_ok(void *ud, int rc)
{
	assert_int_equal(rc, 0);
	(*(int *)ud)++;
}

typedef struct seen {
	char jid[8][64];
	bool pref[8];
	int64_t upd[8];
	int n;
} seen;

static void on_entry(void *ud, const pv_registry_entry *e)
{
	seen *s = ud;
	assert_true(s->n < 8);
	snprintf(s->jid[s->n], sizeof(s->jid[0]), "%s", e->jid);
	s->pref[s->n] = e->preferred;
	s->upd[s->n] = e->updated_ms;
	s->n++;
}

static pv_store *open_store(void)
{
	pv_store *st = pv_store_open(dir, NULL);
	assert_non_null(st);
	return st;
}

static int setup(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/pv-reg-XXXXXX");
	assert_non_null(mkdtemp(dir));
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
	return 0;
}

static void put(pv_store *st, const char *host, const char *b, const char *jid, bool pref, int64_t upd)
{
	int n = 0;
	const char *at = strchr(jid, '@');
	pv_store_registry_put(st, host, b, jid, at + 1, pref, upd, done_ok, &n);
	assert_int_equal(n, 1);
}

static char *preferred(pv_store *st, const char *b)
{
	char *jid = NULL;
	int rc = pv_store_registry_preferred(st, X, b, &jid);
	if (rc == PV_ENOENT) {
		assert_null(jid);
		return NULL;
	}
	assert_int_equal(rc, 0);
	return jid;
}

static void test_publish_lookup_preferred(void **state)
{
	pv_store *st = open_store();
	char *p;
	assert_null(preferred(st, B1));
	put(st, X, B1, "bob@eitaa.test", false, 1000);
	put(st, X, B1, "bob@rubika.test", false, 2000);
	/* none preferred: the newest */
	assert_string_equal(p = preferred(st, B1), "bob@rubika.test");
	pv_free(p);
	/* one preferred, older: it wins */
	put(st, X, B1, "bob@eitaa.test", true, 3000);
	put(st, X, B1, "bob@rubika.test", false, 4000);
	assert_string_equal(p = preferred(st, B1), "bob@eitaa.test");
	pv_free(p);
	/* two preferred: the newer of them */
	put(st, X, B1, "bob@soroush.test", true, 5000);
	assert_string_equal(p = preferred(st, B1), "bob@soroush.test");
	pv_free(p);
	seen s = {0};
	assert_int_equal(pv_store_registry_lookup(st, X, B1, on_entry, &s), 3);
	assert_string_equal(s.jid[0], "bob@soroush.test");
	assert_true(s.pref[0]);
	assert_string_equal(s.jid[1], "bob@eitaa.test");
	assert_string_equal(s.jid[2], "bob@rubika.test");
	assert_false(s.pref[2]);
	assert_int_equal(s.upd[2], 4000);
	/* another exchange host sees nothing of this one */
	seen s2 = {0};
	assert_int_equal(pv_store_registry_lookup(st, "other.test", B1, on_entry, &s2), 0);
	assert_int_equal(pv_store_registry_count(st, X), 3);
	pv_store_close(st);
}

static void test_move_stale_withdraw_persist(void **state)
{
	pv_store *st = open_store();
	char *p;
	put(st, X, B1, "bob@eitaa.test", true, 1000);
	/* a new number for the account moves its entry */
	put(st, X, B2, "bob@eitaa.test", true, 2000);
	assert_null(preferred(st, B1));
	assert_string_equal(p = preferred(st, B2), "bob@eitaa.test");
	pv_free(p);
	/* an older update than the stored one is ignored */
	put(st, X, B2, "bob@eitaa.test", false, 1500);
	seen s = {0};
	assert_int_equal(pv_store_registry_lookup(st, X, B2, on_entry, &s), 1);
	assert_true(s.pref[0]);
	assert_int_equal(s.upd[0], 2000);
	/* ... also when it names the account's previous number */
	put(st, X, B1, "bob@eitaa.test", false, 1800);
	assert_null(preferred(st, B1));
	assert_string_equal(p = preferred(st, B2), "bob@eitaa.test");
	pv_free(p);
	put(st, X, B1, "carol@bale.test", false, 3000);
	pv_store_close(st);
	/* reopened: still there */
	st = open_store();
	assert_string_equal(p = preferred(st, B2), "bob@eitaa.test");
	pv_free(p);
	int n = 0;
	/* withdrawal under another blinded value removes nothing; by JID alone it does */
	pv_store_registry_del(st, X, B1, "bob@eitaa.test", done_ok, &n);
	assert_non_null(p = preferred(st, B2));
	pv_free(p);
	pv_store_registry_del(st, X, NULL, "bob@eitaa.test", done_ok, &n);
	assert_null(preferred(st, B2));
	/* withdrawing what is absent is fine */
	pv_store_registry_del(st, X, NULL, "nobody@eitaa.test", done_ok, &n);
	assert_int_equal(n, 3);
	assert_string_equal(p = preferred(st, B1), "carol@bale.test");
	pv_free(p);
	assert_int_equal(pv_store_registry_count(st, X), 1);
	pv_store_close(st);
}

static void collect_num(void *ud, const char *e164)
{
	seen *s = ud;
	snprintf(s->jid[s->n++], sizeof(s->jid[0]), "%s", e164);
}

/* The blinded index (schema 006): key changes empty it, the repair drops rows whose
 * number is no longer findable and lists the findable numbers without a row, put
 * replaces a number's row, lookups are by blinded value, and all of it survives reopen. */
static void test_blinded_index(void **state)
{
	pv_store *st = open_store();
	pv_scram_cred none[1];
	memset(none, 0, sizeof(none));
	bool taken = false;
	int n = 0;
	assert_int_equal(pv_store_user_create_phone(st, "p.test", "a", none, 0, "+989121111111", 1, &taken), 0);
	assert_int_equal(pv_store_user_create_phone(st, "p.test", "b", none, 0, "+989122222222", 1, &taken), 0);
	pv_store_phone_set_flags(st, "p.test", "a", true, false, 2, done_ok, &n);
	pv_store_phone_set_flags(st, "p.test", "b", true, false, 2, done_ok, &n);
	/* first start: "emptied", both numbers missing */
	assert_int_equal(pv_store_blind_key(st, "p.test", "key-one"), 1);
	seen s = {0};
	assert_int_equal(pv_store_blind_repair(st, "p.test", collect_num, &s), 2);
	assert_string_equal(s.jid[0], "+989121111111");
	assert_string_equal(s.jid[1], "+989122222222");
	pv_store_blind_put(st, "p.test", B1, "+989121111111", done_ok, &n);
	pv_store_blind_put(st, "p.test", B2, "+989122222222", done_ok, &n);
	char *e = NULL;
	assert_int_equal(pv_store_blind_lookup(st, "p.test", B1, &e), 0);
	assert_string_equal(e, "+989121111111");
	pv_free(e);
	assert_int_equal(pv_store_blind_lookup(st, "other.test", B1, &e), PV_ENOENT);
	assert_null(e);
	/* b stops being findable behind the index's back (a crash between the writes) */
	pv_store_phone_set_flags(st, "p.test", "b", false, false, 3, done_ok, &n);
	pv_store_close(st);
	st = open_store();
	assert_int_equal(pv_store_blind_key(st, "p.test", "key-one"), 0); /* same key: kept */
	s.n = 0;
	assert_int_equal(pv_store_blind_repair(st, "p.test", collect_num, &s), 0);
	assert_int_equal(pv_store_blind_lookup(st, "p.test", B2, &e), PV_ENOENT);
	assert_int_equal(pv_store_blind_lookup(st, "p.test", B1, &e), 0);
	pv_free(e);
	/* put replaces the number's row; del removes it */
	pv_store_blind_put(st, "p.test", B2, "+989121111111", done_ok, &n);
	assert_int_equal(pv_store_blind_lookup(st, "p.test", B1, &e), PV_ENOENT);
	assert_int_equal(pv_store_blind_lookup(st, "p.test", B2, &e), 0);
	pv_free(e);
	pv_store_blind_del(st, "p.test", "+989121111111", done_ok, &n);
	assert_int_equal(pv_store_blind_lookup(st, "p.test", B2, &e), PV_ENOENT);
	/* a new key empties the index; the repair lists what to blind again */
	pv_store_blind_put(st, "p.test", B1, "+989121111111", done_ok, &n);
	assert_int_equal(pv_store_blind_key(st, "p.test", "key-two"), 1);
	assert_int_equal(pv_store_blind_lookup(st, "p.test", B1, &e), PV_ENOENT);
	s.n = 0;
	assert_int_equal(pv_store_blind_repair(st, "p.test", collect_num, &s), 1);
	assert_string_equal(s.jid[0], "+989121111111");
	assert_int_equal(n, 8); /* every write reported success */
	pv_store_close(st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_publish_lookup_preferred, setup, teardown),
		cmocka_unit_test_setup_teardown(test_move_stale_withdraw_persist, setup, teardown),
		cmocka_unit_test_setup_teardown(test_blinded_index, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
