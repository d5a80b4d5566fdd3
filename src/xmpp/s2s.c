/* s2s.c -- server-to-server: configuration, per-host TLS contexts and membership, the
 * listeners, the 1-second tick (retries, expiry), routing into link queues, dialback
 * keys and the operator commands.  Streams live in s2s_out.c and s2s_in.c.
 * Threading: the worker loop only. */
#include <stdio.h>
#include <string.h>

#include <openssl/sha.h>

#include "peyvand/pv_log.h"
#include "xmpp/s2s_int.h"

static uint64_t conf_ms(const pv_conf *c, const char *path, uint64_t def)
{
	int64_t v = pv_conf_ms(c, path, (int64_t)def);
	return v > 0 ? (uint64_t)v : def;
}

static void read_conf(pv_s2s_conf *c, const pv_conf *root)
{
	c->require_tls = pv_conf_bool(root, "s2s.require_encryption", true);
	c->dialback = pv_conf_bool(root, "s2s.dialback", true);
	c->queue_expiry_ms = conf_ms(root, "s2s.queue_expiry", 72ull * 3600 * 1000);
	c->retry_min_ms = conf_ms(root, "s2s.retry_min", 1000);
	c->retry_max_ms = conf_ms(root, "s2s.retry_max", 600000);
	c->connect_timeout_ms = conf_ms(root, "s2s.connect_timeout", 10000);
	c->idle_timeout_ms = conf_ms(root, "s2s.idle_timeout", 600000);
	c->max_conn_per_domain = (unsigned)pv_conf_int(root, "s2s.max_connections_per_domain", 4);
	c->stanza_rate = (double)pv_conf_int(root, "s2s.stanza_rate", 10000);
	c->max_stanza = (size_t)pv_conf_size(root, "s2s.max_stanza_size", 256 * 1024);
	if (c->retry_max_ms < c->retry_min_ms)
		c->retry_max_ms = c->retry_min_ms;
}

bool pv_s2s_enabled(const pv_server *srv)
{
	return srv->s2s != NULL;
}

const pv_s2s_conf *pv_s2s_conf_get(const pv_server *srv)
{
	return &srv->s2s->conf;
}

static pv_s2s_host *shost(pv_host *h)
{
	return h->srv->s2s ? pv_map_get(h->srv->s2s->hosts, h->name) : NULL;
}

SSL_CTX *pv_s2s_server_ctx(pv_host *h)
{
	pv_s2s_host *sh = shost(h);
	return sh ? sh->srv_ctx : NULL;
}

SSL_CTX *pv_s2s_client_ctx(pv_host *h)
{
	pv_s2s_host *sh = shost(h);
	return sh ? sh->cli_ctx : NULL;
}

const pv_membership *pv_s2s_membership(pv_host *h)
{
	pv_s2s_host *sh = shost(h);
	return sh ? &sh->members : NULL;
}

/* We verify peer certificates ourselves (pv_cert_verify_peer) against the configured
 * trust, so OpenSSL's own verdict must not abort the handshake. */
static int accept_any(int ok, X509_STORE_CTX *ctx)
{
	return 1;
}

static SSL_CTX *s2s_sni(void *ud, const char *name)
{
	pv_server *srv = ud;
	pv_host *h = pv_server_host(srv, name);
	return h ? pv_s2s_server_ctx(h) : NULL;
}

static void free_shost(void *p)
{
	pv_s2s_host *sh = p;
	if (sh->srv_ctx)
		SSL_CTX_free(sh->srv_ctx);
	if (sh->cli_ctx)
		SSL_CTX_free(sh->cli_ctx);
	pv_membership_fini(&sh->members);
	pv_s2s_relay_host_fini(sh); /* issue 6 */
	pv_free(sh);
}

static int make_host(pv_s2s *s, pv_host *h, char **err)
{
	pv_s2s_host *sh = pv_calloc(1, sizeof(*sh));
	sh->srv_ctx = pv_tls_server_ctx(h->cert_file, h->key_file);
	sh->cli_ctx = pv_tls_client_ctx();
	if (!sh->srv_ctx || !sh->cli_ctx ||
	    SSL_CTX_use_certificate_chain_file(sh->cli_ctx, h->cert_file) != 1 ||
	    SSL_CTX_use_PrivateKey_file(sh->cli_ctx, h->key_file, SSL_FILETYPE_PEM) != 1) {
		*err = pv_sprintf("s2s: host %s: cannot load its certificate for server links", h->name);
		free_shost(sh);
		return PV_EINVAL;
	}
	SSL_CTX_set_verify(sh->srv_ctx, SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE, accept_any);
	SSL_CTX_set_verify(sh->cli_ctx, SSL_VERIFY_PEER, accept_any);
	pv_tls_set_sni(sh->srv_ctx, s2s_sni, s->srv);
	if (pv_membership_load(&sh->members, pv_conf_get(h->conf, "interconnect"), s->srv->data_dir, err) != 0 ||
	    pv_s2s_relay_host_load(s, h, sh, err) != 0) {
		free_shost(sh);
		return PV_EINVAL;
	}
	pv_s2s_host *old = pv_map_put(s->hosts, h->name, sh);
	if (old)
		free_shost(old);
	return 0;
}

static void on_in_conn(uv_stream_t *l, int status)
{
	if (status == 0 && pv_the_server->s2s)
		pv_s2s_in_accept(pv_the_server->s2s, l, false);
}

static void on_in_tls_conn(uv_stream_t *l, int status)
{
	if (status == 0 && pv_the_server->s2s)
		pv_s2s_in_accept(pv_the_server->s2s, l, true);
}

static int link_tick(void *ud, const char *key, void *val)
{
	pv_s2s_link_tick(val, *(uint64_t *)ud);
	return 0;
}

static void tick_cb(uv_timer_t *t)
{
	pv_s2s *s = t->data;
	uint64_t now = pv_now_ms();
	pv_map_each(s->links, link_tick, &now);
}

static void restore_cb(void *ud, const pv_store_s2s_queue *q)
{
	pv_s2s_link_restore(ud, q);
}

static int load_routes(pv_s2s *s, const pv_conf *root, char **err)
{
	pv_resolver_clear_routes(s->res);
	const pv_conf *routes = pv_conf_get(root, "s2s.routes");
	for (size_t i = 0; routes && i < pv_conf_len(routes); i++) {
		const char *d = pv_conf_key_at(routes, i);
		const char *t = pv_conf_scalar(pv_conf_at(routes, i));
		char *nd = pv_jid_norm_domain(d, strlen(d));
		if (!nd || !t || pv_resolver_add_route(s->res, nd, t) != 0) {
			*err = pv_sprintf("s2s.routes.%s: expected \"host:port\" (optionally \"tls:\" first)", d);
			pv_free(nd);
			return PV_EINVAL;
		}
		pv_free(nd);
	}
	return 0;
}

int pv_s2s_start(pv_server *srv, char **err)
{
	if (!pv_conf_get(srv->conf, "s2s"))
		return 0;
	pv_s2s *s = pv_calloc(1, sizeof(*s));
	s->srv = srv;
	srv->s2s = s;
	read_conf(&s->conf, srv->conf);
	const char *ca = pv_conf_str(srv->conf, "s2s.ca_file", NULL);
	if (ca) {
		char *path = pv_path_under(srv->data_dir, ca);
		s->conf.trust = pv_trust_load(path);
		pv_free(path);
		if (!s->conf.trust) {
			*err = pv_sprintf("s2s.ca_file: cannot load %s", ca);
			return PV_EINVAL;
		}
	}
	s->hosts = pv_map_new();
	s->links = pv_map_new();
	s->in_per_domain = pv_map_new();
	s->res = pv_resolver_new(srv->loop, pv_conf_str(srv->conf, "s2s.dns_server", NULL));
	if (load_routes(s, srv->conf, err) != 0)
		return PV_EINVAL;
	for (size_t i = 0; i < srv->nhosts; i++)
		if (make_host(s, srv->hosts[i], err) != 0)
			return PV_EINVAL;
	/* Queues that were waiting when the server stopped. */
	pv_store_s2s_queues(srv->store, restore_cb, s);
	const pv_conf *addrs = pv_conf_get(srv->conf, "s2s.listen");
	int port = (int)pv_conf_int(srv->conf, "s2s.port", 5269);
	int tls_port = (int)pv_conf_int(srv->conf, "s2s.direct_tls_port", 5270);
	size_t naddr = addrs ? pv_conf_len(addrs) : 0;
	for (size_t i = 0; i < (naddr ? naddr : 1); i++) {
		const char *ip = naddr ? pv_conf_scalar(pv_conf_at(addrs, i)) : "127.0.0.1";
		uv_tcp_t *t;
		if (port > 0 && s->nlisteners < 8) {
			if (pv_listen_tcp(srv->loop, ip, port, on_in_conn, s, &t) != 0) {
				*err = pv_sprintf("s2s: cannot listen on %s port %d", ip, port);
				return PV_EIO;
			}
			s->listeners[s->nlisteners++] = t;
		}
		if (tls_port > 0 && s->nlisteners < 8) {
			if (pv_listen_tcp(srv->loop, ip, tls_port, on_in_tls_conn, s, &t) != 0) {
				*err = pv_sprintf("s2s: cannot listen on %s port %d", ip, tls_port);
				return PV_EIO;
			}
			s->listeners[s->nlisteners++] = t;
		}
		pv_info("s2s", "listening on %s port %d (STARTTLS) and %d (direct TLS)", ip, port, tls_port);
	}
	s->tick = pv_calloc(1, sizeof(uv_timer_t));
	uv_timer_init(srv->loop, s->tick);
	s->tick->data = s;
	uv_timer_start(s->tick, tick_cb, 1000, 1000);
	return 0;
}

int pv_s2s_reload(pv_server *srv, char **err)
{
	pv_s2s *s = srv->s2s;
	if (!s)
		return 0;
	X509_STORE *old_trust = s->conf.trust;
	read_conf(&s->conf, srv->conf);
	s->conf.trust = old_trust;
	const char *ca = pv_conf_str(srv->conf, "s2s.ca_file", NULL);
	if (ca) {
		char *path = pv_path_under(srv->data_dir, ca);
		X509_STORE *t = pv_trust_load(path);
		pv_free(path);
		if (t) {
			if (old_trust)
				X509_STORE_free(old_trust);
			s->conf.trust = t;
		}
	}
	if (load_routes(s, srv->conf, err) != 0)
		return PV_EINVAL;
	for (size_t i = 0; i < srv->nhosts; i++)
		if (make_host(s, srv->hosts[i], err) != 0)
			return PV_EINVAL;
	return 0;
}

static void free_handle(uv_handle_t *h)
{
	pv_free(h);
}

static int close_link(void *ud, const char *key, void *val)
{
	pv_s2s_link_close(val, ud);
	return 0;
}

static void stop_listening(pv_s2s *s)
{
	for (size_t i = 0; i < s->nlisteners; i++)
		pv_listen_close(s->listeners[i]);
	s->nlisteners = 0;
	if (s->tick) {
		uv_timer_stop(s->tick);
		uv_close((uv_handle_t *)s->tick, free_handle);
		s->tick = NULL;
	}
}

void pv_s2s_stop(pv_server *srv)
{
	pv_s2s *s = srv->s2s;
	if (!s)
		return;
	stop_listening(s);
	pv_map_each(s->links, close_link, "system-shutdown");
	pv_s2s_in_close_all(s, "system-shutdown");
}

static int free_link(void *ud, const char *key, void *val)
{
	pv_s2s_link_free(val);
	return 1;
}

void pv_s2s_free(pv_server *srv)
{
	pv_s2s *s = srv->s2s;
	if (!s)
		return;
	/* A start that failed later (c2s could not listen) never ran pv_s2s_stop; the
	 * handles' close callbacks run in pv_server_fini's last loop turn. */
	stop_listening(s);
	pv_map_each(s->links, free_link, NULL);
	pv_map_free(s->links, NULL);
	pv_map_free(s->hosts, free_shost);
	pv_map_free(s->in_per_domain, NULL);
	pv_s2s_relay_free(s); /* issue 6 */
	for (pv_dbv *v = s->pending_verify, *nx; v; v = nx) {
		nx = v->next;
		pv_free(v->receiving);
		pv_free(v->originating);
		pv_free(v->stream_id);
		pv_free(v->key);
		pv_free(v);
	}
	if (s->res)
		pv_resolver_free(s->res);
	if (s->conf.trust)
		X509_STORE_free(s->conf.trust);
	pv_free(s);
	srv->s2s = NULL;
}

size_t pv_s2s_nconns(const pv_server *srv)
{
	return srv->s2s ? srv->s2s->nin : 0;
}

/* ---- routing ---- */

int pv_s2s_send(pv_server *srv, pv_host *from, pv_stanza *st)
{
	pv_s2s *s = srv->s2s;
	if (!s || !st->has_to)
		return PV_EPERM;
	const pv_membership *m = pv_s2s_membership(from);
	if (m && m->members_only && !pv_membership_find(m, st->to.domain)) {
		pv_info("s2s", "%s -> %s refused: not a member of the interconnect", from->name, st->to.domain);
		return PV_EPERM;
	}
	/* issue 6: through the exchange when route_via_exchange says so, signed for it */
	const char *hop = pv_s2s_relay_hop(s, from, st->to.domain);
	pv_s2s_link *l = pv_s2s_link_get(s, from, hop, true);
	pv_stanza *out = pv_s2s_relay_sign(s, from, hop, st);
	pv_s2s_push(l, out);
	pv_stanza_unref(out);
	return 0;
}

void pv_s2s_push(pv_s2s_link *l, pv_stanza *st)
{
	uint64_t seq = l->next_seq++;
	pv_qrow *r = pv_calloc(1, sizeof(*r));
	const pv_buf *w = pv_stanza_wire(st);
	r->seq = seq;
	r->created = pv_wall_s();
	r->xml = pv_strndup(w->data, w->len);
	r->len = w->len;
	extern void pv_s2s_row_pushed(pv_s2s_link *l, pv_qrow *r);
	pv_s2s_row_pushed(l, r);
}

/* ---- dialback keys (XEP-0185) ---- */

void pv_s2s_dialback_key(const pv_server *srv, const char *receiving, const char *originating,
	const char *stream_id, char out[65])
{
	pv_dialback_key(srv->secret, sizeof(srv->secret), receiving, originating, stream_id, out);
}

/* ---- operator commands ---- */

typedef struct desc_ctx {
	pv_buf *out;
	const char *remote;
	const char *op;
	int matched;
} desc_ctx;

static int describe_link(void *ud, const char *key, void *val)
{
	desc_ctx *d = ud;
	pv_s2s_link *l = val;
	if (l->verify_only)
		return 0;
	if (!d->op) {
		pv_s2s_link_describe(l, d->out);
		return 0;
	}
	if (strcmp(l->remote, d->remote) != 0)
		return 0;
	d->matched++;
	if (strcmp(d->op, "pause") == 0) {
		l->paused = true;
	} else if (strcmp(d->op, "resume") == 0 || strcmp(d->op, "flush") == 0) {
		l->paused = false;
		l->retries = 0;
		l->next_try_ms = 0;
		if (l->state == L_WAIT)
			l->state = L_IDLE;
		pv_s2s_link_kick(l);
	} else if (strcmp(d->op, "drop") == 0) {
		pv_s2s_link_drop(l);
	}
	return 0;
}

void pv_s2s_stats(const pv_server *srv, pv_buf *out)
{
	const pv_s2s *s = srv->s2s;
	if (!s)
		return;
	pv_buf_printf(out,
		"s2s_in_connections %zu\ns2s_in_accepted %llu\ns2s_in_refused %llu\ns2s_in_stanzas %llu\n"
		"s2s_in_duplicates %llu\ns2s_out_links %zu\ns2s_out_connects %llu\ns2s_out_failures %llu\n"
		"s2s_out_sent %llu\ns2s_out_acked %llu\ns2s_out_bounced %llu\ns2s_dialback_ok %llu\n"
		"s2s_dialback_failed %llu\n",
		s->nin, (unsigned long long)s->stats.in_accepted, (unsigned long long)s->stats.in_refused,
		(unsigned long long)s->stats.in_stanzas, (unsigned long long)s->stats.in_dups,
		pv_map_count(s->links), (unsigned long long)s->stats.out_connects,
		(unsigned long long)s->stats.out_failures, (unsigned long long)s->stats.sent,
		(unsigned long long)s->stats.acked, (unsigned long long)s->stats.bounced,
		(unsigned long long)s->stats.dialback_ok, (unsigned long long)s->stats.dialback_fail);
	pv_s2s_relay_stats((pv_s2s *)s, out); /* issue 6 */
}

int pv_s2s_admin(pv_server *srv, int argc, char **argv, pv_buf *out)
{
	pv_s2s *s = srv->s2s;
	if (!s) {
		pv_buf_puts(out, "server-to-server links are not configured (no s2s: section)");
		return PV_EINVAL;
	}
	desc_ctx d = {.out = out};
	if (argc == 1 && strcmp(argv[0], "links") == 0) {
		pv_map_each(s->links, describe_link, &d);
		pv_s2s_in_describe(s, out);
		return 0;
	}
	if (argc >= 1 && strcmp(argv[0], "exchange") == 0) /* issue 6 */
		return pv_s2s_relay_admin(s, argc, argv, out);
	if (argc == 3 && strcmp(argv[0], "queue") == 0 &&
	    (strcmp(argv[1], "flush") == 0 || strcmp(argv[1], "pause") == 0 ||
		    strcmp(argv[1], "resume") == 0 || strcmp(argv[1], "drop") == 0)) {
		char *dom = pv_jid_norm_domain(argv[2], strlen(argv[2]));
		d.remote = dom ? dom : argv[2];
		d.op = argv[1];
		pv_map_each(s->links, describe_link, &d);
		pv_free(dom);
		if (!d.matched) {
			pv_buf_printf(out, "no link to %s", argv[2]);
			return PV_ENOENT;
		}
		pv_buf_printf(out, "%s %s: %d link(s)\n", argv[1], argv[2], d.matched);
		return 0;
	}
	pv_buf_puts(out, "usage: links | queue flush|pause|resume|drop DOMAIN");
	return PV_EINVAL;
}
