/* mod_directory.c -- discovery by phone number across providers, and the exchange's
 * registry (issue 6; spec: docs/protocol/directory.md, namespace urn:peyvand:directory:0).
 *
 * On a provider (role: provider):
 *   - A local user asks <lookup><number>+98...</number></lookup> (iq get to the server or
 *     to the own bare JID).  The answer lists the findable accounts with that number:
 *     the local one (phone storage of mod_phone), and those other providers report.
 *     Peers are asked with the number blinded (pv_blind, interconnect.blinding_key_file),
 *     never in clear: each member provider in a mesh, or the exchange
 *     (interconnect.exchange), or both (directory.lookup_via).  Answers are merged,
 *     sorted by JID, the preferred account marked (newest `updated` among those marked),
 *     cached for directory.cache_ttl, and always carry the number address
 *     <blinded>@<exchange> when an exchange is configured, so an unknown and an
 *     unfindable number give byte-identical answers.
 *   - A member server asks <query><blinded>...</blinded></query> (iq get to this host):
 *     answered from the host's findable accounts through the stored blinded index
 *     (schema 006: one indexed read, no number in memory), repaired at load and
 *     kept by the "phone-changed" event.
 *   - "phone-changed" (mod_phone) publishes to / withdraws from the exchange with
 *     <message type='normal'> stanzas: they travel in the durable, exactly-once s2s
 *     queue, so a change made while the exchange is down is delivered when it returns.
 * On an exchange (role: exchange):
 *   - <publish/> and <withdraw/> messages from members update the registry (schema
 *     005_directory.sql); an entry is accepted only for a JID of the sending provider's
 *     own domain (forgeries: forbidden error, logged, counted).  The message is
 *     acknowledged to the sending provider only once the write is committed (hold).
 *   - Members' <query/> iqs are answered from the registry.
 * Limits: lookups per user per minute and per day, remote queries per member per day
 * (fixed windows in memory; a restart resets them).
 * Threading: the worker loop only.  Storage reads are synchronous (indexed, small);
 * remote queries go through the iq tracker (pv_iq_send) and complete in callbacks. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "peyvand/pv_directory.h"
#include "peyvand/pv_map.h"
#include "peyvand/pv_module.h"
#include "peyvand/pv_phone.h"

#define NS PV_DIRECTORY_NS
#define MAX_PEERS 64
#define MAX_ITEMS 32           /* accounts listed per number (one per provider in practice) */
#define CACHE_MAX 10000        /* cached answers; beyond it the cache starts over */
#define MINUTE_MS 60000ull
#define DAY_MS 86400000ull

typedef struct item {
	char *jid;
	bool preferred;
	int64_t updated;
} item;

typedef struct cached {
	uint64_t expires;
	size_t n;
	item items[];
} cached;

typedef struct counter {
	uint64_t min_start, day_start;
	unsigned min_n, day_n;
} counter;

typedef struct dstate {
	pv_host *host;
	bool exchange_role;
	unsigned char *key;
	size_t keylen;
	const char *exchange;          /* interconnect.exchange (borrowed from the config) */
	bool ask_mesh, ask_exchange;
	uint64_t cache_ttl, query_timeout;
	unsigned per_minute, per_day, remote_per_day;
	pv_map *cache;                 /* e164 -> cached */
	pv_map *users;                 /* user localpart -> counter */
	pv_map *remotes;               /* remote domain -> counter */
	uint64_t forged, published, withdrawn, lookups, limited;
	struct lookup *pending;        /* lookups waiting for peers */
} dstate;

/* One client lookup waiting for its peers. */
typedef struct lookup {
	struct lookup *next;
	dstate *ds;
	pv_stanza *req;                /* the client's iq (ref) */
	char e164[PV_PHONE_MAX];
	char blinded[PV_BLIND_LEN];
	unsigned waiting;
	size_t n;
	item items[MAX_ITEMS];
} lookup;

/* ---- small helpers ---- */

static uint64_t parse_ms(const char *s, uint64_t def)
{
	if (!s || !*s)
		return def;
	char *end;
	double v = strtod(s, &end);
	if (end == s || v < 0)
		return def;
	if (strcmp(end, "ms") == 0)
		return (uint64_t)v;
	if (*end == 0 || strcmp(end, "s") == 0)
		return (uint64_t)(v * 1000);
	if (strcmp(end, "m") == 0)
		return (uint64_t)(v * 60000);
	if (strcmp(end, "h") == 0)
		return (uint64_t)(v * 3600000);
	return def;
}

static void free_cached(void *p)
{
	cached *c = p;
	for (size_t i = 0; i < c->n; i++)
		pv_free(c->items[i].jid);
	pv_free(c);
}

/* Counters whose day ended are dropped (bounds the maps to one day's askers). */
static int prune_counter(void *ud, const char *key, void *val)
{
	counter *c = val;
	if (pv_now_ms() - c->day_start >= DAY_MS) {
		pv_free(c);
		return 1;
	}
	return 0;
}

/* Fixed-window counting: true when one more event is allowed (and counts it). */
static int count_event(pv_map *m, const char *key, unsigned per_min, unsigned per_day)
{
	uint64_t now = pv_now_ms();
	counter *c = pv_map_get(m, key);
	if (!c && pv_map_count(m) >= 100000)
		pv_map_each(m, prune_counter, NULL);
	if (!c) {
		c = pv_calloc(1, sizeof(*c));
		c->min_start = c->day_start = now;
		pv_map_put(m, key, c);
	}
	if (now - c->min_start >= MINUTE_MS) {
		c->min_start = now;
		c->min_n = 0;
	}
	if (now - c->day_start >= DAY_MS) {
		c->day_start = now;
		c->day_n = 0;
	}
	if (per_day && c->day_n >= per_day)
		return 2;
	if (per_min && c->min_n >= per_min)
		return 1;
	c->min_n++;
	c->day_n++;
	return 0;
}

/* An error answer to st with an application-specific condition of ours (RFC 6120
 * 8.3.3) when app is not NULL; NULL when st is itself an error. */
static pv_stanza *app_error(const pv_stanza *st, const char *etype, const char *cond,
	const char *app)
{
	pv_stanza *e = pv_stanza_error(st, etype, cond, NULL);
	if (e && app) {
		pv_xml *err = pv_xml_child(e->xml, "error", NULL);
		if (err)
			pv_xml_add_child(err, app, NS);
	}
	return e;
}

static void reply_app_error(pv_event *ev, const char *etype, const char *cond, const char *app)
{
	pv_stanza *e = app_error(ev->stanza, etype, cond, app);
	if (!e)
		return;
	pv_stanza_set_from(e, ev->stanza->has_to ? ev->stanza->to.full : pv_host_name(ev->host));
	pv_reply(ev, e);
}

static void add_item(item *items, size_t *n, const char *jid, bool preferred, int64_t updated)
{
	for (size_t i = 0; i < *n; i++) {
		if (strcmp(items[i].jid, jid) == 0) {
			/* The same account from two sources (mesh and exchange): newest wins. */
			if (updated > items[i].updated) {
				items[i].preferred = preferred;
				items[i].updated = updated;
			}
			return;
		}
	}
	if (*n >= MAX_ITEMS)
		return;
	items[*n].jid = pv_strdup(jid);
	items[*n].preferred = preferred;
	items[*n].updated = updated;
	(*n)++;
}

static int cmp_item(const void *a, const void *b)
{
	return strcmp(((const item *)a)->jid, ((const item *)b)->jid);
}

/* ---- the local side of a lookup ---- */

static void local_items(dstate *ds, const char *e164, item *items, size_t *n)
{
	pv_phone_rec r;
	pv_host *h = ds->host;
	if (pv_store_phone_by_number(pv_host_store(h), pv_host_name(h), e164, &r) == 0) {
		if (r.findable && r.user) {
			char *jid = pv_sprintf("%s@%s", r.user, pv_host_name(h));
			add_item(items, n, jid, r.preferred, r.updated_ms);
			pv_free(jid);
		}
		pv_phone_rec_fini(&r);
	}
}

/* ---- answering the client ---- */

/* Builds and sends the answer: items sorted by JID, at most one marked preferred (the
 * newest of those marked), and the number address when an exchange is configured. */
static void answer(dstate *ds, pv_stanza *req, const char *blinded, item *items, size_t n)
{
	qsort(items, n, sizeof(item), cmp_item);
	long best = -1;
	for (size_t i = 0; i < n; i++)
		if (items[i].preferred && (best < 0 || items[i].updated > items[best].updated))
			best = (long)i;
	pv_stanza *res = pv_stanza_iq_result(req);
	if (!res)
		return;
	pv_xml *r = pv_xml_add_child(res->xml, "result", NS);
	for (size_t i = 0; i < n; i++) {
		pv_xml *it = pv_xml_add_child(r, "item", NULL);
		pv_xml_set_attr(it, "jid", items[i].jid);
		if ((long)i == best)
			pv_xml_set_attr(it, "preferred", "true");
	}
	if (ds->exchange && blinded && *blinded) {
		char *addr = pv_sprintf("%s@%s", blinded, ds->exchange);
		pv_xml_set_attr(pv_xml_add_child(r, "number-address", NULL), "jid", addr);
		pv_free(addr);
	}
	pv_route(ds->host, res);
	pv_stanza_unref(res);
}

static void cache_put(dstate *ds, const char *e164, const item *items, size_t n)
{
	if (!ds->cache_ttl)
		return;
	if (pv_map_count(ds->cache) >= CACHE_MAX) {
		pv_map_free(ds->cache, free_cached);
		ds->cache = pv_map_new();
	}
	cached *c = pv_calloc(1, sizeof(*c) + n * sizeof(item));
	c->expires = pv_now_ms() + ds->cache_ttl;
	c->n = n;
	for (size_t i = 0; i < n; i++) {
		c->items[i] = items[i];
		c->items[i].jid = pv_strdup(items[i].jid);
	}
	cached *old = pv_map_put(ds->cache, e164, c);
	if (old)
		free_cached(old);
}

static void lookup_free(lookup *lk)
{
	for (size_t i = 0; i < lk->n; i++)
		pv_free(lk->items[i].jid);
	pv_stanza_unref(lk->req);
	pv_free(lk);
}

static void lookup_unlink(lookup *lk)
{
	for (lookup **pp = &lk->ds->pending; *pp; pp = &(*pp)->next) {
		if (*pp == lk) {
			*pp = lk->next;
			break;
		}
	}
}

static void lookup_done(lookup *lk)
{
	dstate *ds = lk->ds;
	lookup_unlink(lk);
	cache_put(ds, lk->e164, lk->items, lk->n);
	answer(ds, lk->req, lk->blinded, lk->items, lk->n);
	lookup_free(lk);
}

/* A peer's <query/> answer (or NULL: timeout, error, shutdown). */
static void on_peer_answer(void *ud, pv_stanza *reply)
{
	lookup *lk = ud;
	if (reply && reply->type && strcmp(reply->type, "result") == 0) {
		pv_xml *q = pv_xml_child(reply->xml, "query", NS);
		const char *peer = reply->from.domain;
		for (pv_xml *it = q ? pv_xml_first_element(q) : NULL; it; it = pv_xml_next_element(it)) {
			const char *jid = pv_xml_attr(it, "jid");
			const char *pref = pv_xml_attr(it, "preferred");
			const char *upd = pv_xml_attr(it, "updated");
			if (!pv_xml_is(it, "item", NS) || !jid)
				continue;
			pv_jid j;
			if (pv_jid_parse_str(&j, jid) != 0)
				continue;
			/* A member answers for its own accounts; the exchange for anyone's. */
			pv_host *h = lk->ds->host;
			bool ok = j.local && !j.resource &&
				  (strcmp(j.domain, peer) == 0 ||
				   (lk->ds->exchange && strcasecmp(peer, lk->ds->exchange) == 0 &&
				    (pv_host_is_member(h, j.domain) || strcmp(j.domain, pv_host_name(h)) == 0)));
			if (ok)
				add_item(lk->items, &lk->n, j.bare, pref && strcmp(pref, "true") == 0,
					upd ? strtoll(upd, NULL, 10) : 0);
			pv_jid_fini(&j);
		}
	} else if (reply) {
		pv_xml *err = pv_xml_child(reply->xml, "error", NULL);
		pv_xml *cond = err ? pv_xml_first_element(err) : NULL;
		pv_info("directory", "%s: peer %s answered with an error cond=%s", pv_host_name(lk->ds->host),
			reply->from.full, cond && cond->name ? cond->name : "?");
	}
	if (--lk->waiting == 0)
		lookup_done(lk);
}

static pv_stanza *query_iq(dstate *ds, const char *peer, const char *blinded)
{
	pv_xml *x = pv_xml_new("iq", PV_NS_CLIENT);
	pv_xml_set_attr(x, "type", "get");
	pv_xml_set_attr(x, "to", peer);
	pv_xml_set_attr(x, "from", pv_host_name(ds->host));
	pv_xml *q = pv_xml_add_child(x, "query", NS);
	pv_xml *b = pv_xml_add_child(q, "blinded", NULL);
	pv_xml_add_text(b, blinded, strlen(blinded));
	pv_stanza *st = pv_stanza_new(x, NULL);
	if (!st)
		pv_xml_free(x);
	return st;
}

static int on_lookup(pv_event *ev, dstate *ds, pv_xml *q)
{
	pv_stanza *st = ev->stanza;
	if (ds->exchange_role || !ev->origin || !st->has_from || !st->from.local ||
	    !pv_host_is_local(ev->host, st->from.domain)) {
		/* Lookups are for the host's own users; servers use <query/>. */
		reply_app_error(ev, "cancel", "not-allowed", NULL);
		return PV_HANDLED;
	}
	int lim = count_event(ds->users, st->from.local, ds->per_minute, ds->per_day);
	if (lim) {
		ds->limited++;
		pv_info("directory", "%s: lookup limit (%s) user=%s", pv_host_name(ev->host),
			lim == 1 ? "minute" : "day", st->from.local);
		if (lim == 1)
			reply_app_error(ev, "wait", "resource-constraint", "rate-limited");
		else
			reply_app_error(ev, "wait", "policy-violation", "daily-limit");
		return PV_HANDLED;
	}
	char *num = pv_xml_child_text(q, "number", NULL);
	char e164[PV_PHONE_MAX];
	int bad = !num || pv_phone_normalize(num, e164) != 0 || strcmp(num, e164) != 0;
	pv_free(num);
	if (bad) {
		reply_app_error(ev, "modify", "bad-request", "invalid-number");
		return PV_HANDLED;
	}
	ds->lookups++;
	char blinded[PV_BLIND_LEN];
	if (pv_blind(ds->key, ds->keylen, e164, blinded) != 0) {
		reply_app_error(ev, "wait", "internal-server-error", NULL);
		return PV_HANDLED;
	}
	cached *c = pv_map_get(ds->cache, e164);
	if (c && c->expires > pv_now_ms()) {
		item items[MAX_ITEMS];
		memcpy(items, c->items, c->n * sizeof(item));
		answer(ds, st, blinded, items, c->n);
		return PV_HANDLED;
	}
	lookup *lk = pv_calloc(1, sizeof(*lk));
	lk->ds = ds;
	lk->req = pv_stanza_ref(st);
	memcpy(lk->e164, e164, sizeof(e164));
	memcpy(lk->blinded, blinded, sizeof(blinded));
	local_items(ds, e164, lk->items, &lk->n);

	const char *peers[MAX_PEERS];
	size_t np = 0;
	if (ds->ask_exchange && ds->exchange)
		peers[np++] = ds->exchange;
	if (ds->ask_mesh) {
		const char *m[MAX_PEERS];
		size_t nm = pv_host_members(ev->host, m, MAX_PEERS);
		for (size_t i = 0; i < nm && i < MAX_PEERS && np < MAX_PEERS; i++) {
			if (strcasecmp(m[i], pv_host_name(ev->host)) == 0 ||
			    (ds->exchange && strcasecmp(m[i], ds->exchange) == 0))
				continue;
			peers[np++] = m[i];
		}
	}
	lk->next = ds->pending;
	ds->pending = lk;
	/* One extra count so that answers arriving inside pv_iq_send cannot finish the
	 * lookup before every query is out. */
	lk->waiting = 1;
	for (size_t i = 0; i < np; i++) {
		pv_stanza *iq = query_iq(ds, peers[i], blinded);
		if (!iq)
			continue;
		lk->waiting++;
		pv_iq_send(ev->host, iq, (unsigned)ds->query_timeout, on_peer_answer, lk);
	}
	if (--lk->waiting == 0)
		lookup_done(lk);
	return PV_HANDLED;
}

/* ---- answering a member server ---- */

typedef struct reg_ctx {
	pv_xml *q;
} reg_ctx;

static void reg_item(void *ud, const pv_registry_entry *e)
{
	reg_ctx *c = ud;
	pv_xml *it = pv_xml_add_child(c->q, "item", NULL);
	char upd[24];
	snprintf(upd, sizeof(upd), "%lld", (long long)e->updated_ms);
	pv_xml_set_attr(it, "jid", e->jid);
	if (e->preferred)
		pv_xml_set_attr(it, "preferred", "true");
	pv_xml_set_attr(it, "updated", upd);
}

static int on_query(pv_event *ev, dstate *ds, pv_xml *q)
{
	pv_stanza *st = ev->stanza;
	pv_host *h = ev->host;
	const char *peer = st->has_from ? st->from.domain : NULL;
	if (ev->origin || !peer || st->from.local || st->from.resource || !pv_host_is_member(h, peer)) {
		pv_info("directory", "%s: query refused from %s (not a member server)", pv_host_name(h),
			st->has_from ? st->from.full : "-");
		reply_app_error(ev, "cancel", "forbidden", NULL);
		return PV_HANDLED;
	}
	if (count_event(ds->remotes, peer, 0, ds->remote_per_day)) {
		ds->limited++;
		pv_info("directory", "%s: daily query limit reached for %s", pv_host_name(h), peer);
		reply_app_error(ev, "wait", "policy-violation", "daily-limit");
		return PV_HANDLED;
	}
	char *blinded = pv_xml_child_text(q, "blinded", NULL);
	if (!blinded || !pv_blind_is_valid(blinded)) {
		pv_free(blinded);
		reply_app_error(ev, "modify", "bad-request", "invalid-number");
		return PV_HANDLED;
	}
	pv_stanza *res = pv_stanza_iq_result(st);
	reg_ctx c = {.q = pv_xml_add_child(res->xml, "query", NS)};
	if (ds->exchange_role) {
		pv_store_registry_lookup(pv_host_store(h), pv_host_name(h), blinded, reg_item, &c);
	} else {
		char *e164 = NULL;
		pv_phone_rec r;
		if (pv_store_blind_lookup(pv_host_store(h), pv_host_name(h), blinded, &e164) == 0 &&
		    pv_store_phone_by_number(pv_host_store(h), pv_host_name(h), e164, &r) == 0) {
			if (r.findable) {
				char *jid = pv_sprintf("%s@%s", r.user, pv_host_name(h));
				pv_registry_entry e = {.jid = jid, .preferred = r.preferred, .updated_ms = r.updated_ms};
				reg_item(&c, &e);
				pv_free(jid);
			}
			pv_phone_rec_fini(&r);
		}
		pv_free(e164);
	}
	pv_free(blinded);
	pv_reply(ev, res);
	return PV_HANDLED;
}

static int on_iq(pv_event *ev, void *ud)
{
	dstate *ds = ud;
	pv_xml *q = pv_xml_first_element(ev->stanza->xml);
	if (!q)
		return PV_PASS;
	if (pv_xml_is(q, "lookup", NS))
		return on_lookup(ev, ds, q);
	if (pv_xml_is(q, "query", NS))
		return on_query(ev, ds, q);
	reply_app_error(ev, "modify", "bad-request", NULL);
	return PV_HANDLED;
}

/* A lookup sent to the user's own bare JID (or with no `to`) is the same question. */
static int on_iq_bare(pv_event *ev, void *ud)
{
	if (!pv_event_from_owner(ev))
		return PV_PASS;
	return on_iq(ev, ud);
}

/* ---- the exchange: publish / withdraw ---- */

static void registry_message_error(pv_event *ev, const char *cond, const char *app)
{
	pv_stanza *e = app_error(ev->stanza, "cancel", cond, app);
	if (!e)
		return;
	pv_stanza_set_from(e, pv_host_name(ev->host));
	pv_route(ev->host, e);
	pv_stanza_unref(e);
}

static int on_message(pv_event *ev, void *ud)
{
	dstate *ds = ud;
	pv_stanza *st = ev->stanza;
	pv_xml *el = NULL;
	for (pv_xml *x = pv_xml_first_element(st->xml); x; x = pv_xml_next_element(x))
		if (pv_xml_is(x, "publish", NS) || pv_xml_is(x, "withdraw", NS))
			el = x;
	if (!el)
		return PV_PASS;
	pv_host *h = ev->host;
	if (st->type && strcmp(st->type, "error") == 0) {
		/* Our own publish/withdraw came back (refused, or expired in the link queue). */
		pv_xml *err = pv_xml_child(st->xml, "error", NULL);
		const char *cond = "?", *app = "-";
		for (pv_xml *c = err ? pv_xml_first_element(err) : NULL; c; c = pv_xml_next_element(c)) {
			if (c->ns && strcmp(c->ns, PV_NS_STANZAS) == 0 && strcmp(c->name, "text") != 0)
				cond = c->name;
			else if (c->ns && strcmp(c->ns, NS) == 0)
				app = c->name;
		}
		pv_warn("directory", "%s: registry update refused or undelivered from=%s id=%s cond=%s app=%s",
			pv_host_name(h), st->has_from ? st->from.full : "-", st->id ? st->id : "-", cond, app);
		return PV_HANDLED;
	}
	if (!ds->exchange_role)
		return PV_PASS;
	const char *peer = st->has_from ? st->from.domain : NULL;
	if (ev->origin || !peer || st->from.local || st->from.resource || !pv_host_is_member(h, peer)) {
		ds->forged++;
		pv_info("directory", "%s: registry update refused from %s (not a member server) "
				     "refused_total=%llu",
			pv_host_name(h), st->has_from ? st->from.full : "-", (unsigned long long)ds->forged);
		registry_message_error(ev, "forbidden", NULL);
		return PV_HANDLED;
	}
	const char *jid = pv_xml_attr(el, "jid");
	pv_jid j;
	if (!jid || pv_jid_parse_str(&j, jid) != 0) {
		registry_message_error(ev, "bad-request", NULL);
		return PV_HANDLED;
	}
	bool own = j.local && !j.resource && strcmp(j.domain, peer) == 0;
	if (!own) {
		ds->forged++;
		pv_info("directory", "%s: forged registry update from %s for an account of %s refused "
				     "refused_total=%llu",
			pv_host_name(h), peer, j.domain, (unsigned long long)ds->forged);
		pv_jid_fini(&j);
		registry_message_error(ev, "forbidden", "not-your-account");
		return PV_HANDLED;
	}
	const char *upd = pv_xml_attr(el, "updated");
	int64_t updated = upd ? strtoll(upd, NULL, 10) : 0;
	if (pv_xml_is(el, "publish", NS)) {
		const char *blinded = pv_xml_attr(el, "blinded");
		const char *pref = pv_xml_attr(el, "preferred");
		if (!blinded || !pv_blind_is_valid(blinded) || updated <= 0) {
			pv_jid_fini(&j);
			registry_message_error(ev, "bad-request", "invalid-number");
			return PV_HANDLED;
		}
		ds->published++;
		pv_store_registry_put(pv_host_store(h), pv_host_name(h), blinded, j.bare, peer,
			pref && strcmp(pref, "true") == 0, updated, pv_hold_store_done, pv_hold_take());
		pv_debug("directory", "%s: published by %s", pv_host_name(h), peer);
	} else {
		ds->withdrawn++;
		pv_store_registry_del(pv_host_store(h), pv_host_name(h), NULL, j.bare, pv_hold_store_done,
			pv_hold_take());
		pv_debug("directory", "%s: withdrawn by %s", pv_host_name(h), peer);
	}
	pv_jid_fini(&j);
	return PV_HANDLED;
}

/* ---- a provider: phone-changed -> index, cache, exchange ---- */

static void send_registry(dstate *ds, const char *user, const char *blinded, bool preferred,
	const char *updated)
{
	pv_host *h = ds->host;
	char *jid = pv_sprintf("%s@%s", user, pv_host_name(h));
	pv_xml *x = pv_xml_new("message", PV_NS_CLIENT);
	char *id = pv_random_hex(8);
	pv_xml_set_attr(x, "type", "normal");
	pv_xml_set_attr(x, "to", ds->exchange);
	pv_xml_set_attr(x, "from", pv_host_name(h));
	pv_xml_set_attr(x, "id", id);
	pv_xml *el = pv_xml_add_child(x, blinded ? "publish" : "withdraw", NS);
	pv_xml_set_attr(el, "jid", jid);
	if (blinded) {
		pv_xml_set_attr(el, "blinded", blinded);
		if (preferred)
			pv_xml_set_attr(el, "preferred", "true");
	}
	pv_xml_set_attr(el, "updated", updated);
	pv_stanza *st = pv_stanza_new(x, NULL);
	if (st) {
		pv_route(h, st);
		pv_stanza_unref(st);
	} else {
		pv_xml_free(x);
	}
	pv_free(id);
	pv_free(jid);
}

/* The blinded index lives in storage (schema 006): reads see every write queued before
 * them, so the index is exact here even with its writes still uncommitted. */
static void index_del(dstate *ds, const char *e164)
{
	if (e164)
		pv_store_blind_del(pv_host_store(ds->host), pv_host_name(ds->host), e164, NULL, NULL);
}

static bool index_has(dstate *ds, const char *e164)
{
	char b[PV_BLIND_LEN], *found = NULL;
	if (!e164 || pv_blind(ds->key, ds->keylen, e164, b) != 0)
		return false;
	bool has = pv_store_blind_lookup(pv_host_store(ds->host), pv_host_name(ds->host), b, &found) == 0;
	pv_free(found);
	return has;
}

static void index_add(dstate *ds, const char *e164)
{
	char b[PV_BLIND_LEN];
	if (e164 && pv_blind(ds->key, ds->keylen, e164, b) == 0)
		pv_store_blind_put(pv_host_store(ds->host), pv_host_name(ds->host), b, e164, NULL, NULL);
}

static int on_phone_changed(pv_event *ev, void *ud)
{
	dstate *ds = ud;
	pv_xml *p = ev->payload;
	if (!p || !ev->user || ds->exchange_role)
		return PV_PASS;
	const char *number = pv_xml_attr(p, "number");
	const char *previous = pv_xml_attr(p, "previous");
	const char *f = pv_xml_attr(p, "findable");
	const char *pr = pv_xml_attr(p, "preferred");
	const char *upd = pv_xml_attr(p, "updated");
	bool findable = number && f && strcmp(f, "true") == 0;
	char updated[24];
	snprintf(updated, sizeof(updated), "%lld", upd ? strtoll(upd, NULL, 10) : (long long)pv_wall_s() * 1000);

	/* Was the account findable before this change?  Then the exchange has it (or will:
	 * the publish is queued ahead of us) and a withdrawal is due; otherwise telling
	 * the exchange anything would only reveal that the account has a number. */
	bool was_findable = index_has(ds, number) || index_has(ds, previous);
	/* Local answers change at once: no cached answer may outlive the change. */
	pv_map_free(ds->cache, free_cached);
	ds->cache = pv_map_new();
	if (previous && (!number || strcmp(previous, number) != 0))
		index_del(ds, previous);
	if (findable)
		index_add(ds, number);
	else
		index_del(ds, number);

	if (!ds->exchange)
		return PV_PASS;
	char b[PV_BLIND_LEN];
	if (findable && pv_blind(ds->key, ds->keylen, number, b) == 0)
		send_registry(ds, ev->user, b, pr && strcmp(pr, "true") == 0, updated);
	else if (was_findable)
		send_registry(ds, ev->user, NULL, false, updated);
	return PV_PASS;
}

/* ---- load / unload ---- */

static void index_load_cb(void *ud, const char *e164)
{
	index_add(ud, e164);
}

static void free_state(dstate *ds)
{
	while (ds->pending) {
		/* Flushed by the core before unload; anything left was never sent. */
		lookup *lk = ds->pending;
		ds->pending = lk->next;
		lookup_free(lk);
	}
	if (ds->key) {
		explicit_bzero(ds->key, ds->keylen);
		pv_free(ds->key);
	}
	pv_map_free(ds->cache, free_cached);
	pv_map_free(ds->users, pv_free);
	pv_map_free(ds->remotes, pv_free);
	pv_free(ds);
}

static const char *const iq_events[] = {
	"iq-get/host/" NS,
};

static int directory_load(pv_host *h, const pv_conf *conf, void **state)
{
	const pv_conf *hc = pv_host_conf(h);
	dstate *ds = pv_calloc(1, sizeof(*ds));
	ds->host = h;
	ds->exchange_role = pv_host_is_exchange(h);
	ds->cache = pv_map_new();
	ds->users = pv_map_new();
	ds->remotes = pv_map_new();
	ds->cache_ttl = parse_ms(pv_cfg_str(conf, "cache_ttl", NULL), 5000);
	ds->query_timeout = parse_ms(pv_cfg_str(conf, "query_timeout", NULL), 5000);
	if (ds->query_timeout < 100)
		ds->query_timeout = 100;
	ds->per_minute = (unsigned)pv_cfg_int(conf, "lookups_per_minute", 10);
	ds->per_day = (unsigned)pv_cfg_int(conf, "lookups_per_day", 100);
	ds->remote_per_day = (unsigned)pv_cfg_int(conf, "remote_lookups_per_day", 100000);
	if (!ds->exchange_role) {
		char *kf = pv_host_path(h, pv_cfg_str(hc, "interconnect.blinding_key_file", NULL));
		char *err = NULL;
		int krc = pv_blind_key_load(kf, &ds->key, &ds->keylen, &err);
		pv_free(kf);
		if (krc != 0) {
			pv_error("directory", "%s: %s (interconnect.blinding_key_file; the directory "
					      "module needs the interconnect's key)",
				pv_host_name(h), err);
			pv_free(err);
			free_state(ds);
			return PV_EINVAL;
		}
		ds->exchange = pv_cfg_str(hc, "interconnect.exchange", NULL);
		const char *via = pv_cfg_str(conf, "lookup_via", "auto");
		if (strcmp(via, "mesh") == 0) {
			ds->ask_mesh = true;
		} else if (strcmp(via, "exchange") == 0) {
			ds->ask_exchange = true;
		} else if (strcmp(via, "both") == 0) {
			ds->ask_mesh = ds->ask_exchange = true;
		} else if (strcmp(via, "auto") == 0) {
			ds->ask_exchange = ds->exchange != NULL;
			ds->ask_mesh = ds->exchange == NULL;
		} else {
			pv_error("directory", "%s: directory.lookup_via must be auto, mesh, exchange or both",
				pv_host_name(h));
			free_state(ds);
			return PV_EINVAL;
		}
		if (ds->ask_exchange && !ds->exchange) {
			pv_error("directory", "%s: directory.lookup_via asks the exchange but "
					      "interconnect.exchange is not set",
				pv_host_name(h));
			free_state(ds);
			return PV_EINVAL;
		}
		/* The stored index follows the phone table: a new key empties it, and whatever
		 * a crash left between a phone change and its index write is repaired here. */
		char kid[PV_BLIND_LEN];
		int fresh = pv_blind_key_id(ds->key, ds->keylen, kid) == 0
				    ? pv_store_blind_key(pv_host_store(h), pv_host_name(h), kid)
				    : PV_EINVAL;
		int n = fresh < 0 ? fresh : pv_store_blind_repair(pv_host_store(h), pv_host_name(h), index_load_cb, ds);
		if (n < 0) {
			pv_error("directory", "%s: cannot read or repair the blinded index rc=%d", pv_host_name(h), n);
			free_state(ds);
			return PV_EIO;
		}
		pv_info("directory", "%s: blinded index %s, %d number(s) added, lookups via %s%s%s", pv_host_name(h),
			fresh ? "rebuilt (new key or first start)" : "checked", n,
			ds->ask_mesh ? "mesh" : "", ds->ask_mesh && ds->ask_exchange ? "+" : "",
			ds->ask_exchange ? "exchange" : "");
		pv_hook(h, "phone-changed", 0, on_phone_changed, ds);
		pv_hook(h, "iq-get/bare/" NS, 0, on_iq_bare, ds);
	} else {
		int64_t n = pv_store_registry_count(pv_host_store(h), pv_host_name(h));
		pv_info("directory", "%s: exchange registry with %lld entr%s", pv_host_name(h), (long long)n,
			n == 1 ? "y" : "ies");
	}
	for (size_t i = 0; i < PV_ARRAY_LEN(iq_events); i++)
		pv_hook(h, iq_events[i], 0, on_iq, ds);
	pv_hook(h, "message/host", 0, on_message, ds);
	pv_host_add_feature(h, NS);
	*state = ds;
	return 0;
}

static void directory_unload(pv_host *h, void *state)
{
	dstate *ds = state;
	if (!ds)
		return;
	for (size_t i = 0; i < PV_ARRAY_LEN(iq_events); i++)
		pv_unhook(h, iq_events[i], on_iq, ds);
	pv_unhook(h, "message/host", on_message, ds);
	if (!ds->exchange_role) {
		pv_unhook(h, "phone-changed", on_phone_changed, ds);
		pv_unhook(h, "iq-get/bare/" NS, on_iq_bare, ds);
	}
	free_state(ds);
}

const pv_module pv_mod_directory = {
	.name = "directory",
	.load = directory_load,
	.unload = directory_unload,
};
