/* roster.c -- the RFC 6121 presence subscription state machine (Appendix A) and the
 * roster set checks of 2.3.3, as pure functions: no I/O, no allocation, no calls out
 * of this file, so the unit test links this file alone.
 *
 * The state of a user's relation with one contact is one of the nine defined states of
 * A.1 (subscription none/to/from/both, "Pending Out" = we asked the contact, "Pending
 * In" = the contact asked us) plus the pre-approval pseudo-states of 3.4 (approved
 * with None, None + Pending Out or To).  The transitions follow the tables of A.2
 * (outbound stanzas, the user sends) and A.3 (inbound stanzas, the contact sends):
 *  - outbound subscribe and unsubscribe are always routed (A.2.1, A.2.2: so a
 *    contact's server that lost our state can answer and resynchronise);
 *  - outbound subscribed / unsubscribed are routed only when they answer a pending
 *    request or cancel an existing subscription; otherwise they set or cancel a
 *    pre-approval (A.2.3, A.2.4 and 3.4);
 *  - inbound stanzas are delivered only when they change the state (A.3), except an
 *    inbound subscribe from a contact that is already subscribed or pre-approved,
 *    which the server answers itself (3.1.3, 3.4).
 * See roster.h for what each flag of pv_subres asks the caller to do.
 *
 * Threading: none (pure). */
#include "modules/roster.h"

#include <string.h>

static bool has_to(pv_sub s)
{
	return s == PV_SUB_TO || s == PV_SUB_BOTH;
}

static bool has_from(pv_sub s)
{
	return s == PV_SUB_FROM || s == PV_SUB_BOTH;
}

static pv_sub make_sub(bool to, bool from)
{
	return to ? (from ? PV_SUB_BOTH : PV_SUB_TO) : (from ? PV_SUB_FROM : PV_SUB_NONE);
}

pv_subtype pv_subtype_parse(const char *type)
{
	static const char *const names[] = {"subscribe", "subscribed", "unsubscribe",
		"unsubscribed"};
	if (!type)
		return PV_SUBTYPE_INVALID;
	for (size_t i = 0; i < PV_ARRAY_LEN(names); i++)
		if (strcmp(type, names[i]) == 0)
			return (pv_subtype)i;
	return PV_SUBTYPE_INVALID;
}

const char *pv_subtype_name(pv_subtype t)
{
	switch (t) {
	case PV_SUBTYPE_SUBSCRIBE: return "subscribe";
	case PV_SUBTYPE_SUBSCRIBED: return "subscribed";
	case PV_SUBTYPE_UNSUBSCRIBE: return "unsubscribe";
	case PV_SUBTYPE_UNSUBSCRIBED: return "unsubscribed";
	default: return "invalid";
	}
}

const char *pv_sub_name(pv_sub s)
{
	switch (s) {
	case PV_SUB_TO: return "to";
	case PV_SUB_FROM: return "from";
	case PV_SUB_BOTH: return "both";
	default: return "none";
	}
}

const char *pv_substate_name(pv_substate s)
{
	/* Indexed by sub*4 + out*2 + in; combinations A.1 does not define (To + Pending
	 * Out, From + Pending In, Both + anything) cannot be reached through the tables
	 * but are named so a corrupt record still logs readably. */
	static const char *const plain[16] = {
		"None", "None + Pending In", "None + Pending Out", "None + Pending Out/In",
		"To", "To + Pending In", "To + Pending Out", "To + Pending Out/In",
		"From", "From + Pending In", "From + Pending Out", "From + Pending Out/In",
		"Both", "Both + Pending In", "Both + Pending Out", "Both + Pending Out/In",
	};
	static const char *const approved[16] = {
		"None (pre-approved)", "None + Pending In (pre-approved)",
		"None + Pending Out (pre-approved)", "None + Pending Out/In (pre-approved)",
		"To (pre-approved)", "To + Pending In (pre-approved)",
		"To + Pending Out (pre-approved)", "To + Pending Out/In (pre-approved)",
		"From (pre-approved)", "From + Pending In (pre-approved)",
		"From + Pending Out (pre-approved)", "From + Pending Out/In (pre-approved)",
		"Both (pre-approved)", "Both + Pending In (pre-approved)",
		"Both + Pending Out (pre-approved)", "Both + Pending Out/In (pre-approved)",
	};
	unsigned sub = (unsigned)s.sub <= PV_SUB_BOTH ? (unsigned)s.sub : 0;
	unsigned i = sub * 4 + (s.out ? 2 : 0) + (s.in ? 1 : 0);
	return s.approved ? approved[i] : plain[i];
}

bool pv_substate_eq(pv_substate a, pv_substate b)
{
	return a.sub == b.sub && a.out == b.out && a.in == b.in && a.approved == b.approved;
}

bool pv_substate_visible_eq(pv_substate a, pv_substate b)
{
	/* Pending In is not shown in the roster (A.1: the server notes the request but
	 * does not reflect it in the item). */
	return a.sub == b.sub && a.out == b.out && a.approved == b.approved;
}

pv_substate pv_substate_of(const pv_roster_item *it)
{
	pv_substate s = {PV_SUB_NONE, false, false, false};
	if (it) {
		s.sub = it->sub;
		s.out = it->ask;
		s.in = it->pending_in != NULL;
		s.approved = it->approved;
	}
	return s;
}

void pv_substate_apply(pv_roster_item *it, pv_substate s)
{
	it->sub = s.sub;
	it->ask = s.out;
	it->approved = s.approved;
}

static void res_init(pv_subres *res, pv_substate cur)
{
	memset(res, 0, sizeof(*res));
	res->next = cur;
}

void pv_sub_outbound(pv_substate cur, pv_subtype t, pv_subres *res)
{
	res_init(res, cur);
	pv_substate *n = &res->next;
	bool to = has_to(cur.sub), from = has_from(cur.sub);

	switch (t) {
	case PV_SUBTYPE_SUBSCRIBE:
		/* A.2.1: None -> None + Pending Out, None + Pending In -> None + Pending
		 * Out/In, From -> From + Pending Out; every other state unchanged.  Routed in
		 * every state; the contact becomes a roster item (3.1.2). */
		if (!to)
			n->out = true;
		res->route = true;
		res->add_to_roster = true;
		break;
	case PV_SUBTYPE_UNSUBSCRIBE:
		/* A.2.2: the user no longer wants the contact's presence, nor an answer to
		 * a pending request.  Routed in every state. */
		n->sub = make_sub(false, from);
		n->out = false;
		res->route = true;
		break;
	case PV_SUBTYPE_SUBSCRIBED:
		if (cur.in) {
			/* A.2.3: approving the contact's request: None + Pending In -> From,
			 * None + Pending Out/In -> From + Pending Out, To + Pending In -> Both.
			 * 3.1.5: route, push, then send the user's presence; the contact
			 * joins the roster if it was only a stored request (A.1). */
			n->sub = make_sub(to, true);
			n->in = false;
			n->approved = false;
			res->route = true;
			res->send_presence = true;
			res->add_to_roster = true;
		} else if (!from) {
			/* None, None + Pending Out, To: no request to answer -> pre-approval
			 * (3.4), not routed. */
			n->approved = true;
			res->add_to_roster = true;
		}
		/* From, From + Pending Out, Both: already subscribed, nothing to do. */
		break;
	case PV_SUBTYPE_UNSUBSCRIBED:
		if (cur.in || from) {
			/* A.2.4: denying a request or cancelling the contact's subscription:
			 * None + Pending In -> None, None + Pending Out/In -> None + Pending
			 * Out, To + Pending In -> To, From -> None, From + Pending Out ->
			 * None + Pending Out, Both -> To.  3.2.2: a cancelled subscriber
			 * first gets "unavailable" from each available resource. */
			n->sub = make_sub(to, false);
			n->in = false;
			n->approved = false;
			res->route = true;
			res->send_unavailable = from;
		} else {
			/* None, None + Pending Out, To: not routed; cancels a pre-approval
			 * (A.2.4 note 1). */
			n->approved = false;
		}
		break;
	default:
		break;
	}
}

void pv_sub_inbound(pv_substate cur, pv_subtype t, pv_subres *res)
{
	res_init(res, cur);
	pv_substate *n = &res->next;
	bool to = has_to(cur.sub), from = has_from(cur.sub);

	switch (t) {
	case PV_SUBTYPE_SUBSCRIBE:
		if (from) {
			/* A.3.1 From, From + Pending Out, Both: the contact's server lost track;
			 * 3.1.3 says the user's server auto-replies "subscribed". */
			res->reply_subscribed = true;
		} else if (cur.in) {
			/* None + Pending In, None + Pending Out/In, To + Pending In: already
			 * waiting for the user's answer, not delivered again now. */
		} else if (cur.approved) {
			/* 3.4: pre-approved -> approve on the user's behalf, do not deliver:
			 * None -> From, None + Pending Out -> From + Pending Out, To -> Both. */
			n->sub = make_sub(to, true);
			n->approved = false;
			res->reply_subscribed = true;
			res->send_presence = true;
		} else {
			/* None -> None + Pending In, None + Pending Out -> None + Pending Out/In,
			 * To -> To + Pending In; delivered, and kept until answered. */
			n->in = true;
			res->route = true;
			res->store_request = true;
		}
		break;
	case PV_SUBTYPE_UNSUBSCRIBE:
		if (cur.in || from) {
			/* A.3.2: the contact withdraws its request or its subscription:
			 * None + Pending In -> None, None + Pending Out/In -> None + Pending Out,
			 * To + Pending In -> To, From -> None, From + Pending Out -> None +
			 * Pending Out, Both -> To.  3.3.3: a former subscriber gets
			 * "unavailable" from each of the user's available resources. */
			n->sub = make_sub(to, false);
			n->in = false;
			res->route = true;
			res->send_unavailable = from;
		}
		break;
	case PV_SUBTYPE_SUBSCRIBED:
		if (cur.out) {
			/* A.3.3: the contact approved the user's request: None + Pending Out ->
			 * To, None + Pending Out/In -> To + Pending In, From + Pending Out ->
			 * Both.  Any other state: not delivered (3.1.6: the user's server MUST
			 * ignore an approval it did not ask for). */
			n->sub = make_sub(true, from);
			n->out = false;
			res->route = true;
		}
		break;
	case PV_SUBTYPE_UNSUBSCRIBED:
		if (cur.out || to) {
			/* A.3.4: the contact denied the request or cancelled the user's
			 * subscription: None + Pending Out -> None, None + Pending Out/In ->
			 * None + Pending In, To -> None, To + Pending In -> None + Pending In,
			 * From + Pending Out -> From, Both -> From. */
			n->sub = make_sub(false, from);
			n->out = false;
			res->route = true;
		}
		break;
	default:
		break;
	}
}

pv_roster_item *pv_roster_find(pv_roster_item *items, size_t n, const char *jid)
{
	if (!jid)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (items[i].jid && strcmp(items[i].jid, jid) == 0)
			return &items[i];
	return NULL;
}

size_t pv_roster_count(const pv_roster_item *items, size_t n)
{
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (items[i].in_roster)
			k++;
	return k;
}

bool pv_roster_item_is_empty(const pv_roster_item *it)
{
	return !it->in_roster && it->sub == PV_SUB_NONE && !it->ask && !it->approved &&
	       !it->pending_in;
}

int pv_roster_check_groups(const char *const *groups, size_t n, size_t max_len)
{
	/* Length problems first: 2.3.3 answers both with not-acceptable, and an empty
	 * name duplicated is still an empty name. */
	for (size_t i = 0; i < n; i++) {
		size_t len = groups[i] ? strlen(groups[i]) : 0;
		if (len == 0)
			return PV_EINVAL;
		if (len > max_len)
			return PV_ELIMIT;
	}
	/* n is bounded by the stanza size; quadratic is fine and allocation-free. */
	for (size_t i = 0; i < n; i++)
		for (size_t j = i + 1; j < n; j++)
			if (strcmp(groups[i], groups[j]) == 0)
				return PV_EEXIST;
	return 0;
}
