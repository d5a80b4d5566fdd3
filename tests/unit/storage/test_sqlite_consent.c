/* test_sqlite_consent.c -- unit tests of the consent section of the SQLite store
 * (src/storage/sqlite.c, "consent (issue 4)" in pv_store.h, schema 003_consent.sql).
 *
 * Data tests run twice: with a libuv loop (writes asynchronous, done on the loop thread,
 * which is this test thread) and with loop == NULL (done inline).  Every done is recorded
 * in a fixture "cell" with the rc the test expects; teardown closes the store and checks
 * each cell ran once with that rc.  Covered: settings, the hash-chained log (known-answer
 * hashes computed independently with Python's hashlib), verification against tampering
 * made with the sqlite3 API on the closed database, the append-only triggers, evidence,
 * message requests, abuse reports, block lists, account deletion, concurrent appends,
 * migration from schema 2, and a crash test (SIGKILL mid-stream: every append whose done
 * ran survives and the chain verifies). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <dirent.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "peyvand/pv_log.h"
#include "peyvand/pv_store.h"

extern const char *const pv_schema_sqlite[];
extern const size_t pv_schema_sqlite_count;

#define MAX_CELLS 4096
#define WAIT_MS 20000
#define H "a.test"
#define ZERO64 "0000000000000000000000000000000000000000000000000000000000000000"

/* Known answers, computed outside this code base:
 *   python3 -c "import hashlib; z='0'*64
 *     h1=hashlib.sha256(f'{z}\n1\n1700000000\npolicy everyone'.encode()).hexdigest()
 *     h2=hashlib.sha256(f'{h1}\n2\n1700000060\nallow ali@eitaa.example'.encode()).hexdigest()
 *     h3=hashlib.sha256(f'{h2}\n3\n-5\nnote: two\nlines'.encode()).hexdigest()" */
#define KAT_H1 "79af854050244a79e06c640450eb80bd50d57741b0fab114247a7e2f89210fc6"
#define KAT_H2 "6692a6d4832bba2566f7bab5946d3c7cd5841c493d1fe4c304f6a51ca7ddde90"
#define KAT_H3 "acfc91f820b1dc03bb37de3c18b85e053009fc128d240193876eda4580f55f26"

typedef struct fx fx;

typedef struct cell {
	fx *f;
	int expect, rc, called;
} cell;

struct fx {
	char dir[64];
	bool use_loop;
	uv_loop_t loop;
	uv_timer_t tick;           /* keeps uv_run(ONCE) from blocking forever: the store's */
	pthread_t loop_thread;     /* async handle is unref'd */
	pv_store *st;
	cell cells[MAX_CELLS];
	size_t ncells;
	int wrong_thread;
	int counted;
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
	snprintf(buf, n, "/tmp/pv-consent-test-XXXXXX");
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
	for (size_t i = 0; i < f->ncells; i++)
		if (f->cells[i].called != 1 || f->cells[i].rc != f->cells[i].expect)
			fail_msg("done cell %zu: called=%d rc=%d expected rc=%d", i, f->cells[i].called,
				f->cells[i].rc, f->cells[i].expect);
	assert_int_equal(f->wrong_thread, 0);
	if (f->use_loop) {
		uv_close((uv_handle_t *)&f->tick, NULL);
		uv_run(&f->loop, UV_RUN_DEFAULT);
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

static void reopen(fx *f)
{
	pv_store_close(f->st);
	f->st = pv_store_open(f->dir, f->use_loop ? &f->loop : NULL);
	assert_non_null(f->st);
}

static void mkuser(pv_store *st, const char *user)
{
	assert_int_equal(pv_store_user_create(st, H, user, NULL, 0), 0);
}

static sqlite3 *ext_open(const char *dir)
{
	char path[128];
	sqlite3 *db;
	snprintf(path, sizeof path, "%s/peyvand.sqlite", dir);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	sqlite3_extended_result_codes(db, 1);
	sqlite3_busy_timeout(db, 5000);
	return db;
}

static int64_t ext_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *s;
	int64_t v = -1;
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
	if (sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return v;
}

/* ---- settings ---- */

static void expect_rules(const pv_consent_rule *r, size_t n, const char *const *subj,
	const int *kind, size_t want)
{
	assert_int_equal(n, want);
	for (size_t i = 0; i < want; i++) {
		assert_string_equal(r[i].subject, subj[i]);
		assert_int_equal(r[i].kind, kind[i]);
	}
}

static void test_settings(void **state)
{
	fx *f = *state;
	pv_store *st = f->st;
	pv_consent c;

	/* Defaults: nothing stored (the account need not even exist). */
	memset(&c, 0xab, sizeof c);
	assert_int_equal(pv_store_consent_get(st, H, "juliet", &c), 0);
	assert_int_equal(c.policy, PV_CONSENT_OFF);
	assert_int_equal(c.nproviders, 0);
	assert_int_equal(c.nsenders, 0);
	assert_null(c.providers);
	assert_null(c.senders);
	pv_consent_fini(&c);

	pv_store_consent_set_policy(st, H, "juliet", PV_CONSENT_EVERYONE, on_done, W(f, 0));
	pv_store_consent_set_provider(st, H, "juliet", "soroush.example", PV_CONSENT_OFF, on_done,
		W(f, 0));
	pv_store_consent_set_provider(st, H, "juliet", "eitaa.example", PV_CONSENT_CONTACTS,
		on_done, W(f, 0));
	pv_store_consent_set_provider(st, H, "juliet", "bale.example", PV_CONSENT_EVERYONE,
		on_done, W(f, 0));
	pv_store_consent_set_sender(st, H, "juliet", "ali@eitaa.example", 1, on_done, W(f, 0));
	pv_store_consent_set_sender(st, H, "juliet", "spam@bale.example", 0, on_done, W(f, 0));
	pv_store_consent_set_policy(st, H, "romeo", PV_CONSENT_CONTACTS, on_done, W(f, 0));

	/* Read back (FIFO: a read sees every write queued before it); rules sorted. */
	assert_int_equal(pv_store_consent_get(st, H, "juliet", &c), 0);
	assert_int_equal(c.policy, PV_CONSENT_EVERYONE);
	static const char *const p1[] = {"bale.example", "eitaa.example", "soroush.example"};
	static const int k1[] = {PV_CONSENT_EVERYONE, PV_CONSENT_CONTACTS, PV_CONSENT_OFF};
	expect_rules(c.providers, c.nproviders, p1, k1, 3);
	static const char *const s1[] = {"ali@eitaa.example", "spam@bale.example"};
	static const int ks1[] = {1, 0};
	expect_rules(c.senders, c.nsenders, s1, ks1, 2);
	pv_consent_fini(&c);
	assert_int_equal(c.nproviders, 0); /* fini leaves an empty struct */

	/* Overwrite, remove, remove a rule that does not exist (not an error). */
	pv_store_consent_set_policy(st, H, "juliet", PV_CONSENT_CONTACTS, on_done, W(f, 0));
	pv_store_consent_set_provider(st, H, "juliet", "eitaa.example", PV_CONSENT_EVERYONE,
		on_done, W(f, 0));
	pv_store_consent_set_provider(st, H, "juliet", "bale.example", -1, on_done, W(f, 0));
	pv_store_consent_set_provider(st, H, "juliet", "none.example", -1, on_done, W(f, 0));
	pv_store_consent_set_sender(st, H, "juliet", "spam@bale.example", 1, on_done, W(f, 0));
	pv_store_consent_set_sender(st, H, "juliet", "ali@eitaa.example", -5, on_done, W(f, 0));
	reopen(f); /* and it was all committed */
	st = f->st;
	assert_int_equal(pv_store_consent_get(st, H, "juliet", &c), 0);
	assert_int_equal(c.policy, PV_CONSENT_CONTACTS);
	static const char *const p2[] = {"eitaa.example", "soroush.example"};
	static const int k2[] = {PV_CONSENT_EVERYONE, PV_CONSENT_OFF};
	expect_rules(c.providers, c.nproviders, p2, k2, 2);
	static const char *const s2[] = {"spam@bale.example"};
	static const int ks2[] = {1};
	expect_rules(c.senders, c.nsenders, s2, ks2, 1);
	pv_consent_fini(&c);

	/* Per user. */
	assert_int_equal(pv_store_consent_get(st, H, "romeo", &c), 0);
	assert_int_equal(c.policy, PV_CONSENT_CONTACTS);
	assert_int_equal(c.nproviders + c.nsenders, 0);
	pv_consent_fini(&c);
	assert_int_equal(pv_store_consent_get(st, "b.test", "juliet", &c), 0);
	assert_int_equal(c.policy, PV_CONSENT_OFF);
	pv_consent_fini(&c);
	assert_int_equal(pv_store_consent_get(st, H, NULL, &c), PV_EINVAL);
}

/* ---- the log ---- */

typedef struct entries {
	pv_consent_entry e[64];
	char action[64][64];
	int n;
} entries;

static void collect_entry(void *ud, const pv_consent_entry *e)
{
	entries *l = ud;
	assert_true(l->n < 64 && strlen(e->action) < 64);
	l->e[l->n] = *e;
	snprintf(l->action[l->n], sizeof l->action[0], "%s", e->action);
	l->e[l->n].action = l->action[l->n]; /* the store's copy is borrowed */
	l->n++;
}

static void test_log_chain(void **state)
{
	fx *f = *state;
	pv_store *st = f->st;
	uint64_t head = 99, bad = 99;
	mkuser(st, "juliet");
	mkuser(st, "romeo");

	assert_int_equal(pv_store_consent_log_head(st, H, "juliet", &head), 0);
	assert_int_equal(head, 0);
	assert_int_equal(pv_store_consent_log_verify(st, H, "juliet", &bad), 0); /* empty: intact */
	assert_int_equal(bad, 0);

	pv_store_consent_log(st, H, "juliet", "policy everyone", 1700000000, on_done, W(f, 0));
	/* An append for an account that does not exist fails alone (its own savepoint). */
	pv_store_consent_log(st, H, "nobody", "policy everyone", 1700000000, on_done,
		W(f, PV_ENOENT));
	pv_store_consent_log(st, H, "romeo", "policy off", 1700000001, on_done, W(f, 0));
	pv_store_consent_log(st, H, "juliet", "allow ali@eitaa.example", 1700000060, on_done,
		W(f, 0));
	pv_store_consent_log(st, H, "juliet", "note: two\nlines", -5, on_done, W(f, 0));

	static const struct {
		int64_t stamp;
		const char *action, *prev, *hash;
	} want[] = {
		{1700000000, "policy everyone", ZERO64, KAT_H1},
		{1700000060, "allow ali@eitaa.example", KAT_H1, KAT_H2},
		{-5, "note: two\nlines", KAT_H2, KAT_H3},
	};
	entries l = {0};
	assert_int_equal(pv_store_consent_log_list(st, H, "juliet", 0, collect_entry, &l), 3);
	assert_int_equal(l.n, 3);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(l.e[i].seq, (uint64_t)i + 1);
		assert_int_equal(l.e[i].stamp, want[i].stamp);
		assert_string_equal(l.e[i].action, want[i].action);
		assert_string_equal(l.e[i].prev, want[i].prev);
		assert_string_equal(l.e[i].hash, want[i].hash);
	}
	assert_int_equal(pv_store_consent_log_head(st, H, "juliet", &head), 0);
	assert_int_equal(head, 3);
	assert_int_equal(pv_store_consent_log_verify(st, H, "juliet", &bad), 0);
	assert_int_equal(bad, 0);

	/* after: entries with seq > after; UINT64_MAX is "nothing more". */
	memset(&l, 0, sizeof l);
	assert_int_equal(pv_store_consent_log_list(st, H, "juliet", 1, collect_entry, &l), 2);
	assert_int_equal(l.e[0].seq, 2);
	assert_int_equal(pv_store_consent_log_list(st, H, "juliet", 3, NULL, NULL), 0);
	assert_int_equal(pv_store_consent_log_list(st, H, "juliet", UINT64_MAX, NULL, NULL), 0);

	/* Each user has a chain of their own, starting from 64 zeros. */
	memset(&l, 0, sizeof l);
	assert_int_equal(pv_store_consent_log_list(st, H, "romeo", 0, collect_entry, &l), 1);
	assert_int_equal(l.e[0].seq, 1);
	assert_string_equal(l.e[0].prev, ZERO64);
	assert_int_equal(pv_store_consent_log_head(st, H, "nobody", &head), 0);
	assert_int_equal(head, 0);
	assert_int_equal(pv_store_consent_log_list(st, H, "nobody", 0, NULL, NULL), 0);

	/* The chain continues across a restart. */
	reopen(f);
	pv_store_consent_log(f->st, H, "juliet", "deny x@y.example", 1700000100, on_done, W(f, 0));
	memset(&l, 0, sizeof l);
	assert_int_equal(pv_store_consent_log_list(f->st, H, "juliet", 2, collect_entry, &l), 2);
	assert_int_equal(l.e[1].seq, 4);
	assert_string_equal(l.e[1].prev, KAT_H3);
	assert_int_equal(pv_store_consent_log_verify(f->st, H, "juliet", &bad), 0);
	assert_int_equal(pv_store_consent_log_verify(f->st, H, NULL, &bad), PV_EINVAL);
}

/* A settings change and its log entry, glued into one transaction by the caller. */
static void test_log_batch(void **state)
{
	fx *f = *state;
	mkuser(f->st, "juliet");
	pv_store_batch_begin(f->st);
	pv_store_consent_set_policy(f->st, H, "juliet", PV_CONSENT_EVERYONE, on_done, W(f, 0));
	pv_store_consent_log(f->st, H, "juliet", "policy everyone", 1700000000, on_done, W(f, 0));
	pv_store_batch_end(f->st);
	pv_consent c;
	uint64_t head;
	assert_int_equal(pv_store_consent_get(f->st, H, "juliet", &c), 0);
	assert_int_equal(c.policy, PV_CONSENT_EVERYONE);
	pv_consent_fini(&c);
	assert_int_equal(pv_store_consent_log_head(f->st, H, "juliet", &head), 0);
	assert_int_equal(head, 1);
}

/* Appends from several threads at once: one chain, seq 1..N without gaps, each thread's
 * own entries in its order, and it verifies. */
enum { LOG_THREADS = 4, LOG_PER = 150 };

typedef struct appender {
	fx *f;
	int id;
} appender;

static void *append_many(void *arg)
{
	appender *a = arg;
	for (int i = 0; i < LOG_PER; i++) {
		char action[32];
		snprintf(action, sizeof action, "t%d n%d", a->id, i);
		pv_store_consent_log(a->f->st, H, "juliet", action, i, a->f->use_loop ? on_count : NULL,
			a->f);
	}
	return NULL;
}

typedef struct thread_order {
	int next[LOG_THREADS];
	uint64_t seq;
	int bad;
} thread_order;

static void check_thread_order(void *ud, const pv_consent_entry *e)
{
	thread_order *o = ud;
	int t, n;
	if (e->seq != ++o->seq || sscanf(e->action, "t%d n%d", &t, &n) != 2 || t < 0
		|| t >= LOG_THREADS || n != o->next[t])
		o->bad++;
	else
		o->next[t]++;
}

static void test_log_threads(void **state)
{
	fx *f = *state;
	pthread_t t[LOG_THREADS];
	appender a[LOG_THREADS];
	mkuser(f->st, "juliet");
	for (int i = 0; i < LOG_THREADS; i++) {
		a[i] = (appender){.f = f, .id = i};
		assert_int_equal(pthread_create(&t[i], NULL, append_many, &a[i]), 0);
	}
	if (f->use_loop)
		run_until(f, &f->counted, LOG_THREADS * LOG_PER);
	for (int i = 0; i < LOG_THREADS; i++)
		pthread_join(t[i], NULL);
	pv_store_flush(f->st);
	thread_order o = {{0}, 0, 0};
	assert_int_equal(pv_store_consent_log_list(f->st, H, "juliet", 0, check_thread_order, &o),
		LOG_THREADS * LOG_PER);
	assert_int_equal(o.bad, 0);
	for (int i = 0; i < LOG_THREADS; i++)
		assert_int_equal(o.next[i], LOG_PER);
	uint64_t bad = 99;
	assert_int_equal(pv_store_consent_log_verify(f->st, H, "juliet", &bad), 0);
	assert_int_equal(bad, 0);
}

/* ---- append-only, at the database level ---- */

static void test_log_append_only(void **state)
{
	fx *f = *state;
	mkuser(f->st, "juliet");
	for (int i = 0; i < 3; i++)
		pv_store_consent_log(f->st, H, "juliet", "policy off", 1700000000 + i, on_done, W(f, 0));
	pv_store_flush(f->st);

	/* Another connection (WAL: the store stays open) tries to rewrite history. */
	sqlite3 *db = ext_open(f->dir);
	static const char *const refused[] = {
		"UPDATE consent_log SET action = 'policy everyone' WHERE seq = 2",
		"UPDATE consent_log SET stamp = 0",
		"DELETE FROM consent_log WHERE seq = 3",
		"DELETE FROM consent_log",
		/* Inserts that do not extend the head: a gap, a fork, a wrong prev, a replace. */
		"INSERT INTO consent_log (host, user, seq, stamp, action, prev, hash)"
		" SELECT host, user, 5, 0, 'x', hash, hash FROM consent_log WHERE seq = 3",
		"INSERT INTO consent_log (host, user, seq, stamp, action, prev, hash)"
		" SELECT host, user, 4, 0, 'x', prev, hash FROM consent_log WHERE seq = 3",
		"INSERT OR REPLACE INTO consent_log (host, user, seq, stamp, action, prev, hash)"
		" SELECT host, user, seq, stamp, 'x', prev, hash FROM consent_log WHERE seq = 2",
		/* No chains for accounts that do not exist. */
		"INSERT INTO consent_log (host, user, seq, stamp, action, prev, hash)"
		" VALUES ('a.test', 'nobody', 1, 0, 'x', '" ZERO64 "', '" ZERO64 "')",
	};
	for (size_t i = 0; i < PV_ARRAY_LEN(refused); i++) {
		int rc = sqlite3_exec(db, refused[i], NULL, NULL, NULL);
		if (rc != SQLITE_CONSTRAINT_TRIGGER)
			fail_msg("statement %zu: rc=%d (%s), want a trigger refusal", i, rc,
				sqlite3_errmsg(db));
	}
	/* A well-formed extension is accepted by the database (the hash is not checked
	 * there; verify would catch a wrong one). */
	assert_int_equal(sqlite3_exec(db, "INSERT INTO consent_log"
		" (host, user, seq, stamp, action, prev, hash) SELECT host, user, 4, 0, 'x', hash,"
		" '" ZERO64 "' FROM consent_log WHERE seq = 3", NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(ext_int(db, "SELECT count(*) FROM consent_log"), 4);
	uint64_t bad;
	assert_int_equal(pv_store_consent_log_verify(f->st, H, "juliet", &bad), PV_EINVAL);
	assert_int_equal(bad, 4);

	/* The account deletion path is the one way out. */
	assert_int_equal(pv_store_user_delete(f->st, H, "juliet"), 0);
	assert_int_equal(ext_int(db, "SELECT count(*) FROM consent_log"), 0);
	sqlite3_close(db);
}

/* Tampering with a closed store's file (the test drops the triggers for the edit and puts
 * them back) is found by verify. */
typedef struct tamper_case {
	const char *name;
	const char *sql;
	uint64_t bad;       /* expected *bad_seq; 0: undetectable, verify returns 0 */
	bool rehash;        /* then recompute entry 3's hash as an informed forger would */
} tamper_case;

static const tamper_case tamper_cases[] = {
	{"action", "UPDATE consent_log SET action = 'policy everyone' WHERE seq = 3", 3, false},
	{"stamp", "UPDATE consent_log SET stamp = stamp + 1 WHERE seq = 1", 1, false},
	{"hash", "UPDATE consent_log SET hash = '" ZERO64 "' WHERE seq = 5", 5, false},
	{"prev", "UPDATE consent_log SET prev = hash WHERE seq = 4", 4, false},
	{"removed", "DELETE FROM consent_log WHERE seq = 2", 2, false},
	{"renumbered", "UPDATE consent_log SET seq = 9 WHERE seq = 5", 5, false},
	{"forged", "UPDATE consent_log SET action = 'policy everyone' WHERE seq = 3", 4, true},
	{"truncated", "DELETE FROM consent_log WHERE seq = 5", 0, false},
	{"other user", "UPDATE consent_log SET action = 'x' WHERE user = 'romeo'", 0, false},
};

static void sha256_hex(const char *in, char out[65])
{
	unsigned char md[32];
	unsigned int n = 0;
	assert_int_equal(EVP_Digest(in, strlen(in), md, &n, EVP_sha256(), NULL), 1);
	assert_int_equal(n, 32);
	for (unsigned int i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static char *trigger_sql(sqlite3 *db, const char *name)
{
	sqlite3_stmt *s;
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT sql FROM sqlite_master"
		" WHERE type = 'trigger' AND name = ?1", -1, &s, NULL), SQLITE_OK);
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	char *sql = strdup((const char *)sqlite3_column_text(s, 0));
	sqlite3_finalize(s);
	return sql;
}

static void tamper(const char *dir, const tamper_case *tc)
{
	static const char *const triggers[] = {"consent_log_no_update", "consent_log_no_delete"};
	char *saved[2];
	sqlite3 *db = ext_open(dir);
	assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	for (int i = 0; i < 2; i++) {
		saved[i] = trigger_sql(db, triggers[i]);
		char drop[128];
		snprintf(drop, sizeof drop, "DROP TRIGGER %s", triggers[i]);
		assert_int_equal(sqlite3_exec(db, drop, NULL, NULL, NULL), SQLITE_OK);
	}
	assert_int_equal(sqlite3_exec(db, tc->sql, NULL, NULL, NULL), SQLITE_OK);
	assert_true(sqlite3_changes(db) > 0);
	if (tc->rehash) {
		/* Recompute entry 3 with its new action, chained to entry 2. */
		sqlite3_stmt *s;
		assert_int_equal(sqlite3_prepare_v2(db, "SELECT prev, seq, stamp, action FROM"
			" consent_log WHERE user = 'juliet' AND seq = 3", -1, &s, NULL), SQLITE_OK);
		assert_int_equal(sqlite3_step(s), SQLITE_ROW);
		char *in = NULL, hash[65];
		assert_true(asprintf(&in, "%s\n%lld\n%lld\n%s", sqlite3_column_text(s, 0),
			(long long)sqlite3_column_int64(s, 1), (long long)sqlite3_column_int64(s, 2),
			sqlite3_column_text(s, 3)) > 0);
		sqlite3_finalize(s);
		sha256_hex(in, hash);
		free(in);
		char *upd = sqlite3_mprintf("UPDATE consent_log SET hash = %Q"
			" WHERE user = 'juliet' AND seq = 3", hash);
		assert_int_equal(sqlite3_exec(db, upd, NULL, NULL, NULL), SQLITE_OK);
		sqlite3_free(upd);
	}
	for (int i = 0; i < 2; i++) {
		assert_int_equal(sqlite3_exec(db, saved[i], NULL, NULL, NULL), SQLITE_OK);
		free(saved[i]);
	}
	assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	/* The guard is back in place. */
	assert_int_equal(sqlite3_exec(db, "UPDATE consent_log SET stamp = 0", NULL, NULL, NULL),
		SQLITE_CONSTRAINT_TRIGGER);
	sqlite3_close(db);
}

static void test_log_tamper(void **state)
{
	for (size_t i = 0; i < PV_ARRAY_LEN(tamper_cases); i++) {
		const tamper_case *tc = &tamper_cases[i];
		char dir[64];
		uint64_t bad = 99;
		make_dir(dir, sizeof dir);
		pv_store *st = pv_store_open(dir, NULL);
		assert_non_null(st);
		mkuser(st, "juliet");
		mkuser(st, "romeo");
		for (int j = 1; j <= 5; j++) {
			char action[32];
			snprintf(action, sizeof action, "policy %d", j);
			pv_store_consent_log(st, H, "juliet", action, 1700000000 + j, NULL, NULL);
		}
		pv_store_consent_log(st, H, "romeo", "policy off", 1, NULL, NULL);
		assert_int_equal(pv_store_consent_log_verify(st, H, "juliet", &bad), 0);
		pv_store_close(st);

		tamper(dir, tc);

		st = pv_store_open(dir, NULL);
		assert_non_null(st);
		int rc = pv_store_consent_log_verify(st, H, "juliet", &bad);
		if (rc != (tc->bad ? PV_EINVAL : 0) || bad != tc->bad)
			fail_msg("case %s: rc=%d bad_seq=%llu, want bad_seq=%llu", tc->name, rc,
				(unsigned long long)bad, (unsigned long long)tc->bad);
		pv_store_close(st);
		rm_dir(dir);
	}
}

/* ---- evidence ---- */

static void test_evidence(void **state)
{
	fx *f = *state;
	pv_store *st = f->st;
	char *sender = NULL;
	uint64_t seq = 0;
	int64_t stamp = 0;

	mkuser(st, "juliet");
	assert_int_equal(pv_store_consent_evidence_get(st, H, "juliet", "m1", &sender, &seq, &stamp),
		PV_ENOENT);
	assert_null(sender);
	/* Each record names the log entry latest when it is written: after every log write
	 * queued before it, with nothing read in between. */
	pv_store_consent_evidence(st, H, "juliet", "bob@bale.example", "m0", 1699999999, on_done,
		W(f, 0));
	pv_store_consent_log(st, H, "juliet", "policy everyone", 1, on_done, W(f, 0));
	pv_store_consent_log(st, H, "juliet", "allow ali@eitaa.example", 2, on_done, W(f, 0));
	pv_store_consent_evidence(st, H, "juliet", "ali@eitaa.example", "m1", 1700000000, on_done,
		W(f, 0));
	pv_store_consent_evidence(st, H, "juliet", "bob@bale.example", "m2", 1700000001, on_done,
		W(f, 0));
	pv_store_consent_log(st, H, "juliet", "provider bale.example contacts", 3, on_done, W(f, 0));
	/* The sender reused id m1: both records stay, the lookup gives the latest. */
	pv_store_consent_evidence(st, H, "juliet", "ali@eitaa.example", "m1", 1700000002, on_done,
		W(f, 0));
	pv_store_consent_evidence(st, H, "romeo", "eve@x.example", "m1", 5, on_done, W(f, 0));

	assert_int_equal(pv_store_consent_evidence_get(st, H, "juliet", "m1", &sender, &seq, &stamp),
		0);
	assert_string_equal(sender, "ali@eitaa.example");
	assert_int_equal(seq, 3);
	assert_int_equal(stamp, 1700000002);
	free(sender);
	assert_int_equal(pv_store_consent_evidence_get(st, H, "juliet", "m2", &sender, &seq, NULL),
		0);
	assert_string_equal(sender, "bob@bale.example");
	assert_int_equal(seq, 2);
	free(sender);
	assert_int_equal(pv_store_consent_evidence_get(st, H, "juliet", "m0", NULL, &seq, &stamp), 0);
	assert_int_equal(seq, 0);
	assert_int_equal(stamp, 1699999999);
	assert_int_equal(pv_store_consent_evidence_get(st, H, "romeo", "m1", NULL, &seq, &stamp), 0);
	assert_int_equal(seq, 0); /* no log at all */
	assert_int_equal(stamp, 5);
	assert_int_equal(pv_store_consent_evidence_get(st, H, "juliet", "m3", NULL, NULL, NULL),
		PV_ENOENT);
	assert_int_equal(pv_store_consent_evidence_get(st, "b.test", "juliet", "m1", NULL, NULL,
		NULL), PV_ENOENT);
}

/* ---- message requests ---- */

typedef struct reqlines {
	char sender[16][48];
	pv_request_info r[16];
	int n;
} reqlines;

static void collect_req(void *ud, const pv_request_info *r)
{
	reqlines *l = ud;
	assert_true(l->n < 16);
	snprintf(l->sender[l->n], sizeof l->sender[0], "%s", r->sender);
	l->r[l->n] = *r;
	l->r[l->n].sender = l->sender[l->n];
	l->n++;
}

typedef struct held {
	int64_t id[16], stamp[16];
	char xml[16][32];
	size_t len[16];
	int n;
} held;

static void collect_held(void *ud, int64_t id, int64_t stamp, const char *xml, size_t len)
{
	held *h = ud;
	assert_true(h->n < 16 && len < 32);
	h->id[h->n] = id;
	h->stamp[h->n] = stamp;
	memcpy(h->xml[h->n], xml, len);
	h->len[h->n] = len;
	h->n++;
}

static void expect_line(const reqlines *l, int i, const char *sender, size_t count,
	size_t bytes, int64_t first, int64_t last)
{
	assert_string_equal(l->r[i].sender, sender);
	assert_int_equal(l->r[i].count, count);
	assert_int_equal(l->r[i].bytes, bytes);
	assert_int_equal(l->r[i].first, first);
	assert_int_equal(l->r[i].last, last);
}

static void test_requests(void **state)
{
	fx *f = *state;
	pv_store *st = f->st;
	static const char bin[] = "<m>a\0b</m>"; /* 10 bytes, binary-safe */
	const char *A = "ali@eitaa.example", *B = "bob@bale.example", *C = "cy@soroush.example";

	assert_int_equal(pv_store_request_count(st, H, "juliet"), 0);
	assert_int_equal(pv_store_request_list(st, H, "juliet", collect_req, NULL), 0);
	pv_store_request_hold(st, H, "juliet", A, 100, "<m1/>", 5, on_done, W(f, 0));
	pv_store_request_hold(st, H, "juliet", B, 200, "<m22/>", 6, on_done, W(f, 0));
	pv_store_request_hold(st, H, "juliet", A, 300, bin, 10, on_done, W(f, 0));
	/* The clock stepped back: C still comes after B (arrival order, not stamps). */
	pv_store_request_hold(st, H, "juliet", C, 50, "<c/>", 4, on_done, W(f, 0));
	pv_store_request_hold(st, H, "juliet", A, 250, "<m3/>", 5, on_done, W(f, 0));
	pv_store_request_hold(st, H, "romeo", A, 1, "<r/>", 4, on_done, W(f, 0));

	reqlines l = {0};
	assert_int_equal(pv_store_request_list(st, H, "juliet", collect_req, &l), 3);
	assert_int_equal(l.n, 3);
	/* first/last: stamps of the first and last held stanza by arrival. */
	expect_line(&l, 0, A, 3, 5 + 10 + 5, 100, 250);
	expect_line(&l, 1, B, 1, 6, 200, 200);
	expect_line(&l, 2, C, 1, 4, 50, 50);
	assert_int_equal(pv_store_request_count(st, H, "juliet"), 3);
	assert_int_equal(pv_store_request_count(st, H, "romeo"), 1);

	held h = {0};
	assert_int_equal(pv_store_request_get(st, H, "juliet", A, collect_held, &h), 3);
	assert_int_equal(h.n, 3);
	assert_true(h.id[0] < h.id[1] && h.id[1] < h.id[2]);
	assert_int_equal(h.stamp[0], 100);
	assert_int_equal(h.stamp[1], 300);
	assert_int_equal(h.stamp[2], 250);
	assert_int_equal(h.len[1], 10);
	assert_memory_equal(h.xml[1], bin, 10);
	assert_memory_equal(h.xml[2], "<m3/>", 5);
	assert_int_equal(pv_store_request_get(st, H, "juliet", "x@y.example", collect_held, &h), 0);

	pv_request_info ri;
	assert_int_equal(pv_store_request_info(st, H, "juliet", A, &ri), 0);
	assert_string_equal(ri.sender, A);
	assert_int_equal(ri.count, 3);
	assert_int_equal(ri.bytes, 20);
	assert_int_equal(ri.first, 100);
	assert_int_equal(ri.last, 250);
	pv_request_info_fini(&ri);
	assert_null(ri.sender);
	assert_int_equal(pv_store_request_info(st, H, "juliet", "x@y.example", &ri), PV_ENOENT);
	assert_int_equal(pv_store_request_info(st, H, "nobody", A, &ri), PV_ENOENT);

	/* Drop A: it leaves the list; a new stanza from A later is a new, last line. */
	pv_store_request_drop(st, H, "juliet", A, on_done, W(f, 0));
	pv_store_request_drop(st, H, "juliet", "x@y.example", on_done, W(f, 0)); /* no-op */
	assert_int_equal(pv_store_request_info(st, H, "juliet", A, &ri), PV_ENOENT);
	assert_int_equal(pv_store_request_count(st, H, "juliet"), 2);
	pv_store_request_hold(st, H, "juliet", A, 400, "<n/>", 4, on_done, W(f, 0));
	memset(&l, 0, sizeof l);
	assert_int_equal(pv_store_request_list(st, H, "juliet", collect_req, &l), 3);
	expect_line(&l, 0, B, 1, 6, 200, 200);
	expect_line(&l, 1, C, 1, 4, 50, 50);
	expect_line(&l, 2, A, 1, 4, 400, 400);
	/* romeo's request from A was not dropped. */
	assert_int_equal(pv_store_request_get(st, H, "romeo", A, NULL, NULL), 1);
}

/* ---- abuse reports ---- */

typedef struct reports {
	int64_t id[8], stamp[8];
	char host[8][16], user[8][16], sender[8][32], reason[8][64], text[8][32], ev[8][32];
	bool null_reason[8], null_text[8], null_ev[8];
	int n;
} reports;

static void copy_or_null(char *dst, size_t n, const char *s, bool *isnull)
{
	*isnull = s == NULL;
	snprintf(dst, n, "%s", s ? s : "");
}

static void collect_report(void *ud, const pv_report *r)
{
	reports *l = ud;
	assert_true(l->n < 8);
	int i = l->n++;
	l->id[i] = r->id;
	l->stamp[i] = r->stamp;
	snprintf(l->host[i], sizeof l->host[i], "%s", r->host);
	snprintf(l->user[i], sizeof l->user[i], "%s", r->user);
	snprintf(l->sender[i], sizeof l->sender[i], "%s", r->sender);
	copy_or_null(l->reason[i], sizeof l->reason[i], r->reason, &l->null_reason[i]);
	copy_or_null(l->text[i], sizeof l->text[i], r->text, &l->null_text[i]);
	copy_or_null(l->ev[i], sizeof l->ev[i], r->evidence, &l->null_ev[i]);
}

static void test_reports(void **state)
{
	fx *f = *state;
	pv_store *st = f->st;
	static const pv_report in[] = {
		{.id = 77, .stamp = 10, .host = H, .user = "juliet", .sender = "spam@bale.example",
			.reason = "urn:xmpp:reporting:spam", .text = "ads", .evidence = "<m>buy</m>"},
		{.stamp = 20, .host = "b.test", .user = "bob", .sender = "x@eitaa.example"},
		{.stamp = 30, .host = H, .user = "romeo", .sender = "spam@bale.example",
			.reason = "urn:xmpp:reporting:abuse"},
	};
	assert_int_equal(pv_store_report_list(st, NULL, 0, collect_report, NULL), 0);
	for (size_t i = 0; i < PV_ARRAY_LEN(in); i++)
		pv_store_report_add(st, &in[i], on_done, W(f, 0));

	reports l = {0};
	assert_int_equal(pv_store_report_list(st, NULL, 0, collect_report, &l), 3);
	for (int i = 0; i < 3; i++) {
		if (i > 0)
			assert_true(l.id[i] > l.id[i - 1]);
		assert_int_equal(l.stamp[i], in[i].stamp);
		assert_string_equal(l.host[i], in[i].host);
		assert_string_equal(l.user[i], in[i].user);
		assert_string_equal(l.sender[i], in[i].sender);
		assert_int_equal(l.null_reason[i], in[i].reason == NULL);
		assert_int_equal(l.null_text[i], in[i].text == NULL);
		assert_int_equal(l.null_ev[i], in[i].evidence == NULL);
		if (in[i].reason)
			assert_string_equal(l.reason[i], in[i].reason);
	}
	assert_true(l.id[0] != 77); /* the store assigns ids */
	assert_string_equal(l.text[0], "ads");
	assert_string_equal(l.ev[0], "<m>buy</m>");

	/* Per host, and paging by id. */
	reports h = {0};
	assert_int_equal(pv_store_report_list(st, H, 0, collect_report, &h), 2);
	assert_string_equal(h.user[0], "juliet");
	assert_string_equal(h.user[1], "romeo");
	memset(&h, 0, sizeof h);
	assert_int_equal(pv_store_report_list(st, H, l.id[0], collect_report, &h), 1);
	assert_string_equal(h.user[0], "romeo");
	assert_int_equal(pv_store_report_list(st, NULL, l.id[2], NULL, NULL), 0);
	assert_int_equal(pv_store_report_list(st, "c.test", 0, NULL, NULL), 0);
}

/* ---- block list ---- */

typedef struct jids {
	char j[16][48];
	int n;
} jids;

static void collect_jid(void *ud, const char *jid)
{
	jids *l = ud;
	assert_true(l->n < 16);
	snprintf(l->j[l->n++], sizeof l->j[0], "%s", jid);
}

static void test_blocklist(void **state)
{
	fx *f = *state;
	pv_store *st = f->st;
	jids l = {0};
	assert_int_equal(pv_store_block_list(st, H, "juliet", collect_jid, &l), 0);

	static const char *const add[] = {"spam.example", "ali@eitaa.example", "bob@bale.example",
		"spam.example" /* again: not an error */};
	for (size_t i = 0; i < PV_ARRAY_LEN(add); i++)
		pv_store_block_set(st, H, "juliet", add[i], true, on_done, W(f, 0));
	pv_store_block_set(st, H, "romeo", "eve@x.example", true, on_done, W(f, 0));
	assert_int_equal(pv_store_block_list(st, H, "juliet", collect_jid, &l), 3);
	assert_string_equal(l.j[0], "ali@eitaa.example"); /* sorted */
	assert_string_equal(l.j[1], "bob@bale.example");
	assert_string_equal(l.j[2], "spam.example");

	pv_store_block_set(st, H, "juliet", "bob@bale.example", false, on_done, W(f, 0));
	pv_store_block_set(st, H, "juliet", "never@x.example", false, on_done, W(f, 0));
	memset(&l, 0, sizeof l);
	assert_int_equal(pv_store_block_list(st, H, "juliet", collect_jid, &l), 2);
	assert_string_equal(l.j[0], "ali@eitaa.example");
	assert_string_equal(l.j[1], "spam.example");

	/* Who has a list, once each, on this host only. */
	pv_store_block_set(st, "b.test", "tybalt", "x.example", true, on_done, W(f, 0));
	memset(&l, 0, sizeof l);
	assert_int_equal(pv_store_block_users(st, H, collect_jid, &l), 2);
	bool juliet = strcmp(l.j[0], "juliet") == 0 || strcmp(l.j[1], "juliet") == 0;
	bool romeo = strcmp(l.j[0], "romeo") == 0 || strcmp(l.j[1], "romeo") == 0;
	assert_true(juliet && romeo);

	pv_store_block_clear(st, H, "juliet", on_done, W(f, 0));
	assert_int_equal(pv_store_block_list(st, H, "juliet", NULL, NULL), 0);
	assert_int_equal(pv_store_block_list(st, H, "romeo", NULL, NULL), 1);
	assert_int_equal(pv_store_block_users(st, H, NULL, NULL), 1);
}

/* ---- account deletion ---- */

static void fill_consent(fx *f, const char *user)
{
	pv_store *st = f->st;
	mkuser(st, user);
	pv_store_consent_set_policy(st, H, user, PV_CONSENT_EVERYONE, on_done, W(f, 0));
	pv_store_consent_set_provider(st, H, user, "eitaa.example", 1, on_done, W(f, 0));
	pv_store_consent_set_sender(st, H, user, "ali@eitaa.example", 1, on_done, W(f, 0));
	pv_store_consent_log(st, H, user, "policy everyone", 1, on_done, W(f, 0));
	pv_store_consent_log(st, H, user, "allow ali@eitaa.example", 2, on_done, W(f, 0));
	pv_store_consent_evidence(st, H, user, "ali@eitaa.example", "m1", 3, on_done, W(f, 0));
	pv_store_request_hold(st, H, user, "bob@bale.example", 4, "<m/>", 4, on_done, W(f, 0));
	pv_store_block_set(st, H, user, "spam.example", true, on_done, W(f, 0));
	pv_report r = {.stamp = 5, .host = H, .user = (char *)user, .sender = "spam@bale.example"};
	pv_store_report_add(st, &r, on_done, W(f, 0));
}

static void expect_consent(fx *f, const char *user, bool present)
{
	pv_store *st = f->st;
	pv_consent c;
	uint64_t head, bad = 99;
	assert_int_equal(pv_store_consent_get(st, H, user, &c), 0);
	assert_int_equal(c.policy, present ? PV_CONSENT_EVERYONE : PV_CONSENT_OFF);
	assert_int_equal(c.nproviders, present ? 1 : 0);
	assert_int_equal(c.nsenders, present ? 1 : 0);
	pv_consent_fini(&c);
	assert_int_equal(pv_store_consent_log_head(st, H, user, &head), 0);
	assert_int_equal(head, present ? 2 : 0);
	assert_int_equal(pv_store_consent_log_verify(st, H, user, &bad), 0);
	assert_int_equal(pv_store_consent_evidence_get(st, H, user, "m1", NULL, NULL, NULL),
		present ? 0 : PV_ENOENT);
	assert_int_equal(pv_store_request_count(st, H, user), present ? 1 : 0);
	assert_int_equal(pv_store_block_list(st, H, user, NULL, NULL), present ? 1 : 0);
}

static void count_user_reports(void *ud, const pv_report *r)
{
	int *n = ud;
	if (strcmp(r->user, "juliet") == 0)
		(*n)++;
}

static void test_user_delete(void **state)
{
	fx *f = *state;
	fill_consent(f, "juliet");
	fill_consent(f, "romeo");
	expect_consent(f, "juliet", true);
	assert_int_equal(pv_store_user_delete(f->st, H, "juliet"), 0);
	expect_consent(f, "juliet", false);
	expect_consent(f, "romeo", true);
	/* Reports are the operators': the reporter's deletion keeps them. */
	int n = 0;
	assert_int_equal(pv_store_report_list(f->st, H, 0, count_user_reports, &n), 2);
	assert_int_equal(n, 1);

	/* An append queued after the deletion finds no account; nothing is left behind. */
	pv_store_consent_log(f->st, H, "juliet", "late", 9, on_done, W(f, PV_ENOENT));
	uint64_t head = 99;
	assert_int_equal(pv_store_consent_log_head(f->st, H, "juliet", &head), 0);
	assert_int_equal(head, 0);

	/* A new account of the same name starts a fresh chain. */
	mkuser(f->st, "juliet");
	pv_store_consent_log(f->st, H, "juliet", "policy everyone", 1700000000, on_done, W(f, 0));
	entries l = {0};
	assert_int_equal(pv_store_consent_log_list(f->st, H, "juliet", 0, collect_entry, &l), 1);
	assert_int_equal(l.e[0].seq, 1);
	assert_string_equal(l.e[0].hash, KAT_H1);
}

/* ---- migration ---- */

/* A database made by the previous schema (version 2) gains the consent tables and keeps
 * its accounts. */
static void test_migrate_from_v2(void **state)
{
	char dir[64];
	make_dir(dir, sizeof dir);
	assert_true(pv_schema_sqlite_count >= 3);
	sqlite3 *db = ext_open(dir);
	assert_int_equal(sqlite3_exec(db, pv_schema_sqlite[0], NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, pv_schema_sqlite[1], NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 2; INSERT INTO users"
		" (host, user, created) VALUES ('a.test', 'juliet', 1)", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);

	pv_store *st = pv_store_open(dir, NULL);
	assert_non_null(st);
	assert_int_equal(pv_store_user_exists(st, H, "juliet"), 1);
	pv_store_consent_log(st, H, "juliet", "policy everyone", 1700000000, NULL, NULL);
	uint64_t head;
	assert_int_equal(pv_store_consent_log_head(st, H, "juliet", &head), 0);
	assert_int_equal(head, 1);
	pv_store_close(st);
	db = ext_open(dir);
	assert_int_equal(ext_int(db, "PRAGMA user_version"), (int64_t)pv_schema_sqlite_count);
	sqlite3_close(db);
	rm_dir(dir);
}

/* ---- crash: every append whose done ran survives a SIGKILL, and the chain verifies ---- */

enum { CRASH_WRITES = 6000, CRASH_INFLIGHT = 300, CRASH_AFTER = 800 };

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
	char action[32];
	snprintf(action, sizeof action, "e %d", (int)i);
	crash_args[i] = (crash_arg){.c = c, .i = i};
	pv_store_consent_log(c->st, H, "juliet", action, 1700000000 + i, crash_done, &crash_args[i]);
	/* Interleaved with other writes of the same batches. */
	if (i % 7 == 0)
		pv_store_request_hold(c->st, H, "juliet", "ali@eitaa.example", i, "<m/>", 4, NULL, NULL);
}

static void crash_done(void *ud, int rc)
{
	crash_arg *a = ud;
	if (rc != 0)
		_exit(4);
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
	if (!c.st || pv_store_user_create(c.st, H, "juliet", NULL, 0) != 0)
		_exit(2);
	uv_timer_init(&loop, &tick);
	uv_timer_start(&tick, on_tick, 5, 5);
	for (int i = 0; i < CRASH_INFLIGHT; i++)
		crash_push(&c);
	uv_run(&loop, UV_RUN_DEFAULT);
	_exit(3); /* not reached */
}

typedef struct present {
	unsigned char *seen;
	int n;
} present;

static void collect_present(void *ud, const pv_consent_entry *e)
{
	present *p = ud;
	int i;
	assert_int_equal(sscanf(e->action, "e %d", &i), 1);
	assert_int_equal(i, p->n); /* a prefix, in order: group commits are atomic */
	assert_int_equal(e->seq, (uint64_t)p->n + 1);
	assert_int_equal(e->stamp, 1700000000 + i);
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
	while (read(pfd[0], &i, sizeof i) == sizeof i) {
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
	int n = pv_store_consent_log_list(st, H, "juliet", 0, collect_present, &p);
	assert_true(n >= CRASH_AFTER);
	assert_true(n < CRASH_WRITES);
	assert_int_equal(p.n, n);
	for (int j = 0; j < CRASH_WRITES; j++)
		if (acked[j] && !seen[j])
			fail_msg("append %d was acknowledged (done ran) but is lost", j);
	uint64_t head, bad = 99;
	assert_int_equal(pv_store_consent_log_head(st, H, "juliet", &head), 0);
	assert_int_equal(head, (uint64_t)n);
	assert_int_equal(pv_store_consent_log_verify(st, H, "juliet", &bad), 0);
	assert_int_equal(bad, 0);
	/* The store goes on extending the recovered chain. */
	pv_store_consent_log(st, H, "juliet", "after crash", 1, NULL, NULL);
	assert_int_equal(pv_store_consent_log_verify(st, H, "juliet", &bad), 0);
	assert_int_equal(pv_store_consent_log_head(st, H, "juliet", &head), 0);
	assert_int_equal(head, (uint64_t)n + 1);
	pv_store_close(st);
	rm_dir(dir);
}

#define BOTH(fn) \
	{#fn "/loop", fn, setup_loop, teardown, NULL}, \
	{#fn "/inline", fn, setup_inline, teardown, NULL}

int main(void)
{
	pv_log_set_level(PV_LOG_ERROR);
	const struct CMUnitTest tests[] = {
		BOTH(test_settings),
		BOTH(test_log_chain),
		BOTH(test_log_batch),
		BOTH(test_log_threads),
		BOTH(test_log_append_only),
		BOTH(test_evidence),
		BOTH(test_requests),
		BOTH(test_reports),
		BOTH(test_blocklist),
		BOTH(test_user_delete),
		cmocka_unit_test(test_log_tamper),
		cmocka_unit_test(test_migrate_from_v2),
		cmocka_unit_test(test_crash),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
