/* mod_exchange.c -- number addressing at an exchange (issue 6; docs/protocol/exchange.md
 * "Number addresses").
 *
 * On a host with role: exchange, <blinded>@<exchange domain> (blinded = pv_blind of an
 * E.164 number with the interconnect's key: 52 base32 characters) stands for the person
 * with that number.  A message, presence or iq to it goes to the registry's preferred
 * account (pv_store_registry_preferred, kept by mod_directory) with only its `to`
 * changed, through the relay (pv_route -> s2s_relay.c), so the origin proof the sender's
 * provider made still verifies there (it names the number address it was sent to).  The
 * recipient's provider applies its consent rules as for any stanza from another server.
 * Replies come from the real account, directly or via the exchange.
 * An unknown or withdrawn number gets exactly what a provider gives for a missing
 * account: nothing for messages and presence, service-unavailable for iq get/set (from
 * the number address), so the wire does not tell them apart.
 * Hooked on "filter/inbound" (every stanza for a localpart of the host, before any other
 * handling), because the exchange has no accounts for the router's own rules.
 * Threading: the worker loop; the registry read is synchronous (indexed, small). */
#include <string.h>

#include "peyvand/pv_directory.h"
#include "peyvand/pv_module.h"

typedef struct xstate {
	uint64_t found, unknown;
} xstate;

static bool is_request(const pv_stanza *st)
{
	return st->kind == PV_ST_IQ && st->type && (strcmp(st->type, "get") == 0 || strcmp(st->type, "set") == 0);
}

static int on_number(pv_event *ev, void *ud)
{
	xstate *xs = ud;
	pv_host *h = ev->host;
	pv_stanza *st = ev->stanza;
	char *jid = NULL;
	if (!st->to.local || !pv_host_is_exchange(h))
		return PV_PASS;
	int rc = pv_blind_is_valid(st->to.local)
			 ? pv_store_registry_preferred(pv_host_store(h), pv_host_name(h), st->to.local, &jid)
			 : PV_ENOENT;
	if (rc != 0 || !jid) {
		/* RFC 6121 8.5.1 as a provider answers for an account it does not have. */
		xs->unknown++;
		if (is_request(st))
			pv_reply_error(ev, "cancel", "service-unavailable");
		pv_free(jid);
		return PV_HANDLED;
	}
	xs->found++;
	pv_stanza *cp = pv_stanza_copy(st);
	pv_stanza_set_to(cp, jid);
	pv_debug("exchange", "number address resolved kind=%d to_domain=%s", (int)st->kind,
		strchr(jid, '@') ? strchr(jid, '@') + 1 : jid);
	pv_route(h, cp);
	pv_stanza_unref(cp);
	pv_free(jid);
	return PV_HANDLED;
}

static int exchange_load(pv_host *h, const pv_conf *conf, void **state)
{
	xstate *xs = pv_calloc(1, sizeof(*xs));
	if (!pv_host_is_exchange(h))
		pv_warn("exchange", "host %s loads mod_exchange but is not role: exchange: number addresses are off",
			pv_host_name(h));
	pv_hook(h, "filter/inbound", 100, on_number, xs);
	*state = xs;
	return 0;
}

static void exchange_unload(pv_host *h, void *state)
{
	pv_unhook(h, "filter/inbound", on_number, state);
	pv_free(state);
}

const pv_module pv_mod_exchange = {
	.name = "exchange",
	.load = exchange_load,
	.unload = exchange_unload,
};
