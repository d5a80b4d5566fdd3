/* s2s_int.h -- structures shared by s2s.c, s2s_out.c, s2s_in.c and s2s_deliver.c only. */
#ifndef PV_XMPP_S2S_INT_H
#define PV_XMPP_S2S_INT_H

#include "xmpp/s2s.h"

/* XEP-0288 bidirectional streams */
#define PV_NS_BIDI "urn:xmpp:bidi"
#define PV_NS_BIDI_FEATURE "urn:xmpp:features:bidi"

typedef struct pv_s2s_link pv_s2s_link;
typedef struct pv_s2s_in pv_s2s_in;

/* The receiving half of a stream from a peer server (an inbound stream, or with
 * XEP-0288 our own): its XEP-0198 count of what the peer sent, answered on `conn`, and
 * the s2s.stanza_rate token bucket that pauses reading.  Deliveries commit with the
 * pair's high-water mark (s2s_deliver.c), so a stanza whose holds are released is
 * durable and <r/> is answered as soon as that is so. */
typedef struct pv_s2s_rxq {
	pv_inq in;
	pv_conn *conn;             /* borrowed; NULL once the connection is gone */
	double tokens;
	uint64_t tokens_ms;
	uint64_t stanzas;          /* taken since the last pv_s2s_rxq_throttle */
	bool paused;
} pv_s2s_rxq;

typedef struct pv_origin_signer pv_origin_signer;

typedef struct pv_s2s_host {
	SSL_CTX *srv_ctx, *cli_ctx;
	pv_membership members;
	/* issue 6, relay through an exchange (s2s_relay.c): interconnect.exchange (NULL:
	 * none), interconnect.route_via_exchange, the domains with a static route (reached
	 * directly even then), and the key that signs origin proofs for the exchange */
	char *exchange;
	bool via_exchange;
	pv_map *direct;
	pv_origin_signer *signer;
} pv_s2s_host;

/* One queued stanza held in memory (the store has them all). */
typedef struct pv_qrow {
	struct pv_qrow *next;
	uint64_t seq;
	int64_t created;
	char *xml;
	size_t len;
	bool committed;            /* the push reached disk: may be sent */
} pv_qrow;

typedef enum {
	L_IDLE,         /* nothing to send, no connection */
	L_RESOLVING,
	L_CONNECTING,
	L_NEGOTIATING,  /* stream, TLS, auth */
	L_READY,
	L_WAIT,         /* backing off before the next attempt */
} pv_link_state;

struct pv_s2s_link {
	pv_s2s *s2s;
	pv_host *host;
	char *local, *remote, *key;
	char *epoch;
	pv_link_state state;
	bool verify_only;          /* a dialback verification connection (XEP-0220 2.1.3) */
	/* the current connection */
	pv_conn *conn;
	pv_xmlstream *xs;
	pv_target targets[32];
	size_t ntargets, ti;
	bool tls, authed, restart, starttls, header_sent, closing;
	bool sm_offered;           /* the receiver offered XEP-0198 (enabled after dialback) */
	bool db_sent;              /* our <db:result/> awaits its answer (XEP-0220 2.1.1) */
	bool bidi;                 /* we sent <bidi/> (XEP-0288): the peer may send on this stream */
	pv_s2s_rxq rx;             /* what the peer sent us on this connection (bidi) */
	char *stream_id;           /* the receiving server's stream id */
	const char *auth;          /* "external" | "dialback" */
	/* XEP-0288: the peer's inbound stream that carries this link instead of a
	 * connection of our own (never both at once) */
	pv_s2s_in *carrier;
	pv_conn *carrier_conn;
	const char *carrier_auth;
	uv_timer_t *timer;         /* connect timeout, backoff, idle */
	/* the queue */
	pv_qrow *rows, *rows_tail; /* in memory, seq order, from acked+1 */
	size_t nrows;
	bool mem_partial;          /* rows beyond the tail are only in storage */
	uint64_t next_seq;         /* next seq to assign */
	uint64_t sent_upto;        /* last seq written on this connection */
	uint64_t acked_upto;       /* last seq acknowledged / removed */
	size_t queued;             /* rows in storage */
	/* XEP-0198 on the connection the rows go out on (ours or the carrier) */
	bool sm;
	uint64_t *inflight;        /* seqs sent since <enable/>, oldest first */
	size_t nin, capin, inhead;
	uint32_t peer_h;
	bool r_out;
	/* What the peer sends to `local`, on any stream: its queue's epoch and our
	 * high-water mark, committed with each delivery (s2s_deliver.c).  Shared by every
	 * stream of the pair, so a resend arriving on another stream is still dropped. */
	char *rx_epoch;
	uint64_t rx_hwm;
	bool rx_loaded;
	/* dialback verifications waiting for this connection (verify_only links) */
	struct pv_dbv *verifies;
	/* operations */
	bool paused;
	unsigned retries;
	uint64_t next_try_ms;
	uint64_t sent_total, acked_total, bounced_total;
	char last_error[128];
};

struct pv_s2s {
	pv_server *srv;
	pv_s2s_conf conf;
	pv_resolver *res;
	pv_map *hosts;             /* local host name -> pv_s2s_host */
	pv_map *links;             /* "local remote" -> pv_s2s_link */
	pv_s2s_in *ins;            /* inbound streams */
	size_t nin;
	pv_map *in_per_domain;     /* remote domain -> (uintptr_t) connection count */
	uv_tcp_t *listeners[8];
	size_t nlisteners;
	uv_timer_t *tick;
	struct pv_dbv *pending_verify; /* inbound dialback waiting for their verify link */
	struct {
		uint64_t in_accepted, in_refused, in_stanzas, in_dups, out_connects, out_failures,
			sent, acked, bounced, dialback_ok, dialback_fail;
	} stats;
	struct pv_relay *relay;    /* issue 6: per-provider relay counters and quotas (s2s_relay.c) */
};

/* A dialback verification in flight (inbound side waits on the authoritative server). */
typedef struct pv_dbv {
	struct pv_dbv *next;
	char *receiving, *originating, *stream_id, *key;
	void (*cb)(void *ud, bool valid);
	void *ud;
	bool sent;
} pv_dbv;

/* s2s.bidi (default on): offer and request XEP-0288.  Read where used, so a reload
 * applies to the next streams. */
static inline bool pv_s2s_bidi_on(const pv_s2s *s)
{
	return pv_conf_bool(s->srv->conf, "s2s.bidi", true);
}

/* s2s_out.c */
/* The link (h, remote); `create` makes it (with no epoch until its first stanza). */
pv_s2s_link *pv_s2s_link_get(pv_s2s *s, pv_host *h, const char *remote, bool create);
void pv_s2s_link_kick(pv_s2s_link *l);            /* connect or send if possible */
void pv_s2s_link_free(pv_s2s_link *l);
void pv_s2s_link_close(pv_s2s_link *l, const char *why);
void pv_s2s_link_tick(pv_s2s_link *l, uint64_t now_ms);
void pv_s2s_link_restore(pv_s2s *s, const pv_store_s2s_queue *q);
void pv_s2s_link_describe(const pv_s2s_link *l, pv_buf *out);
void pv_s2s_link_drop(pv_s2s_link *l);
/* XEP-0288: the authenticated inbound stream `c` of the link's peer (connection
 * `conn`, borrowed while it carries the link) offers to carry the link's rows; `sm`:
 * it counts them (XEP-0198).  Returns whether the link took it (it drops a connection
 * of its own then).  When both servers connected at once, the connection opened by the
 * domain that sorts first is kept on both sides. */
bool pv_s2s_link_take_carrier(pv_s2s_link *l, pv_s2s_in *c, pv_conn *conn, bool sm, const char *auth);
void pv_s2s_link_carrier_sm(pv_s2s_link *l);     /* the carrier enabled XEP-0198 late */
void pv_s2s_link_carrier_gone(pv_s2s_link *l);   /* it closed: unacked rows go again */
/* The peer's XEP-0198 <a h=/> for our rows (on our stream or on the carrier).
 * NULL, or a stream error condition (and *text) to close that stream with. */
const char *pv_s2s_link_acked(pv_s2s_link *l, const char *h, const char **text);
/* s2s_in.c */
void pv_s2s_in_accept(pv_s2s *s, uv_stream_t *listener, bool direct_tls);
void pv_s2s_in_close_all(pv_s2s *s, const char *cond);
void pv_s2s_in_describe(pv_s2s *s, pv_buf *out);
/* An idle link looks for a settled bidi stream from its peer to carry it. */
bool pv_s2s_in_lend(pv_s2s *s, pv_s2s_link *l);
void pv_s2s_in_unlend(pv_s2s_in *c);             /* the link is being freed */
/* XEP-0220 2.2.2: as the authoritative server, append the answer to a <db:verify/>
 * request to `out` (on an inbound stream, or with XEP-0288 on our own). */
void pv_s2s_answer_verify(pv_s2s *s, const pv_xml *el, pv_buf *out);
/* s2s_deliver.c */
void pv_s2s_rxq_init(pv_s2s_rxq *r, pv_conn *conn, const pv_s2s_conf *conf);
void pv_s2s_rxq_fini(pv_s2s_rxq *r);
/* After a read: charge the stanzas it brought.  Above s2s.stanza_rate reading pauses
 * and the answer is the delay (ms) before pv_s2s_rxq_resume; 0 when within the rate. */
uint64_t pv_s2s_rxq_throttle(pv_s2s_rxq *r, const pv_s2s_conf *conf, uint64_t now);
void pv_s2s_rxq_resume(pv_s2s_rxq *r, uint64_t now);
bool pv_s2s_is_stanza(const pv_xml *el);         /* message | presence | iq, jabber:server */
/* A stanza from the authenticated domain `peer` for our `host` on the stream whose
 * receiving half is `rx` (XEP-0198 count, rate): checks its addresses, drops a resend of a
 * peyvand peer (XEP-0359 EPOCH:SEQ at or below the pair's high-water mark) and
 * dispatches the rest with the mark in the same storage batch.  Takes `el`.  Returns
 * 0, or PV_EPERM with the stream error to close the stream with in *cond / *text. */
int pv_s2s_deliver(pv_s2s *s, pv_host *host, const char *peer, pv_s2s_rxq *rx, pv_xml *el,
	const char **cond, const char **text);

/* s2s.c: append a stanza to a link's durable queue (takes the current hold). */
void pv_s2s_push(pv_s2s_link *l, pv_stanza *st);

/* s2s_relay.c -- issue 6, relay through an exchange (docs/protocol/exchange.md) */
/* make_host/free_shost: the host's relay settings (exchange, route_via_exchange, direct
 * routes, origin signer). */
int pv_s2s_relay_host_load(pv_s2s *s, pv_host *h, pv_s2s_host *sh, char **err);
void pv_s2s_relay_host_fini(pv_s2s_host *sh);
void pv_s2s_relay_free(pv_s2s *s);
/* The domain whose link carries a stanza from local host h to `to_domain`: the domain
 * itself, or h's exchange (route_via_exchange and no static route).  Borrowed. */
const char *pv_s2s_relay_hop(pv_s2s *s, pv_host *h, const char *to_domain);
/* The stanza to queue on the link to `hop`: st itself (a new ref), or a signed copy
 * carrying an origin proof when hop is h's exchange. */
pv_stanza *pv_s2s_relay_sign(pv_s2s *s, pv_host *h, const char *hop, pv_stanza *st);
/* s2s_deliver.c: may a stanza whose from-domain is not the authenticated `peer` come in
 * (peer is host's exchange and the from-domain a member)?  May a stanza for another
 * domain (host is an exchange) come in? */
bool pv_s2s_relay_from_ok(pv_s2s *s, pv_host *host, const char *peer, const pv_stanza *st);
bool pv_s2s_relay_to_ok(pv_s2s *s, pv_host *host, const pv_stanza *st);
/* Dispatch a stanza from `peer` (inside the delivery's storage batch): relayed ones are
 * verified (origin proof), an exchange applies its quotas and relays; the rest go to
 * pv_router_dispatch. */
void pv_s2s_relay_dispatch(pv_s2s *s, pv_host *host, const char *peer, pv_stanza *st);
void pv_s2s_relay_stats(pv_s2s *s, pv_buf *out);
int pv_s2s_relay_admin(pv_s2s *s, int argc, char **argv, pv_buf *out);

/* Serialise a stanza element for a jabber:server stream. */
void pv_s2s_serialize(const pv_xml *x, pv_buf *out);

#endif
