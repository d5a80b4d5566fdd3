/* mod_ping.c -- XMPP Ping (XEP-0199), the server side: a client (or a peer server) pings
 * this host with <iq type='get'><ping xmlns='urn:xmpp:ping'/></iq> and gets an empty
 * result (XEP-0199 section 4.2 client-to-server, 4.3 server-to-server).  Advertises
 * the urn:xmpp:ping feature (XEP-0199 section 8).
 *
 * Threading: hooks run on the worker loop that owns the host; no state. */
#include "peyvand/pv_module.h"

#define NS_PING "urn:xmpp:ping"

static int on_ping(pv_event *ev, void *ud)
{
	pv_xml *q = pv_xml_first_element(ev->stanza->xml);
	/* Our namespace but not our element: RFC 6120 8.3.3.3. */
	if (!q || !pv_xml_is(q, "ping", NS_PING)) {
		pv_reply_error(ev, "cancel", "feature-not-implemented");
		return PV_HANDLED;
	}
	pv_stanza *r = pv_stanza_iq_result(ev->stanza);
	if (r)
		pv_reply(ev, r);
	return PV_HANDLED;
}

static int ping_load(pv_host *h, const pv_conf *conf, void **state)
{
	pv_host_add_feature(h, NS_PING);
	pv_hook(h, "iq-get/host/" NS_PING, 0, on_ping, NULL);
	*state = NULL;
	return 0;
}

static void ping_unload(pv_host *h, void *state)
{
	pv_unhook(h, "iq-get/host/" NS_PING, on_ping, NULL);
}

const pv_module pv_mod_ping = {
	.name = "ping",
	.load = ping_load,
	.unload = ping_unload,
};
