/* router.c -- where a stanza goes (RFC 6120 10, RFC 6121 8).
 *
 * from a local client:  pv_router_from_client -> module events ("pre-presence") ->
 *                       pv_route
 * pv_route:             local domain -> pv_router_dispatch (events for the recipient,
 *                       then the default rules below); other domains -> the s2s link
 *                       queue of (sender's host, remote domain) (src/xmpp/s2s*.c)
 * default rules:        message/presence/iq to host, bare JID and full JID, exactly as
 *                       RFC 6121 8.5.1 (no such user), 8.5.2 (bare, by priority),
 *                       8.5.3 (full JID, resource present or not) say.
 * Threading: the worker loop only.  Stanzas are borrowed; recipients take refs. */
#include <stdio.h>
#include <string.h>

#include "core/core.h"
#include "core/iq.h"
#include "peyvand/pv_log.h"
#include "xmpp/s2s.h"

#define MAX_RES 64

static bool type_is(const pv_stanza *st, const char *t)
{
	const char *v = st->type;
	if (!v)
		v = st->kind == PV_ST_MESSAGE ? "normal" : st->kind == PV_ST_PRESENCE ? "available" : "";
	return strcmp(v, t) == 0;
}

static bool is_subscription(const pv_stanza *st)
{
	return type_is(st, "subscribe") || type_is(st, "subscribed") || type_is(st, "unsubscribe") ||
	       type_is(st, "unsubscribed");
}

static void bounce(pv_host *h, pv_session *origin, pv_stanza *st, const char *etype, const char *cond)
{
	pv_stanza *e = pv_stanza_error(st, etype, cond, NULL);
	if (!e)
		return;
	pv_stanza_set_from(e, st->has_to ? st->to.full : h->name);
	if (origin && !origin->closing && st->has_from && origin->bound &&
	    strcmp(st->from.full, origin->jid.full) == 0)
		pv_session_send(origin, e);
	else if (e->has_to)
		pv_route(h, e);
	pv_stanza_unref(e);
}

void pv_bounce(pv_host *h, pv_stanza *st, const char *etype, const char *cond)
{
	bounce(h, NULL, st, etype, cond);
}

void pv_reply(pv_event *ev, pv_stanza *reply)
{
	if (!reply)
		return;
	if (ev->origin && !ev->origin->closing)
		pv_session_send(ev->origin, reply);
	else if (reply->has_to)
		pv_route(ev->host, reply);
	pv_stanza_unref(reply);
}

void pv_reply_error(pv_event *ev, const char *etype, const char *cond)
{
	pv_stanza *e = pv_stanza_error(ev->stanza, etype, cond, NULL);
	if (!e)
		return;
	if (ev->stanza->has_to)
		pv_stanza_set_from(e, ev->stanza->to.full);
	else
		pv_stanza_set_from(e, NULL);
	pv_reply(ev, e);
}

/* Available resources of a user with non-negative priority, highest priority first
 * group only (RFC 6121 8.5.2.1.1). */
static size_t top_resources(pv_host *h, const char *user, pv_session **out)
{
	pv_session *all[MAX_RES];
	size_t n = pv_host_user_sessions(h, user, all, MAX_RES);
	if (n > MAX_RES)
		n = MAX_RES;
	int best = -1;
	for (size_t i = 0; i < n; i++)
		if (all[i]->available && all[i]->priority >= 0 && all[i]->priority > best)
			best = all[i]->priority;
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (all[i]->available && all[i]->priority == best && best >= 0)
			out[k++] = all[i];
	return k;
}

static size_t available_resources(pv_host *h, const char *user, pv_session **out, bool nonneg)
{
	pv_session *all[MAX_RES];
	size_t n = pv_host_user_sessions(h, user, all, MAX_RES);
	if (n > MAX_RES)
		n = MAX_RES;
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (all[i]->available && (!nonneg || all[i]->priority >= 0))
			out[k++] = all[i];
	return k;
}

static bool user_exists(pv_host *h, const char *user)
{
	pv_session *one[1];
	if (pv_host_user_sessions(h, user, one, 1) > 0)
		return true;
	return pv_store_user_exists(h->srv->store, h->name, user) == 1;
}

/* RFC 6121 8.5.2 for messages to a bare JID of an existing account. */
static void message_to_bare(pv_host *h, pv_session *origin, pv_stanza *st)
{
	pv_session *rs[MAX_RES];
	size_t n;
	if (type_is(st, "groupchat")) {
		bounce(h, origin, st, "cancel", "service-unavailable");
	} else if (type_is(st, "error")) {
		return; /* 8.5.2.1.1: silently ignore */
	} else if (type_is(st, "headline")) {
		n = available_resources(h, st->to.local, rs, true);
		for (size_t i = 0; i < n; i++)
			pv_session_send(rs[i], st);
	} else {
		/* normal / chat: the highest-priority available resources, else offline. */
		n = top_resources(h, st->to.local, rs);
		if (n) {
			for (size_t i = 0; i < n; i++)
				pv_session_send(rs[i], st);
			return;
		}
		pv_event ev = {.host = h, .origin = origin, .stanza = st};
		if (pv_fire(h, "message/offline", &ev) != PV_HANDLED)
			bounce(h, origin, st, "cancel", "service-unavailable");
		else
			h->srv->stats.offline_stored++;
	}
}

void pv_deliver_bare(pv_host *h, pv_stanza *st)
{
	if (!st->has_to || !st->to.local)
		return;
	if (!user_exists(h, st->to.local))
		return;
	message_to_bare(h, NULL, st);
}

static void iq_event(pv_host *h, pv_session *origin, pv_stanza *st, const char *scope)
{
	pv_xml *q = pv_xml_first_element(st->xml);
	if (!(type_is(st, "get") || type_is(st, "set"))) {
		/* Results and errors addressed to us end here; those to the host itself may
		 * answer an iq the host sent (iq tracker, src/core/iq.c, issue 6). */
		if (strcmp(scope, "host") == 0)
			pv_iq_reply(h, st);
		return;
	}
	if (!q || pv_xml_next_element(q)) {
		/* RFC 6120 8.2.3: exactly one payload element in get/set. */
		bounce(h, origin, st, "modify", "bad-request");
		return;
	}
	char name[512];
	snprintf(name, sizeof(name), "iq-%s/%s/%s", st->type, scope, q->ns ? q->ns : "");
	pv_event ev = {.host = h, .origin = origin, .stanza = st};
	if (pv_fire(h, name, &ev) != PV_HANDLED)
		bounce(h, origin, st, "cancel", "service-unavailable");
}

/* The filters in front of delivery (pv_module.h): blocking for everyone, then consent
 * for senders on other servers.  Returns true when a filter took the stanza. */
static bool filtered(pv_host *h, pv_session *origin, pv_stanza *st)
{
	if (!st->to.local || !st->has_from)
		return false;
	pv_event ev = {.host = h, .origin = origin, .stanza = st};
	if (pv_fire(h, "filter/inbound", &ev) == PV_HANDLED)
		return true;
	if (!pv_server_host(h->srv, st->from.domain)) {
		pv_event ev2 = {.host = h, .origin = origin, .stanza = st};
		if (pv_fire(h, "filter/remote", &ev2) == PV_HANDLED)
			return true;
	}
	return false;
}

/* The hook a stanza of this kind fires for an address of this form ("message/bare",
 * pv_module.h).  A table rather than snprintf: it ran for every routed stanza (chat_ir.sh,
 * issue 5: about 640 instructions of a routed message's 30,500). */
enum { AT_HOST, AT_BARE, AT_FULL };
static const char *hook_name(const pv_stanza *st, int at)
{
	static const char *const names[3][3] = {
		{"message/host", "message/bare", "message/full"},
		{"presence/host", "presence/bare", "presence/full"},
		{"iq/host", "iq/bare", "iq/full"},
	};
	return names[st->kind == PV_ST_MESSAGE ? 0 : st->kind == PV_ST_PRESENCE ? 1 : 2][at];
}

void pv_router_dispatch(pv_host *h, pv_session *origin, pv_stanza *st)
{
	if (filtered(h, origin, st))
		return;
	pv_event ev = {.host = h, .origin = origin, .stanza = st};

	/* To the server itself. */
	if (!st->to.local && !st->to.resource) {
		if (st->kind == PV_ST_IQ) {
			iq_event(h, origin, st, "host");
			return;
		}
		if (pv_fire(h, hook_name(st, AT_HOST), &ev) == PV_HANDLED)
			return;
		if (st->kind == PV_ST_MESSAGE && !type_is(st, "error") && !type_is(st, "headline") &&
		    !type_is(st, "groupchat"))
			bounce(h, origin, st, "cancel", "service-unavailable");
		return;
	}
	if (!st->to.local) {
		/* domain/resource: nothing lives there. */
		if (st->kind != PV_ST_PRESENCE && !type_is(st, "error") && !type_is(st, "result"))
			bounce(h, origin, st, "cancel", "service-unavailable");
		return;
	}
	const char *user = st->to.local;
	if (!st->to.resource) {
		/* Bare JID (RFC 6121 8.5.2). */
		if (st->kind == PV_ST_IQ) {
			if (!user_exists(h, user)) {
				if (type_is(st, "get") || type_is(st, "set"))
					bounce(h, origin, st, "cancel", "service-unavailable");
				return;
			}
			iq_event(h, origin, st, "bare");
			return;
		}
		if (pv_fire(h, hook_name(st, AT_BARE), &ev) == PV_HANDLED)
			return;
		if (!user_exists(h, user)) {
			/* 8.5.1: no such account.  Subscription requests are answered by the
			 * presence module; others are errors or ignored. */
			if (st->kind == PV_ST_MESSAGE && (type_is(st, "normal") || type_is(st, "chat")))
				bounce(h, origin, st, "cancel", "service-unavailable");
			return;
		}
		if (st->kind == PV_ST_MESSAGE) {
			message_to_bare(h, origin, st);
		} else {
			/* Presence to the bare JID: every available resource. */
			pv_session *rs[MAX_RES];
			size_t n = available_resources(h, user, rs, false);
			for (size_t i = 0; i < n; i++)
				pv_session_send(rs[i], st);
		}
		return;
	}
	/* Full JID (RFC 6121 8.5.3). */
	if (pv_fire(h, hook_name(st, AT_FULL), &ev) == PV_HANDLED)
		return;
	pv_session *target = pv_host_find_resource(h, user, st->to.resource);
	if (target) {
		if (st->kind == PV_ST_PRESENCE && is_subscription(st)) {
			/* 8.5.3.1: subscription stanzas are for the bare JID. */
			pv_stanza *cp = pv_stanza_copy(st);
			pv_stanza_set_to(cp, st->to.bare);
			pv_router_dispatch(h, origin, cp);
			pv_stanza_unref(cp);
			return;
		}
		pv_session_send(target, st);
		return;
	}
	/* 8.5.3.2: no such resource. */
	if (st->kind == PV_ST_MESSAGE) {
		if (type_is(st, "normal") || type_is(st, "chat")) {
			if (user_exists(h, user))
				message_to_bare(h, origin, st);
			else
				bounce(h, origin, st, "cancel", "service-unavailable");
		} else if (type_is(st, "groupchat")) {
			bounce(h, origin, st, "cancel", "service-unavailable");
		}
	} else if (st->kind == PV_ST_PRESENCE) {
		if (is_subscription(st)) {
			pv_stanza *cp = pv_stanza_copy(st);
			pv_stanza_set_to(cp, st->to.bare);
			pv_router_dispatch(h, origin, cp);
			pv_stanza_unref(cp);
		}
	} else if (type_is(st, "get") || type_is(st, "set")) {
		bounce(h, origin, st, "cancel", "service-unavailable");
	}
}

/* A stanza for another server goes to the link queue of its sender's host. */
static void to_remote(pv_host *h, pv_session *origin, pv_stanza *st)
{
	pv_host *from = st->has_from ? pv_server_host(h->srv, st->from.domain) : NULL;
	if (from && !origin && st->from.local && !type_is(st, "error")) {
		/* Stanzas the server makes on a user's behalf (presence broadcasts, probe
		 * answers) meet the same outbound filters as the user's own.  Errors are
		 * answers the filters themselves may owe (XEP-0191's service-unavailable). */
		pv_event ev = {.host = from, .stanza = st};
		if (pv_fire(from, "filter/outbound", &ev) == PV_HANDLED)
			return;
	}
	if (from && pv_s2s_send(h->srv, from, st) == 0)
		return;
	/* issue 6: an exchange forwards between its member providers (s2s_relay.c) */
	if (!from && pv_s2s_relay(h->srv, h, st) == 0)
		return;
	if (!type_is(st, "error") && !type_is(st, "result"))
		bounce(h, origin, st, "cancel", "remote-server-not-found");
}

void pv_route(pv_host *h, pv_stanza *st)
{
	if (!st->has_to) {
		pv_warn("router", "stanza without 'to' dropped");
		return;
	}
	pv_host *target = pv_server_host(h->srv, st->to.domain);
	if (target) {
		pv_router_dispatch(target, NULL, st);
		return;
	}
	to_remote(h, NULL, st);
}

void pv_router_from_client(pv_session *origin, pv_stanza *st)
{
	pv_host *h = origin->host;
	pv_event ev = {.host = h, .origin = origin, .stanza = st};
	if (pv_fire(h, "filter/outbound", &ev) == PV_HANDLED)
		return;
	if (st->kind == PV_ST_PRESENCE) {
		if (pv_fire(h, "pre-presence", &ev) == PV_HANDLED)
			return;
		if (!st->has_to)
			return; /* broadcast without a presence module: nothing to do */
	}
	if (st->kind == PV_ST_IQ && !st->has_to) {
		/* RFC 6120 10.3.3: handled by the server on behalf of the account. */
		pv_stanza *cp = pv_stanza_copy(st);
		pv_stanza_set_to(cp, origin->jid.bare);
		if (type_is(cp, "get") || type_is(cp, "set"))
			iq_event(h, origin, cp, "bare");
		pv_stanza_unref(cp);
		return;
	}
	if (!st->has_to) {
		/* A message without 'to' is for the sender's own bare JID (RFC 6120 10.3.1). */
		pv_stanza *cp = pv_stanza_copy(st);
		pv_stanza_set_to(cp, origin->jid.bare);
		pv_router_dispatch(h, origin, cp);
		pv_stanza_unref(cp);
		return;
	}
	pv_host *target = pv_server_host(h->srv, st->to.domain);
	if (target) {
		pv_router_dispatch(target, origin, st);
		return;
	}
	to_remote(h, origin, st);
}
