/* s2s.h -- server-to-server links (RFC 6120; XEP-0178 SASL EXTERNAL, XEP-0220 dialback,
 * XEP-0198 on s2s, XEP-0368 direct TLS).  Internal to the core.
 *
 * Outbound (s2s_out.c): one link per (local host, remote domain) with a durable queue in
 * storage.  A stanza for a remote domain is pushed to the queue before its sender is
 * acknowledged; it leaves the queue when the peer acknowledged it (XEP-0198) or, with a
 * peer that offers no stream management, when the kernel took the bytes (at-least-once
 * up to the peer's TCP stack -- see docs/s2s.md).  Each stanza carries an XEP-0359
 * <stanza-id by='local' id='EPOCH:SEQ'/> so a receiving peyvand drops resends.
 * Inbound (s2s_in.c): streams from peers; authenticated by certificate (EXTERNAL) or
 * dialback; every stanza's 'from' must be the authenticated domain; resends are
 * dropped by the per-link high-water mark committed in the same transaction as the
 * delivery.
 * Threading: the worker loop only. */
#ifndef PV_XMPP_S2S_H
#define PV_XMPP_S2S_H

#include "core/core.h"
#include "net/resolver.h"
#include "xmpp/s2s_auth.h"

#define PV_NS_SERVER_DIALBACK "jabber:server:dialback"
#define PV_NS_DIALBACK_FEATURE "urn:xmpp:features:dialback"
#define PV_NS_SID "urn:xmpp:sid:0"

typedef struct pv_s2s pv_s2s;

/* Reads the s2s config section, restores queues from storage, opens the listeners.
 * With no `s2s:` section, links are disabled: stanzas for remote domains bounce. */
int pv_s2s_start(pv_server *srv, char **err);
void pv_s2s_stop(pv_server *srv);      /* close links gracefully (SIGTERM) */
void pv_s2s_free(pv_server *srv);
int pv_s2s_reload(pv_server *srv, char **err);
bool pv_s2s_enabled(const pv_server *srv);
size_t pv_s2s_nconns(const pv_server *srv);

/* Queue a stanza from local host `from` for its remote `to` domain (takes the current
 * hold, see pv_hold_take).  Returns 0, or <0 when links are disabled or the remote is
 * refused by policy (the caller bounces). */
int pv_s2s_send(pv_server *srv, pv_host *from, pv_stanza *st);

/* issue 6: an exchange host forwards `st` (from a member provider, for another member's
 * domain) to that domain's link queue, or answers it with a relay error.  Returns 0 when
 * handled, PV_EPERM when h is not an exchange (s2s_relay.c). */
int pv_s2s_relay(pv_server *srv, pv_host *h, pv_stanza *st);

/* Counters (one place, for `peyvandctl stats` and the metrics endpoint to come). */
void pv_s2s_stats(const pv_server *srv, pv_buf *out);
/* peyvandctl: "links", "queue flush|pause|resume|drop DOMAIN". */
int pv_s2s_admin(pv_server *srv, int argc, char **argv, pv_buf *out);

/* ---- shared between s2s_in.c and s2s_out.c ---- */
typedef struct pv_s2s_conf {
	bool require_tls, dialback;
	X509_STORE *trust;          /* NULL: system store */
	uint64_t queue_expiry_ms, retry_min_ms, retry_max_ms, connect_timeout_ms, idle_timeout_ms;
	unsigned max_conn_per_domain;
	double stanza_rate;
	size_t max_stanza;
} pv_s2s_conf;

const pv_s2s_conf *pv_s2s_conf_get(const pv_server *srv);
/* The local host's s2s TLS contexts (server side asks for the peer's certificate). */
SSL_CTX *pv_s2s_server_ctx(pv_host *h);
SSL_CTX *pv_s2s_client_ctx(pv_host *h);
const pv_membership *pv_s2s_membership(pv_host *h);
void pv_s2s_dialback_key(const pv_server *srv, const char *receiving, const char *originating,
	const char *stream_id, char out[65]);
/* Inbound dialback verification: ask `originating`'s authoritative server whether `key`
 * is valid for (receiving, originating, stream_id); cb(ud, valid) runs once, later. */
void pv_s2s_verify_dialback(pv_server *srv, const char *receiving, const char *originating,
	const char *stream_id, const char *key, void (*cb)(void *ud, bool valid), void *ud);
void pv_s2s_verify_cancel(pv_server *srv, void *ud);

#endif
