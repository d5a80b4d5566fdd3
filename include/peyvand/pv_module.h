/* pv_module.h -- the API a feature module sees.  Modules include only include/peyvand/.
 *
 * A module is one file (src/modules/mod_<name>.c) that defines
 *     const pv_module pv_mod_<name> = { .name = "<name>", .load = ..., .unload = ... };
 * and is listed in src/core/modules.c.  A host loads the modules named in its config
 * (`modules:` list); load() registers hooks and disco features and may read its own
 * settings from the host config section named after the module.
 *
 * Events (hook names), fired by the core for every stanza that passed the session
 * checks and the filters, on the host that owns the `to` domain:
 *   "iq-get/host/<ns>"  "iq-set/host/<ns>"    iq to the server itself (to = host, or no
 *                                              to and not an account-scoped namespace)
 *   "iq-get/bare/<ns>"  "iq-set/bare/<ns>"    iq to a local bare JID; also an iq with no
 *                                              `to` from a client (RFC 6120 10.3.3: handled
 *                                              on behalf of the account) -- the core sets
 *                                              `to` to the sender's bare JID first
 *   "message/bare" "message/full" "message/host"  fired before the core's default
 *   "presence/bare" "presence/full" "presence/host" routing (RFC 6121 section 8)
 *   "pre-presence"      every presence stanza sent by a local client (ev->origin set; `to`
 *                       absent = broadcast, present = directed or subscription), fired
 *                       before routing; the core's default routes directed presence
 *   "message/offline"   a message (normal/chat, RFC 6121 8.5.2.2.1) to a local user with no
 *                       available resource; unhandled -> service-unavailable error to sender
 *   "session-available" a session's presence went from unavailable to available (its
 *                       initial presence) -- offline messages are delivered then (XEP-0160)
 *   "filter/inbound"    every stanza addressed to a local user, from anyone, before any
 *                       other event for it (XEP-0191 blocking); PV_HANDLED = stop here
 *   "filter/remote"     then, every such stanza whose sender is on another server (the
 *                       consent filter of issue 4); PV_HANDLED = stop here.  The router
 *                       fires both for every stanza kind, however it arrived, so no
 *                       module can deliver a cross-provider stanza around them.
 *   "filter/outbound"   every stanza a local client sends, before routing (blocking)
 *   "stream-features"   ev->payload is <stream:features> to append to (ev->origin set)
 *   "resource-bind"     a session was bound (ev->origin)
 *   "resource-unbind"   a session ended (ev->origin; still readable during the call)
 *   "user-deleted"      ev->user/ev->host_name: drop the user's data
 *   "consent-changed"   ev->user's consent settings were changed in storage by someone
 *                       other than mod_consent (the admin socket): caches must be reloaded
 *   "blocklist-changed" ev->user's XEP-0191 block list was changed in storage by someone
 *                       other than mod_blocking (a consent report, the admin socket):
 *                       caches of it must be reloaded
 *   "abuse-report"      a local user (ev->user) reported someone (mod_consent, mod_blocking):
 *                       ev->payload is <report xmlns='urn:xmpp:reporting:1' reason= jid=>
 *                       (jid = reported bare JID) with XEP-0359 <stanza-id/> children;
 *                       mod_abuse forwards it to the sender's provider (issue 6)
 *   "account-disco-info" fired by mod_disco while answering disco#info for an account
 *                       (XEP-0030, to = bare JID, no node): ev->payload is the <query/>
 *                       being built; append <feature/>/<identity/> elements (PEP, MAM ...)
 *   "phone-changed"     (issue 6, fired by mod_phone after the change is committed)
 *                       ev->user's number or phone settings changed, or the account with
 *                       a number was deleted; ev->payload is <phone xmlns=
 *                       'urn:peyvand:phone:0' number? previous? findable preferred
 *                       updated/> (docs/protocol/phone.md section 8)
 * <ns> is the namespace of the iq's first child element.
 * A hook returns PV_HANDLED to stop further processing (including the core default),
 * PV_PASS to let the next hook (lower priority) or the default run.  An iq get/set that
 * nobody handles is answered with service-unavailable.
 *
 * Threading: every call happens on the worker loop that owns the session/event; module
 * state per host is only touched from there. */
#ifndef PV_MODULE_H
#define PV_MODULE_H

#include <stdbool.h>
#include <stddef.h>

#include "pv_log.h"
#include "pv_stanza.h"
#include "pv_store.h"
#include "pv_util.h"
#include "pv_xml.h"

typedef struct pv_host pv_host;
typedef struct pv_session pv_session;
typedef struct pv_conf pv_conf;

enum { PV_PASS = 0, PV_HANDLED = 1 };

typedef struct pv_event {
	const char *name;
	pv_host *host;
	pv_session *origin;  /* local session the stanza came from, or NULL */
	pv_stanza *stanza;   /* borrowed, immutable; NULL for non-stanza events */
	pv_xml *payload;     /* event-specific, see above */
	const char *user;    /* "user-deleted": localpart */
} pv_event;

typedef int (*pv_hook_fn)(pv_event *ev, void *ud);

typedef struct pv_module {
	const char *name;
	/* conf: the host's config section named after the module (may be NULL). */
	int (*load)(pv_host *h, const pv_conf *conf, void **state);
	void (*unload)(pv_host *h, void *state);
} pv_module;

/* ---- hooks ---- */
/* Higher priority runs first; the core's own handlers use 0. */
void pv_hook(pv_host *h, const char *event, int priority, pv_hook_fn fn, void *ud);
void pv_unhook(pv_host *h, const char *event, pv_hook_fn fn, void *ud);
/* Fire an event; returns PV_HANDLED if a hook handled it. */
int pv_fire(pv_host *h, const char *event, pv_event *ev);

/* ---- the host ---- */
const char *pv_host_name(const pv_host *h);
pv_store *pv_host_store(pv_host *h);
/* The libuv loop the host's events run on (issue 6): a module that must do blocking
 * work (an HTTP request) runs it with uv_queue_work on this loop, so its completion
 * comes back on the loop thread.  Borrowed, lives as long as the server. */
struct uv_loop_s *pv_host_loop(pv_host *h);
/* Module settings live in the host section; this is the whole host section. */
const pv_conf *pv_host_conf(const pv_host *h);
bool pv_host_is_local(const pv_host *h, const char *domain); /* served by this process */
/* A file path from the host's config as the server opens it: absolute paths as they are,
 * relative ones under data_dir (docs/config.md).  A new string; NULL for NULL. */
char *pv_host_path(const pv_host *h, const char *path);
pv_host *pv_host_find(const pv_host *any, const char *domain); /* another local host or NULL */
void pv_host_add_feature(pv_host *h, const char *var);        /* disco#info of the server */
void pv_host_add_identity(pv_host *h, const char *category, const char *type, const char *name);
/* Iteration helpers for disco#info. */
size_t pv_host_features(const pv_host *h, const char *const **vars);
/* Identities added with pv_host_add_identity: *triples points at 3*count borrowed
 * strings (category, type, name; name may be NULL).  Returns count. */
size_t pv_host_identities(const pv_host *h, const char *const **triples);
/* PBKDF2 iteration count for new SCRAM credentials (global key scram_iterations). */
unsigned pv_host_scram_iterations(const pv_host *h);
/* Sessions of a local user (bound resources), newest first.  Returns the count (may be >
 * cap, only cap filled).  Borrowed pointers valid until the loop runs again. */
size_t pv_host_user_sessions(pv_host *h, const char *user, pv_session **out, size_t cap);

/* All bound sessions of a user, without a size limit: fills `small` and allocates only
 * for more than PV_SESSIONS_SMALL.  Borrowed pointers, valid until the loop runs again;
 * pv_user_sessions_fini frees what _get allocated. */
#define PV_SESSIONS_SMALL 16
typedef struct pv_user_sessions {
	pv_session **v;
	size_t n;
	pv_session *small[PV_SESSIONS_SMALL];
} pv_user_sessions;
void pv_user_sessions_get(pv_user_sessions *l, pv_host *h, const char *user);
void pv_user_sessions_fini(pv_user_sessions *l);

/* Is the event's stanza from a resource of the account it is addressed to (the
 * account managing its own data)? */
bool pv_event_from_owner(const pv_event *ev);

/* ---- sessions ---- */
const pv_jid *pv_session_jid(const pv_session *s);   /* full JID once bound, else NULL */
/* Localpart once SASL succeeded (before and after bind), else NULL.  Borrowed. */
const char *pv_session_user(const pv_session *s);
bool pv_session_is_secure(const pv_session *s);      /* the connection is TLS-protected */
/* Peer IP address as text ("192.0.2.1", "2001:db8::1"), or NULL if unknown.  Borrowed,
 * valid while the session lives. */
const char *pv_session_peer_ip(const pv_session *s);
pv_host *pv_session_host(const pv_session *s);
bool pv_session_is_available(const pv_session *s);   /* sent available presence */
int pv_session_priority(const pv_session *s);
/* Last available presence broadcast by the session, as a new stanza from the session's
 * full JID (the caller unrefs it), or NULL. */
pv_stanza *pv_session_presence(const pv_session *s);
/* Record the session's broadcast presence (NULL or type=unavailable -> unavailable).
 * p is borrowed (the session takes its own ref); going from unavailable to available
 * fires "session-available" from inside this call. */
void pv_session_set_presence(pv_session *s, pv_stanza *p);
bool pv_session_is_interested(const pv_session *s);  /* requested the roster */
void pv_session_set_interested(pv_session *s, bool on);
/* Deliver a stanza to the client (borrowed; the session takes its own ref).  A message is
 * appended to the session's stored queue first -- unless it is the client stanza being
 * dispatched, which instead holds its sender's acknowledgement until the recipient has
 * it (core/session.c) -- so a caller may delete its own stored copy right after. */
void pv_session_send(pv_session *s, pv_stanza *st);
/* Per-session module data keyed by an address the module owns; free_fn runs at session end. */
void *pv_session_get_data(const pv_session *s, const void *key);
void pv_session_set_data(pv_session *s, const void *key, void *data, void (*free_fn)(void *));
/* Directed presence targets (RFC 6121 4.6): remembered so unavailable reaches them. */
void pv_session_add_directed(pv_session *s, const char *full_jid);
void pv_session_del_directed(pv_session *s, const char *full_jid);
/* The directed presence targets, like pv_host_user_sessions: returns the count (may be
 * > cap, only cap filled; out may be NULL when cap is 0).  Borrowed strings, valid
 * until the list changes. */
size_t pv_session_directed(const pv_session *s, const char **out, size_t cap);

/* ---- routing ---- */
/* Route a stanza with to/from already set: to a local host (fires the events above) or,
 * later, to a remote domain.  Borrowed: the router takes the refs it needs. */
void pv_route(pv_host *h, pv_stanza *st);
/* Answer the event's stanza: sends to the origin session directly when there is one,
 * else routes.  Takes ownership of reply. */
void pv_reply(pv_event *ev, pv_stanza *reply);
/* Answer the event's iq get/set with a result carrying payload (may be NULL); takes
 * ownership of payload. */
void pv_reply_result(pv_event *ev, pv_xml *payload);
/* pv_reply of a stanza error built with pv_stanza_error (no-op for error stanzas). */
void pv_reply_error(pv_event *ev, const char *etype, const char *cond);
/* The same for a stanza whose event is over (an answer that waited for storage): the
 * error goes from its addressee back to its sender by routing. */
void pv_bounce(pv_host *h, pv_stanza *st, const char *etype, const char *cond);
/* Deliver a stanza to a local bare JID with the RFC 6121 8.5 rules (available resources
 * by priority, offline storage, errors).  Used by modules that generate messages. */
void pv_deliver_bare(pv_host *h, pv_stanza *st);

/* ---- durability of the stanza being handled ----
 * The inbound stanza whose dispatch is running is acknowledged to its sender (XEP-0198)
 * only after every hold taken during its dispatch is released.  Take a hold before a
 * storage write that the stanza's acceptance rests on; release it from the write's done
 * callback -- pv_hold_store_done is a ready-made pv_store_done_fn taking the hold as ud.
 * pv_hold_take returns NULL when nothing waits (stanza not from a client); releasing
 * NULL is a no-op. */
typedef struct pv_hold pv_hold;
pv_hold *pv_hold_take(void);
void pv_hold_release(pv_hold *h);
void pv_hold_store_done(void *ud, int rc);

/* Config access for modules (same getters as the core; see docs/config.md). */
const char *pv_cfg_str(const pv_conf *c, const char *path, const char *def);
long long pv_cfg_int(const pv_conf *c, const char *path, long long def);
bool pv_cfg_bool(const pv_conf *c, const char *path, bool def);
/* Byte size with optional suffix (4096, 64k, 1m); c may be NULL (-> def). */
long long pv_cfg_size(const pv_conf *c, const char *path, long long def);

/* ---- host role and iq tracker (issue 6; src/core/host.c, src/core/iq.c) ---- */
/* Is this host an exchange (config `role: exchange`, docs/config.md)?  An exchange hosts
 * no people: no c2s logins, no registration, s2s only from members with certificates. */
bool pv_host_is_exchange(const pv_host *h);
/* Send an iq get/set (to/from/type set; an id is assigned if absent or already in use)
 * and call cb exactly once: with the result or error stanza (borrowed, valid during the
 * call) that comes back from the JID the iq was sent to, or with NULL after timeout_ms,
 * when the host's modules are reloaded, or at shutdown.  cb may run before pv_iq_send
 * returns (a local addressee, an immediate bounce).  Takes ownership of iq. */
typedef void (*pv_iq_cb)(void *ud, pv_stanza *reply);
/* The host's interconnect members (config interconnect.members keys, as written):
 * returns the count, fills at most cap borrowed strings (valid until the next reload). */
size_t pv_host_members(const pv_host *h, const char **out, size_t cap);
/* Is domain (compared case-insensitively) one of the host's interconnect members? */
bool pv_host_is_member(const pv_host *h, const char *domain);
void pv_iq_send(pv_host *h, pv_stanza *iq, unsigned timeout_ms, pv_iq_cb cb, void *ud);

#endif
