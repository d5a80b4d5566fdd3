/* mod_abuse.c -- abuse reports routed to the sender's provider (issue 6;
 * urn:peyvand:abuse:0, docs/protocol/exchange.md section 6; XEP-0377 on the client side).
 *
 * Sending: on "abuse-report" (mod_consent's report action, mod_blocking's XEP-0377
 * <report/>), when the reported JID is on another server, a message from our domain to
 * the reported domain carries <report xmlns='urn:peyvand:abuse:0' provider= jid= reason=
 * time=> with the <stanza-id id=/> references the user gave -- never the reporter's
 * identity, their text, or message bodies.  It goes through the router like any stanza
 * for another server: the durable s2s queue, through the exchange when that is the route
 * (with an origin proof), so it survives restarts and arrives once.
 * Receiving: a message to our domain from another server's domain with such a report
 * about one of our accounts is stored with the operators' reports
 * (pv_store_report_add: user = the reporting provider, sender = the reported JID,
 * evidence = the report element); anything else is ignored without an answer.
 * Threading: the worker loop; the store write is asynchronous. */
#include <stdio.h>
#include <string.h>

#include "peyvand/pv_jid.h"
#include "peyvand/pv_module.h"

#define NS_ABUSE "urn:peyvand:abuse:0"
#define NS_SID "urn:xmpp:sid:0"
#define MAX_IDS 32

static int on_report(pv_event *ev, void *ud)
{
	pv_host *h = ev->host;
	const pv_xml *rep = ev->payload;
	const char *jid = rep ? pv_xml_attr(rep, "jid") : NULL;
	const char *reason = rep ? pv_xml_attr(rep, "reason") : NULL;
	pv_jid j = {0};
	if (!jid || !reason || pv_jid_parse_str(&j, jid) != 0 || !j.local)
		goto done;
	if (pv_host_is_local(h, j.domain))
		goto done; /* our own user: the local report is all there is */
	pv_xml *m = pv_xml_new("message", PV_NS_CLIENT);
	char *id = pv_random_hex(8);
	pv_xml_set_attr(m, "from", pv_host_name(h));
	pv_xml_set_attr(m, "to", j.domain);
	pv_xml_set_attr(m, "type", "normal");
	pv_xml_set_attr(m, "id", id);
	pv_free(id);
	pv_xml *r = pv_xml_add_child(m, "report", NS_ABUSE);
	char t[24];
	snprintf(t, sizeof(t), "%lld", (long long)pv_wall_s());
	pv_xml_set_attr(r, "provider", pv_host_name(h));
	pv_xml_set_attr(r, "jid", j.bare);
	pv_xml_set_attr(r, "reason", reason);
	pv_xml_set_attr(r, "time", t);
	size_t n = 0;
	for (const pv_xml *c = pv_xml_first_element(rep); c && n < MAX_IDS; c = pv_xml_next_element(c)) {
		if (pv_xml_is(c, "stanza-id", NS_SID) && pv_xml_attr(c, "id")) {
			pv_xml_set_attr(pv_xml_add_child(r, "stanza-id", NS_ABUSE), "id", pv_xml_attr(c, "id"));
			n++;
		}
	}
	pv_stanza *st = pv_stanza_new(m, NULL);
	if (st) {
		pv_info("abuse", "report forwarded host=%s to=%s reason=%s ids=%zu", pv_host_name(h), j.domain,
			reason, n);
		pv_route(h, st);
		pv_stanza_unref(st);
	}
done:
	pv_jid_fini(&j);
	return PV_PASS;
}

static int on_host_message(pv_event *ev, void *ud)
{
	pv_host *h = ev->host;
	const pv_stanza *st = ev->stanza;
	pv_xml *r = pv_xml_child(st->xml, "report", NS_ABUSE);
	if (!r)
		return PV_PASS;
	const char *jid = pv_xml_attr(r, "jid");
	const char *reason = pv_xml_attr(r, "reason");
	pv_jid j = {0};
	/* Only another server's own domain speaks for it, and only about our accounts. */
	if (!st->has_from || st->from.local || pv_host_is_local(h, st->from.domain) || !jid || !reason ||
	    pv_jid_parse_str(&j, jid) != 0 || !j.local || strcmp(j.domain, pv_host_name(h)) != 0) {
		pv_jid_fini(&j);
		return PV_HANDLED; /* ignored, unanswered */
	}
	pv_buf ev_xml;
	pv_buf_init(&ev_xml);
	pv_xml_serialize(r, NULL, &ev_xml);
	char text[300];
	snprintf(text, sizeof(text), "forwarded by %s", st->from.domain);
	pv_report rep = {
		.stamp = pv_wall_s(),
		.host = (char *)pv_host_name(h),
		.user = st->from.domain,
		.sender = j.bare,
		.reason = (char *)reason,
		.text = text,
		.evidence = ev_xml.data,
	};
	pv_store_report_add(pv_host_store(h), &rep, pv_hold_store_done, pv_hold_take());
	pv_info("abuse", "report received host=%s from=%s reason=%s", pv_host_name(h), st->from.domain, reason);
	pv_buf_fini(&ev_xml);
	pv_jid_fini(&j);
	return PV_HANDLED;
}

static int abuse_load(pv_host *h, const pv_conf *conf, void **state)
{
	pv_hook(h, "abuse-report", 0, on_report, NULL);
	pv_hook(h, "message/host", 0, on_host_message, NULL);
	*state = NULL;
	return 0;
}

static void abuse_unload(pv_host *h, void *state)
{
	pv_unhook(h, "abuse-report", on_report, NULL);
	pv_unhook(h, "message/host", on_host_message, NULL);
}

const pv_module pv_mod_abuse = {
	.name = "abuse",
	.load = abuse_load,
	.unload = abuse_unload,
};
