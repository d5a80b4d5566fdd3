/* test_mod_blocking.c -- unit tests for src/modules/mod_blocking.c (XEP-0191, XEP-0377):
 * the JID matching rules of XEP-0191 section 6 (table), block/unblock/blocklist with
 * pushes and holds, the error cases (table), both filters for every stanza kind (table),
 * presence on block and unblock, reports with held requests as evidence, and a list
 * changed in storage by someone else ("blocklist-changed").
 *
 * The core is fake_core.h; this file adds the rest of what the module uses: routing and
 * delivery (recorded), sessions' presence and directed targets, and the block list,
 * message requests, reports and roster parts of pv_store.h (in memory, writes complete
 * inline). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "modules/mod_blocking.c"

#include "fake_core.h"

#define HOST "shakespeare.lit"
#define HAMLET "hamlet@shakespeare.lit"

/* ---- the rest of the core ---- */

static pv_host *test_hosts[4];

pv_host *pv_host_find(const pv_host *any, const char *domain)
{
	for (size_t i = 0; i < PV_ARRAY_LEN(test_hosts); i++)
		if (test_hosts[i] && domain && strcmp(test_hosts[i]->name, domain) == 0)
			return test_hosts[i];
	return NULL;
}

static struct {
	pv_stanza *routed[FAKE_MAX];
	size_t nrouted;
	pv_stanza *sent[FAKE_MAX];
	pv_session *sent_to[FAKE_MAX];
	size_t nsent;
} rec;

void pv_route(pv_host *h, pv_stanza *st)
{
	PV_ASSERT(rec.nrouted < FAKE_MAX);
	rec.routed[rec.nrouted++] = pv_stanza_ref(st);
}

void pv_session_send(pv_session *s, pv_stanza *st)
{
	PV_ASSERT(rec.nsent < FAKE_MAX);
	rec.sent_to[rec.nsent] = s;
	rec.sent[rec.nsent++] = pv_stanza_ref(st);
}

static void rec_reset(void)
{
	for (size_t i = 0; i < rec.nrouted; i++)
		pv_stanza_unref(rec.routed[i]);
	for (size_t i = 0; i < rec.nsent; i++)
		pv_stanza_unref(rec.sent[i]);
	memset(&rec, 0, sizeof(rec));
	fake_reset();
}

pv_stanza *pv_session_presence(const pv_session *s)
{
	return NULL; /* available, no <show/>/<status/> */
}

/* One session's directed-presence targets. */
static struct {
	pv_session *s;
	char *t[4];
	size_t n;
} directed;

size_t pv_session_directed(const pv_session *s, const char **out, size_t cap)
{
	if (s != directed.s)
		return 0;
	for (size_t i = 0; i < directed.n && i < cap; i++)
		out[i] = directed.t[i];
	return directed.n;
}

void pv_session_del_directed(pv_session *s, const char *full_jid)
{
	for (size_t i = 0; s == directed.s && i < directed.n; i++) {
		if (strcmp(directed.t[i], full_jid) == 0) {
			pv_free(directed.t[i]);
			directed.t[i] = directed.t[--directed.n];
			return;
		}
	}
}

/* ---- the store: block list, requests, reports, roster ---- */

typedef struct row {
	char *host, *user, *a, *b; /* block: a = jid; request: a = sender, b = xml */
} row;

static struct {
	row block[FAKE_MAX], req[FAKE_MAX];
	size_t nblock, nreq;
	pv_report report;
	int nreports;
	pv_roster_item roster[8];
	size_t nroster;
	int block_reads;
} db;

static bool row_is(const row *r, const char *host, const char *user)
{
	return strcmp(r->host, host) == 0 && strcmp(r->user, user) == 0;
}

static void row_free(row *r)
{
	pv_free(r->host);
	pv_free(r->user);
	pv_free(r->a);
	pv_free(r->b);
}

static void row_del(row *rows, size_t *n, size_t i)
{
	row_free(&rows[i]);
	rows[i] = rows[--*n];
}

int pv_store_block_list(pv_store *st, const char *host, const char *user,
	void (*cb)(void *ud, const char *jid), void *ud)
{
	db.block_reads++;
	int n = 0;
	for (size_t i = 0; i < db.nblock; i++)
		if (row_is(&db.block[i], host, user)) {
			cb(ud, db.block[i].a);
			n++;
		}
	return n;
}

int pv_store_block_users(pv_store *st, const char *host,
	void (*cb)(void *ud, const char *user), void *ud)
{
	int n = 0;
	for (size_t i = 0; i < db.nblock; i++) {
		bool seen = false;
		for (size_t j = 0; j < i && !seen; j++)
			seen = row_is(&db.block[j], host, db.block[i].user);
		if (strcmp(db.block[i].host, host) == 0 && !seen) {
			cb(ud, db.block[i].user);
			n++;
		}
	}
	return n;
}

void pv_store_block_set(pv_store *st, const char *host, const char *user, const char *jid,
	bool blocked, pv_store_done_fn done, void *ud)
{
	for (size_t i = 0; i < db.nblock; i++)
		if (row_is(&db.block[i], host, user) && strcmp(db.block[i].a, jid) == 0)
			row_del(db.block, &db.nblock, i--);
	if (blocked)
		db.block[db.nblock++] = (row){pv_strdup(host), pv_strdup(user), pv_strdup(jid), NULL};
	if (done)
		done(ud, 0);
}

void pv_store_block_clear(pv_store *st, const char *host, const char *user,
	pv_store_done_fn done, void *ud)
{
	for (size_t i = 0; i < db.nblock; i++)
		if (row_is(&db.block[i], host, user))
			row_del(db.block, &db.nblock, i--);
	if (done)
		done(ud, 0);
}

static void hold_request(const char *user, const char *sender, const char *xml)
{
	db.req[db.nreq++] = (row){pv_strdup(HOST), pv_strdup(user), pv_strdup(sender), pv_strdup(xml)};
}

static size_t held_from(const char *sender)
{
	size_t n = 0;
	for (size_t i = 0; i < db.nreq; i++)
		n += strcmp(db.req[i].a, sender) == 0;
	return n;
}

int pv_store_request_list(pv_store *st, const char *host, const char *user,
	void (*cb)(void *ud, const pv_request_info *r), void *ud)
{
	int n = 0;
	for (size_t i = 0; i < db.nreq; i++) {
		if (!row_is(&db.req[i], host, user))
			continue;
		bool first = true;
		for (size_t k = 0; k < i; k++)
			first = first && !(row_is(&db.req[k], host, user) && strcmp(db.req[k].a, db.req[i].a) == 0);
		if (!first)
			continue;
		pv_request_info info = {.sender = db.req[i].a, .count = 1};
		cb(ud, &info);
		n++;
	}
	return n;
}

int pv_store_request_get(pv_store *st, const char *host, const char *user, const char *sender,
	void (*cb)(void *ud, int64_t id, int64_t stamp, const char *xml, size_t len), void *ud)
{
	int n = 0;
	for (size_t i = 0; i < db.nreq; i++)
		if (row_is(&db.req[i], host, user) && strcmp(db.req[i].a, sender) == 0) {
			cb(ud, (int64_t)i, 0, db.req[i].b, strlen(db.req[i].b));
			n++;
		}
	return n;
}

void pv_store_request_drop(pv_store *st, const char *host, const char *user, const char *sender,
	pv_store_done_fn done, void *ud)
{
	for (size_t i = 0; i < db.nreq; i++)
		if (row_is(&db.req[i], host, user) && strcmp(db.req[i].a, sender) == 0)
			row_del(db.req, &db.nreq, i--);
	if (done)
		done(ud, 0);
}

static void report_fini(pv_report *r)
{
	pv_free(r->host);
	pv_free(r->user);
	pv_free(r->sender);
	pv_free(r->reason);
	pv_free(r->text);
	pv_free(r->evidence);
	memset(r, 0, sizeof(*r));
}

void pv_store_report_add(pv_store *st, const pv_report *r, pv_store_done_fn done, void *ud)
{
	report_fini(&db.report);
	db.report = (pv_report){0, r->stamp, pv_strdup(r->host), pv_strdup(r->user),
		pv_strdup(r->sender), pv_strdup(r->reason), pv_strdup(r->text), pv_strdup(r->evidence)};
	db.nreports++;
	if (done)
		done(ud, 0);
}

static void roster_add(const char *jid, pv_sub sub)
{
	db.roster[db.nroster++] = (pv_roster_item){.jid = pv_strdup(jid), .sub = sub, .in_roster = true};
}

int pv_store_roster_get(pv_store *st, const char *host, const char *user,
	pv_roster_item **items, size_t *n, uint64_t *ver)
{
	*items = pv_calloc(db.nroster ? db.nroster : 1, sizeof(pv_roster_item));
	for (size_t i = 0; i < db.nroster; i++)
		(*items)[i] = (pv_roster_item){.jid = pv_strdup(db.roster[i].jid), .sub = db.roster[i].sub,
			.in_roster = true};
	*n = db.nroster;
	*ver = 1;
	return 0;
}

void pv_roster_items_free(pv_roster_item *items, size_t n)
{
	for (size_t i = 0; i < n; i++)
		pv_free(items[i].jid);
	pv_free(items);
}

static void db_reset(void)
{
	while (db.nblock)
		row_del(db.block, &db.nblock, 0);
	while (db.nreq)
		row_del(db.req, &db.nreq, 0);
	report_fini(&db.report);
	for (size_t i = 0; i < db.nroster; i++)
		pv_free(db.roster[i].jid);
	memset(&db, 0, sizeof(db));
	for (size_t i = 0; i < directed.n; i++)
		pv_free(directed.t[i]);
	memset(&directed, 0, sizeof(directed));
}

/* ---- fixture ---- */

typedef struct fixture {
	pv_host *h;
	pv_session *a, *b, *macbeth;
} fixture;

static int setup_with(void **state, const char *yaml)
{
	fixture *f = pv_calloc(1, sizeof(*f));
	f->h = fake_host_new(HOST, yaml, &pv_mod_blocking);
	test_hosts[0] = f->h;
	f->a = fake_session(f->h, HAMLET "/a", true, NULL);
	f->b = fake_session(f->h, HAMLET "/b", true, NULL);
	f->macbeth = fake_session(f->h, "macbeth@shakespeare.lit/scotland", true, NULL);
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return setup_with(state, NULL);
}

static int setup_small(void **state)
{
	return setup_with(state, "blocking:\n  max_items: 3\n");
}

/* Macbeth has a stored list before the module loads. */
static int setup_listed(void **state)
{
	pv_store_block_set(&fake_store, HOST, "macbeth", "spam.example", true, NULL, NULL);
	return setup_with(state, NULL);
}

static int teardown(void **state)
{
	fixture *f = *state;
	rec_reset();
	fake_host_free(f->h);
	test_hosts[0] = NULL;
	db_reset();
	pv_free(f);
	return 0;
}

/* An iq from `s` with no 'to' (the core fills in the account's bare JID). */
static const char *ask_from(fixture *f, pv_session *s, const char *xml, pv_stanza **out)
{
	return fake_ask(f->h, s, xml, pv_session_jid(s)->bare, out);
}

static const char *ask(fixture *f, const char *xml)
{
	return ask_from(f, f->a, xml, NULL);
}

static void block_ok(fixture *f, const char *items)
{
	char *xml = pv_sprintf("<iq type='set' id='b'><block xmlns='urn:xmpp:blocking'>%s</block></iq>",
		items);
	assert_string_equal(ask(f, xml), "result");
	pv_free(xml);
}

/* The JIDs of the blocklist, joined with spaces. */
static char *list_of(fixture *f, pv_session *s)
{
	pv_stanza *r = NULL;
	assert_string_equal(ask_from(f, s, "<iq type='get' id='l'><blocklist xmlns='urn:xmpp:blocking'/></iq>", &r),
		"result");
	pv_xml *bl = pv_xml_child(r->xml, "blocklist", NS_BLOCKING);
	assert_non_null(bl);
	pv_buf b;
	pv_buf_init(&b);
	for (pv_xml *i = pv_xml_first_element(bl); i; i = pv_xml_next_element(i))
		pv_buf_printf(&b, "%s%s", b.len ? " " : "", pv_xml_attr(i, "jid"));
	pv_stanza_unref(r);
	return pv_buf_take(&b);
}

/* "to:block:jid jid|..." for each push sent since the last reset. */
static char *pushes(void)
{
	pv_buf b;
	pv_buf_init(&b);
	for (size_t i = 0; i < rec.nsent; i++) {
		pv_stanza *st = rec.sent[i];
		pv_xml *q = pv_xml_first_element(st->xml);
		pv_buf_printf(&b, "%s%s:%s:", b.len ? "|" : "", st->to.full, q->name);
		size_t k = 0;
		for (pv_xml *it = pv_xml_first_element(q); it; it = pv_xml_next_element(it))
			pv_buf_printf(&b, "%s%s", k++ ? " " : "", pv_xml_attr(it, "jid"));
	}
	return pv_buf_take(&b);
}

/* "type from->to" for each routed stanza since the last reset. */
static char *routed(void)
{
	pv_buf b;
	pv_buf_init(&b);
	for (size_t i = 0; i < rec.nrouted; i++) {
		pv_stanza *st = rec.routed[i];
		pv_buf_printf(&b, "%s%s %s->%s", b.len ? "|" : "", st->type ? st->type : "available",
			st->from.full, st->to.full);
	}
	return pv_buf_take(&b);
}

static void assert_str_take(char *got, const char *want)
{
	assert_string_equal(got, want);
	pv_free(got);
}

/* ---- section 6: JID matching ---- */

static void test_matching(void **state)
{
	static const char *const entries[] = {"bob@x.example", "carol@x.example/phone",
		"spam.example", "muc.example/nick"};
	static const struct {
		const char *subject;
		bool blocked;
	} rows[] = {
		{"bob@x.example", true},          /* user@domain: the bare JID */
		{"bob@x.example/any", true},      /* ... and every resource */
		{"carol@x.example/phone", true},  /* user@domain/resource: that one */
		{"carol@x.example/tablet", false},
		{"carol@x.example", false},
		{"x.example", false},
		{"spam.example", true},           /* domain: itself */
		{"a@spam.example", true},         /* ... every user */
		{"a@spam.example/r", true},
		{"spam.example/r", true},         /* ... and domain/resource */
		{"sub.spam.example", false},      /* not subdomains (1.3 dropped them) */
		{"muc.example/nick", true},       /* domain/resource: that one */
		{"muc.example/other", false},
		{"muc.example", false},
		{"u@muc.example/nick", false},
		{"BOB@X.Example/any", true},      /* normalised before matching */
	};
	blk_list l = {0};
	for (size_t i = 0; i < PV_ARRAY_LEN(entries); i++)
		list_add(&l, entries[i]);
	for (size_t i = 0; i < PV_ARRAY_LEN(rows); i++) {
		pv_jid j;
		assert_int_equal(pv_jid_parse_str(&j, rows[i].subject), 0);
		if (list_matches(&l, &j) != rows[i].blocked)
			fail_msg("%s: expected %s", rows[i].subject, rows[i].blocked ? "blocked" : "not blocked");
		pv_jid_fini(&j);
	}
	list_clear(&l);
	pv_free(l.v);
}

/* ---- the protocol ---- */

static void test_block_get_push_unblock(void **state)
{
	fixture *f = *state;
	assert_str_take(list_of(f, f->a), "");
	rec_reset();
	/* Un-normalised and duplicate items are normalised and counted once. */
	block_ok(f, "<item jid='Bob@X.Example'/><item jid='spam.example'/><item jid='bob@x.example'/>");
	/* 3.3: pushed to the resource that requested the list (the sender), not to /b. */
	assert_str_take(pushes(), HAMLET "/a:block:bob@x.example spam.example");
	assert_int_equal(db.nblock, 2);
	assert_int_equal(fake.holds_taken, 2);
	assert_int_equal(fake.holds_released, 2);
	assert_str_take(list_of(f, f->b), "bob@x.example spam.example");
	rec_reset();

	/* Both resources have asked now; 3.4 one item, 3.5 all. */
	assert_string_equal(ask(f, "<iq type='set' id='u'><unblock xmlns='urn:xmpp:blocking'>"
				   "<item jid='spam.example'/></unblock></iq>"), "result");
	assert_str_take(pushes(), HAMLET "/b:unblock:spam.example|" HAMLET "/a:unblock:spam.example");
	assert_int_equal(db.nblock, 1);
	rec_reset();
	assert_string_equal(ask(f, "<iq type='set' id='u'><unblock xmlns='urn:xmpp:blocking'/></iq>"),
		"result");
	assert_str_take(pushes(), HAMLET "/b:unblock:|" HAMLET "/a:unblock:");
	assert_int_equal(db.nblock, 0);
	assert_str_take(list_of(f, f->a), "");
	/* Hamlet had no list when the module loaded: nothing was read, the cache served
	 * everything (the module wrote every change to it as well as to storage). */
	assert_int_equal(db.block_reads, 0);
}

static void test_errors(void **state)
{
	fixture *f = *state;
	static const struct {
		const char *xml, *cond;
	} rows[] = {
		{"<iq type='set' id='1'><block xmlns='urn:xmpp:blocking'/></iq>", "bad-request"},
		{"<iq type='set' id='2'><block xmlns='urn:xmpp:blocking'><other/></block></iq>", "bad-request"},
		{"<iq type='set' id='3'><block xmlns='urn:xmpp:blocking'><item jid='a@x.example'/><item/></block></iq>",
			"bad-request"},
		{"<iq type='set' id='4'><block xmlns='urn:xmpp:blocking'><item jid='a@x.example'/><item jid='@x.example'/></block></iq>",
			"jid-malformed"},
		{"<iq type='set' id='5'><block xmlns='urn:xmpp:blocking'><item jid=''/></block></iq>", "jid-malformed"},
		{"<iq type='set' id='6'><unblock xmlns='urn:xmpp:blocking'><item jid='a@'/></unblock></iq>",
			"jid-malformed"},
		{"<iq type='set' id='7'><blocklist xmlns='urn:xmpp:blocking'/></iq>", "bad-request"},
		{"<iq type='get' id='8'><block xmlns='urn:xmpp:blocking'><item jid='a@x.example'/></block></iq>",
			"bad-request"},
		{"<iq type='set' id='9'><block xmlns='urn:xmpp:blocking'><item jid='a@x.example'/><item jid='b@x.example'/>"
		 "<item jid='c@x.example'/><item jid='d@x.example'/></block></iq>", "not-allowed"},
	};
	for (size_t i = 0; i < PV_ARRAY_LEN(rows); i++) {
		const char *got = ask(f, rows[i].xml);
		if (strcmp(got, rows[i].cond) != 0)
			fail_msg("row %zu: expected %s, got %s", i, rows[i].cond, got);
	}
	/* Nothing of the refused requests was applied. */
	assert_int_equal(db.nblock, 0);
	/* Only the account itself; others see what a blocked entity sees. */
	assert_string_equal(fake_ask(f->h, f->macbeth,
				    "<iq type='get' id='m'><blocklist xmlns='urn:xmpp:blocking'/></iq>", HAMLET,
				    NULL), "service-unavailable");
	assert_string_equal(fake_ask(f->h, f->macbeth,
				    "<iq type='set' id='m'><block xmlns='urn:xmpp:blocking'><item jid='a@x.example'/></block></iq>",
				    HAMLET, NULL), "service-unavailable");
	/* max_items: 3 entries fit, a 4th does not, re-blocking does not count. */
	block_ok(f, "<item jid='a@x.example'/><item jid='b@x.example'/>");
	block_ok(f, "<item jid='a@x.example'/><item jid='c@x.example'/>");
	assert_string_equal(ask(f, "<iq type='set' id='x'><block xmlns='urn:xmpp:blocking'><item jid='d@x.example'/></block></iq>"),
		"not-allowed");
	assert_int_equal(db.nblock, 3);
}

/* ---- the filters ---- */

static pv_stanza *stanza(const char *xml, const char *from)
{
	pv_stanza *st = pv_stanza_new(fake_parse(xml), NULL);
	PV_ASSERT(st);
	if (from)
		pv_stanza_set_from(st, from);
	return st;
}

/* Fires `event` for the stanza; returns "pass", or "handled" plus the reply's outcome. */
static char *filter(fixture *f, const char *event, pv_session *origin, const char *xml, const char *from)
{
	rec_reset();
	pv_stanza *st = stanza(xml, from);
	pv_event ev = {.host = f->h, .origin = origin, .stanza = st};
	int rc = pv_fire(f->h, event, &ev);
	pv_stanza_unref(st);
	if (rc != PV_HANDLED) {
		assert_int_equal(fake.nreplies, 0);
		return pv_strdup("pass");
	}
	if (fake.nreplies == 0)
		return pv_strdup("handled");
	pv_stanza *r = fake_reply();
	pv_xml *err = r->xml->last; /* the reply's own <error/> comes after any payload */
	bool blocked = pv_xml_is(err, "error", NULL) && pv_xml_child(err, "blocked", NS_BLOCKING_ERRORS);
	pv_xml *c = pv_xml_is(err, "error", NULL) ? pv_xml_first_element(err) : NULL;
	char *out = pv_sprintf("handled %s%s from=%s", c ? c->name : r->type,
		blocked ? "+blocked" : "", r->from.full);
	pv_stanza_unref(r);
	return out;
}

static void test_inbound_filter(void **state)
{
	fixture *f = *state;
	block_ok(f, "<item jid='bob@x.example'/><item jid='macbeth@shakespeare.lit'/>"
		    "<item jid='spam.example'/><item jid='" HOST "'/>");
	static const struct {
		const char *xml, *from, *want;
	} rows[] = {
		/* 3.3: a local blocked sender's message: service-unavailable */
		{"<message to='" HAMLET "' type='chat' id='m'><body>x</body></message>",
			"macbeth@shakespeare.lit/scotland", "handled service-unavailable from=" HAMLET},
		/* ... from another provider: silence, as consent answers strangers */
		{"<message to='" HAMLET "/a' id='m'><body>x</body></message>", "bob@x.example/r", "handled"},
		{"<message to='" HAMLET "' type='error' id='m'/>", "macbeth@shakespeare.lit/scotland", "handled"},
		/* iq get/set: service-unavailable; results and errors: dropped */
		{"<iq to='" HAMLET "/a' type='get' id='q'><ping xmlns='urn:xmpp:ping'/></iq>", "bob@x.example/r",
			"handled service-unavailable from=" HAMLET "/a"},
		{"<iq to='" HAMLET "' type='set' id='q'><query xmlns='jabber:iq:roster'/></iq>", "a@spam.example",
			"handled service-unavailable from=" HAMLET},
		{"<iq to='" HAMLET "/a' type='result' id='q'/>", "bob@x.example/r", "handled"},
		/* presence of every kind: no answer */
		{"<presence to='" HAMLET "'/>", "bob@x.example/r", "handled"},
		{"<presence to='" HAMLET "' type='subscribe'/>", "bob@x.example", "handled"},
		{"<presence to='" HAMLET "' type='probe'/>", "a@spam.example", "handled"},
		/* not blocked */
		{"<message to='" HAMLET "' id='m'><body>x</body></message>", "carol@x.example/r", "pass"},
		/* the account's own resources and its own server, despite the entry for HOST */
		{"<message to='" HAMLET "/a' id='m'><body>x</body></message>", HAMLET "/b", "pass"},
		{"<iq to='" HAMLET "/a' type='get' id='q'><ping xmlns='urn:xmpp:ping'/></iq>", HOST, "pass"},
		/* ... but other accounts at it are covered by it */
		{"<message to='" HAMLET "' id='m'><body>x</body></message>", "lear@shakespeare.lit/r",
			"handled service-unavailable from=" HAMLET},
	};
	for (size_t i = 0; i < PV_ARRAY_LEN(rows); i++) {
		char *got = filter(f, "filter/inbound", NULL, rows[i].xml, rows[i].from);
		if (strcmp(got, rows[i].want) != 0)
			fail_msg("row %zu: expected '%s', got '%s'", i, rows[i].want, got);
		pv_free(got);
	}
}

static void test_sender_side_and_outbound(void **state)
{
	fixture *f = *state;
	block_ok(f, "<item jid='macbeth@shakespeare.lit'/><item jid='bob@x.example'/>");
	static const struct {
		const char *event;
		bool from_client;
		const char *xml, *from, *want;
	} rows[] = {
		/* what the server sends on hamlet's behalf (broadcasts, probe answers) */
		{"filter/inbound", false, "<presence to='macbeth@shakespeare.lit'/>", HAMLET "/a", "handled"},
		{"filter/inbound", false, "<presence to='macbeth@shakespeare.lit/scotland' type='unavailable'/>",
			HAMLET "/a", "handled"},
		/* errors are the answers 3.3 asks for: they pass */
		{"filter/inbound", false, "<message to='macbeth@shakespeare.lit/scotland' type='error' id='e'/>",
			HAMLET, "pass"},
		/* 3.3: hamlet's client to a blocked JID: not-acceptable + <blocked/> */
		{"filter/outbound", true, "<message to='bob@x.example' id='m'><body>x</body></message>",
			HAMLET "/a", "handled not-acceptable+blocked from=bob@x.example"},
		/* a payload that holds an <error/> of its own does not get the condition */
		{"filter/outbound", true, "<message to='bob@x.example' id='m'><error type='cancel'/><body>x</body></message>",
			HAMLET "/a", "handled not-acceptable+blocked from=bob@x.example"},
		{"filter/outbound", true, "<presence to='bob@x.example/r'/>", HAMLET "/a",
			"handled not-acceptable+blocked from=bob@x.example/r"},
		{"filter/outbound", true, "<iq to='macbeth@shakespeare.lit/scotland' type='get' id='q'>"
					  "<ping xmlns='urn:xmpp:ping'/></iq>", HAMLET "/a",
			"handled not-acceptable+blocked from=macbeth@shakespeare.lit/scotland"},
		{"filter/outbound", true, "<iq to='bob@x.example/r' type='result' id='q'/>", HAMLET "/a", "handled"},
		{"filter/outbound", true, "<message to='carol@x.example' id='m'/>", HAMLET "/a", "pass"},
		{"filter/outbound", true, "<message to='" HAMLET "/b' id='m'/>", HAMLET "/a", "pass"},
	};
	for (size_t i = 0; i < PV_ARRAY_LEN(rows); i++) {
		char *got = filter(f, rows[i].event, rows[i].from_client ? f->a : NULL, rows[i].xml,
			rows[i].from);
		if (strcmp(got, rows[i].want) != 0)
			fail_msg("row %zu: expected '%s', got '%s'", i, rows[i].want, got);
		pv_free(got);
	}
	/* macbeth's own list is empty: the sender-side check of his stanzas passes. */
	char *got = filter(f, "filter/inbound", NULL, "<presence to='lear@shakespeare.lit'/>",
		"macbeth@shakespeare.lit/scotland");
	assert_str_take(got, "pass");
}

/* ---- presence (3.3, 3.4) ---- */

static void test_presence_on_block_and_unblock(void **state)
{
	fixture *f = *state;
	roster_add("bob@x.example", PV_SUB_BOTH);
	roster_add("carol@x.example", PV_SUB_NONE);
	roster_add("dave@x.example", PV_SUB_TO);
	f->b->available = false;
	directed.s = f->a;
	directed.t[directed.n++] = pv_strdup("eve@y.example/r");
	directed.t[directed.n++] = pv_strdup("kent@z.example/r");
	rec_reset();
	block_ok(f, "<item jid='x.example'/><item jid='y.example'/>");
	/* unavailable from the available resource to the subscriber and the directed
	 * target (forgotten); nothing to carol or dave, who do not see hamlet's presence */
	assert_str_take(routed(), "unavailable " HAMLET "/a->bob@x.example|"
				  "unavailable " HAMLET "/a->eve@y.example/r");
	assert_int_equal(directed.n, 1);
	assert_string_equal(directed.t[0], "kent@z.example/r");

	rec_reset();
	assert_string_equal(ask(f, "<iq type='set' id='u'><unblock xmlns='urn:xmpp:blocking'>"
				   "<item jid='x.example'/></unblock></iq>"), "result");
	/* current presence to the subscriber; probes where hamlet is subscribed */
	assert_str_take(routed(), "available " HAMLET "/a->bob@x.example|"
				  "probe " HAMLET "->bob@x.example|probe " HAMLET "->dave@x.example");

	/* a full-JID entry concerns the subscriber's resource only */
	rec_reset();
	block_ok(f, "<item jid='bob@x.example/phone'/>");
	assert_str_take(routed(), "unavailable " HAMLET "/a->bob@x.example/phone");

	/* nobody available: nothing to withdraw */
	f->a->available = false;
	rec_reset();
	block_ok(f, "<item jid='bob@x.example'/>");
	assert_str_take(routed(), "");
}

/* ---- XEP-0377 ---- */

static void test_report(void **state)
{
	fixture *f = *state;
	hold_request("hamlet", "bob@x.example", "<message xmlns='jabber:client' id='h1'><body>buy</body></message>");
	hold_request("hamlet", "bob@x.example", "<message xmlns='jabber:client' id='h2'><body>now</body></message>");
	hold_request("hamlet", "eve@x.example", "<message xmlns='jabber:client' id='h3'><body>hi</body></message>");
	block_ok(f, "<item jid='bob@x.example'><report xmlns='urn:xmpp:reporting:1' reason='urn:xmpp:reporting:spam'>"
		    "<stanza-id xmlns='urn:xmpp:sid:0' by='" HAMLET "' id='s-1'/>"
		    "<text xml:lang='en'>\n  Never came trouble  \n</text><third-party/><unknown/></report></item>"
		    "<item jid='carol@x.example'/>");
	assert_int_equal(db.nreports, 1);
	assert_string_equal(db.report.host, HOST);
	assert_string_equal(db.report.user, "hamlet");
	assert_string_equal(db.report.sender, "bob@x.example");
	assert_string_equal(db.report.reason, "urn:xmpp:reporting:spam");
	assert_string_equal(db.report.text, "Never came trouble");
	const char *ev = db.report.evidence;
	assert_non_null(strstr(ev, "<report xmlns='urn:xmpp:reporting:1' reason='urn:xmpp:reporting:spam'>"));
	assert_non_null(strstr(ev, "<stanza-id xmlns='urn:xmpp:sid:0' id='s-1' by='" HAMLET "'/>"));
	assert_non_null(strstr(ev, "<third-party/>"));
	assert_null(strstr(ev, "unknown"));
	assert_null(strstr(ev, "Never came"));
	assert_non_null(strstr(ev, "id='h1'"));
	assert_non_null(strstr(ev, "id='h2'"));
	assert_null(strstr(ev, "id='h3'"));
	/* bob's held requests served as evidence and are gone; eve's stay */
	assert_int_equal(held_from("bob@x.example"), 0);
	assert_int_equal(held_from("eve@x.example"), 1);
	assert_int_equal(fake.holds_taken, fake.holds_released);

	/* a domain entry's report gathers every sender at it */
	block_ok(f, "<item jid='x.example'><report xmlns='urn:xmpp:reporting:1' reason='urn:xmpp:reporting:abuse'/></item>");
	assert_int_equal(db.nreports, 2);
	assert_string_equal(db.report.sender, "x.example");
	assert_null(db.report.text);
	assert_non_null(strstr(db.report.evidence, "id='h3'"));
	assert_int_equal(db.nreq, 0);

	/* a reason we do not know: blocked all the same, no report */
	block_ok(f, "<item jid='lear@y.example'><report xmlns='urn:xmpp:reporting:1' reason='urn:x:meh'/></item>");
	block_ok(f, "<item jid='kent@y.example'><report xmlns='urn:xmpp:reporting:1'/></item>");
	assert_int_equal(db.nreports, 2);
	assert_int_equal(db.nblock, 5);
}

/* ---- someone else changed the list ---- */

static void test_blocklist_changed(void **state)
{
	fixture *f = *state;
	block_ok(f, "<item jid='bob@x.example'/><item jid='carol@x.example'/>");
	char *l = list_of(f, f->b); /* /b is interested now */
	pv_free(l);
	/* a consent report blocks eve and the admin unblocks carol, in storage */
	pv_store_block_set(&fake_store, HOST, "hamlet", "eve@x.example", true, NULL, NULL);
	pv_store_block_set(&fake_store, HOST, "hamlet", "carol@x.example", false, NULL, NULL);
	rec_reset();
	pv_event ev = {.host = f->h, .user = "hamlet"};
	pv_fire(f->h, "blocklist-changed", &ev);
	assert_str_take(pushes(), HAMLET "/b:block:eve@x.example|" HAMLET "/b:unblock:carol@x.example");
	assert_str_take(list_of(f, f->a), "bob@x.example eve@x.example");
	char *got = filter(f, "filter/inbound", NULL, "<presence to='" HAMLET "'/>", "eve@x.example/r");
	assert_str_take(got, "handled");
	/* a user whose list is not cached (and who had none at load): nothing to do until
	 * it is read, but from now on it is read */
	pv_store_block_set(&fake_store, HOST, "lear", "eve@x.example", true, NULL, NULL);
	rec_reset();
	ev.user = "lear";
	pv_fire(f->h, "blocklist-changed", &ev);
	assert_int_equal(rec.nsent, 0);
	got = filter(f, "filter/inbound", NULL, "<presence to='lear@" HOST "'/>", "eve@x.example/r");
	assert_str_take(got, "handled");
	/* a deleted account's cached list is forgotten */
	pv_store_block_clear(&fake_store, HOST, "hamlet", NULL, NULL);
	ev.user = "hamlet";
	pv_fire(f->h, "user-deleted", &ev);
	got = filter(f, "filter/inbound", NULL, "<presence to='" HAMLET "'/>", "eve@x.example/r");
	assert_str_take(got, "pass");
}

/* Only users who have a stored list are read (the set is loaded with the module): at
 * scale most lookups are of users who block no one. */
static void test_only_listed_users_are_read(void **state)
{
	fixture *f = *state;
	char *got = filter(f, "filter/inbound", NULL, "<message to='macbeth@" HOST "'/>",
		"x@spam.example/r");
	assert_str_take(got, "handled");
	assert_int_equal(db.block_reads, 1);
	for (int i = 0; i < 3; i++) {
		got = filter(f, "filter/inbound", NULL, "<presence to='" HAMLET "'/>", "x@spam.example/r");
		assert_str_take(got, "pass");
		got = filter(f, "filter/inbound", NULL, "<presence to='nobody@" HOST "'/>",
			"x@spam.example/r");
		assert_str_take(got, "pass");
	}
	assert_int_equal(db.block_reads, 1);
}

static void test_features_and_unload(void **state)
{
	fixture *f = *state;
	const char *const *vars;
	size_t n = pv_host_features(f->h, &vars);
	bool blocking = false, reporting = false;
	for (size_t i = 0; i < n; i++) {
		blocking = blocking || strcmp(vars[i], NS_BLOCKING) == 0;
		reporting = reporting || strcmp(vars[i], NS_REPORTING) == 0;
	}
	assert_true(blocking);
	assert_true(reporting);
	/* teardown's fake_host_free checks that unload removed every hook */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_matching),
		cmocka_unit_test_setup_teardown(test_block_get_push_unblock, setup, teardown),
		cmocka_unit_test_setup_teardown(test_errors, setup_small, teardown),
		cmocka_unit_test_setup_teardown(test_inbound_filter, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sender_side_and_outbound, setup, teardown),
		cmocka_unit_test_setup_teardown(test_presence_on_block_and_unblock, setup, teardown),
		cmocka_unit_test_setup_teardown(test_report, setup, teardown),
		cmocka_unit_test_setup_teardown(test_blocklist_changed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_only_listed_users_are_read, setup_listed, teardown),
		cmocka_unit_test_setup_teardown(test_features_and_unload, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
