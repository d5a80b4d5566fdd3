/* s2s_int.h -- structures shared by s2s.c, s2s_out.c and s2s_in.c only. */
#ifndef PV_XMPP_S2S_INT_H
#define PV_XMPP_S2S_INT_H

#include "xmpp/s2s.h"

typedef struct pv_s2s_link pv_s2s_link;
typedef struct pv_s2s_in pv_s2s_in;

typedef struct pv_s2s_host {
	SSL_CTX *srv_ctx, *cli_ctx;
	pv_membership members;
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
	bool tls, authed, sm, restart, starttls, header_sent, closing;
	char *stream_id;           /* the receiving server's stream id */
	const char *auth;          /* "external" | "dialback" */
	uv_timer_t *timer;         /* connect timeout, backoff, idle */
	/* the queue */
	pv_qrow *rows, *rows_tail; /* in memory, seq order, from acked+1 */
	size_t nrows;
	bool mem_partial;          /* rows beyond the tail are only in storage */
	uint64_t next_seq;         /* next seq to assign */
	uint64_t sent_upto;        /* last seq written on this connection */
	uint64_t acked_upto;       /* last seq acknowledged / removed */
	size_t queued;             /* rows in storage */
	/* XEP-0198 on this connection */
	uint64_t *inflight;        /* seqs sent since <enable/>, oldest first */
	size_t nin, capin, inhead;
	uint32_t peer_h;
	bool r_out;
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
};

/* A dialback verification in flight (inbound side waits on the authoritative server). */
typedef struct pv_dbv {
	struct pv_dbv *next;
	char *receiving, *originating, *stream_id, *key;
	void (*cb)(void *ud, bool valid);
	void *ud;
	bool sent;
} pv_dbv;

/* s2s_out.c */
pv_s2s_link *pv_s2s_link_get(pv_s2s *s, pv_host *h, const char *remote, bool create);
void pv_s2s_link_kick(pv_s2s_link *l);            /* connect or send if possible */
void pv_s2s_link_free(pv_s2s_link *l);
void pv_s2s_link_close(pv_s2s_link *l, const char *why);
void pv_s2s_link_tick(pv_s2s_link *l, uint64_t now_ms);
void pv_s2s_link_restore(pv_s2s *s, const pv_store_s2s_queue *q);
void pv_s2s_link_describe(const pv_s2s_link *l, pv_buf *out);
void pv_s2s_link_drop(pv_s2s_link *l);
/* s2s_in.c */
void pv_s2s_in_accept(pv_s2s *s, uv_stream_t *listener, bool direct_tls);
void pv_s2s_in_close_all(pv_s2s *s, const char *cond);
void pv_s2s_in_describe(pv_s2s *s, pv_buf *out);

/* Serialise a stanza element for a jabber:server stream. */
void pv_s2s_serialize(const pv_xml *x, pv_buf *out);

#endif
