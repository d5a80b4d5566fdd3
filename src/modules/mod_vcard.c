/* mod_vcard.c -- vcard-temp (XEP-0054): an account publishes its vCard; anyone may read
 * it.  The server answers on the account's behalf (section 3.3: never forwarded to a
 * resource).
 *
 *   get, from the owner:  the stored <vCard/>, or an empty <vCard/> when there is none
 *                         (section 3.1 allows item-not-found or the empty element; the
 *                         empty element is what clients handle best);
 *   get, from anyone else: the stored <vCard/>, or service-unavailable when there is
 *                         none (section 3.3 requires an error; service-unavailable also
 *                         does not reveal whether the account exists);
 *   set, owner only:      replaces the whole vCard (section 3.2: no partial updates);
 *                         an empty <vCard/> deletes it; anyone else -> forbidden (auth).
 *   A vCard larger than vcard.max_size (serialised bytes) -> policy-violation (modify):
 *   the XEP sets no limit, so this is local policy (RFC 6120 8.3.3.12).
 * Feature "vcard-temp" on the server (section 4).
 * Storage: pv_store_kv kind "vcard", key "", value = the serialised <vCard/> element.
 * Durability: the result is sent at once; a hold makes the client's XEP-0198 ack wait
 * for the commit.
 *
 * Config (section "vcard"): max_size (bytes, suffixes k/m; default 64k).
 * Threading: hooks run on the host's worker loop; reads are synchronous (pv_store.h);
 * per-host state is read-only after load. */
#include <string.h>

#include "peyvand/pv_module.h"

#define NS_VCARD "vcard-temp"
#define KV_KIND "vcard"
#define KV_KEY ""
#define DEFAULT_MAX_SIZE (64 * 1024)

typedef struct vcard_state {
	size_t max_size;
} vcard_state;

/* ---- handlers ---- */

/* The request's <vCard/>, or NULL after replying with an error. */
static pv_xml *request_vcard(pv_event *ev)
{
	pv_xml *v = pv_xml_first_element(ev->stanza->xml);
	/* Element names are case-sensitive: <vCard/> ("Implementation Notes"). */
	if (!v || !pv_xml_is(v, "vCard", NS_VCARD)) {
		pv_reply_error(ev, "cancel", "feature-not-implemented");
		return NULL;
	}
	return v;
}

static int on_get(pv_event *ev, void *ud)
{
	if (!request_vcard(ev))
		return PV_HANDLED;
	char *val = NULL;
	size_t len = 0;
	pv_xml *stored = NULL;
	int rc = pv_store_kv_get(pv_host_store(ev->host), pv_host_name(ev->host),
		ev->stanza->to.local, KV_KIND, KV_KEY, &val, &len);
	if (rc == 0) {
		stored = pv_xml_parse(val, len);
		if (!stored || !pv_xml_is(stored, "vCard", NS_VCARD)) {
			pv_warn("vcard", "stored vCard does not parse user=%s", ev->stanza->to.local);
			pv_xml_free(stored);
			stored = NULL;
			rc = PV_EIO;
		}
	}
	pv_free(val);
	if (rc < 0 && rc != PV_ENOENT) {
		pv_reply_error(ev, "wait", "internal-server-error");
		return PV_HANDLED;
	}
	if (!stored && !pv_event_from_owner(ev)) {
		pv_reply_error(ev, "cancel", "service-unavailable");
		return PV_HANDLED;
	}
	pv_stanza *r = pv_stanza_iq_result(ev->stanza);
	if (!r) {
		pv_xml_free(stored);
		return PV_HANDLED;
	}
	if (stored)
		pv_xml_add(r->xml, stored);
	else
		pv_xml_add_child(r->xml, "vCard", NS_VCARD);
	pv_reply(ev, r);
	return PV_HANDLED;
}

static int on_set(pv_event *ev, void *ud)
{
	vcard_state *vs = ud;
	if (!pv_event_from_owner(ev)) {
		pv_reply_error(ev, "auth", "forbidden");
		return PV_HANDLED;
	}
	pv_xml *v = request_vcard(ev);
	if (!v)
		return PV_HANDLED;

	pv_store *st = pv_host_store(ev->host);
	const char *host = pv_host_name(ev->host), *user = ev->stanza->to.local;
	/* Only whitespace or nothing inside: there is no vCard left to keep. */
	if (!pv_xml_first_element(v) && v->nattrs == 0) {
		pv_store_kv_put(st, host, user, KV_KIND, KV_KEY, NULL, 0, pv_hold_store_done,
			pv_hold_take());
	} else {
		pv_buf val;
		pv_buf_init(&val);
		/* Serialised detached, so the root carries its xmlns. */
		pv_xml_serialize(v, PV_NS_CLIENT, &val);
		if (val.len > vs->max_size) {
			pv_buf_fini(&val);
			pv_stanza *e = pv_stanza_error(ev->stanza, "modify", "policy-violation",
				"vCard too large");
			if (e)
				pv_reply(ev, e);
			return PV_HANDLED;
		}
		/* The client's ack waits for the commit (pv_hold_*); the store copies val. */
		pv_store_kv_put(st, host, user, KV_KIND, KV_KEY, val.data, val.len,
			pv_hold_store_done, pv_hold_take());
		pv_buf_fini(&val);
	}
	pv_stanza *r = pv_stanza_iq_result(ev->stanza);
	if (r)
		pv_reply(ev, r);
	return PV_HANDLED;
}

static int vcard_load(pv_host *h, const pv_conf *conf, void **state)
{
	vcard_state *vs = pv_calloc(1, sizeof(*vs));
	long long max = pv_cfg_size(conf, "max_size", DEFAULT_MAX_SIZE);
	if (max <= 0) {
		pv_warn("vcard", "vcard.max_size must be positive; using %d host=%s",
			DEFAULT_MAX_SIZE, pv_host_name(h));
		max = DEFAULT_MAX_SIZE;
	}
	vs->max_size = (size_t)max;
	pv_host_add_feature(h, NS_VCARD);
	pv_hook(h, "iq-get/bare/" NS_VCARD, 0, on_get, vs);
	pv_hook(h, "iq-set/bare/" NS_VCARD, 0, on_set, vs);
	*state = vs;
	return 0;
}

static void vcard_unload(pv_host *h, void *state)
{
	pv_unhook(h, "iq-get/bare/" NS_VCARD, on_get, state);
	pv_unhook(h, "iq-set/bare/" NS_VCARD, on_set, state);
	pv_free(state);
}

const pv_module pv_mod_vcard = {
	.name = "vcard",
	.load = vcard_load,
	.unload = vcard_unload,
};
