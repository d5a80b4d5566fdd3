/* module_util.c -- helpers of pv_module.h built only on the module API itself
 * (pv_user_sessions_get/_fini, pv_event_from_owner, pv_reply_result).  Their own file so that module unit
 * tests, which fake the host and session functions (tests/unit/modules/fake_core.h), can
 * link them alone. */
#include "peyvand/pv_module.h"

void pv_user_sessions_get(pv_user_sessions *l, pv_host *h, const char *user)
{
	l->v = l->small;
	l->n = pv_host_user_sessions(h, user, l->small, PV_SESSIONS_SMALL);
	if (l->n > PV_SESSIONS_SMALL) {
		size_t want = l->n;
		l->v = pv_malloc(want * sizeof(*l->v));
		l->n = pv_host_user_sessions(h, user, l->v, want);
		if (l->n > want)
			l->n = want;
	}
}

void pv_user_sessions_fini(pv_user_sessions *l)
{
	if (l->v != l->small)
		pv_free(l->v);
}

bool pv_event_from_owner(const pv_event *ev)
{
	const pv_jid *me = ev->origin ? pv_session_jid(ev->origin) : NULL;
	return me && ev->stanza->has_to && pv_jid_bare_eq(me, &ev->stanza->to);
}

void pv_reply_result(pv_event *ev, pv_xml *payload)
{
	pv_stanza *r = pv_stanza_iq_result(ev->stanza);
	if (!r) {
		pv_xml_free(payload);
		return;
	}
	if (payload)
		pv_xml_add(r->xml, payload);
	pv_reply(ev, r);
}
