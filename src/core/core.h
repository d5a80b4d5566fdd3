/* core.h -- the server's internal structures: server, worker, host, session, hooks.
 * Included by src/core and src/xmpp; modules never see it (they use pv_module.h).
 *
 * Threading: today one worker (the main loop thread) owns every session and host
 * table; all state that will become per-worker lives in pv_worker so adding workers is
 * configuration plus the cross-worker inbox, not a rewrite.  The storage thread only
 * talks to the loop through pv_store's completion callbacks. */
#ifndef PV_CORE_H
#define PV_CORE_H

#include <uv.h>

#include "core/config.h"
#include "core/inq.h"
#include "net/conn.h"
#include "peyvand/pv_module.h"
#include "peyvand/pv_map.h"
#include "peyvand/pv_wheel.h"

typedef struct pv_server pv_server;
typedef struct pv_worker pv_worker;
typedef struct pv_c2s pv_c2s;

/* Limits and tunables read from the config (core keys; see docs/config.md). */
typedef struct pv_limits {
	size_t max_stanza;
	unsigned max_depth;
	unsigned max_conn_per_ip;
	uint64_t auth_timeout_ms;
	uint64_t idle_timeout_ms;
	size_t max_output;
	uint64_t slow_reader_grace_ms;
	size_t read_rate;             /* bytes per second per connection */
	unsigned auth_fail_ip;        /* failures per IP per window before throttling */
	unsigned auth_fail_account;
	uint64_t auth_fail_window_ms;
	unsigned scram_iterations;
	uint64_t resume_timeout_ms;
	uint64_t sm_store_after_ms;   /* unacked messages to an SM client are stored after this */
	unsigned max_resources;       /* bound resources per account */
} pv_limits;

typedef struct pv_hookent {
	struct pv_hookent *next;
	int prio;
	pv_hook_fn fn;
	void *ud;
} pv_hookent;

typedef struct pv_loaded_mod {
	const pv_module *mod;
	void *state;
} pv_loaded_mod;

struct pv_host {
	pv_server *srv;
	char *name;
	const pv_conf *conf;       /* this host's section of the current config */
	SSL_CTX *tls;
	char *cert_file, *key_file;
	pv_map *hooks;             /* event name -> pv_hookent list, sorted by prio desc */
	char **features;
	size_t nfeatures;
	char **identities;         /* category, type, name triples */
	size_t nidentities;
	pv_loaded_mod *mods;
	size_t nmods;
	pv_map *users;             /* localpart -> pv_session list (bound sessions) */
};

/* A bound (or binding) client session.  Created with the connection; survives a lost
 * connection while XEP-0198 resumption is possible ("hibernating": c2s == NULL). */
typedef struct pv_outrec {
	struct pv_outrec *next;
	uint64_t seq;
	pv_stanza *st;
	bool durable;              /* a message: never dropped when the session ends */
	bool stored;               /* also in the stored outbound queue (outq) */
	uint32_t tick;             /* the worker's store_tick when it was queued (session.c) */
	pv_hold *hold;             /* the sender's acknowledgement waits for this message to be
	                            * safe: taken by the kernel (no XEP-0198), acked by the
	                            * client, or stored; NULL once it is */
} pv_outrec;

typedef struct pv_sdata {
	struct pv_sdata *next;
	const void *key;
	void *data;
	void (*free_fn)(void *);
} pv_sdata;

struct pv_session {
	pv_server *srv;
	pv_host *host;
	pv_c2s *c2s;               /* NULL while hibernating */
	pv_session *next_of_user;  /* host->users list */
	char *user;                /* localpart after auth */
	pv_jid jid;                /* full JID after bind (jid.domain NULL before) */
	bool bound;
	char *sid;                 /* durable session id (= SM resumption id) */
	/* presence */
	pv_xml *presence;          /* last available presence, its element only: a stanza
	                            * kept its parsed JIDs and its wire bytes too */
	int priority;
	bool available, interested;
	char **directed;
	size_t ndirected;
	pv_sdata *data;
	/* XEP-0198 */
	bool sm, resumable;
	uint64_t out_seq;          /* stanzas sent to the client since bind */
	uint64_t out_base;         /* out_seq when <enable/> came (the client's h counts from there) */
	uint64_t out_acked;        /* highest h the client acknowledged (64-bit) */
	pv_outrec *unacked, *unacked_tail;
	pv_inq in;                 /* received stanzas and their durability (inq.h) */
	uint64_t in_saving;        /* in.done value being committed as sessions.h_in */
	bool r_out;                /* our <r/> is waiting for the client's <a/> */
	uv_timer_t *hib_timer;     /* hibernation expiry */
	int64_t created;
	bool closing;              /* being torn down */
	bool restored;             /* rebuilt from storage after a restart, not yet resumed */
	/* on the worker's list of sessions with messages to store if not acked in time */
	pv_session *store_prev, *store_next;
	bool store_queued;
	bool row_stored;           /* its sessions row exists (written lazily: XEP-0198 enable or
	                            * the first stored message), so logins cost no disk write */
	bool expiry_stored;        /* ... and holds a resumption deadline (restart recovery or a
	                            * clean stop wrote it), which a resumption must clear */
};


struct pv_worker {
	pv_server *srv;
	uv_loop_t *loop;
	pv_inrec *cur_hold;        /* inbound stanza being dispatched (for pv_hold_take) */
	pv_stanza *cur_stanza;     /* that stanza when it came from a client: its only copy is
	                            * in memory and its sender waits on cur_hold */
	pv_session *store_list;    /* sessions with unacked, unstored messages (session.c) */
	uv_timer_t store_timer;    /* ticks every sm.store_after while that list is not empty */
	uint32_t store_tick;       /* ... counting its ticks */
	pv_map *conn_per_ip;       /* ip -> (uintptr_t) count */
	pv_map *auth_fail;         /* "ip:..." / "acct:..." -> pv_throttle */
	size_t nconns;
	pv_c2s *c2s_list;          /* all live client connections */
	pv_map *by_sid;            /* durable session id -> bound pv_session */
	pv_wheel *wheel;           /* the connections' deadlines (pv_wheel.h) */
};

struct pv_server {
	char *config_path;
	pv_conf *conf;
	pv_limits lim;
	char *data_dir;
	char *admin_path;
	pv_worker worker;          /* one today; see the file comment */
	uv_loop_t *loop;
	pv_store *store;
	pv_host **hosts;
	size_t nhosts;
	uv_tcp_t **listeners;
	size_t nlisteners;
	uv_signal_t sigterm, sigint, sighup;
	uv_pipe_t admin;
	bool admin_open;
	bool stopping;
	int64_t started;
	unsigned char secret[32];  /* <data_dir>/secret: keys fake SCRAM salts and dialback */
	struct pv_s2s *s2s;        /* server-to-server links (src/xmpp/s2s*.c), NULL if off */
	struct {
		uint64_t c2s_accepted, c2s_auth_ok, c2s_auth_fail, stanzas_in, stanzas_out,
			stream_errors, offline_stored, resumed;
	} stats;
};

/* server.c */
int pv_server_init(pv_server *srv, const char *config_path, bool check_only);
int pv_server_run(pv_server *srv);
void pv_server_fini(pv_server *srv);
int pv_server_reload(pv_server *srv, char **err);
pv_host *pv_server_host(pv_server *srv, const char *domain);
void pv_limits_read(pv_limits *l, const pv_conf *c);

/* host.c */
pv_host *pv_host_new(pv_server *srv, const char *name, const pv_conf *conf);
void pv_host_free(pv_host *h);
int pv_host_load_modules(pv_host *h, char **err);
void pv_host_unload_modules(pv_host *h);
/* hosts.<name>.role and what it requires (issue 6); 0 or PV_EINVAL with *err set. */
int pv_host_check_role(const char *name, const pv_conf *hc, char **err);
int pv_host_load_tls(pv_host *h, char **err);
void pv_host_register(pv_host *h, pv_session *s);   /* after bind */
void pv_host_unregister(pv_host *h, pv_session *s);
pv_session *pv_host_find_resource(pv_host *h, const char *user, const char *resource);
pv_session *pv_host_find_sid(pv_server *srv, const char *sid);
size_t pv_host_count_sessions(pv_host *h);

/* modules.c */
const pv_module *pv_module_find(const char *name);
const char *const *pv_module_names(void);

/* session.c */
pv_session *pv_session_new(pv_server *srv, pv_host *host);
void pv_session_unbind(pv_session *s, const char *why); /* fire unbind, reroute, free */
void pv_session_free(pv_session *s);
void pv_session_ack_in(pv_session *s, uint32_t h);     /* client <a h/>; asks again if needed */
void pv_session_ack_apply(pv_session *s, uint32_t h);  /* the same without a new <r/> */
int pv_session_ack_check(const pv_session *s, uint32_t h, uint64_t *out);
void pv_session_hibernate(pv_session *s);
void pv_session_resend_unacked(pv_session *s);
void pv_session_flush_out(pv_session *s);
int pv_sessions_restore(pv_server *srv);                 /* at start-up */
void pv_sessions_init(pv_server *srv);                   /* worker state of session.c */
/* Writes the session's row (sid, account, SM state) now or again after a change. */
void pv_session_put_row(pv_session *s);
/* At a clean stop: writes when each session waiting to be resumed expires. */
void pv_sessions_store_expiries(pv_server *srv);
/* Stores every message still waiting for its recipient's ack (at shutdown). */
void pv_sessions_store_pending(pv_server *srv);
void pv_session_reroute_unacked(pv_session *s);
/* Without XEP-0198: the kernel took the session's stanzas up to seq. */
void pv_session_written(pv_session *s, uint64_t seq);

/* router.c */
/* Handle a stanza a local client sent (from already stamped). */
void pv_router_from_client(pv_session *origin, pv_stanza *st);
void pv_router_dispatch(pv_host *h, pv_session *origin, pv_stanza *st);

/* c2s (src/xmpp/c2s.c) */
void pv_c2s_accept(pv_server *srv, uv_stream_t *listener, bool direct_tls);
void pv_c2s_write_stanza(pv_c2s *c, pv_stanza *st, bool track_write, pv_session *s, uint64_t seq);
void pv_c2s_write_raw(pv_c2s *c, const char *data, size_t n);
void pv_c2s_stream_error(pv_c2s *c, const char *cond, const char *text);
void pv_c2s_close(pv_c2s *c, const char *why);          /* </stream:stream> and close */
void pv_c2s_detach(pv_c2s *c);                          /* forget its session (being freed) */
void pv_c2s_shutdown_all(pv_server *srv);
bool pv_c2s_is_secure(const pv_c2s *c);
const char *pv_c2s_peer_ip(const pv_c2s *c);
const char *pv_c2s_info(const pv_c2s *c, char *buf, size_t n); /* for `sessions` */
void pv_c2s_answer_ack(pv_c2s *c, uint64_t h);
void pv_c2s_reload_tls(pv_server *srv);

/* admin.c */
int pv_admin_start(pv_server *srv);
void pv_admin_stop(pv_server *srv);
/* Executes one admin command line (also used by peyvandctl offline with srv == NULL).
 * Appends the answer lines to out; returns 0 or <0 with a one-line error in out. */
int pv_admin_exec_store(pv_store *st, const pv_conf *conf, unsigned iterations, int argc,
	char **argv, pv_buf *out);

extern pv_server *pv_the_server; /* for signal and module glue; one per process */

#endif
