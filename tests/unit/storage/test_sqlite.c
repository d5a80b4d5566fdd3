/* test_sqlite.c -- unit tests of the SQLite store (src/storage/sqlite.c).
 *
 * Every data test runs twice: with a libuv loop (writes asynchronous, done callbacks on
 * the loop thread, which is this test thread) and with loop == NULL (writes synchronous,
 * done inline).  Done callbacks are recorded in fixture-owned "cells" with the rc the
 * test expects; teardown closes the store and checks every cell ran exactly once with
 * that rc.  Further tests: group commit, many writer threads, reopen, migrations, the
 * server-to-server link state (queues, epochs, high-water marks), and crash tests (a child
 * is SIGKILLed mid-stream; every write whose done ran must survive), for the offline and
 * the s2s queue. */
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
#include <stdatomic.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "peyvand/pv_log.h"
#include "peyvand/pv_store.h"

extern const char *const pv_schema_sqlite[];
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
	/* The store stamps with pv_wall_s (CLOCK_REALTIME); glibc's time() reads the
	 * coarse clock, up to a tick behind it, so near a second's turn time() could name
	 * the second before the stamp's (this test failed so in CI once). */
	int64_t t0 = pv_wall_s();
	for (size_t i = 0; i < PV_ARRAY_LEN(cases); i++)
		pv_store_offline_push(st, "a.test", "juliet", cases[i].xml, cases[i].len, -1,
			on_done, W(f, 0));
	pv_store_offline_push(st, "a.test", "romeo", "<message/>", 10, -1, on_done, W(f, 0));

	msgs m = {0};
	assert_int_equal(pv_store_offline_list(st, "a.test", "juliet", collect_msg, &m), 3);
	assert_int_equal(pv_store_offline_count(st, "a.test", "juliet"), 3);
	for (int i = 0; i < 3; i++) {
		assert_string_equal(m.xml[i], cases[i].stored);
		assert_int_equal(m.len[i], strlen(cases[i].stored));
		assert_true(m.stamp[i] >= t0 && m.stamp[i] <= pv_wall_s());
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
	pv_store_offline_push(st, "a.test", "juliet", "<m/>", 4, -1, on_done, W(f, 0));
	msgs m3 = {0};
	assert_int_equal(pv_store_offline_list(st, "a.test", "juliet", collect_msg, &m3), 1);
	assert_true(m3.id[0] > m.id[2]);
	assert_int_equal(pv_store_offline_count(st, "b.test", "juliet"), 0);
}

/* The quota is counted inside the write, in commit order: of four pushes queued at once
 * against a limit of three, with one message already stored, exactly the first two get
 * in and the others fail alone; other users' queues do not count. */
static void test_offline_quota(void **state)
{
	fx *f = *state;
	pv_store *st = f->st;
	pv_store_offline_push(st, "a.test", "juliet", "<m id='0'/>", 11, 3, on_done, W(f, 0));
	pv_store_offline_push(st, "a.test", "romeo", "<m/>", 4, 1, on_done, W(f, 0));
	pv_store_offline_push(st, "b.test", "juliet", "<m/>", 4, 1, on_done, W(f, 0));
	pv_store_offline_push(st, "a.test", "juliet", "<m id='1'/>", 11, 3, on_done, W(f, 0));
	pv_store_offline_push(st, "a.test", "juliet", "<m id='2'/>", 11, 3, on_done, W(f, 0));
	pv_store_offline_push(st, "a.test", "juliet", "<m id='3'/>", 11, 3, on_done,
		W(f, PV_ELIMIT));
	pv_store_offline_push(st, "a.test", "juliet", "<m id='4'/>", 11, 3, on_done,
		W(f, PV_ELIMIT));
	/* No limit, and a limit of none. */
	pv_store_offline_push(st, "a.test", "romeo", "<m/>", 4, -1, on_done, W(f, 0));
	pv_store_offline_push(st, "a.test", "tybalt", "<m/>", 4, 0, on_done, W(f, PV_ELIMIT));
	msgs m = {0};
	assert_int_equal(pv_store_offline_list(st, "a.test", "juliet", collect_msg, &m), 3);
	for (int i = 0; i < 3; i++) {
		char want[16];
		snprintf(want, sizeof(want), "<m id='%d'/>", i);
		assert_string_equal(m.xml[i], want);
	}
	assert_int_equal(pv_store_offline_count(st, "a.test", "romeo"), 2);
	assert_int_equal(pv_store_offline_count(st, "a.test", "tybalt"), 0);
	/* Room again once delivered. */
	pv_store_offline_delete(st, "a.test", "juliet", INT64_MAX, on_done, W(f, 0));
	pv_store_offline_push(st, "a.test", "juliet", "<m id='5'/>", 11, 3, on_done, W(f, 0));
	assert_int_equal(pv_store_offline_count(st, "a.test", "juliet"), 1);
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
	pv_store_offline_push(st, "a.test", user, "<m/>", 4, -1, on_done, W(f, 0));
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
		pv_store_offline_push(st, "a.test", "juliet", "<m/>", 4, -1, on_done, c);
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
	pv_store_offline_push(f->st, "a.test", "juliet", "<m/>", 4, -1, on_done, c);
	assert_int_equal(c->called, 1);
	assert_int_equal(c->rc, 0);
	c = W(f, PV_ENOENT);
	pv_store_sess_set_h(f->st, "none", 1, on_done, c);
	assert_int_equal(c->called, 1);
	pv_store_offline_push(f->st, "a.test", "juliet", "<m/>", 4, -1, NULL, NULL); /* done NULL */
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
		pv_store_offline_push(p->f->st, "a.test", "juliet", xml, (size_t)len, -1, on_count, p->f);
		if (i % 100 == 0)
			pv_store_offline_push(p->f->st, "a.test", "juliet", "<m/>", 4, -1, NULL, NULL);
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
		pv_store_offline_push(f->st, "a.test", "juliet", "<m/>", 4, -1, on_count, f);
	pv_store_flush(f->st);
	pv_store_get_stats(f->st, &s1);
	assert_int_equal(s1.writes - s0.writes, 1000);
	assert_true(s1.commits - s0.commits < 100);
	assert_true(s1.commits > s0.commits);
	assert_true(s1.fsync_us_total >= s0.fsync_us_total);
	run_until(f, &f->counted, 1000);
	assert_int_equal(pv_store_offline_count(f->st, "a.test", "juliet"), 1000);
}

/* Commit pacing (sqlite.c, PACE_US = 2 ms): writes that trickle in back to back, one
 * every ~100 us here, are gathered instead of committed one by one.  Whatever the speed
 * of the machine, commits can be no more frequent than one per 2 ms (plus the first
 * and the last); without pacing a fast disk commits nearly every write alone. */
static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void test_commit_pacing(void **state)
{
	fx *f = *state;
	pv_store_stats s0, s1;
	pv_store_get_stats(f->st, &s0);
	uint64_t t0 = now_us();
	for (int i = 0; i < 400; i++) {
		pv_store_offline_push(f->st, "a.test", "juliet", "<m/>", 4, -1, on_count, f);
		usleep(100);
	}
	pv_store_flush(f->st);
	uint64_t elapsed = now_us() - t0;
	pv_store_get_stats(f->st, &s1);
	assert_int_equal(s1.writes - s0.writes, 400);
	uint64_t commits = s1.commits - s0.commits;
	assert_true(commits >= 1);
	assert_true(commits <= elapsed / 2000 + 3);
	run_until(f, &f->counted, 400);
	/* a reader blocked on the queue is not held back: it gets all 400 at once */
	assert_int_equal(pv_store_offline_count(f->st, "a.test", "juliet"), 400);
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
		pv_store_offline_push(f->st, "a.test", "juliet", "<m/>", 4, -1, on_count, f);
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

/* Reads on the loop thread skip the storage thread only when no write is waiting to be
 * committed.  Here the writes are held uncommitted (another connection has the write
 * lock): a read that ran on the loop thread's own connection would count 0 messages; it
 * must count all 10, having waited behind them.  Once they are committed, reads run
 * on the loop thread; reads from another thread always queue. */
typedef struct {
	sqlite3 *db;
	pv_store *st;
	int count;
} side;

static void *commit_later(void *arg)
{
	side *sd = arg;
	usleep(100 * 1000);
	assert_int_equal(sqlite3_exec(sd->db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	return NULL;
}

static void *count_elsewhere(void *arg)
{
	side *sd = arg;
	sd->count = pv_store_offline_count(sd->st, "a.test", "juliet");
	return NULL;
}

static void test_loop_reads_see_queued_writes(void **state)
{
	fx *f = *state;
	pv_store_stats s0, s1;
	char path[128];
	side sd = {.st = f->st};
	pthread_t t;

	assert_int_equal(pv_store_offline_count(f->st, "a.test", "juliet"), 0);
	pv_store_get_stats(f->st, &s0);
	assert_int_equal(s0.reads_loop, 1); /* nothing queued: answered here */

	snprintf(path, sizeof path, "%s/peyvand.sqlite", f->dir);
	assert_int_equal(sqlite3_open(path, &sd.db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(sd.db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	for (int i = 0; i < 10; i++)
		pv_store_offline_push(f->st, "a.test", "juliet", "<m/>", 4, -1, on_count, f);
	assert_int_equal(pthread_create(&t, NULL, commit_later, &sd), 0);
	assert_int_equal(pv_store_offline_count(f->st, "a.test", "juliet"), 10);
	pthread_join(t, NULL);
	sqlite3_close(sd.db);
	pv_store_get_stats(f->st, &s1);
	assert_int_equal(s1.reads_loop, s0.reads_loop); /* it queued behind the writes */
	assert_int_equal(s1.reads, s0.reads + 1);

	run_until(f, &f->counted, 10);
	assert_int_equal(pv_store_offline_count(f->st, "a.test", "juliet"), 10);
	pv_store_get_stats(f->st, &s1);
	assert_int_equal(s1.reads_loop, s0.reads_loop + 1);

	assert_int_equal(pthread_create(&t, NULL, count_elsewhere, &sd), 0);
	pthread_join(t, NULL);
	assert_int_equal(sd.count, 10);
	pv_store_get_stats(f->st, &s0);
	assert_int_equal(s0.reads_loop, s1.reads_loop);
	assert_int_equal(s0.reads, s1.reads + 1);
}

/* A read that a busy loop makes waits only for the writes that could change what it
 * reads (kinds in sqlite.c): accounts (does the user exist, its credentials), a block
 * list, consent settings, a roster, the offline queue.  Other writes held uncommitted (as above) do not hold them
 * back, so routing to an offline user under load costs no commit of its own; a queued
 * write of their own kind is waited for. */
typedef struct {
	side sd;
	_Atomic int committed;
} side2;

static void *commit_later2(void *arg)
{
	side2 *s2 = arg;
	usleep(100 * 1000);
	atomic_store(&s2->committed, 1);
	assert_int_equal(sqlite3_exec(s2->sd.db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	return NULL;
}

static void *create_elsewhere(void *arg)
{
	side2 *s2 = arg;
	pv_scram_cred c = mkcred("SCRAM-SHA-1", 6, 20);
	assert_int_equal(pv_store_user_create(s2->sd.st, "a.test", "romeo", &c, 1), 0);
	return NULL;
}

static void count_jid(void *ud, const char *jid)
{
	(void)jid;
	++*(int *)ud;
}

static void test_narrow_reads_pass_other_writes(void **state)
{
	fx *f = *state;
	pv_store_stats s0, s1;
	char path[128];
	side2 s2 = {.sd = {.st = f->st}};
	pthread_t t, u;
	pv_scram_cred c = mkcred("SCRAM-SHA-1", 5, 20), got;
	pv_consent cs;
	int n = 0;
	assert_int_equal(pv_store_user_create(f->st, "a.test", "juliet", &c, 1), 0);

	snprintf(path, sizeof path, "%s/peyvand.sqlite", f->dir);
	assert_int_equal(sqlite3_open(path, &s2.sd.db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(s2.sd.db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	for (int i = 0; i < 10; i++)
		pv_store_offline_push(f->st, "a.test", "juliet", "<m/>", 4, -1, on_count, f);
	assert_int_equal(pthread_create(&t, NULL, commit_later2, &s2), 0);
	pv_store_get_stats(f->st, &s0);
	assert_int_equal(pv_store_user_exists(f->st, "a.test", "juliet"), 1);
	assert_int_equal(pv_store_user_exists(f->st, "a.test", "romeo"), 0);
	assert_int_equal(pv_store_user_get_cred(f->st, "a.test", "juliet", "SCRAM-SHA-1", &got), 0);
	assert_int_equal(got.iterations, c.iterations);
	assert_int_equal(pv_store_block_list(f->st, "a.test", "juliet", count_jid, &n), 0);
	assert_int_equal(pv_store_consent_get(f->st, "a.test", "juliet", &cs), 0);
	pv_consent_fini(&cs);
	pv_roster_item *items;
	size_t nitems;
	uint64_t ver;
	assert_int_equal(pv_store_roster_get(f->st, "a.test", "juliet", &items, &nitems, &ver), 0);
	assert_int_equal(nitems, 0);
	pv_roster_items_free(items, nitems);
	assert_int_equal(atomic_load(&s2.committed), 0); /* none of them waited */
	pv_store_get_stats(f->st, &s1);
	assert_int_equal(s1.reads_loop, s0.reads_loop + 6);
	/* Any other read still waits for the offline messages. */
	assert_int_equal(pv_store_offline_count(f->st, "a.test", "juliet"), 10);
	assert_int_equal(atomic_load(&s2.committed), 1);
	pthread_join(t, NULL);
	run_until(f, &f->counted, 10);

	/* A block list and a roster change held uncommitted: reads of accounts pass them,
	 * the block list and roster reads wait for them and see them. */
	atomic_store(&s2.committed, 0);
	assert_int_equal(sqlite3_exec(s2.sd.db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	pv_store_block_set(f->st, "a.test", "juliet", "spam.example", true, on_done, W(f, 0));
	assert_int_equal(pthread_create(&t, NULL, commit_later2, &s2), 0);
	assert_int_equal(pv_store_user_exists(f->st, "a.test", "juliet"), 1);
	assert_int_equal(atomic_load(&s2.committed), 0);
	assert_int_equal(pv_store_block_list(f->st, "a.test", "juliet", count_jid, &n), 1);
	assert_int_equal(n, 1);
	assert_int_equal(atomic_load(&s2.committed), 1);
	pthread_join(t, NULL);

	atomic_store(&s2.committed, 0);
	assert_int_equal(sqlite3_exec(s2.sd.db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	pv_roster_item it = {.jid = "romeo@b.test", .sub = PV_SUB_BOTH, .in_roster = true};
	pv_store_roster_put(f->st, "a.test", "juliet", &it, 7, on_done, W(f, 0));
	assert_int_equal(pthread_create(&t, NULL, commit_later2, &s2), 0);
	n = 0;
	assert_int_equal(pv_store_block_list(f->st, "a.test", "juliet", count_jid, &n), 1);
	assert_int_equal(atomic_load(&s2.committed), 0);
	assert_int_equal(pv_store_roster_get(f->st, "a.test", "juliet", &items, &nitems, &ver), 0);
	assert_int_equal(nitems, 1);
	assert_int_equal(ver, 7);
	pv_roster_items_free(items, nitems);
	assert_int_equal(atomic_load(&s2.committed), 1);
	pthread_join(t, NULL);

	/* Other writes held (private data): the offline queue's read passes them. */
	atomic_store(&s2.committed, 0);
	assert_int_equal(sqlite3_exec(s2.sd.db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	pv_store_kv_put(f->st, "a.test", "juliet", "private", "k", "v", 1, on_done, W(f, 0));
	assert_int_equal(pthread_create(&t, NULL, commit_later2, &s2), 0);
	assert_int_equal(pv_store_offline_count(f->st, "a.test", "juliet"), 10);
	assert_int_equal(atomic_load(&s2.committed), 0);
	pthread_join(t, NULL);

	/* An account write held uncommitted: the read queues behind it and sees it. */
	atomic_store(&s2.committed, 0);
	assert_int_equal(sqlite3_exec(s2.sd.db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(pthread_create(&u, NULL, create_elsewhere, &s2), 0);
	usleep(200 * 1000); /* queued by now: its thread has nothing else to do */
	assert_int_equal(pthread_create(&t, NULL, commit_later2, &s2), 0);
	pv_store_get_stats(f->st, &s0);
	assert_int_equal(pv_store_user_exists(f->st, "a.test", "romeo"), 1);
	pv_store_get_stats(f->st, &s1);
	assert_int_equal(s1.reads_loop, s0.reads_loop);
	pthread_join(t, NULL);
	pthread_join(u, NULL);
	sqlite3_close(s2.sd.db);
	run_until(f, &f->cells[f->ncells - 1].called, 1);
}

/* ---- close, reopen, migrations ---- */

static int done_then_write_calls;

static void done_then_write(void *ud, int rc)
{
	pv_store *st = ud;
	assert_int_equal(rc, 0);
	/* A done callback may use the store, even while pv_store_close drains. */
	if (done_then_write_calls++ < 3)
		pv_store_offline_push(st, "a.test", "juliet", "<chained/>", 10, -1, done_then_write, st);
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
	pv_store_offline_push(f->st, "a.test", "juliet", "<m/>", 4, -1, done_then_write, f->st);
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

/* ---- server-to-server links ---- */

typedef struct s2srows {
	uint64_t seq[32];
	int64_t created[32];
	char xml[32][32];
	size_t len[32];
	int n;
} s2srows;

static void collect_s2s(void *ud, uint64_t seq, int64_t created, const char *xml, size_t len)
{
	s2srows *r = ud;
	assert_true(r->n < 32 && len < 32);
	r->seq[r->n] = seq;
	r->created[r->n] = created;
	memcpy(r->xml[r->n], xml, len);
	r->xml[r->n][len] = '\0';
	r->len[r->n] = len;
	r->n++;
}

/* Pushes seq from..to on local -> remote: "<message n='SEQ'/>", created = created0 + seq. */
static void s2s_push_range(fx *f, const char *local, const char *remote, uint64_t from,
	uint64_t to, int64_t created0)
{
	for (uint64_t seq = from; seq <= to; seq++) {
		char xml[32];
		int len = snprintf(xml, sizeof xml, "<message n='%d'/>", (int)seq);
		pv_store_s2s_push(f->st, local, remote, seq, created0 + (int64_t)seq, xml, (size_t)len,
			on_done, W(f, 0));
	}
}

/* Lists local -> remote after `after` (at most limit) and checks the rows are exactly
 * first, first+1, ... (n of them) as pushed by s2s_push_range with created0. */
static void s2s_expect(fx *f, const char *local, const char *remote, uint64_t after,
	size_t limit, int n, uint64_t first, int64_t created0)
{
	s2srows r = {0};
	assert_int_equal(pv_store_s2s_list(f->st, local, remote, after, limit, collect_s2s, &r), n);
	assert_int_equal(r.n, n);
	for (int j = 0; j < n; j++) {
		char want[32];
		snprintf(want, sizeof want, "<message n='%d'/>", (int)(first + (uint64_t)j));
		assert_int_equal(r.seq[j], first + (uint64_t)j);
		assert_int_equal(r.created[j], created0 + (int64_t)(first + (uint64_t)j));
		assert_string_equal(r.xml[j], want);
		assert_int_equal(r.len[j], strlen(want));
	}
}

static char *epoch_of(fx *f, const char *local, const char *remote)
{
	char *e = NULL;
	assert_int_equal(pv_store_s2s_epoch(f->st, local, remote, &e), 0);
	assert_non_null(e);
	return e;
}

/* One integer from another connection to the database: it sees committed data only. */
static int64_t ext_int(const fx *f, const char *sql)
{
	char path[128];
	sqlite3 *db;
	sqlite3_stmt *s;
	int64_t v = -1;
	snprintf(path, sizeof path, "%s/peyvand.sqlite", f->dir);
	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
	if (sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	sqlite3_close(db);
	return v;
}

static void reopen(fx *f)
{
	pv_store_close(f->st);
	f->st = pv_store_open(f->dir, f->use_loop ? &f->loop : NULL);
	assert_non_null(f->st);
}

static void test_s2s_push_list_ack_drop(void **state)
{
	fx *f = *state;
	pv_store *st = f->st;
	s2s_push_range(f, "a.test", "b.test", 1, 10, 1000);
	s2s_push_range(f, "a.test", "c.test", 1, 2, 2000);
	s2s_push_range(f, "b.test", "a.test", 1, 3, 3000); /* the other direction: its own link */
	/* A seq is never stored twice; the failed push does not fail its batch. */
	pv_store_s2s_push(st, "a.test", "b.test", 5, 1, "<dup/>", 6, on_done, W(f, PV_EEXIST));
	/* Binary-safe, and the length is the bound. */
	pv_store_s2s_push(st, "a.test", "d.test", 1, 7, "a\0b<x/>TRAIL", 7, on_done, W(f, 0));

	static const struct {
		uint64_t after;
		size_t limit;
		int n;
		uint64_t first;
	} lists[] = {
		{0, 100, 10, 1},
		{0, 3, 3, 1},
		{3, 3, 3, 4},
		{8, 100, 2, 9},
		{10, 100, 0, 0},
		{0, 0, 0, 0},             /* at most 0 rows */
		{0, SIZE_MAX, 10, 1},     /* no practical limit */
		{UINT64_MAX, 100, 0, 0},  /* above 2^63: clamped, not negative */
	};
	for (size_t i = 0; i < PV_ARRAY_LEN(lists); i++)
		s2s_expect(f, "a.test", "b.test", lists[i].after, lists[i].limit, lists[i].n,
			lists[i].first, 1000);
	s2s_expect(f, "a.test", "c.test", 0, 100, 2, 1, 2000);
	s2s_expect(f, "b.test", "a.test", 1, 100, 2, 2, 3000);
	s2s_expect(f, "a.test", "x.test", 0, 100, 0, 0, 0);
	s2srows r = {0};
	assert_int_equal(pv_store_s2s_list(st, "a.test", "d.test", 0, 10, collect_s2s, &r), 1);
	assert_int_equal(r.seq[0], 1);
	assert_int_equal(r.created[0], 7);
	assert_int_equal(r.len[0], 7);
	assert_memory_equal(r.xml[0], "a\0b<x/>", 7);
	assert_int_equal(pv_store_s2s_list(st, "a.test", "b.test", 0, 10, NULL, NULL), 10);
	assert_int_equal(pv_store_s2s_list(st, NULL, "b.test", 0, 10, NULL, NULL), PV_EINVAL);
	assert_int_equal(pv_store_s2s_list(st, "a.test", NULL, 0, 10, NULL, NULL), PV_EINVAL);

	/* ack deletes up to a seq, only on its link. */
	static const struct {
		uint64_t upto;
		int n;
		uint64_t first;
	} acks[] = {
		{0, 10, 1},
		{4, 6, 5},
		{4, 6, 5},                /* idempotent */
		{2, 6, 5},                /* an old ack changes nothing */
		{9, 1, 10},
		{UINT64_MAX, 0, 0},       /* everything */
	};
	for (size_t i = 0; i < PV_ARRAY_LEN(acks); i++) {
		pv_store_s2s_ack(st, "a.test", "b.test", acks[i].upto, on_done, W(f, 0));
		s2s_expect(f, "a.test", "b.test", 0, 100, acks[i].n, acks[i].first, 1000);
	}
	s2s_expect(f, "a.test", "c.test", 0, 100, 2, 1, 2000);
	s2s_expect(f, "b.test", "a.test", 0, 100, 3, 1, 3000);
	/* The queue goes on after being emptied. */
	s2s_push_range(f, "a.test", "b.test", 11, 12, 1000);
	s2s_expect(f, "a.test", "b.test", 0, 100, 2, 11, 1000);

	/* drop empties one link and keeps its epoch. */
	char *e1 = epoch_of(f, "a.test", "c.test");
	pv_store_s2s_drop(st, "a.test", "c.test", on_done, W(f, 0));
	pv_store_s2s_drop(st, "a.test", "nowhere.test", on_done, W(f, 0)); /* not an error */
	s2s_expect(f, "a.test", "c.test", 0, 100, 0, 0, 0);
	s2s_expect(f, "a.test", "b.test", 0, 100, 2, 11, 1000);
	s2s_expect(f, "b.test", "a.test", 0, 100, 3, 1, 3000);
	char *e2 = epoch_of(f, "a.test", "c.test");
	assert_string_equal(e1, e2);
	free(e1);
	free(e2);
}

typedef struct qlist {
	char local[8][32], remote[8][32], epoch[8][32];
	pv_store_s2s_queue q[8];
	int n;
} qlist;

static void collect_queue(void *ud, const pv_store_s2s_queue *q)
{
	qlist *l = ud;
	assert_true(l->n < 8);
	snprintf(l->local[l->n], sizeof l->local[0], "%s", q->local);
	snprintf(l->remote[l->n], sizeof l->remote[0], "%s", q->remote);
	snprintf(l->epoch[l->n], sizeof l->epoch[0], "%s", q->epoch);
	l->q[l->n] = *q;
	l->q[l->n].local = l->q[l->n].remote = l->q[l->n].epoch = NULL; /* borrowed */
	l->n++;
}

typedef struct qwant {
	const char *local, *remote;
	size_t count;
	uint64_t first, last;
	int64_t oldest;
} qwant;

static void expect_queues(fx *f, const qwant *want, int n)
{
	qlist l = {0};
	assert_int_equal(pv_store_s2s_queues(f->st, collect_queue, &l), n);
	assert_int_equal(l.n, n);
	for (int i = 0; i < n; i++) {
		assert_string_equal(l.local[i], want[i].local);
		assert_string_equal(l.remote[i], want[i].remote);
		assert_int_equal(l.q[i].count, want[i].count);
		assert_int_equal(l.q[i].first_seq, want[i].first);
		assert_int_equal(l.q[i].last_seq, want[i].last);
		assert_int_equal(l.q[i].oldest, want[i].oldest);
		/* Every link has an epoch, the one pv_store_s2s_epoch gives. */
		char *e = epoch_of(f, want[i].local, want[i].remote);
		assert_string_equal(l.epoch[i], e);
		free(e);
	}
}

static void test_s2s_queues(void **state)
{
	fx *f = *state;
	pv_store *st = f->st;
	const uint64_t big = (UINT64_C(1) << 40) + 1;
	assert_int_equal(pv_store_s2s_queues(st, collect_queue, &(qlist){0}), 0);

	free(epoch_of(f, "a.test", "c.test")); /* a link with an epoch and no rows */
	/* created need not follow seq (the wall clock may step back): oldest is the created
	 * of the first row by seq. */
	pv_store_s2s_push(st, "a.test", "b.test", 5, 300, "<a/>", 4, on_done, W(f, 0));
	pv_store_s2s_push(st, "a.test", "b.test", 6, 100, "<b/>", 4, on_done, W(f, 0));
	pv_store_s2s_push(st, "a.test", "b.test", 7, 200, "<c/>", 4, on_done, W(f, 0));
	pv_store_s2s_push(st, "x.test", "b.test", big, 50, "<d/>", 4, on_done, W(f, 0));
	/* Inbound marks are not outbound links. */
	pv_store_s2s_hwm_set(st, "a.test", "z.test", "peer", 9, on_done, W(f, 0));

	const qwant w1[] = {
		{"a.test", "b.test", 3, 5, 7, 300},
		{"a.test", "c.test", 0, 0, 0, 0},
		{"x.test", "b.test", 1, big, big, 50},
	};
	expect_queues(f, w1, 3);
	assert_int_equal(pv_store_s2s_queues(st, NULL, NULL), 3);

	pv_store_s2s_ack(st, "a.test", "b.test", 5, on_done, W(f, 0));
	const qwant w2[] = {
		{"a.test", "b.test", 2, 6, 7, 100},
		{"a.test", "c.test", 0, 0, 0, 0},
		{"x.test", "b.test", 1, big, big, 50},
	};
	expect_queues(f, w2, 3);

	pv_store_s2s_drop(st, "a.test", "b.test", on_done, W(f, 0));
	pv_store_s2s_ack(st, "x.test", "b.test", big, on_done, W(f, 0));
	/* Emptied queues still report the highest seq ever pushed, so a sender never
	 * reuses a seq within the epoch (the receiver would drop it as a resend). */
	const qwant w3[] = {
		{"a.test", "b.test", 0, 0, 7, 0},
		{"a.test", "c.test", 0, 0, 0, 0},
		{"x.test", "b.test", 0, 0, big, 0},
	};
	expect_queues(f, w3, 3);
}

static bool is_hex16(const char *s)
{
	if (strlen(s) != 16)
		return false;
	for (const char *p = s; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	return true;
}

static void test_s2s_epoch(void **state)
{
	fx *f = *state;
	char *e1 = epoch_of(f, "a.test", "b.test");
	assert_true(is_hex16(e1));
	/* Committed when the call returns: another connection sees it. */
	char sql[160];
	snprintf(sql, sizeof sql, "SELECT count(*) FROM s2s_link WHERE local = 'a.test'"
		" AND remote = 'b.test' AND epoch = '%s'", e1);
	assert_int_equal(ext_int(f, sql), 1);

	/* Created once: the next calls, and a push, keep it. */
	char *e2 = epoch_of(f, "a.test", "b.test");
	assert_string_equal(e1, e2);
	pv_store_s2s_push(f->st, "a.test", "b.test", 1, 1, "<m/>", 4, on_done, W(f, 0));
	free(e2);
	e2 = epoch_of(f, "a.test", "b.test");
	assert_string_equal(e1, e2);
	free(e2);

	/* Each link has its own (64 random bits: equal only by a bug). */
	char *e3 = epoch_of(f, "b.test", "a.test");
	assert_true(is_hex16(e3));
	assert_string_not_equal(e1, e3);
	/* A push on a new link gives it an epoch, which the sender then gets. */
	pv_store_s2s_push(f->st, "a.test", "new.test", 1, 1, "<m/>", 4, on_done, W(f, 0));
	pv_store_flush(f->st);
	assert_int_equal(ext_int(f, "SELECT count(*) FROM s2s_link WHERE local = 'a.test'"
		" AND remote = 'new.test'"), 1);
	char *e4 = epoch_of(f, "a.test", "new.test");
	assert_true(is_hex16(e4));
	snprintf(sql, sizeof sql, "SELECT count(*) FROM s2s_link WHERE remote = 'new.test'"
		" AND epoch = '%s'", e4);
	assert_int_equal(ext_int(f, sql), 1);

	char *bad = (char *)"sentinel";
	assert_int_equal(pv_store_s2s_epoch(f->st, NULL, "b.test", &bad), PV_EINVAL);
	assert_int_equal(pv_store_s2s_epoch(f->st, "a.test", NULL, &bad), PV_EINVAL);
	assert_int_equal(pv_store_s2s_epoch(f->st, "a.test", "b.test", NULL), PV_EINVAL);

	/* Stable across a restart, together with the queue and the inbound mark. */
	pv_store_s2s_hwm_set(f->st, "a.test", "b.test", "their-epoch", 41, on_done, W(f, 0));
	reopen(f);
	e2 = epoch_of(f, "a.test", "b.test");
	assert_string_equal(e1, e2);
	free(e2);
	e2 = epoch_of(f, "b.test", "a.test");
	assert_string_equal(e3, e2);
	free(e2);
	e2 = epoch_of(f, "a.test", "new.test");
	assert_string_equal(e4, e2);
	free(e2);
	assert_int_equal(pv_store_s2s_list(f->st, "a.test", "b.test", 0, 10, NULL, NULL), 1);
	char *he;
	uint64_t hwm;
	assert_int_equal(pv_store_s2s_hwm_get(f->st, "a.test", "b.test", &he, &hwm), 0);
	assert_string_equal(he, "their-epoch");
	assert_int_equal(hwm, 41);
	free(he);
	free(e1);
	free(e3);
	free(e4);
}

typedef struct epoch_racer {
	pv_store *st;
	char *epoch;
	int rc;
} epoch_racer;

static void *race_epoch(void *arg)
{
	epoch_racer *r = arg;
	r->rc = pv_store_s2s_epoch(r->st, "a.test", "race.test", &r->epoch);
	return NULL;
}

/* Callers racing for a new link's epoch all get the same one. */
static void test_s2s_epoch_race(void **state)
{
	fx *f = *state;
	enum { N = 8 };
	pthread_t t[N];
	epoch_racer r[N];
	for (int i = 0; i < N; i++) {
		r[i] = (epoch_racer){.st = f->st};
		assert_int_equal(pthread_create(&t[i], NULL, race_epoch, &r[i]), 0);
	}
	for (int i = 0; i < N; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < N; i++) {
		assert_int_equal(r[i].rc, 0);
		assert_true(is_hex16(r[i].epoch));
		assert_string_equal(r[i].epoch, r[0].epoch);
	}
	for (int i = 0; i < N; i++)
		free(r[i].epoch);
	assert_int_equal(ext_int(f, "SELECT count(*) FROM s2s_link"), 1);
}

static void test_s2s_hwm(void **state)
{
	fx *f = *state;
	pv_store *st = f->st;
	char *e = (char *)"sentinel";
	uint64_t hwm = 99;
	assert_int_equal(pv_store_s2s_hwm_get(st, "a.test", "b.test", &e, &hwm), PV_ENOENT);
	assert_null(e);
	assert_int_equal(hwm, 0);

	static const struct {
		const char *local, *remote, *epoch;
		uint64_t hwm;
	} sets[] = {
		{"a.test", "b.test", "0123456789abcdef", 10},
		{"a.test", "c.test", "fedcba9876543210", 0},
		{"a.test", "b.test", "0123456789abcdef", 11},
		{"a.test", "d.test", "e", (UINT64_C(1) << 63) + 5}, /* uint64 survives int64 */
		{"a.test", "c.test", "new-epoch", 3}, /* the peer restarted: a new epoch, lower mark */
	};
	for (size_t i = 0; i < PV_ARRAY_LEN(sets); i++)
		pv_store_s2s_hwm_set(st, sets[i].local, sets[i].remote, sets[i].epoch, sets[i].hwm,
			on_done, W(f, 0));

	static const struct {
		const char *local, *remote;
		int rc;
		const char *epoch;
		uint64_t hwm;
	} gets[] = {
		{"a.test", "b.test", 0, "0123456789abcdef", 11},
		{"a.test", "c.test", 0, "new-epoch", 3},
		{"a.test", "d.test", 0, "e", (UINT64_C(1) << 63) + 5},
		{"b.test", "a.test", PV_ENOENT, NULL, 0}, /* per direction */
		{"x.test", "b.test", PV_ENOENT, NULL, 0},
	};
	for (size_t i = 0; i < PV_ARRAY_LEN(gets); i++) {
		e = (char *)"sentinel";
		hwm = 99;
		assert_int_equal(pv_store_s2s_hwm_get(st, gets[i].local, gets[i].remote, &e, &hwm),
			gets[i].rc);
		assert_true(hwm == gets[i].hwm);
		if (gets[i].epoch) {
			assert_string_equal(e, gets[i].epoch);
			free(e);
		} else {
			assert_null(e);
		}
	}
	assert_int_equal(pv_store_s2s_hwm_get(st, NULL, "b.test", &e, &hwm), PV_EINVAL);
	assert_int_equal(pv_store_s2s_hwm_get(st, "a.test", "b.test", NULL, &hwm), PV_EINVAL);
	assert_int_equal(pv_store_s2s_hwm_get(st, "a.test", "b.test", &e, NULL), PV_EINVAL);
}

/* Reads answer in FIFO order: they see every s2s write queued before them although no
 * done has run yet (with a loop); pv_store_s2s_epoch, a synchronous write, returns only
 * after its batch committed, so the writes queued before it are committed too. */
static void test_s2s_fifo(void **state)
{
	fx *f = *state;
	pv_store *st = f->st;
	cell *first = NULL;
	for (int i = 1; i <= 100; i++) {
		cell *c = W(f, 0);
		if (!first)
			first = c;
		pv_store_s2s_push(st, "a.test", "b.test", (uint64_t)i, i, "<m/>", 4, on_done, c);
		if (i % 25 == 0)
			assert_int_equal(pv_store_s2s_list(st, "a.test", "b.test", 0, 1000, NULL, NULL), i);
	}
	assert_int_equal(first->called, f->use_loop ? 0 : 1);

	pv_store_s2s_ack(st, "a.test", "b.test", 50, on_done, W(f, 0));
	s2srows r = {0};
	assert_int_equal(pv_store_s2s_list(st, "a.test", "b.test", 0, 1, collect_s2s, &r), 1);
	assert_int_equal(r.seq[0], 51);
	assert_int_equal(r.created[0], 51);

	pv_store_s2s_hwm_set(st, "a.test", "b.test", "p", 77, on_done, W(f, 0));
	char *e;
	uint64_t hwm;
	assert_int_equal(pv_store_s2s_hwm_get(st, "a.test", "b.test", &e, &hwm), 0);
	assert_int_equal(hwm, 77);
	free(e);

	pv_store_s2s_drop(st, "a.test", "b.test", on_done, W(f, 0));
	qlist l = {0};
	assert_int_equal(pv_store_s2s_queues(st, collect_queue, &l), 1);
	assert_int_equal(l.q[0].count, 0);

	cell *last = NULL;
	for (int i = 101; i <= 110; i++) {
		last = W(f, 0);
		pv_store_s2s_push(st, "a.test", "b.test", (uint64_t)i, i, "<m/>", 4, on_done, last);
	}
	free(epoch_of(f, "a.test", "b.test"));
	/* Committed (another connection sees them) before their done ran. */
	assert_int_equal(ext_int(f, "SELECT count(*) FROM s2s_queue"), 10);
	assert_int_equal(ext_int(f, "SELECT min(seq) FROM s2s_queue"), 101);
	assert_int_equal(last->called, f->use_loop ? 0 : 1);
	run_until(f, &last->called, 1);
	for (size_t i = 0; i < f->ncells; i++)
		assert_int_equal(f->cells[i].called, 1); /* in FIFO order, so all ran */
}

/* A database made by an older build (schema version 1) gains the s2s tables at open
 * and keeps its data. */
static void test_migrate_from_v1(void **state)
{
	char dir[64], path[128];
	sqlite3 *db;
	make_dir(dir, sizeof dir);
	snprintf(path, sizeof path, "%s/peyvand.sqlite", dir);
	assert_true(pv_schema_sqlite_count >= 2);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, pv_schema_sqlite[0], NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 1;"
		" INSERT INTO offline (host, user, stamp, xml) VALUES ('a.test', 'juliet', 1, '<m/>')",
		NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "SELECT * FROM s2s_link", NULL, NULL, NULL), SQLITE_ERROR);
	sqlite3_close(db);

	pv_store *st = pv_store_open(dir, NULL);
	assert_non_null(st);
	assert_int_equal(pv_store_offline_count(st, "a.test", "juliet"), 1);
	char *e = NULL;
	assert_int_equal(pv_store_s2s_epoch(st, "a.test", "b.test", &e), 0);
	assert_true(is_hex16(e));
	free(e);
	pv_store_s2s_push(st, "a.test", "b.test", 1, 1, "<m/>", 4, NULL, NULL);
	assert_int_equal(pv_store_s2s_list(st, "a.test", "b.test", 0, 10, NULL, NULL), 1);
	pv_store_close(st);

	sqlite3_stmt *s;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int64(s, 0), (int64_t)pv_schema_sqlite_count);
	sqlite3_finalize(s);
	sqlite3_close(db);
	rm_dir(dir);
}

/* ---- crash: every write whose done ran survives a SIGKILL ---- */

/* The child keeps CRASH_INFLIGHT writes queued at all times (each done queues the next
 * one) and kills itself on the CRASH_AFTER-th done, so the kill lands mid-stream, with
 * commits in progress. */
enum { CRASH_WRITES = 20000, CRASH_INFLIGHT = 500, CRASH_AFTER = 1000 };

#define CRASH_CREATED 1700000000 /* s2s rows: created = CRASH_CREATED + i, seq = i + 1 */

typedef struct crash_ctx {
	pv_store *st;
	bool s2s;                /* push to the s2s queue a.test -> b.test, not offline */
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
	if (c->s2s)
		pv_store_s2s_push(c->st, "a.test", "b.test", (uint64_t)i + 1, CRASH_CREATED + i, xml,
			(size_t)len, crash_done, &crash_args[i]);
	else
		pv_store_offline_push(c->st, "a.test", "juliet", xml, (size_t)len, -1, crash_done,
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

static void crash_child(const char *dir, int fd, bool s2s)
{
	uv_loop_t loop;
	uv_timer_t tick;
	crash_ctx c = {.fd = fd, .s2s = s2s};
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

static void collect_present_s2s(void *ud, uint64_t seq, int64_t created, const char *xml,
	size_t len)
{
	present *p = ud;
	assert_int_equal(seq, (uint64_t)p->n + 1);
	assert_int_equal(created, CRASH_CREATED + p->n);
	collect_present(ud, 0, 0, xml, len);
}

static void crash_queue(void *ud, const pv_store_s2s_queue *q)
{
	pv_store_s2s_queue *out = ud;
	assert_string_equal(q->local, "a.test");
	assert_string_equal(q->remote, "b.test");
	assert_int_equal(strlen(q->epoch), 16);
	out->count = q->count;
	out->first_seq = q->first_seq;
	out->last_seq = q->last_seq;
	out->oldest = q->oldest;
}

static void crash_run(bool s2s)
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
		crash_child(dir, pfd[1], s2s);
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
	int n = s2s ? pv_store_s2s_list(st, "a.test", "b.test", 0, SIZE_MAX, collect_present_s2s, &p)
		: pv_store_offline_list(st, "a.test", "juliet", collect_present, &p);
	assert_true(n >= CRASH_AFTER);
	assert_true(n < CRASH_WRITES);
	assert_int_equal(p.n, n);
	for (int j = 0; j < CRASH_WRITES; j++)
		if (acked[j] && !seen[j])
			fail_msg("write %d was acknowledged (done ran) but is lost", j);
	if (s2s) {
		/* The link and its epoch were committed with the first row. */
		pv_store_s2s_queue qs = {0};
		assert_int_equal(pv_store_s2s_queues(st, crash_queue, &qs), 1);
		assert_int_equal(qs.count, (size_t)n);
		assert_int_equal(qs.first_seq, 1);
		assert_int_equal(qs.last_seq, (uint64_t)n);
		assert_int_equal(qs.oldest, CRASH_CREATED);
	}
	pv_store_close(st);
	rm_dir(dir);
}

static void test_crash(void **state)
{
	crash_run(false);
}

static void test_crash_s2s(void **state)
{
	crash_run(true);
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
		BOTH(test_offline_quota),
		BOTH(test_kv),
		BOTH(test_sessions),
		BOTH(test_user_delete_all),
		BOTH(test_read_after_queued_write),
		BOTH(test_reopen),
		BOTH(test_s2s_push_list_ack_drop),
		BOTH(test_s2s_queues),
		BOTH(test_s2s_epoch),
		BOTH(test_s2s_hwm),
		BOTH(test_s2s_fifo),
		cmocka_unit_test_setup_teardown(test_inline_done, setup_inline, teardown),
		cmocka_unit_test_setup_teardown(test_many_async_writers, setup_loop, teardown),
		cmocka_unit_test_setup_teardown(test_group_commit, setup_loop, teardown),
		cmocka_unit_test_setup_teardown(test_commit_pacing, setup_loop, teardown),
		cmocka_unit_test_setup_teardown(test_group_commit_locked, setup_loop, teardown),
		cmocka_unit_test(test_schema_too_new),
		cmocka_unit_test(test_migrate_from_v1),
		cmocka_unit_test_setup_teardown(test_s2s_epoch_race, setup_loop, teardown),
		cmocka_unit_test(test_crash),
		cmocka_unit_test_setup_teardown(test_loop_reads_see_queued_writes, setup_loop, teardown),
		cmocka_unit_test_setup_teardown(test_narrow_reads_pass_other_writes, setup_loop,
			teardown),
		cmocka_unit_test(test_crash_s2s),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
