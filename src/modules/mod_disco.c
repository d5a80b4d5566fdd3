/* mod_disco.c -- Service Discovery (XEP-0030) for a host and its accounts.
 *
 * Host (to = the domain):
 *   disco#info  -> the host's identities (server/im "peyvand" unless the core or a module
 *                  added one) and every feature registered with pv_host_add_feature
 *                  (section 3.1), sorted and without duplicates;
 *   disco#items -> an empty list (section 4.1: no items is an empty <query/>, never an
 *                  error).  TODO: list components (MUC, upload) once they exist.
 * Account (to = a local bare JID; the server answers on its behalf, sections 3.1/4.1):
 *   disco#info  -> identity account/registered + disco#info/#items + whatever modules
 *                  add in the "account-disco-info" event;
 *   disco#items -> the account's available resources.
 *   Answered for the account owner only; anyone else gets service-unavailable, which
 *   section 3.1 prescribes when policy forbids revealing whether the account exists.
 *   TODO: RFC 6121 / XEP-0030 section 8 -- also answer entities with a presence
 *   subscription to the account (needs a roster lookup API).
 * A `node` we do not know -> item-not-found (section 7); the response mirrors `node`
 * (section 3.2).  Modules that serve nodes (ad-hoc commands, PEP) hook the same events at
 * a higher priority.
 *
 * Threading: hooks run on the host's worker loop; no mutable state. */
#include <stdlib.h>
#include <string.h>

#include "peyvand/pv_module.h"

#define DISCO_MAX_RESOURCES 64

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sorts v in place and drops repeated strings; returns the new count.  Sorted output
 * keeps answers identical across restarts (XEP-0115 hashes sort anyway). */
static size_t sort_unique(const char **v, size_t n)
{
	if (n == 0)
		return 0;
	qsort(v, n, sizeof(*v), cmp_str);
	size_t out = 1;
	for (size_t i = 1; i < n; i++)
		if (strcmp(v[i], v[out - 1]) != 0)
			v[out++] = v[i];
	return out;
}

static bool streq_null(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

/* Identity triples i and j are the same (category, type, name). */
static bool same_identity(const char *const *t, size_t i, size_t j)
{
	return streq_null(t[3 * i], t[3 * j]) && streq_null(t[3 * i + 1], t[3 * j + 1]) &&
		streq_null(t[3 * i + 2], t[3 * j + 2]);
}

static bool has_server_identity(const pv_host *h)
{
	const char *const *t;
	size_t n = pv_host_identities(h, &t);
	for (size_t i = 0; i < n; i++)
		if (t[3 * i] && strcmp(t[3 * i], "server") == 0)
			return true;
	return false;
}

static void add_identity(pv_xml *q, const char *category, const char *type, const char *name)
{
	pv_xml *id = pv_xml_add_child(q, "identity", NULL);
	pv_xml_set_attr(id, "category", category);
	pv_xml_set_attr(id, "type", type);
	/* The core may store a missing name as "": the attribute is optional, never empty. */
	if (name && *name)
		pv_xml_set_attr(id, "name", name);
}

static void add_feature(pv_xml *q, const char *var)
{
	pv_xml_set_attr(pv_xml_add_child(q, "feature", NULL), "var", var);
}

/* Fills the host's disco#info <query/>. */
static void build_host_info(const pv_host *h, pv_xml *q)
{
	const char *const *t;
	size_t nid = pv_host_identities(h, &t);
	for (size_t i = 0; i < nid; i++) {
		bool dup = false;
		for (size_t j = 0; j < i && !dup; j++)
			dup = same_identity(t, i, j);
		if (!dup && t[3 * i] && t[3 * i + 1])
			add_identity(q, t[3 * i], t[3 * i + 1], t[3 * i + 2]);
	}

	const char *const *vars;
	size_t n = pv_host_features(h, &vars);
	const char **v = pv_calloc(n + 1, sizeof(*v));
	size_t m = 0;
	for (size_t i = 0; i < n; i++)
		if (vars[i])
			v[m++] = vars[i];
	m = sort_unique(v, m);
	for (size_t i = 0; i < m; i++)
		add_feature(q, v[i]);
	pv_free(v);
}

/* Checks the request's <query/> and starts the result.  Returns the result's <query/>
 * (the result in *out) or NULL after replying with an error. */
static pv_xml *start_reply(pv_event *ev, const char *ns, pv_stanza **out)
{
	*out = NULL;
	pv_xml *q = pv_xml_first_element(ev->stanza->xml);
	if (!q || !pv_xml_is(q, "query", ns)) {
		pv_reply_error(ev, "cancel", "feature-not-implemented");
		return NULL;
	}
	if (pv_xml_attr(q, "node")) {
		/* We serve no nodes; modules that do hook these events first. */
		pv_reply_error(ev, "cancel", "item-not-found");
		return NULL;
	}
	pv_stanza *r = pv_stanza_iq_result(ev->stanza);
	if (!r)
		return NULL;
	*out = r;
	return pv_xml_add_child(r->xml, "query", ns);
}

static int on_host_info(pv_event *ev, void *ud)
{
	pv_stanza *r;
	pv_xml *q = start_reply(ev, PV_NS_DISCO_INFO, &r);
	if (!q)
		return PV_HANDLED;
	build_host_info(ev->host, q);
	pv_reply(ev, r);
	return PV_HANDLED;
}

static int on_host_items(pv_event *ev, void *ud)
{
	pv_stanza *r;
	pv_xml *q = start_reply(ev, PV_NS_DISCO_ITEMS, &r);
	if (!q)
		return PV_HANDLED;
	pv_reply(ev, r);
	return PV_HANDLED;
}

/* The requester is a session of the account the iq is addressed to. */
static int on_account_info(pv_event *ev, void *ud)
{
	if (!pv_event_from_owner(ev)) {
		pv_reply_error(ev, "cancel", "service-unavailable");
		return PV_HANDLED;
	}
	pv_stanza *r;
	pv_xml *q = start_reply(ev, PV_NS_DISCO_INFO, &r);
	if (!q)
		return PV_HANDLED;
	add_identity(q, "account", "registered", NULL);
	add_feature(q, PV_NS_DISCO_INFO);
	add_feature(q, PV_NS_DISCO_ITEMS);
	pv_event sub = {
		.name = "account-disco-info",
		.host = ev->host,
		.origin = ev->origin,
		.stanza = ev->stanza,
		.payload = q,
	};
	pv_fire(ev->host, sub.name, &sub);
	pv_reply(ev, r);
	return PV_HANDLED;
}

static int on_account_items(pv_event *ev, void *ud)
{
	if (!pv_event_from_owner(ev)) {
		pv_reply_error(ev, "cancel", "service-unavailable");
		return PV_HANDLED;
	}
	pv_stanza *r;
	pv_xml *q = start_reply(ev, PV_NS_DISCO_ITEMS, &r);
	if (!q)
		return PV_HANDLED;
	pv_session *ss[DISCO_MAX_RESOURCES];
	size_t n = pv_host_user_sessions(ev->host, ev->stanza->to.local, ss, DISCO_MAX_RESOURCES);
	if (n > DISCO_MAX_RESOURCES)
		n = DISCO_MAX_RESOURCES;
	for (size_t i = 0; i < n; i++) {
		const pv_jid *j = pv_session_jid(ss[i]);
		/* Section 4.1: "available resources"; a bound but not yet available session is
		 * not one. */
		if (j && pv_session_is_available(ss[i]))
			pv_xml_set_attr(pv_xml_add_child(q, "item", NULL), "jid", j->full);
	}
	pv_reply(ev, r);
	return PV_HANDLED;
}

static const struct {
	const char *event;
	pv_hook_fn fn;
} disco_hooks[] = {
	{"iq-get/host/" PV_NS_DISCO_INFO, on_host_info},
	{"iq-get/host/" PV_NS_DISCO_ITEMS, on_host_items},
	{"iq-get/bare/" PV_NS_DISCO_INFO, on_account_info},
	{"iq-get/bare/" PV_NS_DISCO_ITEMS, on_account_items},
};

static int disco_load(pv_host *h, const pv_conf *conf, void **state)
{
	/* Every entity has an identity (section 3.1); the core may already have added the
	 * server's, and a duplicate would break XEP-0115 hashes. */
	if (!has_server_identity(h))
		pv_host_add_identity(h, "server", "im", "peyvand");
	pv_host_add_feature(h, PV_NS_DISCO_INFO);
	pv_host_add_feature(h, PV_NS_DISCO_ITEMS);
	for (size_t i = 0; i < PV_ARRAY_LEN(disco_hooks); i++)
		pv_hook(h, disco_hooks[i].event, 0, disco_hooks[i].fn, NULL);
	*state = NULL;
	return 0;
}

static void disco_unload(pv_host *h, void *state)
{
	for (size_t i = 0; i < PV_ARRAY_LEN(disco_hooks); i++)
		pv_unhook(h, disco_hooks[i].event, disco_hooks[i].fn, NULL);
}

const pv_module pv_mod_disco = {
	.name = "disco",
	.load = disco_load,
	.unload = disco_unload,
};
