/* test_sqlite_phone.c -- unit tests of the phone section of the SQLite store
 * (src/storage/sqlite.c, "phone numbers (issue 6)" in pv_store.h, schema 004_phone.sql),
 * with loop == NULL (writes complete, and call done, before returning).  Covered: account
 * creation with a number and its two conflicts, attach / change / conflict / release,
 * settings, reads by user and by number, the per-number send window, every code result
 * (none, wrong, exhausted, expired, ok and no reuse), and account deletion releasing the
 * number through the phone_gone hand-over. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <unistd.h>

#include "peyvand/pv_store.h"

#define H "a.test"

typedef struct fx {
	char dir[64];
	pv_store *st;
} fx;

static int setup(void **state)
{
	fx *f = calloc(1, sizeof *f);
	snprintf(f->dir, sizeof f->dir, "/tmp/pv-phone-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	f->st = pv_store_open(f->dir, NULL);
	assert_non_null(f->st);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fx *f = *state;
	pv_store_close(f->st);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

static void cred(pv_scram_cred *c)
{
	memset(c, 0, sizeof *c);
	snprintf(c->mech, sizeof c->mech, "SCRAM-SHA-256");
	c->salt_len = 16;
	c->iterations = 4096;
	c->key_len = 32;
}

static void rc_is(void *ud, int rc)
{
	assert_int_equal(rc, *(int *)ud);
}

static void set(pv_store *st, const char *user, const char *e164, int expect)
{
	pv_store_phone_set(st, H, user, e164, 1000, rc_is, &expect);
}

static void test_numbers(void **state)
{
	fx *f = *state;
	pv_scram_cred c;
	cred(&c);
	bool taken = true;
	assert_int_equal(pv_store_user_create_phone(f->st, H, "u1", &c, 1, "+989121110001", 5,
		&taken), 0);
	assert_false(taken);
	/* the number, then the localpart, already taken */
	assert_int_equal(pv_store_user_create_phone(f->st, H, "u2", &c, 1, "+989121110001", 5,
		&taken), PV_EEXIST);
	assert_true(taken);
	assert_int_equal(pv_store_user_exists(f->st, H, "u2"), 0); /* rolled back */
	assert_int_equal(pv_store_user_create_phone(f->st, H, "u1", &c, 1, "+989121110002", 5,
		&taken), PV_EEXIST);
	assert_false(taken);
	/* the same number on another host is another provider's business */
	assert_int_equal(pv_store_user_create_phone(f->st, "b.test", "u1", &c, 1, "+989121110001",
		5, &taken), 0);

	pv_phone_rec r;
	assert_int_equal(pv_store_phone_of_user(f->st, H, "u1", &r), 0);
	assert_string_equal(r.user, "u1");
	assert_string_equal(r.e164, "+989121110001");
	assert_false(r.findable);
	assert_false(r.preferred);
	assert_int_equal(r.updated_ms, 5);
	pv_phone_rec_fini(&r);
	assert_int_equal(pv_store_phone_by_number(f->st, H, "+989121110001", &r), 0);
	assert_string_equal(r.user, "u1");
	pv_phone_rec_fini(&r);
	assert_int_equal(pv_store_phone_by_number(f->st, H, "+989121119999", &r), PV_ENOENT);
	assert_null(r.e164);

	/* attach to an account without a number; conflict; no such account */
	assert_int_equal(pv_store_user_create(f->st, H, "u3", &c, 1), 0);
	set(f->st, "u3", "+989121110003", 0);
	set(f->st, "u3", "+989121110001", PV_EEXIST);
	set(f->st, "ghost", "+989121110009", PV_ENOENT);
	/* settings, then a change keeps them */
	int zero = 0, noent = PV_ENOENT;
	pv_store_phone_set_flags(f->st, H, "u3", true, false, 2000, rc_is, &zero);
	pv_store_phone_set_flags(f->st, H, "ghost", true, true, 2000, rc_is, &noent);
	set(f->st, "u3", "+989121110004", 0);
	assert_int_equal(pv_store_phone_of_user(f->st, H, "u3", &r), 0);
	assert_string_equal(r.e164, "+989121110004");
	assert_true(r.findable);
	assert_false(r.preferred);
	assert_int_equal(r.updated_ms, 1000);
	pv_phone_rec_fini(&r);
	/* the old number is free */
	assert_int_equal(pv_store_phone_by_number(f->st, H, "+989121110003", &r), PV_ENOENT);
	/* release resets the settings with the row */
	pv_store_phone_release(f->st, H, "u3", rc_is, &zero);
	pv_store_phone_release(f->st, H, "u3", rc_is, &noent);
	assert_int_equal(pv_store_phone_of_user(f->st, H, "u3", &r), PV_ENOENT);
	pv_store_phone_set_flags(f->st, H, "u3", true, true, 3000, rc_is, &noent);

	/* deletion hands the number over once */
	char *gone = NULL;
	assert_int_equal(pv_store_user_delete(f->st, H, "u1"), 0);
	assert_int_equal(pv_store_phone_by_number(f->st, H, "+989121110001", &r), PV_ENOENT);
	assert_int_equal(pv_store_phone_gone_take(f->st, H, "u1", &gone), 0);
	assert_string_equal(gone, "+989121110001");
	pv_free(gone);
	assert_int_equal(pv_store_phone_gone_take(f->st, H, "u1", &gone), PV_ENOENT);
	assert_null(gone);
	assert_int_equal(pv_store_user_delete(f->st, H, "u3"), 0); /* had no number */
	assert_int_equal(pv_store_phone_gone_take(f->st, H, "u3", &gone), PV_ENOENT);
	/* bad arguments */
	assert_int_equal(pv_store_phone_of_user(f->st, H, NULL, &r), PV_EINVAL);
	assert_int_equal(pv_store_phone_by_number(f->st, NULL, "+989121110001", &r), PV_EINVAL);
}

static void test_sends(void **state)
{
	fx *f = *state;
	const char *n = "+989121110010";
	for (int i = 0; i < 3; i++)
		assert_int_equal(pv_store_phone_send_count(f->st, H, n, 1000 + i, 3600000, 3), 0);
	assert_int_equal(pv_store_phone_send_count(f->st, H, n, 2000, 3600000, 3), PV_ELIMIT);
	assert_int_equal(pv_store_phone_send_count(f->st, H, "+989121110011", 2000, 3600000, 3), 0);
	/* a new window */
	assert_int_equal(pv_store_phone_send_count(f->st, H, n, 1000 + 3600000, 3600000, 3), 0);
}

static void test_codes(void **state)
{
	fx *f = *state;
	const char *n = "+989121110020";
	unsigned char h1[PV_PHONE_HASH_LEN], h2[PV_PHONE_HASH_LEN];
	memset(h1, 1, sizeof h1);
	memset(h2, 2, sizeof h2);
	pv_code_result res;
	int zero = 0;
	assert_int_equal(pv_store_phone_code_check(f->st, H, n, h1, 100, 2, &res), 0);
	assert_int_equal(res, PV_CODE_NONE);
	pv_store_phone_code_put(f->st, H, n, h1, 10000, rc_is, &zero);
	assert_int_equal(pv_store_phone_code_check(f->st, H, n, h2, 100, 2, &res), 0);
	assert_int_equal(res, PV_CODE_WRONG);
	assert_int_equal(pv_store_phone_code_check(f->st, H, n, h2, 100, 2, &res), 0);
	assert_int_equal(res, PV_CODE_WRONG);
	assert_int_equal(pv_store_phone_code_check(f->st, H, n, h1, 100, 2, &res), 0);
	assert_int_equal(res, PV_CODE_EXHAUSTED);
	/* a new code resets the attempts; ok once, then gone */
	pv_store_phone_code_put(f->st, H, n, h1, 10000, rc_is, &zero);
	assert_int_equal(pv_store_phone_code_check(f->st, H, n, h2, 100, 2, &res), 0);
	assert_int_equal(res, PV_CODE_WRONG);
	assert_int_equal(pv_store_phone_code_check(f->st, H, n, h1, 100, 2, &res), 0);
	assert_int_equal(res, PV_CODE_OK);
	assert_int_equal(pv_store_phone_code_check(f->st, H, n, h1, 100, 2, &res), 0);
	assert_int_equal(res, PV_CODE_NONE);
	/* expiry: reported once, then the row is gone */
	pv_store_phone_code_put(f->st, H, n, h1, 500, rc_is, &zero);
	assert_int_equal(pv_store_phone_code_check(f->st, H, n, h1, 500, 2, &res), 0);
	assert_int_equal(res, PV_CODE_EXPIRED);
	assert_int_equal(pv_store_phone_code_check(f->st, H, n, h1, 500, 2, &res), 0);
	assert_int_equal(res, PV_CODE_NONE);
	/* codes are per host */
	pv_store_phone_code_put(f->st, H, n, h1, 10000, rc_is, &zero);
	assert_int_equal(pv_store_phone_code_check(f->st, "b.test", n, h1, 100, 2, &res), 0);
	assert_int_equal(res, PV_CODE_NONE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_numbers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sends, setup, teardown),
		cmocka_unit_test_setup_teardown(test_codes, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
