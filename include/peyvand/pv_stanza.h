/* pv_stanza.h -- a routed stanza: an XML tree plus its parsed addresses, refcounted.
 *
 * Once handed to the router a stanza is immutable: handlers that need to change it
 * (stamp a delay, rewrite to) make a copy with pv_stanza_copy.  The serialised form is
 * cached on first use and shared by every recipient session (serialise once, fan out).
 * Refcounts are not atomic: a stanza belongs to one worker thread; to cross threads,
 * copy it. */
#ifndef PV_STANZA_H
#define PV_STANZA_H

#include "pv_jid.h"
#include "pv_xml.h"

typedef enum { PV_ST_MESSAGE, PV_ST_PRESENCE, PV_ST_IQ, PV_ST_OTHER } pv_stanza_kind;

typedef struct pv_stanza {
	int refs;
	pv_stanza_kind kind;
	pv_xml *xml;       /* owned; name is message|presence|iq, ns jabber:client */
	pv_jid to, from;   /* parsed; domain NULL when the attribute is absent; may live in
	                    * xml's allocation (stanza.c): read or pv_jid_dup, never take */
	bool has_to, has_from;
	const char *type;  /* borrowed from xml attrs; NULL when absent */
	const char *id;    /* borrowed from xml attrs; NULL when absent */
	pv_buf wire;       /* cached serialisation (ns jabber:client), empty until first use */
} pv_stanza;

/* Take ownership of xml and parse to/from.  Returns NULL (and frees nothing: caller still
 * owns xml) when an address is not a valid JID; *bad_attr says which ("to"/"from"). */
pv_stanza *pv_stanza_new(pv_xml *xml, const char **bad_attr);
/* Parse a stanza we serialised ourselves (offline storage, queues): a new stanza with
 * refcount 1, or NULL when the bytes are not one valid stanza. */
pv_stanza *pv_stanza_parse(const char *xml, size_t len);
/* A new <presence/> (refcount 1) with the given type/from/to (each may be NULL), or NULL
 * when from/to is not a valid JID. */
pv_stanza *pv_stanza_presence(const char *type, const char *from, const char *to);
pv_stanza *pv_stanza_ref(pv_stanza *s);
void pv_stanza_unref(pv_stanza *s);
/* Deep copy with refcount 1 (mutable until routed). */
pv_stanza *pv_stanza_copy(const pv_stanza *s);
/* Set to/from on a not-yet-routed stanza (NULL removes); updates xml and parsed jids. */
void pv_stanza_set_to(pv_stanza *s, const char *jid);
void pv_stanza_set_from(pv_stanza *s, const char *jid);
/* The same from an address already parsed (a session's own): a copy, not a parse, of
 * what every stanza a client sends is stamped with (RFC 6120 8.1.2.1). */
void pv_stanza_set_from_jid(pv_stanza *s, const pv_jid *jid);
/* Serialised bytes (cached). */
const pv_buf *pv_stanza_wire(pv_stanza *s);

/* Build an error reply (RFC 6120 8.3): swaps to/from, type="error", keeps the original
 * payload for message/presence (not for iq results), adds
 * <error type=etype><cond xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>[<text>]</error>.
 * Returns a new stanza (refcount 1) or NULL when `s` is itself an error (never answer
 * an error with an error). */
pv_stanza *pv_stanza_error(const pv_stanza *s, const char *etype, const char *cond, const char *text);
/* An empty iq result to an iq get/set (to/from swapped, same id). */
pv_stanza *pv_stanza_iq_result(const pv_stanza *s);

#define PV_NS_CLIENT "jabber:client"
#define PV_NS_SERVER "jabber:server"
#define PV_NS_STREAM "http://etherx.jabber.org/streams"
#define PV_NS_STANZAS "urn:ietf:params:xml:ns:xmpp-stanzas"
#define PV_NS_STREAMS "urn:ietf:params:xml:ns:xmpp-streams"
#define PV_NS_TLS "urn:ietf:params:xml:ns:xmpp-tls"
#define PV_NS_SASL "urn:ietf:params:xml:ns:xmpp-sasl"
#define PV_NS_BIND "urn:ietf:params:xml:ns:xmpp-bind"
#define PV_NS_SESSION "urn:ietf:params:xml:ns:xmpp-session"
#define PV_NS_SM "urn:xmpp:sm:3"
#define PV_NS_SASL2 "urn:xmpp:sasl:2"
#define PV_NS_BIND2 "urn:xmpp:bind:0"
#define PV_NS_DELAY "urn:xmpp:delay"
#define PV_NS_ROSTER "jabber:iq:roster"
#define PV_NS_DISCO_INFO "http://jabber.org/protocol/disco#info"
#define PV_NS_DISCO_ITEMS "http://jabber.org/protocol/disco#items"

#endif
