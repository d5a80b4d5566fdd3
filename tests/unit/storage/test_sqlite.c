/* test_sqlite.c -- unit tests of the SQLite store (src/storage/sqlite.c).
 *
 * Every data test runs twice: with a libuv loop (writes asynchronous, done callbacks on
 * the loop thread, which is this test thread) and with loop == NULL (writes synchronous,
 * done inline).  Done callbacks are recorded in fixture-owned "cells" with the rc the
 * test expects; teardown closes the store and checks every cell ran exactly once with
 * that rc.  Further tests: group commit, many writer threads, reopen, migrations, and a
 * crash test (a child is SIGKILLed mid-stream; every write whose done ran must survive). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "peyvand/pv_log.h"
#include "peyvand/pv_store.h"

extern const size_t pv_schema_sqlite_count;

#define MAX_CELLS 8192
#define WAIT_MS 20000

typedef struct fx fx;

/* One expected done callback. */
typedef struct cell {
	fx *f;
	int expect;
	int rc;
	int called;
} cell;

struct fx {
	char dir[64];
	bool use_loop;
	uv_loop_t loop;
	uv_timer_t tick;           /* keeps uv_run(ONCE) blocking briefly: the store's */
	pthread_t loop_thread;     /* async handle is unref'd */
	pv_store *st;
	cell cells[MAX_CELLS];
	size_t ncells;
	int wrong_thread;
	int counted;               /* done callbacks of on_count */
};

/* ---- fixture ---- */

static void rm_dir(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		char p[512];
		snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
		unlink(p);
	}
	closedir(d);
	rmdir(dir);
}

static void make_dir(char *buf, size_t n)
{
	snprintf(buf, n, "/tmp/pv-store-test-XXXXXX");
	assert_non_null(mkdtemp(buf));
}

static void on_tick(uv_timer_t *t)
{
}

static int setup_common(void **state, bool use_loop)
{
	fx *f = calloc(1, sizeof *f);
	assert_non_null(f);
	make_dir(f->dir, sizeof f->dir);
	f->use_loop = use_loop;
	f->loop_thread = pthread_self();
	if (use_loop) {
		assert_int_equal(uv_loop_init(&f->loop), 0);
		assert_int_equal(uv_timer_init(&f->loop, &f->tick), 0);
	}
	f->st = pv_store_open(f->dir, use_loop ? &f->loop : NULL);
	assert_non_null(f->st);
	*state = f;
	return 0;
}

static int setup_loop(void **state)
{
	return setup_common(state, true);
}

static int setup_inline(void **state)
{
	return setup_common(state, false);
}

static int teardown(void **state)
{
	fx *f = *state;
	pv_store_close(f->st); /* runs every pending done callback */
	for (size_t i = 0; i < f->ncells; i++) {
		if (f->cells[i].called != 1 || f->cells[i].rc != f->cells[i].expect)
			fail_msg("done cell %zu: called=%d rc=%d expected rc=%d", i,
				f->cells[i].called, f->cells[i].rc, f->cells[i].expect);
	}
	assert_int_equal(f->wrong_thread, 0);
	if (f->use_loop) {
		uv_close((uv_handle_t *)&f->tick, NULL);
		uv_run(&f->loop, UV_RUN_DEFAULT); /* lets the store's async handle close */
		assert_int_equal(uv_loop_close(&f->loop), 0);
	}
	rm_dir(f->dir);
	free(f);
	return 0;
}

static void check_thread(fx *f)
{
	if (!pthread_equal(pthread_self(), f->loop_thread))
		f->wrong_thread++;
}

static void on_done(void *ud, int rc)
{
	cell *c = ud;
	check_thread(c->f);
	c->called++;
	c->rc = rc;
}

static void on_count(void *ud, int rc)
{
	fx *f = ud;
	check_thread(f);
	if (rc == 0)
		f->counted++;
}

/* A done cell expecting rc. */
static cell *W(fx *f, int expect)
{
	assert_true(f->ncells < MAX_CELLS);
	cell *c = &f->cells[f->ncells++];
	c->f = f;
	c->expect = expect;
	return c;
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Runs the loop until *flag >= want (no-op without a loop: done ran inline). */
static void run_until(fx *f, const int *flag, int want)
{
	if (!f->use_loop) {
		assert_true(*flag >= want);
		return;
	}
	uint64_t deadline = now_ms() + WAIT_MS;
	uv_timer_start(&f->tick, on_tick, 5, 5);
	while (*flag < want) {
		uv_run(&f->loop, UV_RUN_ONCE);
		if (now_ms() > deadline)
			fail_msg("timed out waiting for done callbacks (%d of %d)", *flag, want);
	}
	uv_timer_stop(&f->tick);
}

static int wait_cell(fx *f, cell *c)
{
	run_until(f, &c->called, 1);
	return c->rc;
}

/* ---- accounts ---- */

static pv_scram_cred mkcred(const char *mech, unsigned char fill, size_t klen)
{
	pv_scram_cred c;
	memset(&c, 0, sizeof c);
	snprintf(c.mech, sizeof c.mech, "%s", mech);
	c.salt_len = 16;
	memset(c.salt, fill, c.salt_len);
	c.iterations = 4096 + fill;
	c.key_len = klen;
	memset(c.stored_key, fill + 1, klen);
	memset(c.server_key, fill + 2, klen);
	return c;
}

static void cred_eq(const pv_scram_cred *a, const pv_scram_cred *b)
{
	assert_string_equal(a->mech, b->mech);
	assert_int_equal(a->salt_len, b->salt_len);
	assert_memory_equal(a->salt, b->salt, a->salt_len);
	assert_int_equal(a->iterations, b->iterations);
	assert_int_equal(a->key_len, b->key_len);
	assert_memory_equal(a->stored_key, b->stored_key, a->key_len);
	assert_memory_equal(a->server_key, b->server_key, a->key_len);
}

typedef struct strlist {
	char items[16][32];
	int n;
} strlist;

static void collect_user(void *ud, const char *user)
{
	strlist *l = ud;
	assert_true(l->n < 16);
	snprintf(l->items[l->n++], sizeof l->items[0], "%s", user);
}

static void test_accounts(void **state)
{
	fx *f = *state;
	pv_store *st = f->st;
	pv_scram_cred c[2] = {mkcred("SCRAM-SHA-1", 1, 20), mkcred("SCRAM-SHA-256", 7, 32)};
	pv_scram_cred out;

	assert_int_equal(pv_store_user_exists(st, "a.test", "juliet"), 0);
	assert_int_equal(pv_store_user_create(st, "a.test", "juliet", c, 2), 0);
	assert_int_equal(pv_store_user_create(st, "a.test", "juliet", c, 1), PV_EEXIST);
	assert_int_equal(pv_store_user_exists(st, "a.test", "juliet"), 1);
	assert_int_equal(pv_store_user_exists(st, "b.test", "juliet"), 0);

	for (int i = 0; i < 2; i++) {
		memset(&out, 0xee, sizeof out);
		assert_int_equal(pv_store_user_get_cred(st, "a.test", "juliet", c[i].mech, &out), 0);
		cred_eq(&out, &c[i]);
	}
	assert_int_equal(pv_store_user_get_cred(st, "a.test", "juliet", "SCRAM-SHA-512", &out),
		PV_ENOENT);
	assert_int_equal(pv_store_user_get_cred(st, "a.test", "romeo", "SCRAM-SHA-1", &out),
		PV_ENOENT);

	/* set_creds replaces the whole set. */
	pv_scram_cred n1 = mkcred("SCRAM-SHA-256", 9, 32);
	assert_int_equal(pv_store_user_set_creds(st, "a.test", "juliet", &n1, 1), 0);
	assert_int_equal(pv_store_user_get_cred(st, "a.test", "juliet", "SCRAM-SHA-256", &out), 0);
	cred_eq(&out, &n1);
	assert_int_equal(pv_store_user_get_cred(st, "a.test", "juliet", "SCRAM-SHA-1", &out),
		PV_ENOENT);
	assert_int_equal(pv_store_user_set_creds(st, "a.test", "nobody", &n1, 1), PV_ENOENT);

	/* Bad input is refused, and a failing create leaves nothing behind. */
	pv_scram_cred bad = mkcred("SCRAM-SHA-1", 1, 20);
	bad.salt_len = 33;
	assert_int_equal(pv_store_user_create(st, "a.test", "bad", &bad, 1), PV_EINVAL);
	pv_scram_cred dup[2] = {mkcred("SCRAM-SHA-1", 1, 20), mkcred("SCRAM-SHA-1", 2, 20)};
	assert_int_equal(pv_store_user_create(st, "a.test", "dup", dup, 2), PV_EINVAL);
	assert_int_equal(pv_store_user_exists(st, "a.test", "dup"), 0);

	/* Listing is per host and sorted; no credentials is allowed. */
	assert_int_equal(pv_store_user_create(st, "a.test", "alice", NULL, 0), 0);
	assert_int_equal(pv_store_user_create(st, "a.test", "zed", c, 1), 0);
	assert_int_equal(pv_store_user_create(st, "b.test", "bob", c, 1), 0);
	strlist l = {0};
	assert_int_equal(pv_store_user_list(st, "a.test", collect_user, &l), 3);
	assert_int_equal(l.n, 3);
	assert_string_equal(l.items[0], "alice");
	assert_string_equal(l.items[1], "juliet");
	assert_string_equal(l.items[2], "zed");
	assert_int_equal(pv_store_user_list(st, "c.test", collect_user, &l), 0);

	assert_int_equal(pv_store_user_delete(st, "a.test", "juliet"), 0);
	assert_int_equal(pv_store_user_delete(st, "a.test", "juliet"), PV_ENOENT);
	assert_int_equal(pv_store_user_exists(st, "a.test", "juliet"), 0);
	assert_int_equal(pv_store_user_get_cred(st, "a.test", "juliet", "SCRAM-SHA-256", &out),
		PV_ENOENT);
	assert_int_equal(pv_store_user_exists(st, "b.test", "bob"), 1);
}

/* ---- roster ---- */

static void test_roster(void **state)
{
	fx *f = *state;
	pv_store *st = f->st;
	char *g1[] = {"Friends", "Work \x1f; 'quoted' \"x\""};
	char *g2[] = {"Zeta", "Alpha", "Mid"};
	pv_roster_item in[] = {
		{.jid = "romeo@b.test", .name = "Romeo", .sub = PV_SUB_BOTH, .in_roster = true,
			.groups = g1, .ngroups = 2},
		{.jid = "benvolio@b.test", .sub = PV_SUB_TO, .ask = true, .in_roster = true,
			.groups = g2, .ngroups = 3},
		{.jid = "tybalt@c.test", .sub = PV_SUB_NONE, .approved = true, .in_roster = false,
			.pending_in = "<presence type='subscribe'/>"},
	};
	for (size_t i = 0; i < PV_ARRAY_LEN(in); i++)
		pv_store_roster_put(st, "a.test", "juliet", &in[i], 10 + i, on_done, W(f, 0));

	pv_roster_item *items;
	size_t n;
	uint64_t ver;
	assert_int_equal(pv_store_roster_get(st, "a.test", "juliet", &items, &n, &ver), 0);
	assert_int_equal(n, 3);
	assert_int_equal(ver, 12);
	/* Sorted by jid: benvolio, romeo, tybalt. */
	const int order[] = {1, 0, 2};
	for (size_t i = 0; i < n; i++) {
		const pv_roster_item *a = &items[i], *e = &in[order[i]];
		assert_string_equal(a->jid, e->jid);
		if (e->name)
			assert_string_equal(a->name, e->name);
		else
			assert_null(a->name);
		assert_int_equal(a->sub, e->sub);
		assert_int_equal(a->ask, e->ask);
		assert_int_equal(a->approved, e->approved);
		assert_int_equal(a->in_roster, e->in_roster);
		if (e->pending_in)
			assert_string_equal(a->pending_in, e->pending_in);
		else
			assert_null(a->pending_in);
		assert_int_equal(a->ngroups, e->ngroups);
		for (size_t j = 0; j < e->ngroups; j++)
			assert_string_equal(a->groups[j], e->groups[j]); /* client order kept */
	}
	pv_roster_items_free(items, n);

	/* Replacing an item replaces its groups; deleting bumps the version. */
	pv_roster_item upd = {.jid = "romeo@b.test", .sub = PV_SUB_FROM, .in_roster = true,
		.groups = g2 + 2, .ngroups = 1};
	pv_store_roster_put(st, "a.test", "juliet", &upd, 20, on_done, W(f, 0));
	pv_store_roster_del(st, "a.test", "juliet", "benvolio@b.test", 21, on_done, W(f, 0));
	pv_store_roster_del(st, "a.test", "juliet", "nobody@b.test", 22, on_done, W(f, 0));
	assert_int_equal(pv_store_roster_get(st, "a.test", "juliet", &items, &n, &ver), 0);
	assert_int_equal(n, 2);
	assert_int_equal(ver, 22);
	assert_string_equal(items[0].jid, "romeo@b.test");
	assert_null(items[0].name);
	assert_int_equal(items[0].sub, PV_SUB_FROM);
	assert_int_equal(items[0].ngroups, 1);
	assert_string_equal(items[0].groups[0], "Mid");
	assert_string_equal(items[1].jid, "tybalt@c.test");
	assert_int_equal(items[1].ngroups, 0);
	pv_roster_items_free(items, n);

	/* Another user's roster is empty, version 0. */
	assert_int_equal(pv_store_roster_get(st, "a.test", "romeo", &items, &n, &ver), 0);
	assert_int_equal(n, 0);
	assert_int_equal(ver, 0);
	pv_roster_items_free(items, n);
}

/* ---- offline ---- */

typedef struct msgs {
	int64_t id[16], stamp[16];
	char xml[16][64];
	size_t len[16];
	int n;
} msgs;

static void collect_msg(void *ud, int64_t id, int64_t stamp, const char *xml, size_t len)
{
	msgs *m = ud;
	assert_true(m->n < 16 && len < 64);
	m->id[m->n] = id;
	m->stamp[m->n] = stamp;
	memcpy(m->xml[m->n], xml, len);
	m->xml[m->n][len] = '\0';
	m->len[m->n] = len;
	m->n++;
}

static void test_offline(void **state)
{
	fx *f = *state;
	pv_store *st = f->st;
	static const struct {
		const char *xml;
		size_t len;
		const char *stored;
	} cases[] = {
		{"<message id='1'/>", 17, "<message id='1'/>"},
		{"<message id='2'/>TRAILING", 17, "<message id='2'/>"}, /* length is the bound */
		{"<message id='3'><body>x</body></message>", 40, "<message id='3'><body>x</body></message>"},
	};
	time_t t0 = time(NULL);
	for (size_t i = 0; i < PV_ARRAY_LEN(cases); i++)
		pv_store_offline_push(st, "a.test", "juliet", cases[i].xml, cases[i].len, on_done,
			W(f, 0));
	pv_store_offline_push(st, "a.test", "romeo", "<message/>", 10, on_done, W(f, 0));

	msgs m = {0};
	assert_int_equal(pv_store_offline_list(st, "a.test", "juliet", collect_msg, &m), 3);
	assert_int_equal(pv_store_offline_count(st, "a.test", "juliet"), 3);
	for (int i = 0; i < 3; i++) {
		assert_string_equal(m.xml[i], cases[i].stored);
		assert_int_equal(m.len[i], strlen(cases[i].stored));
		assert_true(m.stamp[i] >= t0 && m.stamp[i] <= time(NULL));
		if (i)
			assert_true(m.id[i] > m.id[i - 1]);
	}

	pv_store_offline_delete(st, "a.test", "juliet", m.id[1], on_done, W(f, 0));
	msgs m2 = {0};
	assert_int_equal(pv_store_offline_list(st, "a.test", "juliet", collect_msg, &m2), 1);
	assert_int_equal(m2.id[0], m.id[2]);
	assert_string_equal(m2.xml[0], cases[2].stored);
	assert_int_equal(pv_store_offline_count(st, "a.test", "romeo"), 1);

	/* A later message gets a larger id than any deleted one. */
	pv_store_offline_delete(st, "a.test", "juliet", INT64_MAX, on_done, W(f, 0));
	pv_store_offline_push(st, "a.test", "juliet", "<m/>", 4, on_done, W(f, 0));
	msgs m3 = {0};
	assert_int_equal(pv_store_offline_list(st, "a.test", "juliet", collect_msg, &m3), 1);
	assert_true(m3.id[0] > m.id[2]);
	assert_int_equal(pv_store_offline_count(st, "b.test", "juliet"), 0);
}

/* ---- kv ---- */

static void test_kv(void **state)
{
	fx *f = *state;
	pv_store *st = f->st;
	static const struct {
		const char *kind, *key, *val;
		size_t len;
	} puts_[] = {
		{"private", "storage:bookmarks", "<storage xmlns='storage:bookmarks'/>", 36},
		{"vcard", "", "<vCard xmlns='vcard-temp'/>", 27},
		{"private", "bin", "a\0b\0c", 5},   /* binary-safe */
		{"private", "empty", "", 0},
		{"private", "storage:bookmarks", "<new/>", 6}, /* overwrite */
	};
	for (size_t i = 0; i < PV_ARRAY_LEN(puts_); i++)
		pv_store_kv_put(st, "a.test", "juliet", puts_[i].kind, puts_[i].key, puts_[i].val,
			puts_[i].len, on_done, W(f, 0));

	static const struct {
		const char *kind, *key, *val;
		size_t len;
		int rc;
	} gets_[] = {
		{"private", "storage:bookmarks", "<new/>", 6, 0},
		{"vcard", "", "<vCard xmlns='vcard-temp'/>", 27, 0},
		{"private", "bin", "a\0b\0c", 5, 0},
		{"private", "empty", "", 0, 0},
		{"vcard", "storage:bookmarks", NULL, 0, PV_ENOENT}, /* kinds are separate */
		{"private", "missing", NULL, 0, PV_ENOENT},
	};
	for (size_t i = 0; i < PV_ARRAY_LEN(gets_); i++) {
		char *v = (char *)"sentinel";
		size_t len = 99;
		assert_int_equal(pv_store_kv_get(st, "a.test", "juliet", gets_[i].kind, gets_[i].key, &v,
			&len), gets_[i].rc);
		if (gets_[i].rc == 0) {
			assert_int_equal(len, gets_[i].len);
			assert_memory_equal(v, gets_[i].val, len);
			assert_int_equal(v[len], '\0');
			free(v);
		} else {
			assert_null(v);
		}
	}
	char *v;
	size_t len;
	assert_int_equal(pv_store_kv_get(st, "a.test", "romeo", "private", "bin", &v, &len),
		PV_ENOENT);

	/* NULL deletes; deleting a missing key is not an error. */
	pv_store_kv_put(st, "a.test", "juliet", "private", "bin", NULL, 0, on_done, W(f, 0));
	pv_store_kv_put(st, "a.test", "juliet", "private", "never", NULL, 0, on_done, W(f, 0));
	assert_int_equal(pv_store_kv_get(st, "a.test", "juliet", "private", "bin", &v, &len),
		PV_ENOENT);
}

/* ---- sessions and outbound queue ---- */

typedef struct outrows {
	uint64_t seq[16];
	char xml[16][32];
	int n;
} outrows;

static void collect_out(void *ud, uint64_t seq, const char *xml, size_t len)
{
	outrows *o = ud;
	assert_true(o->n < 16 && len < 32);
	o->seq[o->n] = seq;
	memcpy(o->xml[o->n], xml, len);
	o->xml[o->n][len] = '\0';
	o->n++;
}

typedef struct sesslist {
	char sid[8][32];
	uint64_t h[8];
	int n;
} sesslist;

static void collect_sess(void *ud, const pv_store_sess *s)
{
	sesslist *l = ud;
	assert_true(l->n < 8);
	snprintf(l->sid[l->n], sizeof l->sid[0], "%s", s->sid);
	l->h[l->n] = s->h_in;
	l->n++;
}

static void test_sessions(void **state)
{
	fx *f = *state;
	pv_store *st = f->st;
	pv_store_sess s1 = {.sid = "sid-1", .host = "a.test", .user = "juliet",
		.resource = "balcony", .sm = true, .h_in = 0, .expires = 0};
	pv_store_sess s2 = {.sid = "sid-2", .host = "a.test", .user = "romeo", .resource = NULL};
	pv_store_sess_put(st, &s1, on_done, W(f, 0));
	pv_store_sess_put(st, &s2, on_done, W(f, 0));
	const uint64_t big = (UINT64_C(1) << 63) + 5; /* uint64 survives the int64 column */
	pv_store_sess_set_h(st, "sid-1", big, on_done, W(f, 0));
	pv_store_sess_set_expiry(st, "sid-1", 1700000000, on_done, W(f, 0));
	cell *missing_h = W(f, PV_ENOENT);
	pv_store_sess_set_h(st, "nope", 1, on_done, missing_h);
	pv_store_sess_set_expiry(st, "nope", 1, on_done, W(f, PV_ENOENT));
	assert_int_equal(wait_cell(f, missing_h), PV_ENOENT);

	pv_store_sess out;
	assert_int_equal(pv_store_sess_get(st, "sid-1", &out), 0);
	assert_string_equal(out.sid, "sid-1");
	assert_string_equal(out.host, "a.test");
	assert_string_equal(out.user, "juliet");
	assert_string_equal(out.resource, "balcony");
	assert_true(out.sm);
	assert_true(out.h_in == big);
	assert_int_equal(out.expires, 1700000000);
	pv_store_sess_fini(&out);
	assert_int_equal(pv_store_sess_get(st, "sid-2", &out), 0);
	assert_null(out.resource);
	assert_false(out.sm);
	pv_store_sess_fini(&out);
	assert_int_equal(pv_store_sess_get(st, "nope", &out), PV_ENOENT);

	/* Putting again replaces (a resumed session gets a fresh state). */
	s2.h_in = 42;
	pv_store_sess_put(st, &s2, on_done, W(f, 0));
	sesslist l = {0};
	assert_int_equal(pv_store_sess_list(st, collect_sess, &l), 2);
	assert_string_equal(l.sid[0], "sid-1");
	assert_string_equal(l.sid[1], "sid-2");
	assert_int_equal(l.h[1], 42);

	/* The outbound queue: ordered, filtered by "after", acked up to a seq. */
	for (uint64_t seq = 1; seq <= 5; seq++) {
		char xml[32];
		int len = snprintf(xml, sizeof xml, "<message n='%d'/>", (int)seq);
		pv_store_outq_append(st, "sid-1", seq, xml, (size_t)len, on_done, W(f, 0));
	}
	pv_store_outq_append(st, "sid-2", 1, "<iq/>", 5, on_done, W(f, 0));
	pv_store_outq_append(st, "sid-1", 3, "<dup/>", 6, on_done, W(f, PV_EEXIST));
	static const struct {
		uint64_t ack;     /* 0: none */
		uint64_t after;
		int n;
		uint64_t first;
	} steps[] = {
		{0, 0, 5, 1},
		{0, 2, 3, 3},
		{3, 0, 2, 4},
		{3, 4, 1, 5},
		{9, 0, 0, 0},
	};
	for (size_t i = 0; i < PV_ARRAY_LEN(steps); i++) {
		if (steps[i].ack)
			pv_store_outq_ack(st, "sid-1", steps[i].ack, on_done, W(f, 0));
		outrows o = {0};
		assert_int_equal(pv_store_outq_list(st, "sid-1", steps[i].after, collect_out, &o),
			steps[i].n);
		for (int j = 0; j < o.n; j++) {
			char want[32];
			snprintf(want, sizeof want, "<message n='%d'/>", (int)(steps[i].first + j));
			assert_int_equal(o.seq[j], steps[i].first + j);
			assert_string_equal(o.xml[j], want);
		}
	}

	/* Deleting a session deletes its queue, and only its queue. */
	pv_store_outq_append(st, "sid-1", 10, "<x/>", 4, on_done, W(f, 0));
	pv_store_sess_del(st, "sid-1", on_done, W(f, 0));
	assert_int_equal(pv_store_sess_get(st, "sid-1", &out), PV_ENOENT);
	outrows o = {0};
	assert_int_equal(pv_store_outq_list(st, "sid-1", 0, collect_out, &o), 0);
	assert_int_equal(pv_store_outq_list(st, "sid-2", 0, collect_out, &o), 1);
	assert_string_equal(o.xml[0], "<iq/>");
}

/* ---- deleting a user deletes everything of theirs ---- */

static void fill_user(fx *f, const char *user, const char *sid)
{
	pv_store *st = f->st;
	pv_scram_cred c = mkcred("SCRAM-SHA-256", 3, 32);
	char *grp[] = {"G"};
	pv_roster_item it = {.jid = "x@b.test", .sub = PV_SUB_BOTH, .in_roster = true,
		.groups = grp, .ngroups = 1};
	pv_store_sess s = {.sid = (char *)sid, .host = "a.test", .user = (char *)user,
		.resource = "r", .sm = true};
	assert_int_equal(pv_store_user_create(st, "a.test", user, &c, 1), 0);
	pv_store_roster_put(st, "a.test", user, &it, 7, on_done, W(f, 0));
	pv_store_offline_push(st, "a.test", user, "<m/>", 4, on_done, W(f, 0));
	pv_store_kv_put(st, "a.test", user, "vcard", "", "<v/>", 4, on_done, W(f, 0));
	pv_store_sess_put(st, &s, on_done, W(f, 0));
	pv_store_outq_append(st, sid, 1, "<q/>", 4, on_done, W(f, 0));
}

static void expect_user_data(fx *f, const char *user, const char *sid, bool present)
{
	pv_store *st = f->st;
	pv_roster_item *items;
	size_t n;
	uint64_t ver;
	char *v = NULL;
	size_t len;
	pv_store_sess s;
	pv_scram_cred c;
	assert_int_equal(pv_store_user_exists(st, "a.test", user), present);
	assert_int_equal(pv_store_user_get_cred(st, "a.test", user, "SCRAM-SHA-256", &c),
		present ? 0 : PV_ENOENT);
	assert_int_equal(pv_store_roster_get(st, "a.test", user, &items, &n, &ver), 0);
	assert_int_equal(n, present ? 1 : 0);
	assert_int_equal(ver, present ? 7 : 0);
	pv_roster_items_free(items, n);
	assert_int_equal(pv_store_offline_count(st, "a.test", user), present ? 1 : 0);
	assert_int_equal(pv_store_kv_get(st, "a.test", user, "vcard", "", &v, &len),
		present ? 0 : PV_ENOENT);
	free(v);
	assert_int_equal(pv_store_sess_get(st, sid, &s), present ? 0 : PV_ENOENT);
	pv_store_sess_fini(&s);
	assert_int_equal(pv_store_outq_list(st, sid, 0, NULL, NULL), present ? 1 : 0);
}

static void test_user_delete_all(void **state)
{
	fx *f = *state;
	fill_user(f, "juliet", "sj");
	fill_user(f, "romeo", "sr");
	expect_user_data(f, "juliet", "sj", true);
	assert_int_equal(pv_store_user_delete(f->st, "a.test", "juliet"), 0);
	expect_user_data(f, "juliet", "sj", false);
	expect_user_data(f, "romeo", "sr", true);
}

/* ---- FIFO consistency and asynchrony ---- */

static void test_read_after_queued_write(void **state)
{
	fx *f = *state;
	pv_store *st = f->st;
	cell *first = NULL;
	for (int i = 0; i < 200; i++) {
		cell *c = W(f, 0);
		if (!first)
			first = c;
		pv_store_offline_push(st, "a.test", "juliet", "<m/>", 4, on_done, c);
		pv_store_kv_put(st, "a.test", "juliet", "private", "k", (const char *)&i, sizeof i,
			on_done, W(f, 0));
		/* Without a loop the write is complete on return; with one, done has not run
		 * (this thread is the loop thread and has not run it), yet reads see it. */
		assert_int_equal(c->called, f->use_loop ? 0 : 1);
		if (i % 50 == 49) {
			char *v;
			size_t len;
			assert_int_equal(pv_store_offline_count(st, "a.test", "juliet"), i + 1);
			assert_int_equal(pv_store_kv_get(st, "a.test", "juliet", "private", "k", &v, &len),
				0);
			assert_int_equal(len, sizeof i);
			assert_memory_equal(v, &i, sizeof i);
			free(v);
		}
	}
	pv_store_flush(st);
	assert_int_equal(first->called, f->use_loop ? 0 : 1); /* flush does not run dones */
	run_until(f, &f->cells[f->ncells - 1].called, 1);
	for (size_t i = 0; i < f->ncells; i++)
		assert_int_equal(f->cells[i].called, 1); /* in FIFO order, so all ran */
}

/* loop == NULL: done runs inline, in the calling thread, before the call returns. */
static void test_inline_done(void **state)
{
	fx *f = *state;
	cell *c = W(f, 0);
	pv_store_offline_push(f->st, "a.test", "juliet", "<m/>", 4, on_done, c);
	assert_int_equal(c->called, 1);
	assert_int_equal(c->rc, 0);
	c = W(f, PV_ENOENT);
	pv_store_sess_set_h(f->st, "none", 1, on_done, c);
	assert_int_equal(c->called, 1);
	pv_store_offline_push(f->st, "a.test", "juliet", "<m/>", 4, NULL, NULL); /* done NULL */
	assert_int_equal(pv_store_offline_count(f->st, "a.test", "juliet"), 2);
}

typedef struct producer {
	fx *f;
	int id, n;
} producer;

static void *produce(void *arg)
{
	producer *p = arg;
	for (int i = 0; i < p->n; i++) {
		char xml[64];
		int len = snprintf(xml, sizeof xml, "<m from='%d' n='%d'/>", p->id, i);
		pv_store_offline_push(p->f->st, "a.test", "juliet", xml, (size_t)len, on_count, p->f);
		if (i % 100 == 0)
			pv_store_offline_push(p->f->st, "a.test", "juliet", "<m/>", 4, NULL, NULL);
	}
	return NULL;
}

typedef struct order_check {
	int next[4];
	int bad;
} order_check;

static void check_order(void *ud, int64_t id, int64_t stamp, const char *xml, size_t len)
{
	order_check *oc = ud;
	int from, n;
	if (sscanf(xml, "<m from='%d' n='%d'/>", &from, &n) != 2)
		return;
	if (from < 0 || from >= 4 || n != oc->next[from])
		oc->bad++;
	else
		oc->next[from]++;
}

/* Writers on several threads; every done runs on the loop thread; each writer's own
 * writes are stored in its order. */
static void test_many_async_writers(void **state)
{
	fx *f = *state;
	enum { THREADS = 4, PER = 500 };
	pthread_t t[THREADS];
	producer p[THREADS];
	pv_store_stats s0, s1;
	pv_store_get_stats(f->st, &s0);
	for (int i = 0; i < THREADS; i++) {
		p[i] = (producer){.f = f, .id = i, .n = PER};
		assert_int_equal(pthread_create(&t[i], NULL, produce, &p[i]), 0);
	}
	run_until(f, &f->counted, THREADS * PER);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	pv_store_flush(f->st);
	assert_int_equal(f->counted, THREADS * PER);
	assert_int_equal(f->wrong_thread, 0);
	pv_store_get_stats(f->st, &s1);
	assert_true(s1.writes - s0.writes >= THREADS * PER);
	assert_true(s1.commits > s0.commits);
	order_check oc = {{0}, 0};
	int total = pv_store_offline_list(f->st, "a.test", "juliet", check_order, &oc);
	assert_int_equal(total, THREADS * PER + THREADS * (PER / 100));
	assert_int_equal(oc.bad, 0);
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(oc.next[i], PER);
}

/* 1,000 writes queued back to back need far fewer than 1,000 commits. */
static void test_group_commit(void **state)
{
	fx *f = *state;
	pv_store_stats s0, s1;
	pv_store_get_stats(f->st, &s0);
	for (int i = 0; i < 1000; i++)
		pv_store_offline_push(f->st, "a.test", "juliet", "<m/>", 4, on_count, f);
	pv_store_flush(f->st);
	pv_store_get_stats(f->st, &s1);
	assert_int_equal(s1.writes - s0.writes, 1000);
	assert_true(s1.commits - s0.commits < 100);
	assert_true(s1.commits > s0.commits);
	assert_true(s1.fsync_us_total >= s0.fsync_us_total);
	run_until(f, &f->counted, 1000);
	assert_int_equal(pv_store_offline_count(f->st, "a.test", "juliet"), 1000);
}

/* Deterministic variant: another connection holds the write lock while the writes
 * queue up, so they all wait and then commit together. */
static void test_group_commit_locked(void **state)
{
	fx *f = *state;
	char path[128];
	sqlite3 *db;
	snprintf(path, sizeof path, "%s/peyvand.sqlite", f->dir);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	pv_store_stats s0, s1;
	pv_store_get_stats(f->st, &s0);
	for (int i = 0; i < 1000; i++)
		pv_store_offline_push(f->st, "a.test", "juliet", "<m/>", 4, on_count, f);
	usleep(100 * 1000);
	assert_int_equal(f->counted, 0);
	assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	pv_store_flush(f->st);
	pv_store_get_stats(f->st, &s1);
	assert_int_equal(s1.writes - s0.writes, 1000);
	assert_true(s1.commits - s0.commits <= 3);
	run_until(f, &f->counted, 1000);
}

/* ---- close, reopen, migrations ---- */

static int done_then_write_calls;

static void done_then_write(void *ud, int rc)
{
	pv_store *st = ud;
	assert_int_equal(rc, 0);
	/* A done callback may use the store, even while pv_store_close drains. */
	if (done_then_write_calls++ < 3)
		pv_store_offline_push(st, "a.test", "juliet", "<chained/>", 10, done_then_write, st);
	assert_true(pv_store_offline_count(st, "a.test", "juliet") >= 1);
}

static void test_reopen(void **state)
{
	fx *f = *state;
	pv_scram_cred c = mkcred("SCRAM-SHA-1", 5, 20);
	assert_int_equal(pv_store_user_create(f->st, "a.test", "juliet", &c, 1), 0);
	cell *k = W(f, 0);
	pv_store_kv_put(f->st, "a.test", "juliet", "private", "k", "v", 1, on_done, k);
	done_then_write_calls = 0;
	pv_store_offline_push(f->st, "a.test", "juliet", "<m/>", 4, done_then_write, f->st);
	pv_store_close(f->st); /* runs pending dones, including the chained writes' */
	f->st = NULL;
	assert_int_equal(k->called, 1);
	assert_int_equal(done_then_write_calls, 4);

	/* Schema version and journal mode as promised. */
	char path[128];
	sqlite3 *db;
	sqlite3_stmt *s;
	snprintf(path, sizeof path, "%s/peyvand.sqlite", f->dir);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int64(s, 0), (int64_t)pv_schema_sqlite_count);
	sqlite3_finalize(s);
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(s, 0), "wal");
	sqlite3_finalize(s);
	sqlite3_close(db);

	f->st = pv_store_open(f->dir, f->use_loop ? &f->loop : NULL);
	assert_non_null(f->st);
	pv_scram_cred out;
	assert_int_equal(pv_store_user_get_cred(f->st, "a.test", "juliet", "SCRAM-SHA-1", &out), 0);
	cred_eq(&out, &c);
	char *v;
	size_t len;
	assert_int_equal(pv_store_kv_get(f->st, "a.test", "juliet", "private", "k", &v, &len), 0);
	assert_string_equal(v, "v");
	free(v);
	assert_int_equal(pv_store_offline_count(f->st, "a.test", "juliet"), 4);
}

static void test_schema_too_new(void **state)
{
	char dir[64], path[128];
	sqlite3 *db;
	make_dir(dir, sizeof dir);
	pv_store *st = pv_store_open(dir, NULL);
	assert_non_null(st);
	pv_store_close(st);
	snprintf(path, sizeof path, "%s/peyvand.sqlite", dir);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 999", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	assert_null(pv_store_open(dir, NULL)); /* never run against a schema we do not know */
	assert_null(pv_store_open("/proc/no/such/dir", NULL));
	rm_dir(dir);
}

/* ---- crash: every write whose done ran survives a SIGKILL ---- */

/* The child keeps CRASH_INFLIGHT writes queued at all times (each done queues the next
 * one) and kills itself on the CRASH_AFTER-th done, so the kill lands mid-stream, with
 * commits in progress. */
enum { CRASH_WRITES = 20000, CRASH_INFLIGHT = 500, CRASH_AFTER = 1000 };

typedef struct crash_ctx {
	pv_store *st;
	int fd, seen;
	int32_t next;
} crash_ctx;

typedef struct crash_arg {
	crash_ctx *c;
	int32_t i;
} crash_arg;

static crash_arg crash_args[CRASH_WRITES];

static void crash_done(void *ud, int rc);

static void crash_push(crash_ctx *c)
{
	int32_t i = c->next++;
	char xml[32];
	int len = snprintf(xml, sizeof xml, "<m i='%d'/>", (int)i);
	crash_args[i] = (crash_arg){.c = c, .i = i};
	pv_store_offline_push(c->st, "a.test", "juliet", xml, (size_t)len, crash_done,
		&crash_args[i]);
}

static void crash_done(void *ud, int rc)
{
	crash_arg *a = ud;
	if (rc != 0)
		_exit(4);
	/* Recorded only here: done ran, so the write was acknowledged. */
	if (write(a->c->fd, &a->i, sizeof a->i) != sizeof a->i)
		_exit(5);
	if (++a->c->seen == CRASH_AFTER)
		kill(getpid(), SIGKILL);
	if (a->c->next < CRASH_WRITES)
		crash_push(a->c);
}

static void crash_child(const char *dir, int fd)
{
	uv_loop_t loop;
	uv_timer_t tick;
	crash_ctx c = {.fd = fd};
	if (uv_loop_init(&loop) != 0)
		_exit(2);
	c.st = pv_store_open(dir, &loop);
	if (!c.st)
		_exit(2);
	uv_timer_init(&loop, &tick);
	uv_timer_start(&tick, on_tick, 5, 5);
	for (int i = 0; i < CRASH_INFLIGHT; i++)
		crash_push(&c);
	uv_run(&loop, UV_RUN_DEFAULT);
	_exit(3); /* not reached: crash_done kills us */
}

typedef struct present {
	unsigned char *seen;
	int n, max;
} present;

static void collect_present(void *ud, int64_t id, int64_t stamp, const char *xml, size_t len)
{
	present *p = ud;
	int i;
	assert_int_equal(sscanf(xml, "<m i='%d'/>", &i), 1);
	assert_true(i >= 0 && i < CRASH_WRITES);
	assert_int_equal(i, p->n); /* a prefix, in order: group commits are atomic */
	p->seen[i] = 1;
	p->n++;
}

static void test_crash(void **state)
{
	char dir[64];
	int pfd[2];
	make_dir(dir, sizeof dir);
	assert_int_equal(pipe(pfd), 0);
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(pfd[0]);
		crash_child(dir, pfd[1]);
	}
	close(pfd[1]);

	static unsigned char acked[CRASH_WRITES];
	memset(acked, 0, sizeof acked);
	int nacked = 0;
	int32_t i;
	ssize_t r;
	while ((r = read(pfd[0], &i, sizeof i)) == sizeof i) {
		assert_true(i >= 0 && i < CRASH_WRITES);
		acked[i] = 1;
		nacked++;
	}
	close(pfd[0]);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGKILL);
	assert_int_equal(nacked, CRASH_AFTER);

	pv_store *st = pv_store_open(dir, NULL);
	assert_non_null(st);
	static unsigned char seen[CRASH_WRITES];
	memset(seen, 0, sizeof seen);
	present p = {.seen = seen};
	int n = pv_store_offline_list(st, "a.test", "juliet", collect_present, &p);
	assert_true(n >= CRASH_AFTER);
	assert_true(n < CRASH_WRITES);
	for (int j = 0; j < CRASH_WRITES; j++)
		if (acked[j] && !seen[j])
			fail_msg("write %d was acknowledged (done ran) but is lost", j);
	pv_store_close(st);
	rm_dir(dir);
}

#define BOTH(fn) \
	{#fn "/loop", fn, setup_loop, teardown, NULL}, \
	{#fn "/inline", fn, setup_inline, teardown, NULL}

int main(void)
{
	pv_log_set_level(PV_LOG_WARN);
	const struct CMUnitTest tests[] = {
		BOTH(test_accounts),
		BOTH(test_roster),
		BOTH(test_offline),
		BOTH(test_kv),
		BOTH(test_sessions),
		BOTH(test_user_delete_all),
		BOTH(test_read_after_queued_write),
		BOTH(test_reopen),
		cmocka_unit_test_setup_teardown(test_inline_done, setup_inline, teardown),
		cmocka_unit_test_setup_teardown(test_many_async_writers, setup_loop, teardown),
		cmocka_unit_test_setup_teardown(test_group_commit, setup_loop, teardown),
		cmocka_unit_test_setup_teardown(test_group_commit_locked, setup_loop, teardown),
		cmocka_unit_test(test_schema_too_new),
		cmocka_unit_test(test_crash),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
