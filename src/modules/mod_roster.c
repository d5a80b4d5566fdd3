/* mod_roster.c -- roster management (RFC 6121 section 2) with roster versioning (RFC
 * 6121 2.6, XEP-0237), and the roster storage/push helpers declared in roster.h that
 * mod_presence shares.
 *
 *   get (2.1.3): the items the user added, each with subscription/ask/approved; a ver
 *        attribute equal to the current version gets an empty result (2.6.3: nothing
 *        changed since, so no pushes follow either).  Marks the session interested
 *        (2.1.6), so it receives roster pushes from then on.
 *   set (2.3, 2.4): add or replace one item (name, groups); the subscription attribute
 *        is ignored unless it is "remove" (2.1.2.5); ask/approved are server-owned.
 *   remove (2.5): delete the item and undo every subscription state with the contact
 *        (2.5.2: unsubscribe if the user is subscribed to the contact or asked to be,
 *        unsubscribed if the contact is subscribed to the user or asked to be, the
 *        latter after "unavailable" from each available resource, as 3.2.2 does).
 * Errors:
 *   not the account itself (2.1.5, 2.3.3)               forbidden (auth)
 *   not one <item/> in the query, duplicate <group/>s   bad-request (modify)
 *   unparsable item jid                                 jid-malformed (modify)
 *   name or group longer than MAX_TEXT, empty group      not-acceptable (modify)
 *   removing an item that is not in the roster (2.5.3)   item-not-found (cancel)
 *   the account's own JID as an item                    not-allowed (cancel): RFC 6121
 *        has no rule for it; the account's presence already reaches its own resources
 *        (4.2.2, 4.4.2), so an item for itself could only duplicate or contradict that.
 *   roster.max_items (default 1000) items already       not-allowed (cancel) with text:
 *        a local policy that retrying cannot satisfy, so not resource-constraint
 *        (RFC 6120 8.3.3.18, a temporary "wait" condition).
 * Config (host section "roster"): max_items.
 * Stream feature: <ver xmlns='urn:xmpp:features:rosterver'/> after authentication.
 * Durability: every store write takes a hold (pv_roster_commit), so the client's ack for
 * the set waits for the commit; the result and pushes go out at once.
 *
 * Threading: hooks run on the host's worker loop; store reads are synchronous. */
#include <stdio.h>
#include <string.h>

#include "modules/roster.h"
#include "peyvand/pv_module.h"

#define NS_ROSTERVER "urn:xmpp:features:rosterver"
#define DEF_MAX_ITEMS 1000
/* Handles and group names: the same bound as a JID part (RFC 7622 3.1). */
#define MAX_TEXT 1023

typedef struct roster_cfg {
	size_t max_items;
} roster_cfg;

/* ---- helpers ---- */

static void route_presence(pv_host *h, const char *type, const char *from, const char *to)
{
	pv_stanza *st = pv_stanza_presence(type, from, to);
	if (st) {
		pv_route(h, st);
		pv_stanza_unref(st);
	}
}

static void reply_error_text(pv_event *ev, const char *etype, const char *cond, const char *text)
{
	pv_stanza *e = pv_stanza_error(ev->stanza, etype, cond, text);
	if (!e)
		return;
	pv_stanza_set_from(e, ev->stanza->has_to ? ev->stanza->to.full : NULL);
	pv_reply(ev, e);
}

/* ---- shared with mod_presence (roster.h) ---- */

int pv_roster_load(pv_host *h, const char *user, pv_roster *r)
{
	memset(r, 0, sizeof(*r));
	int rc = pv_store_roster_get(pv_host_store(h), pv_host_name(h), user, &r->items, &r->n,
		&r->ver);
	if (rc < 0) {
		pv_warn("roster", "loading the roster of %s@%s failed rc=%d", user, pv_host_name(h), rc);
		memset(r, 0, sizeof(*r));
	}
	return rc < 0 ? rc : 0;
}

void pv_roster_fini(pv_roster *r)
{
	if (r->items)
		pv_roster_items_free(r->items, r->n);
	memset(r, 0, sizeof(*r));
}

void pv_roster_item_fini(pv_roster_item *it)
{
	pv_free(it->jid);
	pv_free(it->name);
	pv_free(it->pending_in);
	for (size_t i = 0; i < it->ngroups; i++)
		pv_free(it->groups[i]);
	pv_free(it->groups);
	memset(it, 0, sizeof(*it));
}

pv_xml *pv_roster_item_xml(const pv_roster_item *it, bool remove)
{
	pv_xml *x = pv_xml_new("item", PV_NS_ROSTER);
	pv_xml_set_attr(x, "jid", it->jid);
	if (remove) {
		pv_xml_set_attr(x, "subscription", "remove");
		return x;
	}
	if (it->name && *it->name)
		pv_xml_set_attr(x, "name", it->name);
	pv_xml_set_attr(x, "subscription", pv_sub_name(it->sub));
	if (it->ask)
		pv_xml_set_attr(x, "ask", "subscribe");
	if (it->approved)
		pv_xml_set_attr(x, "approved", "true");
	for (size_t i = 0; i < it->ngroups; i++)
		pv_xml_add_text(pv_xml_add_child(x, "group", PV_NS_ROSTER), it->groups[i],
			strlen(it->groups[i]));
	return x;
}

void pv_roster_push(pv_host *h, const char *user, uint64_t ver, const pv_roster_item *it,
	bool remove)
{
	char vbuf[24];
	snprintf(vbuf, sizeof(vbuf), "%llu", (unsigned long long)ver);
	pv_user_sessions l;
	pv_user_sessions_get(&l, h, user);
	for (size_t i = 0; i < l.n; i++) {
		pv_session *s = l.v[i];
		const pv_jid *j = pv_session_jid(s);
		if (!j || !pv_session_is_interested(s))
			continue;
		/* 2.1.6: a push carries no 'from' (or the account's bare JID); we leave it
		 * out, which every client accepts. */
		pv_xml *iq = pv_xml_new("iq", PV_NS_CLIENT);
		char *id = pv_random_hex(8);
		pv_xml_set_attr(iq, "type", "set");
		pv_xml_set_attr(iq, "id", id);
		pv_xml_set_attr(iq, "to", j->full);
		pv_free(id);
		pv_xml *q = pv_xml_add_child(iq, "query", PV_NS_ROSTER);
		pv_xml_set_attr(q, "ver", vbuf);
		pv_xml_add(q, pv_roster_item_xml(it, remove));
		const char *bad = NULL;
		pv_stanza *st = pv_stanza_new(iq, &bad);
		if (!st) {
			pv_xml_free(iq);
			continue;
		}
		pv_session_send(s, st);
		pv_stanza_unref(st);
	}
	pv_user_sessions_fini(&l);
}

void pv_roster_commit(pv_host *h, const char *user, pv_roster *r, const pv_roster_item *it,
	bool push)
{
	pv_store *st = pv_host_store(h);
	bool del = pv_roster_item_is_empty(it);
	r->ver++;
	pv_hold *hold = pv_hold_take();
	if (del)
		pv_store_roster_del(st, pv_host_name(h), user, it->jid, r->ver, pv_hold_store_done, hold);
	else
		pv_store_roster_put(st, pv_host_name(h), user, it, r->ver, pv_hold_store_done, hold);
	pv_debug("roster", "%s@%s %s %s ver=%llu", user, pv_host_name(h), del ? "del" : "put",
		it->jid, (unsigned long long)r->ver);
	if (push)
		pv_roster_push(h, user, r->ver, it, del || !it->in_roster);
}

/* ---- the module ---- */

/* Only the account itself manages its roster (2.1.5 for get, 2.3.3 for set): the core
 * sets 'to' to the sender's bare JID when the client left it out. */
static pv_xml *roster_query(const pv_stanza *st)
{
	pv_xml *q = pv_xml_first_element(st->xml);
	return q && pv_xml_is(q, "query", PV_NS_ROSTER) ? q : NULL;
}

static int on_get(pv_event *ev, void *ud)
{
	pv_xml *q = roster_query(ev->stanza);
	if (!pv_event_from_owner(ev)) {
		pv_reply_error(ev, "auth", "forbidden");
		return PV_HANDLED;
	}
	if (!q) {
		pv_reply_error(ev, "modify", "bad-request");
		return PV_HANDLED;
	}
	pv_host *h = ev->host;
	pv_roster r;
	if (pv_roster_load(h, ev->stanza->to.local, &r) < 0) {
		pv_reply_error(ev, "wait", "internal-server-error");
		return PV_HANDLED;
	}
	pv_session_set_interested(ev->origin, true);

	char vbuf[24];
	snprintf(vbuf, sizeof(vbuf), "%llu", (unsigned long long)r.ver);
	const char *cver = pv_xml_attr(q, "ver");
	pv_stanza *res = pv_stanza_iq_result(ev->stanza);
	if (res && !(cver && strcmp(cver, vbuf) == 0)) {
		pv_xml *rq = pv_xml_add_child(res->xml, "query", PV_NS_ROSTER);
		/* 2.6.3: ver only for a client that asked for versioning. */
		if (cver)
			pv_xml_set_attr(rq, "ver", vbuf);
		for (size_t i = 0; i < r.n; i++)
			if (r.items[i].in_roster)
				pv_xml_add(rq, pv_roster_item_xml(&r.items[i], false));
	}
	pv_roster_fini(&r);
	pv_reply(ev, res);
	return PV_HANDLED;
}

/* 2.5.2: the item goes, and so does every subscription state with the contact. */
static void do_remove(pv_event *ev, pv_roster *r, pv_roster_item *cur)
{
	pv_host *h = ev->host;
	const char *user = ev->stanza->to.local;
	const char *me = ev->stanza->to.bare;
	pv_substate before = pv_substate_of(cur);
	bool had_to = before.sub == PV_SUB_TO || before.sub == PV_SUB_BOTH;
	bool had_from = before.sub == PV_SUB_FROM || before.sub == PV_SUB_BOTH;
	char *contact = pv_strdup(cur->jid);

	/* An empty record deletes: the stored request goes with it, answered below. */
	pv_roster_item gone = {.jid = contact};
	pv_roster_commit(h, user, r, &gone, true);
	pv_reply(ev, pv_stanza_iq_result(ev->stanza));

	/* Stored first, routed after: a local contact's server answers synchronously
	 * and must find the item already gone. */
	if (had_to || before.out)
		route_presence(h, "unsubscribe", me, contact);
	if (had_from) {
		pv_user_sessions l;
		pv_user_sessions_get(&l, h, user);
		for (size_t i = 0; i < l.n; i++) {
			const pv_jid *j = pv_session_jid(l.v[i]);
			if (j && pv_session_is_available(l.v[i]))
				route_presence(h, "unavailable", j->full, contact);
		}
		pv_user_sessions_fini(&l);
	}
	if (had_from || before.in)
		route_presence(h, "unsubscribed", me, contact);
	pv_free(contact);
}

/* Collects the <group/> texts of an item; caller frees each and the array. */
static char **item_groups(const pv_xml *item, size_t *n)
{
	size_t k = 0;
	for (pv_xml *g = pv_xml_first_element(item); g; g = pv_xml_next_element(g))
		if (pv_xml_is(g, "group", PV_NS_ROSTER))
			k++;
	char **v = k ? pv_calloc(k, sizeof(char *)) : NULL;
	size_t i = 0;
	for (pv_xml *g = pv_xml_first_element(item); g; g = pv_xml_next_element(g)) {
		if (!pv_xml_is(g, "group", PV_NS_ROSTER))
			continue;
		char *t = pv_xml_text(g);
		v[i++] = t ? t : pv_strdup("");
	}
	*n = k;
	return v;
}

static void free_groups(char **g, size_t n)
{
	for (size_t i = 0; i < n; i++)
		pv_free(g[i]);
	pv_free(g);
}

static int on_set(pv_event *ev, void *ud)
{
	roster_cfg *cfg = ud;
	pv_host *h = ev->host;
	const pv_stanza *st = ev->stanza;
	pv_xml *q = roster_query(st);
	if (!pv_event_from_owner(ev)) {
		pv_reply_error(ev, "auth", "forbidden");
		return PV_HANDLED;
	}
	if (!q) {
		pv_reply_error(ev, "modify", "bad-request");
		return PV_HANDLED;
	}
	/* 2.3.3: exactly one <item/>. */
	pv_xml *item = NULL;
	size_t nitems = 0;
	for (pv_xml *x = pv_xml_first_element(q); x; x = pv_xml_next_element(x))
		if (pv_xml_is(x, "item", PV_NS_ROSTER)) {
			item = x;
			nitems++;
		}
	if (nitems != 1) {
		pv_reply_error(ev, "modify", "bad-request");
		return PV_HANDLED;
	}
	const char *jattr = pv_xml_attr(item, "jid");
	if (!jattr) {
		pv_reply_error(ev, "modify", "bad-request");
		return PV_HANDLED;
	}
	pv_jid cj;
	if (pv_jid_parse_str(&cj, jattr) < 0) {
		pv_reply_error(ev, "modify", "jid-malformed");
		return PV_HANDLED;
	}

	const char *user = st->to.local;
	const char *sub = pv_xml_attr(item, "subscription");
	char **groups = NULL;
	size_t ngroups = 0;
	pv_roster r = {0};
	bool loaded = false;

	if (pv_roster_load(h, user, &r) < 0) {
		pv_reply_error(ev, "wait", "internal-server-error");
		goto out;
	}
	loaded = true;
	/* Items are kept by bare JID (pv_store.h), which is how presence finds them. */
	pv_roster_item *cur = pv_roster_find(r.items, r.n, cj.bare);

	if (sub && strcmp(sub, "remove") == 0) {
		if (!cur || !cur->in_roster)
			pv_reply_error(ev, "cancel", "item-not-found");
		else
			do_remove(ev, &r, cur);
		goto out;
	}

	if (strcmp(cj.bare, st->to.bare) == 0) {
		pv_reply_error(ev, "cancel", "not-allowed");
		goto out;
	}
	const char *name = pv_xml_attr(item, "name");
	if (name && strlen(name) > MAX_TEXT) {
		pv_reply_error(ev, "modify", "not-acceptable");
		goto out;
	}
	groups = item_groups(item, &ngroups);
	int grc = pv_roster_check_groups((const char *const *)groups, ngroups, MAX_TEXT);
	if (grc == PV_EEXIST) {
		pv_reply_error(ev, "modify", "bad-request");
		goto out;
	} else if (grc < 0) {
		pv_reply_error(ev, "modify", "not-acceptable");
		goto out;
	}
	if ((!cur || !cur->in_roster) && pv_roster_count(r.items, r.n) >= cfg->max_items) {
		pv_info("roster", "%s@%s: roster full (%zu items)", user, pv_host_name(h), cfg->max_items);
		reply_error_text(ev, "cancel", "not-allowed", "roster size limit reached");
		goto out;
	}

	/* 2.4.1: an item is atomic -- name and groups are replaced exactly as given;
	 * subscription state is the server's and stays. */
	pv_roster_item fresh = {0};
	pv_roster_item *it = cur;
	if (!it) {
		fresh.jid = pv_strdup(cj.bare);
		it = &fresh;
	} else {
		pv_free(it->name);
		for (size_t i = 0; i < it->ngroups; i++)
			pv_free(it->groups[i]);
		pv_free(it->groups);
	}
	it->name = name && *name ? pv_strdup(name) : NULL;
	it->groups = groups;
	it->ngroups = ngroups;
	groups = NULL;
	ngroups = 0;
	it->in_roster = true;
	pv_roster_commit(h, user, &r, it, true);
	if (it == &fresh)
		pv_roster_item_fini(&fresh);
	pv_reply(ev, pv_stanza_iq_result(st));

out:
	free_groups(groups, ngroups);
	if (loaded)
		pv_roster_fini(&r);
	pv_jid_fini(&cj);
	return PV_HANDLED;
}

static int on_features(pv_event *ev, void *ud)
{
	/* Only the post-authentication features carry <bind/>: versioning means
	 * nothing before there is an account. */
	if (ev->payload && pv_xml_child(ev->payload, "bind", PV_NS_BIND) &&
	    !pv_xml_child(ev->payload, "ver", NS_ROSTERVER))
		pv_xml_add_child(ev->payload, "ver", NS_ROSTERVER);
	return PV_PASS;
}

static int on_user_deleted(pv_event *ev, void *ud)
{
	/* pv_store_user_delete drops the roster with the account; nothing is cached
	 * here.  Contacts keep their side (a remote server cannot be told reliably). */
	return PV_PASS;
}

static int roster_load(pv_host *h, const pv_conf *conf, void **state)
{
	roster_cfg *cfg = pv_calloc(1, sizeof(*cfg));
	long long max = conf ? pv_cfg_int(conf, "max_items", DEF_MAX_ITEMS) : DEF_MAX_ITEMS;
	cfg->max_items = max > 0 ? (size_t)max : DEF_MAX_ITEMS;
	pv_hook(h, "iq-get/bare/" PV_NS_ROSTER, 0, on_get, cfg);
	pv_hook(h, "iq-set/bare/" PV_NS_ROSTER, 0, on_set, cfg);
	pv_hook(h, "stream-features", 0, on_features, cfg);
	pv_hook(h, "user-deleted", 0, on_user_deleted, cfg);
	*state = cfg;
	return 0;
}

static void roster_unload(pv_host *h, void *state)
{
	pv_unhook(h, "iq-get/bare/" PV_NS_ROSTER, on_get, state);
	pv_unhook(h, "iq-set/bare/" PV_NS_ROSTER, on_set, state);
	pv_unhook(h, "stream-features", on_features, state);
	pv_unhook(h, "user-deleted", on_user_deleted, state);
	pv_free(state);
}

const pv_module pv_mod_roster = {
	.name = "roster",
	.load = roster_load,
	.unload = roster_unload,
};
