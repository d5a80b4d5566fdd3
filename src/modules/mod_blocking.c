/* mod_blocking.c -- Blocking Command (XEP-0191 1.3) with Blocking Command Reports
 * (XEP-0377, urn:xmpp:reporting:1).
 *
 * Protocol (iq with no 'to', or to the account's own bare JID; anyone else gets
 * service-unavailable, which is also what a blocked entity sees, so the answer reveals
 * nothing):
 *   get <blocklist/>          the list (3.2); the session is marked as having requested
 *                             it, so it receives pushes from then on
 *   set <block><item jid/>..  add JIDs (3.3); no <item/> -> bad-request, an item without
 *                             'jid' -> bad-request, an unparsable jid -> jid-malformed
 *                             (RFC 6120 8.3.3.8, "other standard errors also apply");
 *                             more than blocking.max_items entries -> not-allowed (a
 *                             local policy, like roster.max_items)
 *   set <unblock><item/>..    remove JIDs (3.4); an empty <unblock/> removes all (3.5)
 *   Each change is pushed (iq set carrying the same <block/>/<unblock/>) to every
 *   resource that requested the blocklist, the requesting one included.
 *   A request is validated as a whole before anything changes.
 * Presence (3.3, 3.4): blocking sends "unavailable" from each available resource to
 *   the blocked JIDs allowed to see the user's presence (roster subscription from/both,
 *   and directed-presence targets, which are then forgotten); unblocking sends the
 *   current presence to those with a from/both subscription and, when the user is
 *   subscribed to them, probes them so the user's clients learn their presence again.
 * Enforcement -- JID matching (section 6): an entry user@domain/resource matches that
 *   full JID only, user@domain any of its resources, domain/resource that JID only, and
 *   domain the domain itself and every address at it.  Never applied between the
 *   account's own resources (section 5 note), nor to the account's own server.
 *   "filter/inbound" (priority 100), for a stanza to a local user:
 *     from a JID the recipient blocked (3.3): presence of every type is dropped without
 *       an answer, a message gets service-unavailable (from a sender on another server
 *       it is dropped silently, as consent does, so no answer tells a stranger that the
 *       account exists), an iq get/set service-unavailable, iq result/error and any
 *       error stanza are dropped -- the user appears offline;
 *     from a local user who blocked the recipient (stanzas the server generates on that
 *       user's behalf -- presence broadcasts, probe answers -- which do not pass
 *       "filter/outbound"): dropped silently; errors pass (they are the answers above).
 *   "filter/outbound", for a stanza a local client sends to a JID it blocked: not
 *     routed; answered with not-acceptable + <blocked xmlns='urn:xmpp:blocking:errors'/>
 *     (3.3), except errors and iq results, which cannot be answered and are dropped.
 *     A stanza the event carries without an origin session (routed on a local user's
 *     behalf) is dropped silently.
 *   TODO: stanzas the server generates on a user's behalf for a *remote* JID (presence
 *     broadcasts, probes) pass neither filter today: the router should fire
 *     "filter/outbound" (origin NULL) for them before the s2s queue.
 * XEP-0377: a <report xmlns='urn:xmpp:reporting:1' reason='urn:xmpp:reporting:spam|abuse'>
 *   inside a block <item/> is stored for the operators (pv_store_report_add): the item's
 *   JID, the reason, the user's <text/>, and as evidence the <report/> element without
 *   its text (stanza-id references, processing opt-ins) followed by every message
 *   request (consent) held from a matching sender, one element per line; the held
 *   requests are then dropped.  The block
 *   happens whether or not the report is usable (section "Submitting Reports"); a report
 *   without a known reason is logged and ignored.  Reports are never forwarded (we
 *   implement neither report-origin nor third-party processing).
 * Cache: each user's list is read from storage on first use and kept (sorted, so the
 *   filters cost four binary searches per stanza) in a per-host LRU of CACHE_USERS
 *   users, updated with each write this module makes.  Only users who may have a list
 *   are read: the set of them is loaded with the module and grows with every block,
 *   here or elsewhere; everyone else starts empty without a read (most users block no
 *   one, and at scale the LRU misses a quarter of lookups: bench/NOTES.md, tenth run).
 *   A change made elsewhere (a consent report, the admin socket: event
 *   "blocklist-changed") replaces the cached copy and is pushed, with its presence
 *   effects, as if the user had sent it.
 * Durability: every store write takes a hold, so the client's XEP-0198 ack of the set
 *   waits for the commit; the result and pushes go out at once.
 * Config (host section "blocking"): max_items (1000).
 *
 * Threading: hooks run on the worker loop that owns the host.  The registry of loaded
 * instances (to check a local sender's own list when a stanza reaches another local
 * host) is touched from load/unload and the hooks only, all on that loop. */
#include <string.h>

#include "peyvand/pv_module.h"
#include "peyvand/pv_map.h"

#define NS_BLOCKING "urn:xmpp:blocking"
#define NS_BLOCKING_ERRORS "urn:xmpp:blocking:errors"
#define NS_REPORTING "urn:xmpp:reporting:1"
#define NS_SID "urn:xmpp:sid:0"
#define REASON_SPAM "urn:xmpp:reporting:spam"
#define REASON_ABUSE "urn:xmpp:reporting:abuse"

#define DEF_MAX_ITEMS 1000
/* Users whose lists stay in memory per host (an entry is a few hundred bytes). */
#define CACHE_USERS 10000
#define NBUCKETS 4096 /* power of two */
#define SMALL_DIRECTED 16
/* The user's explanation of a report: a paragraph, not a document. */
#define MAX_REPORT_TEXT 4096

/* ---- the per-user list and the per-host cache ---- */

typedef struct blk_list {
	char *user;
	char **v; /* normalised JIDs, sorted by strcmp, no duplicates */
	size_t n, cap;
	int pins;                        /* in use across routing: not evicted */
	struct blk_list *hnext;          /* bucket chain */
	struct blk_list *newer, *older;  /* LRU: head is the most recently used */
} blk_list;

typedef struct blk_state {
	pv_host *host;
	size_t max_items;
	pv_map *listed;                  /* users who may have a stored list (see cache_get) */
	blk_list *buckets[NBUCKETS];
	size_t count;
	blk_list *lru_head, *lru_tail;
	struct blk_state *next; /* registry */
} blk_state;

static blk_state *loaded; /* every loaded instance (one per host) */

/* Session data key: set on sessions that requested the blocklist (3.2, pushes). */
static const char interested_key;

/* Position of s in the sorted list, or where it would go (*found says which). */
static size_t list_pos(const blk_list *l, const char *s, bool *found)
{
	size_t lo = 0, hi = l->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(l->v[mid], s);
		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

static bool list_has(const blk_list *l, const char *s)
{
	bool found;
	list_pos(l, s, &found);
	return found;
}

/* Returns true when s was added. */
static bool list_add(blk_list *l, const char *s)
{
	bool found;
	size_t at = list_pos(l, s, &found);
	if (found)
		return false;
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 8;
		l->v = pv_realloc(l->v, l->cap * sizeof(char *));
	}
	memmove(l->v + at + 1, l->v + at, (l->n - at) * sizeof(char *));
	l->v[at] = pv_strdup(s);
	l->n++;
	return true;
}

static bool list_del(blk_list *l, const char *s)
{
	bool found;
	size_t at = list_pos(l, s, &found);
	if (!found)
		return false;
	pv_free(l->v[at]);
	memmove(l->v + at, l->v + at + 1, (l->n - at - 1) * sizeof(char *));
	l->n--;
	return true;
}

static void list_clear(blk_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		pv_free(l->v[i]);
	l->n = 0;
}

static void list_free(blk_list *l)
{
	if (!l)
		return;
	list_clear(l);
	pv_free(l->v);
	pv_free(l->user);
	pv_free(l);
}

/* Section 6: does an entry of the list cover address j? */
static bool list_matches(const blk_list *l, const pv_jid *j)
{
	if (!l || l->n == 0 || !j->domain)
		return false;
	if (j->resource && list_has(l, j->full))
		return true; /* user@domain/resource, or domain/resource */
	if (j->local && list_has(l, j->bare))
		return true; /* user@domain: any resource */
	return list_has(l, j->domain); /* domain: everything at it */
}

static size_t hash_str(const char *s)
{
	size_t h = 2166136261u; /* FNV-1a */
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h & (NBUCKETS - 1);
}

static void lru_unlink(blk_state *bs, blk_list *l)
{
	if (l->newer)
		l->newer->older = l->older;
	else
		bs->lru_head = l->older;
	if (l->older)
		l->older->newer = l->newer;
	else
		bs->lru_tail = l->newer;
	l->newer = l->older = NULL;
}

static void lru_push(blk_state *bs, blk_list *l)
{
	l->older = bs->lru_head;
	l->newer = NULL;
	if (bs->lru_head)
		bs->lru_head->newer = l;
	bs->lru_head = l;
	if (!bs->lru_tail)
		bs->lru_tail = l;
}

static void cache_remove(blk_state *bs, blk_list *l)
{
	for (blk_list **pp = &bs->buckets[hash_str(l->user)]; *pp; pp = &(*pp)->hnext) {
		if (*pp == l) {
			*pp = l->hnext;
			break;
		}
	}
	lru_unlink(bs, l);
	bs->count--;
	list_free(l);
}

static void list_load_cb(void *ud, const char *jid)
{
	list_add(ud, jid);
}

/* The user's list, loaded on first use.  Borrowed: valid until the second-next call
 * (a load may evict the least recently used list, never the one just returned, since
 * CACHE_USERS > 1) -- or, when pinned, until unpinned.  NULL when storage failed
 * (logged). */
static blk_list *cache_find(blk_state *bs, const char *user)
{
	for (blk_list *l = bs->buckets[hash_str(user)]; l; l = l->hnext)
		if (strcmp(l->user, user) == 0)
			return l;
	return NULL;
}

static blk_list *cache_get(blk_state *bs, const char *user)
{
	blk_list *l = cache_find(bs, user);
	if (l) {
		lru_unlink(bs, l);
		lru_push(bs, l);
		return l;
	}
	size_t b = hash_str(user);
	l = pv_calloc(1, sizeof(*l));
	l->user = pv_strdup(user);
	/* Most users block no one: only those who may have a list are read. */
	int rc = !pv_map_get(bs->listed, user) ? 0
		: pv_store_block_list(pv_host_store(bs->host), pv_host_name(bs->host), user,
			list_load_cb, l);
	if (rc < 0) {
		pv_warn("blocking", "loading the block list of %s@%s failed rc=%d", user,
			pv_host_name(bs->host), rc);
		list_free(l);
		return NULL;
	}
	if (bs->count >= CACHE_USERS) {
		blk_list *old = bs->lru_tail;
		while (old && old->pins)
			old = old->newer;
		if (old)
			cache_remove(bs, old);
	}
	l->hnext = bs->buckets[b];
	bs->buckets[b] = l;
	lru_push(bs, l);
	bs->count++;
	return l;
}

static void cache_drop(blk_state *bs, const char *user)
{
	blk_list *l = cache_find(bs, user);
	if (l)
		cache_remove(bs, l);
}

/* From now on the user's list is read on a cache miss. */
static void mark_listed(blk_state *bs, const char *user)
{
	pv_map_put(bs->listed, user, bs);
}

static void listed_cb(void *ud, const char *user)
{
	mark_listed(ud, user);
}

static blk_state *state_of(const pv_host *h)
{
	for (blk_state *bs = loaded; bs; bs = bs->next)
		if (bs->host == h)
			return bs;
	return NULL;
}

/* ---- small helpers ---- */

static bool type_is(const pv_stanza *st, const char *t)
{
	return st->type && strcmp(st->type, t) == 0;
}

static void route_presence(pv_host *h, const char *type, const char *from, const char *to)
{
	pv_xml *x = pv_xml_new("presence", PV_NS_CLIENT);
	if (type)
		pv_xml_set_attr(x, "type", type);
	pv_xml_set_attr(x, "from", from);
	pv_xml_set_attr(x, "to", to);
	const char *bad = NULL;
	pv_stanza *st = pv_stanza_new(x, &bad);
	if (!st) {
		pv_warn("blocking", "cannot build presence from=%s to=%s (bad %s)", from, to,
			bad ? bad : "?");
		pv_xml_free(x);
		return;
	}
	pv_route(h, st);
	pv_stanza_unref(st);
}

/* Whether the address is the account itself (any of its resources) or its own server,
 * which no entry may cut off (section 5 note; the server must stay reachable). */
static bool exempt(const pv_jid *account, const pv_jid *other)
{
	if (!other->domain)
		return true;
	if (account->local && other->local && strcmp(account->bare, other->bare) == 0)
		return true;
	return !other->local && !other->resource && strcmp(other->domain, account->domain) == 0;
}

/* ---- enforcement ---- */

static int on_filter_inbound(pv_event *ev, void *ud)
{
	blk_state *bs = ud;
	pv_stanza *st = ev->stanza;
	if (!st->to.local || !st->has_from || exempt(&st->to, &st->from))
		return PV_PASS;

	blk_list *l = cache_get(bs, st->to.local);
	if (list_matches(l, &st->from)) {
		/* 3.3: what the blocked JID sees -- the user appears offline.  A message from
		 * another provider vanishes instead (3.3 says SHOULD): there, consent answers
		 * every refused message with silence, so that an answer never tells a stranger
		 * whether an account exists -- an error here would. */
		pv_debug("blocking", "%s: inbound %s from blocked %s dropped", st->to.bare,
			st->xml->name, st->from.full);
		bool local_sender = pv_host_find(ev->host, st->from.domain) != NULL;
		if ((st->kind == PV_ST_MESSAGE && local_sender) ||
		    (st->kind == PV_ST_IQ && (type_is(st, "get") || type_is(st, "set"))))
			pv_reply_error(ev, "cancel", "service-unavailable"); /* no-op for errors */
		return PV_HANDLED;
	}

	/* The sender is a local user who blocked the recipient: a stanza the server made
	 * on the sender's behalf (client stanzas were checked by "filter/outbound"). */
	if (!st->from.local || type_is(st, "error"))
		return PV_PASS;
	blk_state *sbs = state_of(pv_host_find(ev->host, st->from.domain));
	if (!sbs)
		return PV_PASS;
	blk_list *sl = cache_get(sbs, st->from.local);
	if (list_matches(sl, &st->to)) {
		pv_debug("blocking", "%s: %s to blocked %s not sent", st->from.bare, st->xml->name,
			st->to.full);
		return PV_HANDLED;
	}
	return PV_PASS;
}

/* The <error/> of 3.3 for an outbound stanza to a blocked JID, sent back to the client. */
static void reply_blocked(pv_event *ev)
{
	pv_stanza *e = pv_stanza_error(ev->stanza, "cancel", "not-acceptable", NULL);
	if (!e)
		return;
	/* The <error/> pv_stanza_error appended last (the payload before it is the
	 * sender's, which may hold anything); the application condition follows the
	 * defined one (RFC 6120 8.3.2). */
	pv_xml *err = e->xml->last;
	if (pv_xml_is(err, "error", NULL))
		pv_xml_add_child(err, "blocked", NS_BLOCKING_ERRORS);
	pv_reply(ev, e);
}

static int on_filter_outbound(pv_event *ev, void *ud)
{
	blk_state *bs = ud;
	pv_stanza *st = ev->stanza;
	const pv_jid *me = ev->origin ? pv_session_jid(ev->origin) : (st->has_from ? &st->from : NULL);
	if (!st->has_to || !me || !me->local || exempt(me, &st->to))
		return PV_PASS;
	if (strcmp(me->domain, pv_host_name(bs->host)) != 0)
		return PV_PASS; /* not an account of this host */
	blk_list *l = cache_get(bs, me->local);
	if (!list_matches(l, &st->to))
		return PV_PASS;
	pv_debug("blocking", "%s: outbound %s to blocked %s refused", me->bare, st->xml->name,
		st->to.full);
	/* Errors and iq results answer something; there is nobody to tell. */
	if (ev->origin && !type_is(st, "error") && !(st->kind == PV_ST_IQ && type_is(st, "result")))
		reply_blocked(ev);
	return PV_HANDLED;
}

/* ---- presence on block and unblock (3.3, 3.4) ---- */

static bool sub_has_from(pv_sub s)
{
	return s == PV_SUB_FROM || s == PV_SUB_BOTH;
}

static bool sub_has_to(pv_sub s)
{
	return s == PV_SUB_TO || s == PV_SUB_BOTH;
}

/* The address of a roster contact the changed entries concern: the contact's bare JID
 * when an entry covers it, or the entry itself when it names one of the contact's
 * resources (user@domain/resource).  NULL when none does.  Borrowed. */
static const char *affected(const blk_list *changed, const pv_jid *changed_jids,
	const char *contact)
{
	pv_jid cj;
	if (pv_jid_parse_str(&cj, contact) < 0)
		return NULL;
	bool hit = list_matches(changed, &cj);
	pv_jid_fini(&cj);
	if (hit)
		return contact;
	for (size_t i = 0; i < changed->n; i++)
		if (changed_jids[i].resource && changed_jids[i].local &&
		    strcmp(changed_jids[i].bare, contact) == 0)
			return changed_jids[i].full;
	return NULL;
}

/* Presence of every available session of the user to `to`: "unavailable" when
 * `unavailable`, else each session's current presence. */
static void presence_from_sessions(pv_host *h, const pv_user_sessions *sl, const char *to, bool unavailable)
{
	for (size_t i = 0; i < sl->n; i++) {
		pv_session *s = sl->v[i];
		const pv_jid *j = pv_session_jid(s);
		if (!j || !pv_session_is_available(s))
			continue;
		pv_stanza *p = unavailable ? NULL : pv_session_presence(s);
		if (!p) {
			route_presence(h, unavailable ? "unavailable" : NULL, j->full, to);
			continue;
		}
		pv_stanza_set_to(p, to);
		pv_route(h, p);
		pv_stanza_unref(p);
	}
}

/* 4.6.3-style cleanup: directed-presence targets now blocked get "unavailable" and are
 * forgotten. */
static void directed_unavailable(pv_host *h, const pv_user_sessions *sl, const blk_list *changed)
{
	for (size_t i = 0; i < sl->n; i++) {
		pv_session *s = sl->v[i];
		const pv_jid *j = pv_session_jid(s);
		const char *small[SMALL_DIRECTED];
		const char **v = small;
		size_t n = pv_session_directed(s, small, SMALL_DIRECTED);
		if (!j || n == 0)
			continue;
		if (n > SMALL_DIRECTED) {
			size_t want = n;
			v = pv_malloc(want * sizeof(*v));
			n = pv_session_directed(s, v, want);
			if (n > want)
				n = want;
		}
		/* Copies: deleting changes the list the borrowed strings live in. */
		char **hit = pv_calloc(n ? n : 1, sizeof(char *));
		size_t nhit = 0;
		for (size_t k = 0; k < n; k++) {
			pv_jid t;
			if (pv_jid_parse_str(&t, v[k]) < 0)
				continue;
			if (list_matches(changed, &t))
				hit[nhit++] = pv_strdup(v[k]);
			pv_jid_fini(&t);
		}
		if (v != small)
			pv_free(v);
		for (size_t k = 0; k < nhit; k++) {
			pv_session_del_directed(s, hit[k]);
			route_presence(h, "unavailable", j->full, hit[k]);
			pv_free(hit[k]);
		}
		pv_free(hit);
	}
}

/* The presence side of a change of `changed` (sorted entries, parsed alongside).
 * Blocking: call before the entries take effect, so the "unavailable" is not stopped
 * by the sender-side check of the filter.  Unblocking: call after. */
static void presence_on_change(pv_host *h, const char *user, const blk_list *changed,
	const pv_jid *changed_jids, bool blocked)
{
	if (changed->n == 0)
		return;
	pv_user_sessions sl;
	pv_user_sessions_get(&sl, h, user);
	bool any_available = false;
	for (size_t i = 0; i < sl.n; i++)
		any_available = any_available || pv_session_is_available(sl.v[i]);
	if (!any_available) {
		/* Nobody sees the user online: nothing to withdraw or restore. */
		pv_user_sessions_fini(&sl);
		return;
	}
	pv_roster_item *items = NULL;
	size_t n = 0;
	uint64_t ver = 0;
	if (pv_store_roster_get(pv_host_store(h), pv_host_name(h), user, &items, &n, &ver) < 0) {
		pv_warn("blocking", "%s@%s: roster unreadable, presence not updated", user,
			pv_host_name(h));
		items = NULL;
		n = 0;
	}
	const pv_jid *me = pv_session_jid(sl.v[0]);
	for (size_t i = 0; i < n; i++) {
		const char *to = affected(changed, changed_jids, items[i].jid);
		if (!to)
			continue;
		if (sub_has_from(items[i].sub))
			presence_from_sessions(h, &sl, to, blocked);
		/* COMPAT: 3.4 is silent on the user's own view; a probe brings the contact's
		 * presence back to the user's clients, which saw none while blocked. */
		if (!blocked && sub_has_to(items[i].sub) && me)
			route_presence(h, "probe", me->bare, items[i].jid);
	}
	if (items)
		pv_roster_items_free(items, n);
	if (blocked)
		directed_unavailable(h, &sl, changed);
	pv_user_sessions_fini(&sl);
}

/* ---- XEP-0377 reports ---- */

typedef struct report_ctx {
	pv_hold *hold;
	char *host, *user, *sender, *reason;
	size_t held, ids;
} report_ctx;

static void report_done(void *ud, int rc)
{
	report_ctx *c = ud;
	if (rc == 0)
		pv_info("blocking", "report stored host=%s user=%s sender=%s reason=%s held=%zu "
			"stanza_ids=%zu", c->host, c->user, c->sender, c->reason, c->held, c->ids);
	else
		pv_warn("blocking", "report not stored host=%s user=%s sender=%s rc=%d", c->host,
			c->user, c->sender, rc);
	pv_hold_release(c->hold);
	pv_free(c->host);
	pv_free(c->user);
	pv_free(c->sender);
	pv_free(c->reason);
	pv_free(c);
}

typedef struct senders {
	char **v;
	size_t n;
	const pv_jid *entry;
} senders;

/* Held requests are keyed by the sender's bare JID: those the entry covers (a domain
 * entry covers every sender at it; a full JID entry its bare JID). */
static void request_sender_cb(void *ud, const pv_request_info *r)
{
	senders *s = ud;
	pv_jid sj;
	if (!r->sender || pv_jid_parse_str(&sj, r->sender) < 0)
		return;
	bool hit = strcmp(sj.bare, s->entry->bare) == 0 ||
		   (!s->entry->local && !s->entry->resource && strcmp(sj.domain, s->entry->domain) == 0);
	pv_jid_fini(&sj);
	if (hit) {
		s->v = pv_realloc(s->v, (s->n + 1) * sizeof(char *));
		s->v[s->n++] = pv_strdup(r->sender);
	}
}

static void request_xml_cb(void *ud, int64_t id, int64_t stamp, const char *xml, size_t len)
{
	pv_buf *ev = ud;
	pv_buf_append(ev, xml, len);
	pv_buf_puts(ev, "\n");
}

static void trim_append(pv_buf *out, const char *s)
{
	size_t a = 0, b = strlen(s);
	while (a < b && strchr(" \t\r\n", s[a]))
		a++;
	while (b > a && strchr(" \t\r\n", s[b - 1]))
		b--;
	if (a == b)
		return;
	if (out->len)
		pv_buf_puts(out, "\n");
	pv_buf_append(out, s + a, b - a);
}

/* A report attached to one block item (entry = the item's JID, normalised). */
static void store_report(pv_host *h, const char *user, const pv_jid *entry, const pv_xml *rep)
{
	const char *reason = pv_xml_attr(rep, "reason");
	if (!reason || (strcmp(reason, REASON_SPAM) != 0 && strcmp(reason, REASON_ABUSE) != 0)) {
		pv_info("blocking", "%s@%s: report about %s ignored: reason %s", user,
			pv_host_name(h), entry->full, reason ? "not understood" : "missing");
		return;
	}
	pv_store *st = pv_host_store(h);
	const char *host = pv_host_name(h);
	pv_buf text, evidence;
	pv_buf_init(&text);
	pv_buf_init(&evidence);

	/* The report as sent, minus its text: stanza-id references and opt-ins. */
	pv_xml *copy = pv_xml_new("report", NS_REPORTING);
	pv_xml_set_attr(copy, "reason", reason);
	size_t ids = 0;
	for (pv_xml *c = pv_xml_first_element(rep); c; c = pv_xml_next_element(c)) {
		if (pv_xml_is(c, "text", NS_REPORTING)) {
			char *t = pv_xml_text(c);
			if (t && text.len + strlen(t) <= MAX_REPORT_TEXT)
				trim_append(&text, t);
			pv_free(t);
		} else if (pv_xml_is(c, "stanza-id", NS_SID) && pv_xml_attr(c, "id")) {
			pv_xml *d = pv_xml_add_child(copy, "stanza-id", NS_SID);
			pv_xml_set_attr(d, "id", pv_xml_attr(c, "id"));
			if (pv_xml_attr(c, "by"))
				pv_xml_set_attr(d, "by", pv_xml_attr(c, "by"));
			ids++;
		} else if (pv_xml_is(c, "report-origin", NS_REPORTING) ||
			   pv_xml_is(c, "third-party", NS_REPORTING)) {
			pv_xml_add_child(copy, c->name, NS_REPORTING);
		}
	}
	pv_xml_serialize(copy, NULL, &evidence);
	pv_buf_puts(&evidence, "\n"); /* one element per line, as mod_consent's reports */
	/* issue 6: mod_abuse forwards it to the sender's provider (no text, no bodies) */
	pv_xml_set_attr(copy, "jid", entry->bare);
	pv_event aev = {.host = h, .user = user, .payload = copy};
	pv_fire(h, "abuse-report", &aev);
	pv_xml_free(copy);

	/* Held message requests from the reported sender(s) are the evidence the
	 * operators need; then they have served their purpose. */
	senders snd = {.entry = entry};
	if (pv_store_request_list(st, host, user, request_sender_cb, &snd) < 0)
		pv_warn("blocking", "%s@%s: held requests unreadable for a report", user, host);
	size_t held = 0;
	for (size_t i = 0; i < snd.n; i++) {
		int n = pv_store_request_get(st, host, user, snd.v[i], request_xml_cb, &evidence);
		if (n > 0)
			held += (size_t)n;
	}

	report_ctx *ctx = pv_calloc(1, sizeof(*ctx));
	ctx->hold = pv_hold_take();
	ctx->host = pv_strdup(host);
	ctx->user = pv_strdup(user);
	ctx->sender = pv_strdup(entry->full);
	ctx->reason = pv_strdup(reason);
	ctx->held = held;
	ctx->ids = ids;
	pv_report r = {
		.stamp = pv_wall_s(),
		.host = (char *)host,
		.user = (char *)user,
		.sender = entry->full,
		.reason = (char *)reason,
		.text = text.len ? text.data : NULL,
		.evidence = evidence.data,
	};
	pv_store_report_add(st, &r, report_done, ctx);
	for (size_t i = 0; i < snd.n; i++) {
		pv_store_request_drop(st, host, user, snd.v[i], pv_hold_store_done, pv_hold_take());
		pv_free(snd.v[i]);
	}
	pv_free(snd.v);
	pv_buf_fini(&text);
	pv_buf_fini(&evidence);
}

/* ---- the protocol ---- */

/* Sends <iq type='set'><block|unblock>items</..></iq> to every interested resource. */
static void push(pv_host *h, const char *user, const char *what, const blk_list *items)
{
	pv_user_sessions sl;
	pv_user_sessions_get(&sl, h, user);
	for (size_t i = 0; i < sl.n; i++) {
		pv_session *s = sl.v[i];
		const pv_jid *j = pv_session_jid(s);
		if (!j || !pv_session_get_data(s, &interested_key))
			continue;
		pv_xml *iq = pv_xml_new("iq", PV_NS_CLIENT);
		char *id = pv_random_hex(8);
		pv_xml_set_attr(iq, "type", "set");
		pv_xml_set_attr(iq, "id", id);
		pv_xml_set_attr(iq, "to", j->full);
		pv_free(id);
		pv_xml *q = pv_xml_add_child(iq, what, NS_BLOCKING);
		for (size_t k = 0; items && k < items->n; k++)
			pv_xml_set_attr(pv_xml_add_child(q, "item", NS_BLOCKING), "jid", items->v[k]);
		pv_stanza *st = pv_stanza_new(iq, NULL);
		if (!st) {
			pv_xml_free(iq);
			continue;
		}
		pv_session_send(s, st);
		pv_stanza_unref(st);
	}
	pv_user_sessions_fini(&sl);
}

static int on_get(pv_event *ev, void *ud)
{
	blk_state *bs = ud;
	if (!pv_event_from_owner(ev)) {
		pv_reply_error(ev, "cancel", "service-unavailable");
		return PV_HANDLED;
	}
	pv_xml *q = pv_xml_first_element(ev->stanza->xml);
	if (!pv_xml_is(q, "blocklist", NS_BLOCKING)) {
		pv_reply_error(ev, "modify", "bad-request");
		return PV_HANDLED;
	}
	blk_list *l = cache_get(bs, ev->stanza->to.local);
	if (!l) {
		pv_reply_error(ev, "wait", "internal-server-error");
		return PV_HANDLED;
	}
	pv_stanza *r = pv_stanza_iq_result(ev->stanza);
	if (!r)
		return PV_HANDLED;
	pv_xml *bl = pv_xml_add_child(r->xml, "blocklist", NS_BLOCKING);
	for (size_t i = 0; i < l->n; i++)
		pv_xml_set_attr(pv_xml_add_child(bl, "item", NS_BLOCKING), "jid", l->v[i]);
	pv_session_set_data(ev->origin, &interested_key, (void *)&interested_key, NULL);
	pv_reply(ev, r);
	return PV_HANDLED;
}

/* The parsed form of each entry (same order); free with free_jids. */
static pv_jid *parse_all(const blk_list *l)
{
	pv_jid *jids = pv_calloc(l->n ? l->n : 1, sizeof(pv_jid));
	for (size_t i = 0; i < l->n; i++)
		pv_jid_parse_str(&jids[i], l->v[i]); /* normalised: cannot fail */
	return jids;
}

/* The items of a <block/>/<unblock/>: normalised into `out` (sorted, deduplicated)
 * with their parsed JIDs in `jids` (same order).  Returns NULL or the error condition. */
static const char *parse_items(const pv_xml *cmd, blk_list *out, pv_jid **jids)
{
	for (pv_xml *c = pv_xml_first_element(cmd); c; c = pv_xml_next_element(c)) {
		if (!pv_xml_is(c, "item", NS_BLOCKING))
			continue;
		const char *s = pv_xml_attr(c, "jid");
		if (!s)
			return "bad-request";
		pv_jid j;
		if (pv_jid_parse_str(&j, s) < 0)
			return "jid-malformed";
		list_add(out, j.full);
		pv_jid_fini(&j);
	}
	*jids = parse_all(out);
	return NULL;
}

static void free_jids(pv_jid *jids, size_t n)
{
	if (!jids)
		return;
	for (size_t i = 0; i < n; i++)
		pv_jid_fini(&jids[i]);
	pv_free(jids);
}

/* The <report/> inside the block item whose JID normalises to `entry`, if any. */
static void reports_of(pv_host *h, const char *user, const pv_xml *cmd, const blk_list *items,
	const pv_jid *jids)
{
	for (pv_xml *c = pv_xml_first_element(cmd); c; c = pv_xml_next_element(c)) {
		if (!pv_xml_is(c, "item", NS_BLOCKING))
			continue;
		pv_xml *rep = pv_xml_child(c, "report", NS_REPORTING);
		if (!rep)
			continue;
		const char *s = pv_xml_attr(c, "jid");
		pv_jid j;
		if (!s || pv_jid_parse_str(&j, s) < 0)
			continue; /* validated before; cannot happen */
		bool found;
		size_t at = list_pos(items, j.full, &found);
		if (found)
			store_report(h, user, &jids[at], rep);
		pv_jid_fini(&j);
	}
}

static void reply_text(pv_event *ev, const char *etype, const char *cond, const char *text)
{
	pv_stanza *e = pv_stanza_error(ev->stanza, etype, cond, text);
	if (!e)
		return;
	pv_stanza_set_from(e, ev->stanza->has_to ? ev->stanza->to.full : NULL);
	pv_reply(ev, e);
}

static void do_block(pv_event *ev, blk_state *bs, blk_list *l, const pv_xml *cmd)
{
	pv_host *h = ev->host;
	const char *user = ev->stanza->to.local;
	blk_list items = {0}, fresh = {0};
	pv_jid *jids = NULL, *fresh_jids = NULL;
	const char *cond = parse_items(cmd, &items, &jids);
	if (cond) {
		pv_reply_error(ev, "modify", cond);
		goto out;
	}
	if (items.n == 0) {
		/* 3.3: "at least one <item/>". */
		pv_reply_error(ev, "modify", "bad-request");
		goto out;
	}
	for (size_t i = 0; i < items.n; i++)
		if (!list_has(l, items.v[i]))
			list_add(&fresh, items.v[i]);
	if (l->n + fresh.n > bs->max_items) {
		pv_info("blocking", "%s@%s: block list full (%zu), %zu more refused", user,
			pv_host_name(h), l->n, fresh.n);
		reply_text(ev, "cancel", "not-allowed", "block list full");
		goto out;
	}
	fresh_jids = parse_all(&fresh);

	/* 3.3: "unavailable" to those allowed to see the user, before the entries stop it. */
	presence_on_change(h, user, &fresh, fresh_jids, true);
	pv_store *st = pv_host_store(h);
	mark_listed(bs, user);
	for (size_t i = 0; i < fresh.n; i++) {
		pv_store_block_set(st, pv_host_name(h), user, fresh.v[i], true, pv_hold_store_done,
			pv_hold_take());
		list_add(l, fresh.v[i]);
	}
	pv_info("blocking", "%s@%s: blocked %zu (list %zu)", user, pv_host_name(h), fresh.n, l->n);
	reports_of(h, user, cmd, &items, jids);

	pv_stanza *r = pv_stanza_iq_result(ev->stanza);
	if (r)
		pv_reply(ev, r);
	push(h, user, "block", &items);
out:
	free_jids(jids, items.n);
	free_jids(fresh_jids, fresh.n);
	list_clear(&items);
	pv_free(items.v);
	list_clear(&fresh);
	pv_free(fresh.v);
}

static void do_unblock(pv_event *ev, blk_list *l, const pv_xml *cmd)
{
	pv_host *h = ev->host;
	const char *user = ev->stanza->to.local;
	pv_store *st = pv_host_store(h);
	blk_list items = {0}, gone = {0};
	pv_jid *jids = NULL, *gone_jids = NULL;
	const char *cond = parse_items(cmd, &items, &jids);
	if (cond) {
		pv_reply_error(ev, "modify", cond);
		goto out;
	}
	if (items.n == 0) {
		/* 3.5: unblock everything. */
		for (size_t i = 0; i < l->n; i++)
			list_add(&gone, l->v[i]);
		pv_store_block_clear(st, pv_host_name(h), user, pv_hold_store_done, pv_hold_take());
		list_clear(l);
	} else {
		for (size_t i = 0; i < items.n; i++) {
			if (!list_del(l, items.v[i]))
				continue; /* not blocked: nothing to undo */
			list_add(&gone, items.v[i]);
			pv_store_block_set(st, pv_host_name(h), user, items.v[i], false,
				pv_hold_store_done, pv_hold_take());
		}
	}
	pv_info("blocking", "%s@%s: unblocked %zu (list %zu)", user, pv_host_name(h), gone.n, l->n);

	pv_stanza *r = pv_stanza_iq_result(ev->stanza);
	if (r)
		pv_reply(ev, r);
	push(h, user, "unblock", items.n ? &items : NULL);
	/* 3.4: current presence to those allowed to see it, now that nothing stops it. */
	gone_jids = parse_all(&gone);
	presence_on_change(h, user, &gone, gone_jids, false);
out:
	free_jids(jids, items.n);
	free_jids(gone_jids, gone.n);
	list_clear(&items);
	pv_free(items.v);
	list_clear(&gone);
	pv_free(gone.v);
}

static int on_set(pv_event *ev, void *ud)
{
	blk_state *bs = ud;
	if (!pv_event_from_owner(ev)) {
		pv_reply_error(ev, "cancel", "service-unavailable");
		return PV_HANDLED;
	}
	pv_xml *q = pv_xml_first_element(ev->stanza->xml);
	bool block = pv_xml_is(q, "block", NS_BLOCKING);
	if (!block && !pv_xml_is(q, "unblock", NS_BLOCKING)) {
		pv_reply_error(ev, "modify", "bad-request");
		return PV_HANDLED;
	}
	blk_list *l = cache_get(bs, ev->stanza->to.local);
	if (!l) {
		pv_reply_error(ev, "wait", "internal-server-error");
		return PV_HANDLED;
	}
	/* Routing presence below runs the filters, which load other users' lists. */
	l->pins++;
	if (block)
		do_block(ev, bs, l, q);
	else
		do_unblock(ev, l, q);
	l->pins--;
	return PV_HANDLED;
}

/* Someone else changed the list in storage (a consent report, the admin socket): the
 * cached copy is replaced, and the difference is pushed and has its presence effects
 * as if the user had sent it.  A list not in the cache is simply read on next use. */
static int on_blocklist_changed(pv_event *ev, void *ud)
{
	blk_state *bs = ud;
	if (ev->user)
		mark_listed(bs, ev->user);
	blk_list *old = ev->user ? cache_find(bs, ev->user) : NULL;
	if (!old)
		return PV_PASS;
	pv_host *h = bs->host;
	const char *user = old->user;
	blk_list now = {0}, added = {0}, removed = {0};
	if (pv_store_block_list(pv_host_store(h), pv_host_name(h), user, list_load_cb, &now) < 0) {
		cache_remove(bs, old);
		goto out;
	}
	for (size_t i = 0; i < now.n; i++)
		if (!list_has(old, now.v[i]))
			list_add(&added, now.v[i]);
	for (size_t i = 0; i < old->n; i++)
		if (!list_has(&now, old->v[i]))
			list_add(&removed, old->v[i]);
	pv_jid *aj = parse_all(&added), *rj = parse_all(&removed);
	old->pins++;
	presence_on_change(h, user, &added, aj, true); /* before the entries take effect */
	for (size_t i = 0; i < added.n; i++)
		list_add(old, added.v[i]);
	for (size_t i = 0; i < removed.n; i++)
		list_del(old, removed.v[i]);
	if (added.n)
		push(h, user, "block", &added);
	if (removed.n)
		push(h, user, "unblock", &removed);
	presence_on_change(h, user, &removed, rj, false);
	old->pins--;
	pv_debug("blocking", "%s@%s: list changed elsewhere, +%zu -%zu", user, pv_host_name(h),
		added.n, removed.n);
	free_jids(aj, added.n);
	free_jids(rj, removed.n);
out:
	list_clear(&now);
	pv_free(now.v);
	list_clear(&added);
	pv_free(added.v);
	list_clear(&removed);
	pv_free(removed.v);
	return PV_PASS;
}

static int on_user_deleted(pv_event *ev, void *ud)
{
	if (ev->user)
		cache_drop(ud, ev->user);
	return PV_PASS;
}

/* ---- the module ---- */

static const struct {
	const char *event;
	int prio;
	pv_hook_fn fn;
} hooks[] = {
	{"iq-get/bare/" NS_BLOCKING, 0, on_get},
	{"iq-set/bare/" NS_BLOCKING, 0, on_set},
	{"filter/inbound", 100, on_filter_inbound},
	{"filter/outbound", 100, on_filter_outbound},
	{"user-deleted", 0, on_user_deleted},
	{"blocklist-changed", 0, on_blocklist_changed},
};

static int blocking_load(pv_host *h, const pv_conf *conf, void **state)
{
	blk_state *bs = pv_calloc(1, sizeof(*bs));
	bs->host = h;
	const pv_conf *hc = pv_host_conf(h);
	long long max = hc ? pv_cfg_int(hc, "blocking.max_items", DEF_MAX_ITEMS) : DEF_MAX_ITEMS;
	bs->max_items = max > 0 ? (size_t)max : DEF_MAX_ITEMS;
	bs->listed = pv_map_new();
	int n = pv_store_block_users(pv_host_store(h), pv_host_name(h), listed_cb, bs);
	if (n < 0) {
		pv_error("blocking", "%s: reading who has a block list failed rc=%d", pv_host_name(h), n);
		pv_map_free(bs->listed, NULL);
		pv_free(bs);
		return n;
	}
	for (size_t i = 0; i < PV_ARRAY_LEN(hooks); i++)
		pv_hook(h, hooks[i].event, hooks[i].prio, hooks[i].fn, bs);
	pv_host_add_feature(h, NS_BLOCKING);
	/* XEP-0377 (urn:xmpp:reporting:1): the feature implies the spam and abuse reasons. */
	pv_host_add_feature(h, NS_REPORTING);
	bs->next = loaded;
	loaded = bs;
	*state = bs;
	return 0;
}

static void blocking_unload(pv_host *h, void *state)
{
	blk_state *bs = state;
	for (size_t i = 0; i < PV_ARRAY_LEN(hooks); i++)
		pv_unhook(h, hooks[i].event, hooks[i].fn, bs);
	for (blk_state **pp = &loaded; *pp; pp = &(*pp)->next) {
		if (*pp == bs) {
			*pp = bs->next;
			break;
		}
	}
	while (bs->lru_head)
		cache_remove(bs, bs->lru_head);
	pv_map_free(bs->listed, NULL);
	pv_free(bs);
}

const pv_module pv_mod_blocking = {
	.name = "blocking",
	.load = blocking_load,
	.unload = blocking_unload,
};
