/* mod_private.c -- Private XML Storage (XEP-0049): an account stores arbitrary XML on
 * the server, keyed by the namespace of the stored element, and reads it back.
 *
 *   set: <query xmlns='jabber:iq:private'><foo xmlns='x:y'>...</foo></query>
 *        replaces what is stored under 'x:y' with the <foo/> element(s).  Section 2.3
 *        lets a set carry several elements of one namespace; elements of different
 *        namespaces are stored separately, each under its own namespace.
 *   get: <query xmlns='jabber:iq:private'><foo xmlns='x:y'/></query> returns what is
 *        stored under 'x:y', or the requested element empty when nothing is.
 * Errors (section 2.3 and the table in section 3):
 *   another entity than the account itself        -> forbidden (auth)
 *   no child element in the query                 -> not-acceptable (modify)
 *   a get naming more than one namespace          -> bad-request (modify)
 *   a reserved namespace (jabber:client, jabber:server, jabber:iq:private itself)
 *                                                 -> not-acceptable (modify)
 *   The XEP also lists every 'jabber:' / 'http://jabber.org/' namespace and vcard-temp
 *   as reserved but makes the error OPTIONAL; we refuse only the three above, which
 *   cannot be meant as private data, so no existing client breaks.
 * Storage: pv_store_kv, kind "private", key = the namespace, value = the elements
 * serialised inside a <query xmlns='jabber:iq:private'/> wrapper (one well-formed
 * element, so pv_xml_parse reads it back).
 * Durability: the result is sent at once, but each write takes a hold so the client's
 * XEP-0198 ack for the set waits for the commit.
 * TODO: a per-account quota (count and bytes of namespaces); today only the stanza size
 * limit bounds one value, not how many namespaces an account fills.
 *
 * Threading: hooks run on the host's worker loop; the storage read is synchronous (see
 * pv_store.h); no module state. */
#include <string.h>

#include "peyvand/pv_module.h"

#define NS_PRIVATE "jabber:iq:private"
#define KV_KIND "private"
/* A namespace is a URI; anything longer than a JID is not one a client means. */
#define MAX_NS_LEN 1023

static const char *const reserved_ns[] = {PV_NS_CLIENT, PV_NS_SERVER, NS_PRIVATE};

/* The namespace an element is in (NULL ns means inherited from its parent). */
static const char *elem_ns(const pv_xml *x)
{
	for (; x; x = x->parent)
		if (x->ns)
			return x->ns;
	return NULL;
}

/* Whether a namespace may key private data. */
static bool ns_acceptable(const char *ns)
{
	if (!ns || !*ns || strlen(ns) > MAX_NS_LEN)
		return false;
	for (size_t i = 0; i < PV_ARRAY_LEN(reserved_ns); i++)
		if (strcmp(ns, reserved_ns[i]) == 0)
			return false;
	return true;
}

/* ---- handlers ---- */

/* The iq comes from a session of the account it is addressed to (the core sets `to` to
 * the sender's bare JID when the client left it out). */
/* Common checks; returns the <query/> or NULL after replying with an error. */
static pv_xml *check_request(pv_event *ev)
{
	if (!pv_event_from_owner(ev)) {
		pv_reply_error(ev, "auth", "forbidden");
		return NULL;
	}
	pv_xml *q = pv_xml_first_element(ev->stanza->xml);
	if (!q || !pv_xml_is(q, "query", NS_PRIVATE)) {
		pv_reply_error(ev, "cancel", "feature-not-implemented");
		return NULL;
	}
	pv_xml *c = pv_xml_first_element(q);
	if (!c) {
		pv_reply_error(ev, "modify", "not-acceptable");
		return NULL;
	}
	for (; c; c = pv_xml_next_element(c)) {
		if (!ns_acceptable(elem_ns(c))) {
			pv_reply_error(ev, "modify", "not-acceptable");
			return NULL;
		}
	}
	return q;
}

static int on_get(pv_event *ev, void *ud)
{
	pv_xml *q = check_request(ev);
	if (!q)
		return PV_HANDLED;
	pv_xml *want = pv_xml_first_element(q);
	const char *ns = elem_ns(want);
	/* "A client MUST NOT query for more than one namespace in a single IQ get." */
	for (pv_xml *c = pv_xml_next_element(want); c; c = pv_xml_next_element(c)) {
		if (strcmp(elem_ns(c), ns) != 0) {
			pv_reply_error(ev, "modify", "bad-request");
			return PV_HANDLED;
		}
	}

	char *val = NULL;
	size_t len = 0;
	pv_xml *stored = NULL;
	int rc = pv_store_kv_get(pv_host_store(ev->host), pv_host_name(ev->host),
		ev->stanza->to.local, KV_KIND, ns, &val, &len);
	if (rc == 0) {
		stored = pv_xml_parse(val, len);
		if (!stored)
			pv_warn("private", "stored value does not parse user=%s ns=%s",
				ev->stanza->to.local, ns);
	}
	pv_free(val);
	if ((rc < 0 && rc != PV_ENOENT) || (rc == 0 && !stored)) {
		pv_reply_error(ev, "wait", "internal-server-error");
		return PV_HANDLED;
	}

	pv_stanza *r = pv_stanza_iq_result(ev->stanza);
	if (!r) {
		pv_xml_free(stored);
		return PV_HANDLED;
	}
	pv_xml *rq = pv_xml_add_child(r->xml, "query", NS_PRIVATE);
	if (stored) {
		pv_xml *c;
		while ((c = stored->first)) {
			pv_xml_detach(c);
			if (c->name)
				pv_xml_add(rq, c);
			else
				pv_xml_free(c); /* whitespace between stored elements */
		}
		pv_xml_free(stored);
	} else {
		/* Nothing stored: the requested element, empty (section 2.3 examples). */
		pv_xml_add_child(rq, want->name, ns);
	}
	pv_reply(ev, r);
	return PV_HANDLED;
}

/* Serialises the children of q in namespace ns into one stored value. */
static void serialise_ns(const pv_xml *q, const char *ns, pv_buf *out)
{
	pv_xml *wrap = pv_xml_new("query", NS_PRIVATE);
	for (pv_xml *c = pv_xml_first_element(q); c; c = pv_xml_next_element(c)) {
		if (strcmp(elem_ns(c), ns) != 0)
			continue;
		pv_xml *d = pv_xml_dup(c);
		/* The copy is detached: pin the namespace it inherited. */
		if (!d->ns)
			d->ns = pv_strdup(ns);
		pv_xml_add(wrap, d);
	}
	pv_xml_serialize(wrap, PV_NS_CLIENT, out);
	pv_xml_free(wrap);
}

static int on_set(pv_event *ev, void *ud)
{
	pv_xml *q = check_request(ev);
	if (!q)
		return PV_HANDLED;
	pv_store *st = pv_host_store(ev->host);
	const char *host = pv_host_name(ev->host), *user = ev->stanza->to.local;
	pv_buf val;
	pv_buf_init(&val);
	for (pv_xml *c = pv_xml_first_element(q); c; c = pv_xml_next_element(c)) {
		const char *ns = elem_ns(c);
		/* Store each namespace once, at its first element. */
		bool seen = false;
		for (pv_xml *p = pv_xml_first_element(q); p != c && !seen; p = pv_xml_next_element(p))
			seen = strcmp(elem_ns(p), ns) == 0;
		if (seen)
			continue;
		pv_buf_reset(&val);
		serialise_ns(q, ns, &val);
		/* The client's ack waits for the commit (pv_hold_*); the store copies val. */
		pv_store_kv_put(st, host, user, KV_KIND, ns, val.data, val.len, pv_hold_store_done,
			pv_hold_take());
	}
	pv_buf_fini(&val);
	pv_stanza *r = pv_stanza_iq_result(ev->stanza);
	if (r)
		pv_reply(ev, r);
	return PV_HANDLED;
}

static int private_load(pv_host *h, const pv_conf *conf, void **state)
{
	/* XEP-0049 defines no disco feature; we advertise its namespace as deployed servers do. */
	pv_hook(h, "iq-get/bare/" NS_PRIVATE, 0, on_get, NULL);
	pv_hook(h, "iq-set/bare/" NS_PRIVATE, 0, on_set, NULL);
	pv_host_add_feature(h, NS_PRIVATE);
	*state = NULL;
	return 0;
}

static void private_unload(pv_host *h, void *state)
{
	pv_unhook(h, "iq-get/bare/" NS_PRIVATE, on_get, NULL);
	pv_unhook(h, "iq-set/bare/" NS_PRIVATE, on_set, NULL);
}

const pv_module pv_mod_private = {
	.name = "private",
	.load = private_load,
	.unload = private_unload,
};
