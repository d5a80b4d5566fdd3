/* consent.h -- the operations of mod_consent, shared by its IQ protocol, its ad-hoc
 * commands (mod_adhoc) and the admin socket.  Protocol: docs/protocol/consent.md.
 * All calls on the worker loop; `user` is a normalised localpart of host h. */
#ifndef PV_MODULES_CONSENT_H
#define PV_MODULES_CONSENT_H

#include "peyvand/pv_module.h"

#define PV_NS_CONSENT "urn:peyvand:consent:0"

/* What happens to a stanza from another provider (pure; see mod_consent.c). */
typedef enum { PV_CONSENT_DELIVER, PV_CONSENT_HOLD, PV_CONSENT_DROP } pv_consent_decision;
pv_consent_decision pv_consent_decide(const pv_consent *c, const char *sender_bare,
	const char *sender_domain, bool in_roster, bool allow_everyone);
const char *pv_consent_policy_name(pv_consent_policy p);
int pv_consent_policy_parse(const char *s, pv_consent_policy *out);

/* Apply a <consent/> element (policy attribute, <provider/> and <sender/> children) for
 * the user; logs each change.  Returns 0 or a stanza error condition in *cond. */
int pv_consent_apply(pv_host *h, const char *user, const pv_xml *consent, const char **cond);
/* The user's settings / held requests / one request's stanzas / history as elements
 * of the protocol (new trees, caller frees). */
pv_xml *pv_consent_settings_xml(pv_host *h, const char *user);
pv_xml *pv_consent_requests_xml(pv_host *h, const char *user);
pv_xml *pv_consent_request_xml(pv_host *h, const char *user, const char *sender);
pv_xml *pv_consent_history_xml(pv_host *h, const char *user, uint64_t after);
/* Request actions; PV_ENOENT when nothing is held from sender. */
int pv_consent_accept(pv_host *h, const char *user, const char *sender);
int pv_consent_decline(pv_host *h, const char *user, const char *sender);
int pv_consent_report(pv_host *h, const char *user, const char *sender, const char *reason,
	const char *text);
/* Drop cached settings (after a change made elsewhere, e.g. the admin socket). */
void pv_consent_invalidate(pv_host *h, const char *user);

#endif
