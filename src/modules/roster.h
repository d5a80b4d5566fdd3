/* roster.h -- roster logic shared by mod_roster and mod_presence (RFC 6121 sections 2
 * and 3, Appendix A), not a module itself.
 *
 * Two halves:
 *  - the pure subscription state machine and item checks (roster.c): no I/O, no
 *    allocation, linkable alone (tests/unit/modules/test_roster.c);
 *  - loading, storing and pushing a user's roster (defined in mod_roster.c, which owns
 *    the roster feature): store reads are synchronous and FIFO-consistent with earlier
 *    writes (pv_store.h), so there is no cache; every change bumps the roster version
 *    (RFC 6121 2.6, XEP-0237: a counter kept by the store) and is pushed to the
 *    account's interested resources (2.1.6).
 *
 * A roster record (pv_roster_item) for a contact exists while anything is known about
 * them: an item the user added (in_roster), a subscription in either direction, an
 * outbound request (ask), a pre-approval, or a stored inbound request (pending_in,
 * which alone does not make a roster item -- Appendix A.1, "None + Pending In").
 *
 * Threading: the worker loop that owns the host. */
#ifndef PV_MODULES_ROSTER_H
#define PV_MODULES_ROSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "peyvand/pv_module.h"

/* ---- the subscription state machine (roster.c, pure) ---- */

/* The four subscription-related presence types (RFC 6121 3). */
typedef enum {
	PV_SUBTYPE_INVALID = -1,
	PV_SUBTYPE_SUBSCRIBE = 0,
	PV_SUBTYPE_SUBSCRIBED,
	PV_SUBTYPE_UNSUBSCRIBE,
	PV_SUBTYPE_UNSUBSCRIBED,
} pv_subtype;

/* One of the nine defined states of Appendix A.1 plus the pre-approval flag (3.4),
 * from the user's side of the relation with one contact.  `out` is "Pending Out"
 * (ask='subscribe'), `in` is "Pending In" (a stored inbound request). */
typedef struct pv_substate {
	pv_sub sub;
	bool out;
	bool in;
	bool approved;
} pv_substate;

/* What a subscription stanza does, besides moving to `next`. */
typedef struct pv_subres {
	pv_substate next;
	/* Outbound (A.2): route the stanza to the contact.  Inbound (A.3): deliver it to
	 * the user's available resources. */
	bool route;
	/* Inbound subscribe while the contact is already subscribed or pre-approved:
	 * answer "subscribed" on the user's behalf, do not deliver (3.1.3, 3.4). */
	bool reply_subscribed;
	/* The contact just gained a subscription to the user: send them the current
	 * presence of each of the user's available resources (3.1.5). */
	bool send_presence;
	/* The contact just lost its subscription to the user: send them "unavailable"
	 * from each of the user's available resources (3.2.2, 3.3.3). */
	bool send_unavailable;
	/* Inbound subscribe: keep the complete stanza as the pending request, to be
	 * delivered again at the user's next login until answered (3.1.3). */
	bool store_request;
	/* The contact becomes (or stays) a roster item (3.1.2, 3.1.5, 3.4). */
	bool add_to_roster;
} pv_subres;

/* "subscribe" ... "unsubscribed" -> the type; anything else PV_SUBTYPE_INVALID. */
pv_subtype pv_subtype_parse(const char *type);
const char *pv_subtype_name(pv_subtype t);
/* "none" | "to" | "from" | "both" (the roster 'subscription' attribute). */
const char *pv_sub_name(pv_sub s);
/* Appendix A.1 name ("None + Pending Out/In", ...), " (pre-approved)" appended when
 * approved; for logs and tests.  Static string. */
const char *pv_substate_name(pv_substate s);
bool pv_substate_eq(pv_substate a, pv_substate b);

/* The state of a record; it may be NULL (the contact is unknown: "None"). */
pv_substate pv_substate_of(const pv_roster_item *it);
/* Copies sub/ask/approved into the record (pending_in is the caller's: it owns the
 * stored stanza). */
void pv_substate_apply(pv_roster_item *it, pv_substate s);

/* The user sent a subscription stanza to the contact (Appendix A.2). */
void pv_sub_outbound(pv_substate cur, pv_subtype t, pv_subres *res);
/* A subscription stanza from the contact reached the user (Appendix A.3). */
void pv_sub_inbound(pv_substate cur, pv_subtype t, pv_subres *res);

/* Whether the client-visible attributes (subscription, ask, approved) differ: a roster
 * push is due when they do (or when the record joins or leaves the roster). */
bool pv_substate_visible_eq(pv_substate a, pv_substate b);

/* The record for a bare JID, or NULL.  Borrowed. */
pv_roster_item *pv_roster_find(pv_roster_item *items, size_t n, const char *jid);
/* Records that are roster items (in_roster). */
size_t pv_roster_count(const pv_roster_item *items, size_t n);
/* A record that carries no state at all can be deleted. */
bool pv_roster_item_is_empty(const pv_roster_item *it);
/* RFC 6121 2.3.3 checks on the <group/> names of a roster set: 0, PV_EINVAL (a name of
 * zero length: not-acceptable), PV_ELIMIT (longer than max_len bytes: not-acceptable)
 * or PV_EEXIST (a duplicate: bad-request). */
int pv_roster_check_groups(const char *const *groups, size_t n, size_t max_len);

/* ---- the stored roster (mod_roster.c) ---- */

typedef struct pv_roster {
	pv_roster_item *items; /* every record, in_roster or not */
	size_t n;
	uint64_t ver;          /* the version of the last committed change */
} pv_roster;

/* Loads a user's roster (synchronous).  0 or a negative PV_E*; on error r is empty. */
int pv_roster_load(pv_host *h, const char *user, pv_roster *r);
void pv_roster_fini(pv_roster *r);
/* Commits one record: writes it, or deletes it when pv_roster_item_is_empty, with the
 * next version (r->ver is bumped).  The write takes a hold (pv_hold_take), so the
 * stanza being handled is acknowledged only after the commit.  When `push`, sends a
 * roster push of the record (subscription='remove' when it left the roster, i.e. it
 * is deleted or not in_roster) to every interested resource.  `it` is borrowed; it may
 * point into r->items or elsewhere. */
void pv_roster_commit(pv_host *h, const char *user, pv_roster *r, const pv_roster_item *it,
	bool push);
/* Sends one roster push (2.1.6) carrying `it` and version `ver` to every interested
 * resource of the user. */
void pv_roster_push(pv_host *h, const char *user, uint64_t ver, const pv_roster_item *it,
	bool remove);
/* <item xmlns='jabber:iq:roster' jid=.. name=.. subscription=.. [ask] [approved]>
 * <group/>..</item>; subscription='remove' and nothing else when `remove`.  Caller
 * owns the element. */
pv_xml *pv_roster_item_xml(const pv_roster_item *it, bool remove);
/* Frees the strings of a record the caller built (not one from pv_store_roster_get,
 * whose array is freed by pv_roster_items_free). */
void pv_roster_item_fini(pv_roster_item *it);

#endif
