/* mod_offline.c -- offline messages (XEP-0160) with a delayed-delivery stamp (XEP-0203).
 *
 * "message/offline" (the core fires it for a normal or chat message to an account with
 * no available resource of non-negative priority, RFC 6121 8.5.2.2.1): the message is
 * copied, stamped <delay xmlns='urn:xmpp:delay' from='HOST' stamp='UTC'>Offline
 * Storage</delay> and appended to the account's queue; the sender's ack waits for the
 * commit (pv_hold).  Not stored (XEP-0160 section 4, XEP-0334):
 *   - a chat message with only chat-state notifications (XEP-0085) -- dropped silently,
 *     it means nothing later; a <store/> hint overrides this;
 *   - a message with a <no-store/> hint -- dropped silently, as the sender asked;
 *   - a message over the quota offline.max_per_user (default 1000) -- the sender gets
 *     service-unavailable (XEP-0160 section 2, step 3: "the recipient's offline message
 *     queue is full").
 * "session-available": when a resource sends initial presence with non-negative
 * priority (XEP-0160 section 2, step 5), the stored messages go to it in arrival order
 * and are then deleted; pv_session_send queues each in the session's durable queue
 * first, and the store is FIFO, so a crash between the two loses nothing.
 * Disco: the host advertises "msgoffline" (XEP-0160 section 5).
 * TODO: a resource whose initial presence had a negative priority and later raises it
 * gets the messages only at its next login.
 *
 * The quota is counted inside the write (pv_store_offline_push): a read here would wait
 * for every write queued before it, a commit per stored message under load.
 * Threading: hooks run on the host's worker loop; the queue's read at login is
 * synchronous. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "peyvand/pv_module.h"

#define NS_CHATSTATES "http://jabber.org/protocol/chatstates"
#define NS_HINTS "urn:xmpp:hints"
#define DEF_MAX_PER_USER 1000

typedef struct offline_cfg {
	int max_per_user;
} offline_cfg;

/* XEP-0082 DateTime in UTC with milliseconds, e.g. 2002-09-10T23:08:25.123Z. */
static void utc_stamp(char *buf, size_t n)
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	size_t k = strftime(buf, n, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + k, n - k, ".%03ldZ", ts.tv_nsec / 1000000L);
}

/* The namespace an element is in (NULL: none declared anywhere above it, which for a
 * stanza read back from its wire form means jabber:client). */
static const char *elem_ns(const pv_xml *x)
{
	for (; x; x = x->parent)
		if (x->ns)
			return x->ns;
	return NULL;
}

/* Chat states (and a thread id) and nothing else: XEP-0160 section 4, "chat". */
static bool only_chat_states(const pv_xml *m)
{
	bool states = false;
	for (pv_xml *c = pv_xml_first_element(m); c; c = pv_xml_next_element(c)) {
		const char *ns = elem_ns(c);
		if (ns && strcmp(ns, NS_CHATSTATES) == 0)
			states = true;
		else if (strcmp(c->name, "thread") != 0 || (ns && strcmp(ns, PV_NS_CLIENT) != 0))
			return false;
	}
	return states;
}

/* A message on its way into the queue: its sender's hold, and the message itself for
 * the error that answers it if the queue turns out to be full or the write fails. */
typedef struct pushed {
	pv_host *host;             /* hosts live until the server stops, after the store */
	pv_stanza *st;
	pv_hold *hold;
} pushed;

static void on_pushed(void *ud, int rc)
{
	pushed *p = ud;
	if (rc < 0) {
		bool full = rc == PV_ELIMIT;
		if (full)
			pv_info("offline", "%s: queue full, message refused", p->st->to.bare);
		else
			pv_error("offline", "%s: storing a message failed rc=%d", p->st->to.bare, rc);
		/* XEP-0160 section 2, step 3; a failed write may succeed if sent again. */
		pv_bounce(p->host, p->st, full ? "cancel" : "wait",
			full ? "service-unavailable" : "internal-server-error");
	}
	pv_hold_release(p->hold);
	pv_stanza_unref(p->st);
	pv_free(p);
}

static int on_offline(pv_event *ev, void *ud)
{
	const offline_cfg *cfg = ud;
	pv_host *h = ev->host;
	const pv_stanza *st = ev->stanza;
	if (!st->has_to || !st->to.local)
		return PV_PASS;
	const char *user = st->to.local;

	bool force = pv_xml_child(st->xml, "store", NS_HINTS) != NULL;
	if (!force && (pv_xml_child(st->xml, "no-store", NS_HINTS) || only_chat_states(st->xml))) {
		pv_debug("offline", "%s: not stored (hint or chat state only)", st->to.bare);
		return PV_HANDLED;
	}

	char stamp[40];
	utc_stamp(stamp, sizeof(stamp));
	pv_stanza *cp = pv_stanza_copy(st);
	pv_xml *d = pv_xml_add_child(cp->xml, "delay", PV_NS_DELAY);
	pv_xml_set_attr(d, "from", pv_host_name(h));
	pv_xml_set_attr(d, "stamp", stamp);
	static const char note[] = "Offline Storage";
	pv_xml_add_text(d, note, sizeof(note) - 1);

	/* Self-contained (xmlns on the root) so pv_xml_parse reads it back as is. */
	pv_buf b;
	pv_buf_init(&b);
	pv_xml_serialize(cp->xml, NULL, &b);
	pushed *p = pv_malloc(sizeof(*p));
	p->host = h;
	p->st = pv_stanza_ref((pv_stanza *)st);
	p->hold = pv_hold_take();
	pv_store_offline_push(pv_host_store(h), pv_host_name(h), user, b.data, b.len,
		cfg->max_per_user, on_pushed, p);
	pv_buf_fini(&b);
	pv_stanza_unref(cp);
	return PV_HANDLED;
}

/* Rows are collected first and delivered after the read returns: delivery writes to
 * the store (the session queue), which is not something to do from inside a read. */
typedef struct row {
	int64_t id;
	char *xml;
	size_t len;
} row;

typedef struct rows {
	row *v;
	size_t n, cap;
} rows;

static void collect(void *ud, int64_t id, int64_t stamp, const char *xml, size_t len)
{
	rows *r = ud;
	if (r->n == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 16;
		r->v = pv_realloc(r->v, r->cap * sizeof(*r->v));
	}
	r->v[r->n++] = (row){id, pv_strndup(xml, len), len};
}

static int on_session_available(pv_event *ev, void *ud)
{
	pv_session *s = ev->origin;
	const pv_jid *uj = s ? pv_session_jid(s) : NULL;
	if (!uj || !uj->local || pv_session_priority(s) < 0)
		return PV_PASS;
	pv_host *h = ev->host;
	pv_store *store = pv_host_store(h);

	rows r = {0};
	int rc = pv_store_offline_list(store, pv_host_name(h), uj->local, collect, &r);
	if (rc < 0)
		pv_warn("offline", "%s: reading the offline queue failed rc=%d", uj->bare, rc);
	int64_t last = 0;
	for (size_t i = 0; i < r.n; i++) {
		pv_stanza *st = pv_stanza_parse(r.v[i].xml, r.v[i].len);
		if (!st) {
			/* Unreadable forever: deleting it with the rest is the only way on. */
			pv_error("offline", "%s: unreadable offline message id=%lld dropped", uj->bare,
				(long long)r.v[i].id);
		} else {
			pv_session_send(s, st);
			pv_stanza_unref(st);
		}
		last = r.v[i].id;
		pv_free(r.v[i].xml);
	}
	pv_free(r.v);
	if (r.n) {
		pv_store_offline_delete(store, pv_host_name(h), uj->local, last, pv_hold_store_done,
			pv_hold_take());
		pv_debug("offline", "%s: %zu offline message(s) delivered", uj->full, r.n);
	}
	return PV_PASS;
}

static int offline_load(pv_host *h, const pv_conf *conf, void **state)
{
	offline_cfg *cfg = pv_calloc(1, sizeof(*cfg));
	long long max = conf ? pv_cfg_int(conf, "max_per_user", DEF_MAX_PER_USER) : DEF_MAX_PER_USER;
	cfg->max_per_user = max >= 0 && max <= 1000000000 ? (int)max : DEF_MAX_PER_USER;
	pv_host_add_feature(h, "msgoffline");
	pv_hook(h, "message/offline", 0, on_offline, cfg);
	pv_hook(h, "session-available", 0, on_session_available, cfg);
	*state = cfg;
	return 0;
}

static void offline_unload(pv_host *h, void *state)
{
	pv_unhook(h, "message/offline", on_offline, state);
	pv_unhook(h, "session-available", on_session_available, state);
	pv_free(state);
}

const pv_module pv_mod_offline = {
	.name = "offline",
	.load = offline_load,
	.unload = offline_unload,
};
