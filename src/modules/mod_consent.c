/* mod_consent.c -- consent for stanzas from other providers (issue 4), protocol
 * urn:peyvand:consent:0 (docs/protocol/consent.md).
 *
 * The router fires "filter/remote" for every stanza addressed to a local user whose
 * sender is on another server, whatever its kind and however it arrived; this module is
 * that filter.  Per user: a default policy (off | contacts | everyone), per-provider
 * policies and per-sender allow/deny rules (XEP-0191 blocking, mod_blocking, runs before
 * and wins).  A first message from a sender the policy does not let through under
 * "contacts" is held as a message request; the user accepts (sender allowed, held
 * messages delivered in order), declines (deleted) or reports (blocked, reported,
 * deleted).  Whatever happens, the sender sees the same thing as for an account that
 * does not exist: messages and presence vanish silently, iq get/set get
 * service-unavailable.  Every change is appended to the user's hash-chained log; every
 * delivered cross-provider message records the log entry it rested on.
 *
 * Config (hosts.<d>.consent): allow_everyone (true), max_held_per_sender (10),
 * max_held_bytes (16k per sender), max_requests (100 senders per user),
 * new_requests_per_domain (60 per minute), new_requests_per_sender (10 per hour),
 * max_rules (1000 provider and sender rules per user), cache_users (100000: settings
 * kept in memory, see settings()).
 * Threading: the worker loop.  Settings are cached per user and re-read after every
 * change, so a change applies to the next stanza on every resource. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "modules/consent.h"
#include "peyvand/pv_map.h"

typedef struct bucket {
	double tokens;
	uint64_t at;
} bucket;

typedef struct chost {
	pv_host *h;
	pv_map *cache, *cache_old; /* user -> pv_consent*: two generations (settings()) */
	size_t cache_gen;        /* users per generation */
	pv_map *by_sender;       /* sender bare JID -> bucket (new requests per hour) */
	pv_map *by_domain;       /* sender domain -> bucket (new requests per minute) */
	bool allow_everyone;
	size_t max_held, max_bytes, max_requests, max_rules;
	double per_domain, per_sender;
} chost;

static pv_map *hosts; /* host name -> chost */

static chost *state_of(pv_host *h)
{
	return hosts ? pv_map_get(hosts, pv_host_name(h)) : NULL;
}

/* ---- decisions ---- */

const char *pv_consent_policy_name(pv_consent_policy p)
{
	return p == PV_CONSENT_EVERYONE ? "everyone" : p == PV_CONSENT_CONTACTS ? "contacts" : "off";
}

int pv_consent_policy_parse(const char *s, pv_consent_policy *out)
{
	if (!s)
		return PV_EINVAL;
	if (strcmp(s, "off") == 0)
		*out = PV_CONSENT_OFF;
	else if (strcmp(s, "contacts") == 0)
		*out = PV_CONSENT_CONTACTS;
	else if (strcmp(s, "everyone") == 0)
		*out = PV_CONSENT_EVERYONE;
	else
		return PV_EINVAL;
	return 0;
}

/* The decision table: a sender rule decides first, then the sender's provider's
 * policy (or the default).  "contacts" lets roster contacts and accepted senders
 * through and holds the rest as requests; "off" lets nothing through and keeps
 * nothing.  A provider may forbid "everyone" (allow_everyone: false), never allow more
 * than the user chose. */
pv_consent_decision pv_consent_decide(const pv_consent *c, const char *sender_bare,
	const char *sender_domain, bool in_roster, bool allow_everyone)
{
	for (size_t i = 0; i < c->nsenders; i++)
		if (strcmp(c->senders[i].subject, sender_bare) == 0)
			return c->senders[i].kind ? PV_CONSENT_DELIVER : PV_CONSENT_DROP;
	pv_consent_policy p = c->policy;
	for (size_t i = 0; i < c->nproviders; i++)
		if (strcmp(c->providers[i].subject, sender_domain) == 0)
			p = (pv_consent_policy)c->providers[i].kind;
	if (p == PV_CONSENT_EVERYONE && !allow_everyone)
		p = PV_CONSENT_CONTACTS;
	switch (p) {
	case PV_CONSENT_EVERYONE: return PV_CONSENT_DELIVER;
	case PV_CONSENT_CONTACTS: return in_roster ? PV_CONSENT_DELIVER : PV_CONSENT_HOLD;
	default: return PV_CONSENT_DROP;
	}
}

static void free_consent(void *p)
{
	pv_consent_fini(p);
	pv_free(p);
}

static void free_consent_or_null(void *p)
{
	if (p)
		free_consent(p);
}

/* The user's settings, cached.  The cache holds at most two generations of cache_gen
 * users: a user found in the older one moves to the current one, and when the current
 * one is full the older one is dropped.  Whoever was not used during a whole generation
 * is read again when next needed (a read of its own kind, which does not wait for the
 * writes of a busy server: sqlite.c).  The pointer stays valid until the next call. */
static const pv_consent *settings(chost *ch, const char *user)
{
	pv_consent *c = pv_map_get(ch->cache, user);
	if (c)
		return c;
	c = pv_map_del(ch->cache_old, user);
	if (!c) {
		c = pv_calloc(1, sizeof(*c));
		if (pv_store_consent_get(pv_host_store(ch->h), pv_host_name(ch->h), user, c) != 0) {
			pv_consent_fini(c);
			memset(c, 0, sizeof(*c)); /* unreadable settings: off */
		}
	}
	if (pv_map_count(ch->cache) >= ch->cache_gen) {
		pv_map_free(ch->cache_old, free_consent);
		ch->cache_old = ch->cache;
		ch->cache = pv_map_new();
	}
	pv_map_put(ch->cache, user, c);
	return c;
}

void pv_consent_invalidate(pv_host *h, const char *user)
{
	chost *ch = state_of(h);
	if (ch) {
		free_consent_or_null(pv_map_del(ch->cache, user));
		free_consent_or_null(pv_map_del(ch->cache_old, user));
	}
}

static bool in_roster(pv_host *h, const char *user, const char *sender)
{
	pv_roster_item *items = NULL;
	size_t n = 0;
	uint64_t ver = 0;
	bool found = false;
	if (pv_store_roster_get(pv_host_store(h), pv_host_name(h), user, &items, &n, &ver) != 0)
		return false;
	for (size_t i = 0; i < n && !found; i++)
		found = items[i].in_roster && strcmp(items[i].jid, sender) == 0;
	pv_roster_items_free(items, n);
	return found;
}

static int drop_bucket(void *ud, const char *key, void *val)
{
	pv_free(val);
	return 1;
}

static bool take_token(pv_map *m, const char *key, double per_period, double period_ms)
{
	bucket *b = pv_map_get(m, key);
	uint64_t now = pv_now_ms();
	if (!b) {
		if (pv_map_count(m) >= 100000) {
			/* Bounded: a flood of distinct keys starts the table afresh rather than
			 * refusing every newcomer on the host. */
			pv_map_each(m, drop_bucket, NULL);
		}
		b = pv_calloc(1, sizeof(*b));
		b->tokens = per_period;
		b->at = now;
		pv_map_put(m, key, b);
	}
	b->tokens += (double)(now - b->at) * per_period / period_ms;
	if (b->tokens > per_period)
		b->tokens = per_period;
	b->at = now;
	if (b->tokens < 1)
		return false;
	b->tokens -= 1;
	return true;
}

static void stamp_iso(int64_t t, char out[32])
{
	time_t tt = (time_t)t;
	struct tm tm;
	gmtime_r(&tt, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void log_change(pv_host *h, const char *user, const char *action)
{
	pv_hold *hold = pv_hold_take();
	pv_store_consent_log(pv_host_store(h), pv_host_name(h), user, action, pv_wall_s(),
		hold ? pv_hold_store_done : NULL, hold);
}

/* Tell the user's online resources that someone is waiting (never the sender). */
static void notify_request(pv_host *h, const char *user, const char *sender)
{
	pv_session *ss[16];
	size_t n = pv_host_user_sessions(h, user, ss, 16);
	if (!n)
		return;
	pv_xml *m = pv_xml_new("message", PV_NS_CLIENT);
	pv_xml_set_attr(m, "type", "headline");
	pv_xml_set_attr(m, "from", pv_host_name(h));
	pv_xml *r = pv_xml_add_child(m, "request", PV_NS_CONSENT);
	pv_xml_set_attr(r, "from", sender);
	const char *bad = NULL;
	pv_stanza *st = pv_stanza_new(m, &bad);
	if (!st) {
		pv_xml_free(m);
		return;
	}
	for (size_t i = 0; i < n && i < 16; i++)
		if (pv_session_is_available(ss[i]))
			pv_session_send(ss[i], st);
	pv_stanza_unref(st);
}

static bool is_request_kind(const pv_stanza *st)
{
	if (st->kind == PV_ST_PRESENCE)
		return st->type && strcmp(st->type, "subscribe") == 0;
	if (st->kind != PV_ST_MESSAGE)
		return false;
	const char *t = st->type ? st->type : "normal";
	if (strcmp(t, "chat") != 0 && strcmp(t, "normal") != 0)
		return false;
	/* A message request has content: chat states and markers alone are not held. */
	return pv_xml_child(st->xml, "body", NULL) != NULL;
}

static void hold(chost *ch, const char *user, pv_stanza *st)
{
	pv_store *store = pv_host_store(ch->h);
	const char *host = pv_host_name(ch->h);
	const char *sender = st->from.bare;
	const pv_buf *w = pv_stanza_wire(st);
	pv_request_info info;
	bool known = pv_store_request_info(store, host, user, sender, &info) == 0;
	if (known) {
		bool room = info.count < ch->max_held && info.bytes + w->len <= ch->max_bytes;
		pv_request_info_fini(&info);
		if (!room) {
			pv_debug("consent", "%s@%s: request from %s full, stanza dropped", user, host, sender);
			return;
		}
	} else {
		if (ch->max_held == 0 || w->len > ch->max_bytes ||
		    (size_t)pv_store_request_count(store, host, user) >= ch->max_requests ||
		    !take_token(ch->by_sender, sender, ch->per_sender, 3600000.0) ||
		    !take_token(ch->by_domain, st->from.domain, ch->per_domain, 60000.0)) {
			pv_info("consent", "new request from %s to %s@%s refused by limits", sender, user, host);
			return;
		}
	}
	pv_hold *hd = pv_hold_take();
	pv_store_request_hold(store, host, user, sender, pv_wall_s(), w->data, w->len,
		hd ? pv_hold_store_done : NULL, hd);
	if (!known) {
		pv_info("consent", "message request from %s held for %s@%s", sender, user, host);
		notify_request(ch->h, user, sender);
	}
}

static void evidence(pv_host *h, const char *user, const pv_stanza *st)
{
	if (st->kind != PV_ST_MESSAGE || !st->id)
		return;
	pv_store_consent_evidence(pv_host_store(h), pv_host_name(h), user, st->from.bare, st->id,
		pv_wall_s(), NULL, NULL);
}

static int on_remote(pv_event *ev, void *ud)
{
	chost *ch = ud;
	pv_stanza *st = ev->stanza;
	/* Answers to the user's own queries (iq result/error to a full JID) carry nothing
	 * the user did not ask for. */
	if (st->kind == PV_ST_IQ && st->to.resource && st->type &&
	    (strcmp(st->type, "result") == 0 || strcmp(st->type, "error") == 0))
		return PV_PASS;
	const char *user = st->to.local;
	pv_store *store = pv_host_store(ch->h);
	bool exists = pv_store_user_exists(store, pv_host_name(ch->h), user) == 1;
	pv_consent_decision d = PV_CONSENT_DROP;
	if (exists) {
		const pv_consent *c = settings(ch, user);
		bool need_roster = false;
		/* Roster lookups only when the table needs them. */
		pv_consent_decision first = pv_consent_decide(c, st->from.bare, st->from.domain, false,
			ch->allow_everyone);
		need_roster = first == PV_CONSENT_HOLD;
		d = need_roster && in_roster(ch->h, user, st->from.bare) ? PV_CONSENT_DELIVER : first;
	}
	if (d == PV_CONSENT_DELIVER) {
		evidence(ch->h, user, st);
		return PV_PASS;
	}
	if (d == PV_CONSENT_HOLD && is_request_kind(st)) {
		hold(ch, user, st);
		return PV_HANDLED;
	}
	/* The same answer whether the account exists, is closed to other providers, or
	 * holds a request: silence, except that an iq get/set must be answered. */
	if (st->kind == PV_ST_IQ && st->type && (strcmp(st->type, "get") == 0 || strcmp(st->type, "set") == 0))
		pv_reply_error(ev, "cancel", "service-unavailable");
	return PV_HANDLED;
}

/* Writing to someone on another provider first is consent to hear back from them: the
 * user's message (with a body) or subscription request to a remote JID the settings
 * would not let through adds an allow rule, logged like any other change. */
static int on_outbound(pv_event *ev, void *ud)
{
	chost *ch = ud;
	pv_stanza *st = ev->stanza;
	const pv_jid *me = ev->origin ? pv_session_jid(ev->origin) : NULL;
	if (!me || !st->has_to || !st->to.local || pv_host_is_local(ch->h, st->to.domain) || !is_request_kind(st))
		return PV_PASS;
	const pv_consent *c = settings(ch, me->local);
	if (pv_consent_decide(c, st->to.bare, st->to.domain, false, ch->allow_everyone) == PV_CONSENT_DELIVER)
		return PV_PASS;
	for (size_t i = 0; i < c->nsenders; i++)
		if (strcmp(c->senders[i].subject, st->to.bare) == 0)
			return PV_PASS; /* an explicit rule (deny) stays as the user set it */
	if (c->nproviders + c->nsenders >= ch->max_rules)
		return PV_PASS; /* full: the answer will be held as a request instead */
	pv_store *store = pv_host_store(ch->h);
	char action[1100];
	snprintf(action, sizeof(action), "sender %s allow (wrote first)", st->to.bare);
	pv_store_batch_begin(store);
	pv_store_consent_set_sender(store, pv_host_name(ch->h), me->local, st->to.bare, 1, NULL, NULL);
	log_change(ch->h, me->local, action);
	pv_store_batch_end(store);
	pv_consent_invalidate(ch->h, me->local);
	return PV_PASS;
}

/* ---- operations ---- */

static bool valid_domain(const char *d, char **norm)
{
	*norm = d ? pv_jid_norm_domain(d, strlen(d)) : NULL;
	return *norm != NULL;
}

int pv_consent_apply(pv_host *h, const char *user, const pv_xml *el, const char **cond)
{
	pv_store *store = pv_host_store(h);
	const char *host = pv_host_name(h);
	char action[1200];
	/* Validate everything before changing anything. */
	const char *pol = pv_xml_attr(el, "policy");
	pv_consent_policy p = PV_CONSENT_OFF;
	if (pol && pv_consent_policy_parse(pol, &p) != 0)
		goto bad;
	size_t nchild = 0;
	for (pv_xml *x = pv_xml_first_element(el); x; x = pv_xml_next_element(x)) {
		nchild++;
		char *n = NULL;
		pv_consent_policy pp;
		if (pv_xml_is(x, "provider", PV_NS_CONSENT)) {
			const char *v = pv_xml_attr(x, "policy");
			bool ok = valid_domain(pv_xml_attr(x, "domain"), &n) && v &&
				  (strcmp(v, "remove") == 0 || pv_consent_policy_parse(v, &pp) == 0) &&
				  !pv_host_is_local(h, n);
			pv_free(n);
			if (!ok)
				goto bad;
		} else if (pv_xml_is(x, "sender", PV_NS_CONSENT)) {
			const char *jid = pv_xml_attr(x, "jid");
			const char *r = pv_xml_attr(x, "rule");
			pv_jid j;
			if (!jid || pv_jid_parse_str(&j, jid) != 0)
				goto bad;
			bool ok = j.local && !j.resource && r &&
				  (strcmp(r, "allow") == 0 || strcmp(r, "deny") == 0 || strcmp(r, "remove") == 0);
			pv_jid_fini(&j);
			if (!ok)
				goto bad;
		} else {
			goto bad;
		}
	}
	chost *ch = state_of(h);
	const pv_consent *cur = ch ? settings(ch, user) : NULL;
	if (nchild > 100 || (cur && cur->nproviders + cur->nsenders + nchild > ch->max_rules)) {
		*cond = "resource-constraint";
		return PV_ELIMIT;
	}
	/* Each change and its log entry commit together. */
	pv_store_batch_begin(store);
	if (pol) {
		pv_store_consent_set_policy(store, host, user, p, NULL, NULL);
		snprintf(action, sizeof(action), "policy %s", pv_consent_policy_name(p));
		log_change(h, user, action);
	}
	for (pv_xml *x = pv_xml_first_element(el); x; x = pv_xml_next_element(x)) {
		if (pv_xml_is(x, "provider", PV_NS_CONSENT)) {
			char *d = NULL;
			valid_domain(pv_xml_attr(x, "domain"), &d);
			const char *v = pv_xml_attr(x, "policy");
			pv_consent_policy pp = PV_CONSENT_OFF;
			int kind = strcmp(v, "remove") == 0 ? -1 : (pv_consent_policy_parse(v, &pp), (int)pp);
			pv_store_consent_set_provider(store, host, user, d, kind, NULL, NULL);
			snprintf(action, sizeof(action), "provider %s %s", d, v);
			log_change(h, user, action);
			pv_free(d);
		} else {
			pv_jid j;
			pv_jid_parse_str(&j, pv_xml_attr(x, "jid"));
			const char *r = pv_xml_attr(x, "rule");
			int kind = strcmp(r, "allow") == 0 ? 1 : strcmp(r, "deny") == 0 ? 0 : -1;
			pv_store_consent_set_sender(store, host, user, j.bare, kind, NULL, NULL);
			snprintf(action, sizeof(action), "sender %s %s", j.bare, r);
			log_change(h, user, action);
			pv_jid_fini(&j);
		}
	}
	pv_store_batch_end(store);
	pv_consent_invalidate(h, user);
	return 0;
bad:
	*cond = "bad-request";
	return PV_EINVAL;
}

pv_xml *pv_consent_settings_xml(pv_host *h, const char *user)
{
	chost *ch = state_of(h);
	pv_consent tmp = {0};
	const pv_consent *c = ch ? settings(ch, user) : &tmp;
	pv_xml *x = pv_xml_new("consent", PV_NS_CONSENT);
	pv_xml_set_attr(x, "policy", pv_consent_policy_name(c->policy));
	uint64_t head = 0;
	pv_store_consent_log_head(pv_host_store(h), pv_host_name(h), user, &head);
	char b[32];
	snprintf(b, sizeof(b), "%llu", (unsigned long long)head);
	pv_xml_set_attr(x, "head", b);
	for (size_t i = 0; i < c->nproviders; i++) {
		pv_xml *p = pv_xml_add_child(x, "provider", PV_NS_CONSENT);
		pv_xml_set_attr(p, "domain", c->providers[i].subject);
		pv_xml_set_attr(p, "policy", pv_consent_policy_name((pv_consent_policy)c->providers[i].kind));
	}
	for (size_t i = 0; i < c->nsenders; i++) {
		pv_xml *s = pv_xml_add_child(x, "sender", PV_NS_CONSENT);
		pv_xml_set_attr(s, "jid", c->senders[i].subject);
		pv_xml_set_attr(s, "rule", c->senders[i].kind ? "allow" : "deny");
	}
	return x;
}

static void req_line(void *ud, const pv_request_info *r)
{
	pv_xml *x = pv_xml_add_child(ud, "request", PV_NS_CONSENT);
	char b[32];
	pv_xml_set_attr(x, "from", r->sender);
	snprintf(b, sizeof(b), "%zu", r->count);
	pv_xml_set_attr(x, "count", b);
	snprintf(b, sizeof(b), "%zu", r->bytes);
	pv_xml_set_attr(x, "bytes", b);
	stamp_iso(r->first, b);
	pv_xml_set_attr(x, "first", b);
	stamp_iso(r->last, b);
	pv_xml_set_attr(x, "last", b);
}

pv_xml *pv_consent_requests_xml(pv_host *h, const char *user)
{
	pv_xml *x = pv_xml_new("requests", PV_NS_CONSENT);
	pv_store_request_list(pv_host_store(h), pv_host_name(h), user, req_line, x);
	return x;
}

static void held_one(void *ud, int64_t id, int64_t stamp, const char *xml, size_t len)
{
	pv_xml *fw = pv_xml_add_child(ud, "forwarded", "urn:xmpp:forward:0");
	pv_xml *d = pv_xml_add_child(fw, "delay", PV_NS_DELAY);
	char b[32];
	stamp_iso(stamp, b);
	pv_xml_set_attr(d, "stamp", b);
	pv_xml *m = pv_xml_parse(xml, len);
	if (m) {
		if (!m->ns)
			m->ns = pv_strdup(PV_NS_CLIENT); /* explicit inside <forwarded/> (XEP-0297) */
		pv_xml_add(fw, m);
	}
}

pv_xml *pv_consent_request_xml(pv_host *h, const char *user, const char *sender)
{
	pv_xml *x = pv_xml_new("request", PV_NS_CONSENT);
	pv_xml_set_attr(x, "from", sender);
	if (pv_store_request_get(pv_host_store(h), pv_host_name(h), user, sender, held_one, x) <= 0) {
		pv_xml_free(x);
		return NULL;
	}
	return x;
}

typedef struct hist_ctx {
	pv_xml *x;
} hist_ctx;

static void hist_one(void *ud, const pv_consent_entry *e)
{
	pv_xml *x = pv_xml_add_child(ud, "entry", PV_NS_CONSENT);
	char b[32];
	snprintf(b, sizeof(b), "%llu", (unsigned long long)e->seq);
	pv_xml_set_attr(x, "seq", b);
	stamp_iso(e->stamp, b);
	pv_xml_set_attr(x, "stamp", b);
	pv_xml_set_attr(x, "prev", e->prev);
	pv_xml_set_attr(x, "hash", e->hash);
	pv_xml_add_text(x, e->action, strlen(e->action));
}

pv_xml *pv_consent_history_xml(pv_host *h, const char *user, uint64_t after)
{
	pv_xml *x = pv_xml_new("history", PV_NS_CONSENT);
	uint64_t bad = 0;
	int v = pv_store_consent_log_verify(pv_host_store(h), pv_host_name(h), user, &bad);
	pv_xml_set_attr(x, "verified", v == 0 ? "true" : "false");
	pv_store_consent_log_list(pv_host_store(h), pv_host_name(h), user, after, hist_one, x);
	return x;
}

typedef struct redeliver_ctx {
	pv_host *h;
	size_t n;
} redeliver_ctx;

static void redeliver(void *ud, int64_t id, int64_t stamp, const char *xml, size_t len)
{
	redeliver_ctx *rc = ud;
	pv_stanza *st = pv_stanza_parse(xml, len);
	if (!st)
		return;
	pv_route(rc->h, st); /* through the filters again: the sender is allowed now */
	pv_stanza_unref(st);
	rc->n++;
}

static int with_request(pv_host *h, const char *user, const char *sender, pv_jid *j)
{
	if (!sender || pv_jid_parse_str(j, sender) != 0)
		return PV_EINVAL;
	pv_request_info info;
	if (pv_store_request_info(pv_host_store(h), pv_host_name(h), user, j->bare, &info) != 0) {
		pv_jid_fini(j);
		return PV_ENOENT;
	}
	pv_request_info_fini(&info);
	return 0;
}

int pv_consent_accept(pv_host *h, const char *user, const char *sender)
{
	pv_jid j;
	int rc = with_request(h, user, sender, &j);
	if (rc)
		return rc;
	pv_store *store = pv_host_store(h);
	char action[1100];
	pv_store_batch_begin(store);
	pv_store_consent_set_sender(store, pv_host_name(h), user, j.bare, 1, NULL, NULL);
	/* Accepting someone undoes a block of them: the user's latest word counts. */
	pv_store_block_set(store, pv_host_name(h), user, j.bare, false, NULL, NULL);
	snprintf(action, sizeof(action), "accept %s", j.bare);
	log_change(h, user, action);
	pv_store_batch_end(store);
	pv_consent_invalidate(h, user);
	pv_event bev = {.host = h, .user = user};
	pv_fire(h, "blocklist-changed", &bev);
	redeliver_ctx r = {.h = h};
	pv_store_request_get(store, pv_host_name(h), user, j.bare, redeliver, &r);
	pv_store_request_drop(store, pv_host_name(h), user, j.bare, NULL, NULL);
	pv_info("consent", "%s@%s accepted %s: %zu held stanza(s) delivered", user, pv_host_name(h), j.bare, r.n);
	pv_jid_fini(&j);
	return 0;
}

int pv_consent_decline(pv_host *h, const char *user, const char *sender)
{
	pv_jid j;
	int rc = with_request(h, user, sender, &j);
	if (rc)
		return rc;
	char action[1100];
	pv_store_request_drop(pv_host_store(h), pv_host_name(h), user, j.bare, NULL, NULL);
	snprintf(action, sizeof(action), "decline %s", j.bare);
	log_change(h, user, action);
	pv_jid_fini(&j);
	return 0;
}

typedef struct ev_ctx {
	pv_buf b;
} ev_ctx;

static void evidence_one(void *ud, int64_t id, int64_t stamp, const char *xml, size_t len)
{
	ev_ctx *e = ud;
	pv_buf_append(&e->b, xml, len);
	pv_buf_puts(&e->b, "\n");
}

int pv_consent_report(pv_host *h, const char *user, const char *sender, const char *reason,
	const char *text)
{
	pv_jid j;
	if (!sender || pv_jid_parse_str(&j, sender) != 0)
		return PV_EINVAL;
	if (!j.local) {
		pv_jid_fini(&j);
		return PV_EINVAL;
	}
	if (!reason || (strcmp(reason, "urn:xmpp:reporting:spam") != 0 && strcmp(reason, "urn:xmpp:reporting:abuse") != 0)) {
		pv_jid_fini(&j);
		return PV_EINVAL;
	}
	pv_store *store = pv_host_store(h);
	ev_ctx e;
	pv_buf_init(&e.b);
	pv_store_request_get(store, pv_host_name(h), user, j.bare, evidence_one, &e);
	pv_report r = {.stamp = pv_wall_s(), .host = (char *)pv_host_name(h), .user = (char *)user,
		.sender = j.bare, .reason = (char *)reason, .text = (char *)(text ? text : ""),
		.evidence = e.b.len ? e.b.data : NULL};
	pv_store_report_add(store, &r, NULL, NULL);
	pv_buf_fini(&e.b);
	pv_store_block_set(store, pv_host_name(h), user, j.bare, true, NULL, NULL);
	pv_store_consent_set_sender(store, pv_host_name(h), user, j.bare, 0, NULL, NULL);
	pv_store_request_drop(store, pv_host_name(h), user, j.bare, NULL, NULL);
	char action[1200];
	snprintf(action, sizeof(action), "report %s %s", j.bare, reason);
	log_change(h, user, action);
	pv_consent_invalidate(h, user);
	/* mod_blocking caches block lists: tell it (and anyone else) the list changed. */
	pv_event ev = {.host = h, .user = user};
	pv_fire(h, "blocklist-changed", &ev);
	pv_info("consent", "%s@%s reported %s (%s)", user, pv_host_name(h), j.bare, reason);
	/* issue 6: mod_abuse forwards the report to the sender's provider */
	pv_xml *rep = pv_xml_new("report", "urn:xmpp:reporting:1");
	pv_xml_set_attr(rep, "reason", reason);
	pv_xml_set_attr(rep, "jid", j.bare);
	pv_event aev = {.host = h, .user = user, .payload = rep};
	pv_fire(h, "abuse-report", &aev);
	pv_xml_free(rep);
	pv_jid_fini(&j);
	return 0;
}

/* ---- the IQ protocol ---- */

static const char *owner_of(pv_event *ev)
{
	/* Only the account itself manages its consent (the core sets `to` to the sender's
	 * bare JID for an iq without one). */
	return pv_event_from_owner(ev) ? pv_session_jid(ev->origin)->local : NULL;
}

static void reply_with(pv_event *ev, pv_xml *payload)
{
	pv_stanza *r = pv_stanza_iq_result(ev->stanza);
	if (!r) {
		pv_xml_free(payload);
		return;
	}
	if (payload)
		pv_xml_add(r->xml, payload);
	pv_stanza_set_from(r, NULL);
	pv_reply(ev, r);
}

static int on_get(pv_event *ev, void *ud)
{
	const char *user = owner_of(ev);
	pv_xml *q = pv_xml_first_element(ev->stanza->xml);
	if (!user) {
		/* Not forbidden: that would tell a stranger the account exists. */
		pv_reply_error(ev, "cancel", "service-unavailable");
		return PV_HANDLED;
	}
	if (pv_xml_is(q, "consent", PV_NS_CONSENT)) {
		reply_with(ev, pv_consent_settings_xml(ev->host, user));
	} else if (pv_xml_is(q, "requests", PV_NS_CONSENT)) {
		reply_with(ev, pv_consent_requests_xml(ev->host, user));
	} else if (pv_xml_is(q, "request", PV_NS_CONSENT)) {
		pv_jid j;
		const char *from = pv_xml_attr(q, "from");
		if (!from || pv_jid_parse_str(&j, from) != 0) {
			pv_reply_error(ev, "modify", "bad-request");
			return PV_HANDLED;
		}
		pv_xml *x = pv_consent_request_xml(ev->host, user, j.bare);
		pv_jid_fini(&j);
		if (x)
			reply_with(ev, x);
		else
			pv_reply_error(ev, "cancel", "item-not-found");
	} else if (pv_xml_is(q, "history", PV_NS_CONSENT)) {
		const char *after = pv_xml_attr(q, "after");
		char *end = NULL;
		unsigned long long a = after ? strtoull(after, &end, 10) : 0;
		if (after && (*after < '0' || *after > '9' || *end)) {
			pv_reply_error(ev, "modify", "bad-request");
			return PV_HANDLED;
		}
		reply_with(ev, pv_consent_history_xml(ev->host, user, a));
	} else {
		pv_reply_error(ev, "cancel", "feature-not-implemented");
	}
	return PV_HANDLED;
}

static int on_set(pv_event *ev, void *ud)
{
	const char *user = owner_of(ev);
	pv_xml *q = pv_xml_first_element(ev->stanza->xml);
	if (!user) {
		pv_reply_error(ev, "cancel", "service-unavailable");
		return PV_HANDLED;
	}
	int rc;
	const char *cond = "bad-request";
	if (pv_xml_is(q, "consent", PV_NS_CONSENT)) {
		rc = pv_consent_apply(ev->host, user, q, &cond);
	} else if (pv_xml_is(q, "accept", PV_NS_CONSENT)) {
		rc = pv_consent_accept(ev->host, user, pv_xml_attr(q, "jid"));
	} else if (pv_xml_is(q, "decline", PV_NS_CONSENT)) {
		rc = pv_consent_decline(ev->host, user, pv_xml_attr(q, "jid"));
	} else if (pv_xml_is(q, "report", PV_NS_CONSENT)) {
		char *text = pv_xml_child_text(q, "text", NULL);
		rc = pv_consent_report(ev->host, user, pv_xml_attr(q, "jid"), pv_xml_attr(q, "reason"), text);
		pv_free(text);
	} else {
		pv_reply_error(ev, "cancel", "feature-not-implemented");
		return PV_HANDLED;
	}
	if (rc == PV_ENOENT)
		pv_reply_error(ev, "cancel", "item-not-found");
	else if (rc != 0)
		pv_reply_error(ev, rc == PV_ELIMIT ? "wait" : "modify", cond);
	else
		reply_with(ev, NULL);
	return PV_HANDLED;
}

static int on_user_deleted(pv_event *ev, void *ud)
{
	pv_consent_invalidate(ev->host, ev->user);
	return PV_PASS;
}

static void free_bucket(void *p)
{
	pv_free(p);
}

static int consent_load(pv_host *h, const pv_conf *conf, void **state)
{
	chost *ch = pv_calloc(1, sizeof(*ch));
	ch->h = h;
	ch->cache = pv_map_new();
	ch->cache_old = pv_map_new();
	long long users = pv_cfg_int(conf, "cache_users", 100000);
	ch->cache_gen = users >= 2 && users <= 100000000 ? (size_t)users / 2 : 50000;
	ch->by_sender = pv_map_new();
	ch->by_domain = pv_map_new();
	ch->allow_everyone = pv_cfg_bool(conf, "allow_everyone", true);
	ch->max_held = (size_t)pv_cfg_int(conf, "max_held_per_sender", 10);
	ch->max_bytes = (size_t)pv_cfg_size(conf, "max_held_bytes", 16 * 1024);
	ch->max_requests = (size_t)pv_cfg_int(conf, "max_requests", 100);
	ch->max_rules = (size_t)pv_cfg_int(conf, "max_rules", 1000);
	ch->per_domain = (double)pv_cfg_int(conf, "new_requests_per_domain", 60);
	ch->per_sender = (double)pv_cfg_int(conf, "new_requests_per_sender", 10);
	if (!hosts)
		hosts = pv_map_new();
	pv_map_put(hosts, pv_host_name(h), ch);
	pv_hook(h, "filter/remote", 0, on_remote, ch);
	pv_hook(h, "filter/outbound", 0, on_outbound, ch);
	pv_hook(h, "iq-get/bare/" PV_NS_CONSENT, 0, on_get, ch);
	pv_hook(h, "iq-set/bare/" PV_NS_CONSENT, 0, on_set, ch);
	pv_hook(h, "user-deleted", 0, on_user_deleted, ch);
	pv_hook(h, "consent-changed", 0, on_user_deleted, ch);
	pv_host_add_feature(h, PV_NS_CONSENT);
	*state = ch;
	return 0;
}

static void consent_unload(pv_host *h, void *state)
{
	chost *ch = state;
	pv_unhook(h, "filter/remote", on_remote, ch);
	pv_unhook(h, "filter/outbound", on_outbound, ch);
	pv_unhook(h, "iq-get/bare/" PV_NS_CONSENT, on_get, ch);
	pv_unhook(h, "iq-set/bare/" PV_NS_CONSENT, on_set, ch);
	pv_unhook(h, "user-deleted", on_user_deleted, ch);
	pv_unhook(h, "consent-changed", on_user_deleted, ch);
	if (hosts && pv_map_get(hosts, pv_host_name(h)) == ch)
		pv_map_del(hosts, pv_host_name(h));
	if (hosts && pv_map_count(hosts) == 0) {
		pv_map_free(hosts, NULL);
		hosts = NULL;
	}
	pv_map_free(ch->cache, free_consent);
	pv_map_free(ch->cache_old, free_consent);
	pv_map_free(ch->by_sender, free_bucket);
	pv_map_free(ch->by_domain, free_bucket);
	pv_free(ch);
}

const pv_module pv_mod_consent = {
	.name = "consent",
	.load = consent_load,
	.unload = consent_unload,
};
