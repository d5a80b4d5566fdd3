/* mod_presence.c -- presence subscriptions and presence broadcast (RFC 6121 sections 3
 * and 4, the presence rules of 8.5), on top of the roster (roster.h).
 *
 * From a local client ("pre-presence"):
 *   no 'to', available (4.2.2, 4.4.2): recorded as the session's presence, sent to every
 *     contact with a subscription from the user (from/both) and to the user's own bare
 *     JID (= every available resource, the sender included).  On the initial presence
 *     also: probes for every contact the user is subscribed to (to/both) -- for a contact
 *     on a local host the contact's server would answer anyway, so the contact's
 *     sessions' presence is routed straight to the new resource instead (still through
 *     the router, so the filters apply); and the presence of the user's other
 *     resources, to the new one.
 *   no 'to', unavailable (4.5.2): the same broadcast when the session was available, and
 *     to every directed-presence target (4.6.3), which are then forgotten.
 *   'to', available/unavailable (4.6): directed presence; the target is remembered (or
 *     forgotten) unless it receives the broadcasts anyway; the core routes it.
 *   'to', subscribe/subscribed/unsubscribe/unsubscribed: outbound processing (3.1.2,
 *     3.1.5, 3.2.2, 3.3.2, 3.4; the A.2 tables in roster.c): 'to' reduced to the bare
 *     JID, 'from' stamped with the user's bare JID (3), roster updated and pushed
 *     before routing, so a local contact's synchronous answer finds it done.
 * To a local account ("presence/bare", and "presence/full" for the types that are about
 * the account, not a resource):
 *   subscription types: inbound processing (3.1.3, 3.1.6, 3.2.3, 3.3.3, 3.4; A.3).  A
 *     new request is kept (the complete stanza, 3.1.3) in the roster record -- without
 *     making the contact a roster item -- and delivered to the available resources
 *     now and on every later login ("session-available") until answered.
 *   probe (4.3.2): the prober gets the current presence of each available resource if
 *     subscribed (from/both) -- or is the account itself --, "unavailable" from the
 *     bare JID when none is available, and "unsubscribed" otherwise (also for an
 *     account that does not exist: 8.5.1 allows it, and the answer is the same as for
 *     a stranger, so it reveals nothing).
 *   no type, unavailable, error (8.5.2.1.2, 8.5.2.2.2): every available resource; none
 *     available -> dropped.  Errors are never answered (RFC 6120 8.3.1).
 *   other types to a full JID: the core's default (8.5.3: the connected resource, else
 *     silently dropped).
 * "resource-unbind": a session that ends while available is broadcast as unavailable,
 * like an unavailable presence from it (4.5.2, 4.6.3).
 * Stream feature: <sub xmlns='urn:xmpp:features:pre-approval'/> (3.4.1).
 * Limits (host config "roster.max_items", default 1000): a subscribe that would add a
 * roster item past it is refused (not-allowed); stored requests from non-contacts are
 * bounded by the same number, further requests are dropped (logged at info).
 *
 * Threading: hooks run on the host's worker loop; routing to a local host is
 * synchronous, hence "store first, route after" throughout. */
#include <string.h>

#include "modules/roster.h"
#include "peyvand/pv_module.h"

#define NS_PREAPPROVAL "urn:xmpp:features:pre-approval"
#define DEF_MAX_ITEMS 1000
#define SMALL_DIRECTED 16

typedef struct pres_cfg {
	size_t max_items;
} pres_cfg;

/* ---- small helpers ---- */

static bool sub_has_to(pv_sub s)
{
	return s == PV_SUB_TO || s == PV_SUB_BOTH;
}

static bool sub_has_from(pv_sub s)
{
	return s == PV_SUB_FROM || s == PV_SUB_BOTH;
}

static bool type_is(const char *type, const char *t)
{
	return type && strcmp(type, t) == 0;
}

static void route_presence(pv_host *h, const char *type, const char *from, const char *to)
{
	pv_stanza *st = pv_stanza_presence(type, from, to);
	if (st) {
		pv_route(h, st);
		pv_stanza_unref(st);
	}
}

/* A copy of st with from/to replaced (NULL removes), refcount 1. */
static pv_stanza *readdressed(const pv_stanza *st, const char *from, const char *to)
{
	pv_stanza *cp = pv_stanza_copy(st);
	pv_stanza_set_from(cp, from);
	pv_stanza_set_to(cp, to);
	return cp;
}

static void route_copy(pv_host *h, const pv_stanza *st, const char *from, const char *to)
{
	pv_stanza *cp = readdressed(st, from, to);
	pv_route(h, cp);
	pv_stanza_unref(cp);
}

/* Delivers st (borrowed, shared) to every available resource of a local user. */
static void deliver_available(pv_host *h, const char *user, pv_stanza *st)
{
	pv_user_sessions l;
	pv_user_sessions_get(&l, h, user);
	for (size_t i = 0; i < l.n; i++)
		if (pv_session_is_available(l.v[i]))
			pv_session_send(l.v[i], st);
	pv_user_sessions_fini(&l);
}

/* Each available resource's current presence to `to` (3.1.5, 4.3.2).  Returns how many
 * were sent. */
static size_t presence_from_all(pv_host *h, const char *user, const char *to, const pv_session *skip)
{
	size_t sent = 0;
	pv_user_sessions l;
	pv_user_sessions_get(&l, h, user);
	for (size_t i = 0; i < l.n; i++) {
		pv_session *s = l.v[i];
		const pv_jid *j = pv_session_jid(s);
		if (s == skip || !j || !pv_session_is_available(s))
			continue;
		pv_stanza *p = pv_session_presence(s);
		if (!p)
			continue;
		pv_stanza_set_to(p, to);
		pv_route(h, p);
		pv_stanza_unref(p);
		sent++;
	}
	pv_user_sessions_fini(&l);
	return sent;
}

/* "unavailable" from each available resource to `to` (3.2.2, 3.3.3). */
static void unavailable_from_all(pv_host *h, const char *user, const char *to)
{
	pv_user_sessions l;
	pv_user_sessions_get(&l, h, user);
	for (size_t i = 0; i < l.n; i++) {
		const pv_jid *j = pv_session_jid(l.v[i]);
		if (j && pv_session_is_available(l.v[i]))
			route_presence(h, "unavailable", j->full, to);
	}
	pv_user_sessions_fini(&l);
}

/* The stanza as stored: self-contained XML (xmlns on the root), parsed back with
 * pv_xml_parse.  Caller frees. */
static char *serialise(const pv_stanza *st)
{
	pv_buf b;
	pv_buf_init(&b);
	pv_xml_serialize(st->xml, NULL, &b);
	return pv_buf_take(&b);
}

/* ---- subscriptions ---- */

/* Stored requests that are not roster items: bounded so strangers cannot grow a
 * roster without limit. */
static bool may_store_request(const pres_cfg *cfg, const pv_roster *r)
{
	return r->n - pv_roster_count(r->items, r->n) < cfg->max_items;
}

/* A subscription stanza from `st->from` reached the local account `st->to` (A.3). */
static void inbound_sub(pv_host *h, const pres_cfg *cfg, const pv_stanza *st, pv_subtype t)
{
	if (!st->has_from || !st->to.local)
		return;
	const char *user = st->to.local;
	const char *me = st->to.bare;
	const char *contact = st->from.bare;
	/* The account's relation with itself is not a subscription (see mod_roster). */
	if (strcmp(contact, me) == 0)
		return;
	/* 8.5.1: to an account that does not exist, silently ignored. */
	if (pv_store_user_exists(pv_host_store(h), pv_host_name(h), user) != 1)
		return;

	pv_roster r;
	if (pv_roster_load(h, user, &r) < 0)
		return;
	pv_roster_item *cur = pv_roster_find(r.items, r.n, contact);
	pv_substate before = pv_substate_of(cur);
	pv_subres res;
	pv_sub_inbound(before, t, &res);
	/* Delivered and stored with the bare JIDs 3.1.3 asks for, whatever the sending
	 * server stamped. */
	pv_stanza *cp = readdressed(st, contact, me);

	if (!pv_substate_eq(before, res.next) || res.store_request) {
		pv_roster_item fresh = {0};
		pv_roster_item *it = cur;
		if (!it) {
			if (!may_store_request(cfg, &r)) {
				pv_info("presence", "%s: too many pending requests, %s from %s dropped", me,
					pv_subtype_name(t), contact);
				goto out;
			}
			fresh.jid = pv_strdup(contact);
			it = &fresh;
		}
		pv_substate_apply(it, res.next);
		if (res.store_request) {
			pv_free(it->pending_in);
			it->pending_in = serialise(cp);
		} else if (!res.next.in && it->pending_in) {
			pv_free(it->pending_in);
			it->pending_in = NULL;
		}
		bool push = it->in_roster && !pv_substate_visible_eq(before, res.next);
		pv_roster_commit(h, user, &r, it, push);
		if (it == &fresh)
			pv_roster_item_fini(&fresh);
	}
	pv_debug("presence", "in %s %s->%s: %s -> %s", pv_subtype_name(t), contact, me,
		pv_substate_name(before), pv_substate_name(res.next));

	if (res.send_unavailable)
		unavailable_from_all(h, user, contact);
	if (res.reply_subscribed)
		route_presence(h, "subscribed", me, contact);
	if (res.send_presence)
		presence_from_all(h, user, contact, NULL);
	if (res.route)
		deliver_available(h, user, cp);
out:
	pv_stanza_unref(cp);
	pv_roster_fini(&r);
}

/* The local user sent a subscription stanza to a contact (A.2). */
static int outbound_sub(pv_event *ev, const pres_cfg *cfg, const pv_jid *uj, pv_subtype t)
{
	pv_host *h = ev->host;
	const pv_stanza *st = ev->stanza;
	const char *user = uj->local;
	const char *me = uj->bare;
	/* 3.1.2: a full JID in 'to' means the contact's bare JID. */
	const char *contact = st->to.bare;
	if (!user || !contact)
		return PV_HANDLED;
	if (strcmp(contact, me) == 0) {
		pv_reply_error(ev, "cancel", "not-allowed");
		return PV_HANDLED;
	}

	pv_roster r;
	if (pv_roster_load(h, user, &r) < 0) {
		pv_reply_error(ev, "wait", "internal-server-error");
		return PV_HANDLED;
	}
	pv_roster_item *cur = pv_roster_find(r.items, r.n, contact);
	pv_substate before = pv_substate_of(cur);
	pv_subres res;
	pv_sub_outbound(before, t, &res);
	bool joins = res.add_to_roster && (!cur || !cur->in_roster);

	if (!pv_substate_eq(before, res.next) || joins) {
		if (joins && pv_roster_count(r.items, r.n) >= cfg->max_items) {
			pv_info("presence", "%s: roster full, %s to %s refused", me, pv_subtype_name(t),
				contact);
			pv_reply_error(ev, "cancel", "not-allowed");
			goto out;
		}
		pv_roster_item fresh = {0};
		pv_roster_item *it = cur;
		if (!it) {
			fresh.jid = pv_strdup(contact);
			it = &fresh;
		}
		pv_substate_apply(it, res.next);
		if (!res.next.in && it->pending_in) {
			pv_free(it->pending_in);
			it->pending_in = NULL;
		}
		if (res.add_to_roster)
			it->in_roster = true;
		bool push = it->in_roster && (joins || !pv_substate_visible_eq(before, res.next));
		pv_roster_commit(h, user, &r, it, push);
		if (it == &fresh)
			pv_roster_item_fini(&fresh);
	}
	pv_debug("presence", "out %s %s->%s: %s -> %s", pv_subtype_name(t), me, contact,
		pv_substate_name(before), pv_substate_name(res.next));

	/* 3.2.2: a cancelled subscriber sees us go offline before the cancellation. */
	if (res.send_unavailable)
		unavailable_from_all(h, user, contact);
	if (res.route)
		route_copy(h, st, me, contact);
	if (res.send_presence)
		presence_from_all(h, user, contact, NULL);
out:
	pv_roster_fini(&r);
	return PV_HANDLED;
}

/* 4.3.2: a probe for the local account st->to. */
static void answer_probe(pv_host *h, const pv_stanza *st)
{
	if (!st->has_from || !st->to.local)
		return;
	const char *user = st->to.local;
	const char *me = st->to.bare;
	bool allowed = strcmp(st->from.bare, me) == 0;
	if (!allowed) {
		pv_roster r;
		if (pv_roster_load(h, user, &r) == 0) {
			pv_roster_item *it = pv_roster_find(r.items, r.n, st->from.bare);
			allowed = it && sub_has_from(it->sub);
			pv_roster_fini(&r);
		}
	}
	if (!allowed) {
		route_presence(h, "unsubscribed", me, st->from.bare);
		return;
	}
	if (presence_from_all(h, user, st->from.full, NULL) == 0)
		route_presence(h, "unavailable", me, st->from.full);
}

/* ---- broadcast ---- */

/* p: the session's presence (from = its full JID, no 'to'). */
static void broadcast(pv_host *h, const pv_jid *uj, const pv_roster *r, const pv_stanza *p)
{
	for (size_t i = 0; i < r->n; i++)
		if (sub_has_from(r->items[i].sub))
			route_copy(h, p, uj->full, r->items[i].jid);
	/* Own bare JID: every available resource, the sender too when available. */
	route_copy(h, p, uj->full, uj->bare);
}

/* 4.2.2 probes, answered directly for contacts on a local host. */
static void probe_contact(pv_host *h, const pv_jid *uj, const char *contact)
{
	pv_jid cj;
	if (pv_jid_parse_str(&cj, contact) < 0)
		return;
	bool answered = false;
	pv_host *ch = cj.local && !cj.resource ? pv_host_find(h, cj.domain) : NULL;
	if (ch) {
		pv_roster cr;
		if (pv_roster_load(ch, cj.local, &cr) == 0) {
			pv_roster_item *ci = pv_roster_find(cr.items, cr.n, uj->bare);
			if (ci && sub_has_from(ci->sub)) {
				/* What the contact's server answers a probe with, but to the new
				 * resource only.  No answer when the contact is offline: unknown
				 * presence already reads as unavailable. */
				presence_from_all(ch, cj.local, uj->full, NULL);
				answered = true;
			}
			pv_roster_fini(&cr);
		}
	}
	/* Remote, or our states disagree: a real probe, whose "unsubscribed" answer
	 * brings them back in line. */
	if (!answered)
		route_presence(h, "probe", uj->bare, contact);
	pv_jid_fini(&cj);
}

static void initial_presence(pv_host *h, pv_session *s, const pv_jid *uj, const pv_roster *r)
{
	for (size_t i = 0; i < r->n; i++)
		if (sub_has_to(r->items[i].sub))
			probe_contact(h, uj, r->items[i].jid);
	/* The user's other resources, to the new one. */
	presence_from_all(h, uj->local, uj->full, s);
}

/* 4.6.3: unavailable to every directed-presence target, which are then forgotten. */
static void directed_unavailable(pv_host *h, pv_session *s, const pv_jid *uj, const pv_stanza *p)
{
	const char *small[SMALL_DIRECTED];
	const char **v = small;
	size_t n = pv_session_directed(s, small, SMALL_DIRECTED);
	if (n == 0)
		return;
	if (n > SMALL_DIRECTED) {
		size_t want = n;
		v = pv_malloc(want * sizeof(*v));
		n = pv_session_directed(s, v, want);
		if (n > want)
			n = want;
	}
	/* Copies: deleting changes the list the borrowed strings live in. */
	char **targets = pv_calloc(n, sizeof(char *));
	for (size_t i = 0; i < n; i++)
		targets[i] = pv_strdup(v[i]);
	if (v != small)
		pv_free(v);
	for (size_t i = 0; i < n; i++) {
		pv_session_del_directed(s, targets[i]);
		route_copy(h, p, uj->full, targets[i]);
		pv_free(targets[i]);
	}
	pv_free(targets);
}

/* ---- hooks ---- */

static void track_directed(pv_host *h, pv_session *s, const pv_jid *uj, const pv_stanza *st)
{
	if (strcmp(st->to.bare, uj->bare) == 0)
		return;
	if (type_is(st->type, "unavailable")) {
		pv_session_del_directed(s, st->to.full);
		return;
	}
	/* A subscriber gets the broadcasts, unavailable included; remembering it would
	 * only send that twice. */
	bool subscriber = false;
	pv_roster r;
	if (pv_roster_load(h, uj->local, &r) == 0) {
		pv_roster_item *it = pv_roster_find(r.items, r.n, st->to.bare);
		subscriber = it && sub_has_from(it->sub);
		pv_roster_fini(&r);
	}
	if (!subscriber)
		pv_session_add_directed(s, st->to.full);
}

static int on_pre_presence(pv_event *ev, void *ud)
{
	const pres_cfg *cfg = ud;
	pv_session *s = ev->origin;
	const pv_stanza *st = ev->stanza;
	const pv_jid *uj = s ? pv_session_jid(s) : NULL;
	if (!uj || !uj->local)
		return PV_PASS;
	pv_host *h = ev->host;

	if (st->has_to) {
		pv_subtype t = pv_subtype_parse(st->type);
		if (t != PV_SUBTYPE_INVALID)
			return outbound_sub(ev, cfg, uj, t);
		if (!st->type || type_is(st->type, "unavailable"))
			track_directed(h, s, uj, st);
		/* Directed presence, probes, errors: the router's default. */
		return PV_PASS;
	}

	if (st->type && !type_is(st->type, "unavailable")) {
		/* Only availability is broadcast; a subscription stanza or probe needs an
		 * addressee, and an error without one has nowhere to go. */
		if (!type_is(st->type, "error"))
			pv_reply_error(ev, "modify", "bad-request");
		return PV_HANDLED;
	}

	bool was = pv_session_is_available(s);
	pv_stanza *p = readdressed(st, uj->full, NULL);
	pv_roster r;
	pv_roster_load(h, uj->local, &r); /* on failure: empty, own resources still hear */
	if (!st->type) {
		/* Fires "session-available" on the initial presence (stored requests,
		 * offline messages) before anything is broadcast. */
		pv_session_set_presence(s, p);
		broadcast(h, uj, &r, p);
		if (!was)
			initial_presence(h, s, uj, &r);
	} else {
		pv_session_set_presence(s, p);
		if (was)
			broadcast(h, uj, &r, p);
		directed_unavailable(h, s, uj, p);
	}
	pv_roster_fini(&r);
	pv_stanza_unref(p);
	return PV_HANDLED;
}

static int on_bare(pv_event *ev, void *ud)
{
	const pres_cfg *cfg = ud;
	pv_stanza *st = ev->stanza;
	if (!st->to.local)
		return PV_PASS;
	pv_subtype t = pv_subtype_parse(st->type);
	if (t != PV_SUBTYPE_INVALID)
		inbound_sub(ev->host, cfg, st, t);
	else if (type_is(st->type, "probe"))
		answer_probe(ev->host, st);
	else if (!st->type || type_is(st->type, "unavailable") || type_is(st->type, "error"))
		/* 8.5.2.1.2: all available resources, 'to' left as the bare JID. */
		deliver_available(ev->host, st->to.local, st);
	/* Any other type is not presence at all (RFC 6121 4.7.1): dropped. */
	return PV_HANDLED;
}

static int on_full(pv_event *ev, void *ud)
{
	const pres_cfg *cfg = ud;
	const pv_stanza *st = ev->stanza;
	pv_subtype t = pv_subtype_parse(st->type);
	if (t != PV_SUBTYPE_INVALID) {
		/* 8.5.3: subscription stanzas are for the account, not a resource. */
		inbound_sub(ev->host, cfg, st, t);
		return PV_HANDLED;
	}
	if (type_is(st->type, "probe")) {
		/* A probe is answered by the server, never shown to a client. */
		answer_probe(ev->host, st);
		return PV_HANDLED;
	}
	return PV_PASS; /* the core: that resource if connected, else dropped (8.5.3.2.2) */
}

static int on_unbind(pv_event *ev, void *ud)
{
	pv_session *s = ev->origin;
	const pv_jid *uj = s ? pv_session_jid(s) : NULL;
	if (!uj || !uj->local)
		return PV_PASS;
	bool was = pv_session_is_available(s);
	if (!was && pv_session_directed(s, NULL, 0) == 0)
		return PV_PASS;
	pv_stanza *p = pv_stanza_presence("unavailable", uj->full, NULL);
	if (!p)
		return PV_PASS;
	pv_session_set_presence(s, NULL);
	if (was) {
		pv_roster r;
		pv_roster_load(ev->host, uj->local, &r);
		broadcast(ev->host, uj, &r, p);
		pv_roster_fini(&r);
	}
	directed_unavailable(ev->host, s, uj, p);
	pv_stanza_unref(p);
	return PV_PASS;
}

/* 3.1.3: requests that arrived while the account was offline, or that it has not
 * answered yet, go to each resource that becomes available. */
static int on_session_available(pv_event *ev, void *ud)
{
	pv_session *s = ev->origin;
	const pv_jid *uj = s ? pv_session_jid(s) : NULL;
	if (!uj || !uj->local)
		return PV_PASS;
	pv_roster r;
	if (pv_roster_load(ev->host, uj->local, &r) < 0)
		return PV_PASS;
	for (size_t i = 0; i < r.n; i++) {
		const char *xml = r.items[i].pending_in;
		if (!xml)
			continue;
		pv_stanza *st = pv_stanza_parse(xml, strlen(xml));
		if (!st) {
			pv_warn("presence", "%s: unreadable stored request from %s skipped", uj->bare,
				r.items[i].jid);
			continue;
		}
		pv_session_send(s, st);
		pv_stanza_unref(st);
	}
	pv_roster_fini(&r);
	return PV_PASS;
}

static int on_features(pv_event *ev, void *ud)
{
	if (ev->payload && pv_xml_child(ev->payload, "bind", PV_NS_BIND) &&
	    !pv_xml_child(ev->payload, "sub", NS_PREAPPROVAL))
		pv_xml_add_child(ev->payload, "sub", NS_PREAPPROVAL);
	return PV_PASS;
}

/* ---- the module ---- */

static const struct {
	const char *event;
	pv_hook_fn fn;
} hooks[] = {
	{"pre-presence", on_pre_presence},
	{"presence/bare", on_bare},
	{"presence/full", on_full},
	{"resource-unbind", on_unbind},
	{"session-available", on_session_available},
	{"stream-features", on_features},
};

static int presence_load(pv_host *h, const pv_conf *conf, void **state)
{
	pres_cfg *cfg = pv_calloc(1, sizeof(*cfg));
	/* The roster's limit, from the roster module's section. */
	const pv_conf *hc = pv_host_conf(h);
	long long max = hc ? pv_cfg_int(hc, "roster.max_items", DEF_MAX_ITEMS) : DEF_MAX_ITEMS;
	cfg->max_items = max > 0 ? (size_t)max : DEF_MAX_ITEMS;
	for (size_t i = 0; i < PV_ARRAY_LEN(hooks); i++)
		pv_hook(h, hooks[i].event, 0, hooks[i].fn, cfg);
	*state = cfg;
	return 0;
}

static void presence_unload(pv_host *h, void *state)
{
	for (size_t i = 0; i < PV_ARRAY_LEN(hooks); i++)
		pv_unhook(h, hooks[i].event, hooks[i].fn, state);
	pv_free(state);
}

const pv_module pv_mod_presence = {
	.name = "presence",
	.load = presence_load,
	.unload = presence_unload,
};
