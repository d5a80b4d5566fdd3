/* c2s.c -- client-to-server streams (RFC 6120): stream header and features, STARTTLS
 * (5.4), SASL (6), resource binding (7), stream errors (4.9), XEP-0368 direct TLS and
 * XEP-0198 stream management (enable, acks, resume), plus the per-connection limits.
 * XEP-0388 (SASL2) runs the same mechanisms without the stream restart, and XEP-0386
 * (Bind 2) binds a server-made resource inside it: a login in two round trips fewer.
 *
 * A pv_c2s is the connection half; the pv_session it serves (core/session.c) holds the
 * account state and may outlive it while waiting for resumption.  Everything runs on
 * the worker loop that accepted the connection.  A c2s is freed only from its conn's
 * on_close callback (the conn itself closes asynchronously), never inside a parser
 * callback. */
#include <arpa/inet.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "core/core.h"
#include "peyvand/pv_directory.h"
#include "peyvand/pv_log.h"
#include "peyvand/pv_wheel.h"
#include "xmpp/sasl/sasl.h"
#include "xmpp/streamio.h"

#include <malloc.h>

struct pv_c2s {
	pv_server *srv;
	pv_c2s *next, *prev;
	pv_conn *conn;
	pv_xmlstream *xs;
	pv_session *sess;
	pv_host *host;
	bool direct_tls, tls_done;
	bool header_sent, authed, restart, starttls, over_limit, closing, counted_ip;
	pv_sasl *sasl;
	int sasl_failures;
	bool sasl2;                /* the exchange under way is XEP-0388's */
	struct sasl2_req *req;     /* ... and what its <authenticate/> asked for inline */
	bool sasl_slow;            /* the mechanism's steps run in the thread pool */
	bool busy, free_pending;   /* a thread-pool job holds this c2s */
	unsigned char *cb;  /* channel binding data, CB_MAX bytes, until authenticated */
	int cblen;
	const char *cbtype;
	char ip[INET6_ADDRSTRLEN];
	pv_tnode tick;      /* deadlines, on the worker's wheel (c2s_tick) */
	uint64_t opened_ms, last_read_ms;
	bool trimmed;              /* idle: parser and TLS buffers given back (IDLE_TRIM_MS) */
	bool slow_tick;            /* idle: the tick waits for the idle timeout, not 1 s */
	uint64_t over_since;       /* output above limits.max_output_buffer since (0: not) */
	/* read-rate token bucket */
	double tokens;
	uint64_t tokens_ms;
	bool paused;
};

/* What a XEP-0388 <authenticate/> asks for beside the authentication, kept until the
 * exchange ends: a XEP-0386 binding (with XEP-0198 enabled inside it) or a XEP-0198
 * resumption (which, when it works, replaces the binding). */
typedef struct sasl2_req {
	bool bind;                 /* <bind xmlns='urn:xmpp:bind:0'> */
	char *tag;                 /* its <tag> (NULL: none) */
	char *ua;                  /* the <user-agent id> of the <authenticate/> (NULL: none) */
	bool sm_enable;            /* <enable xmlns='urn:xmpp:sm:3'> inside the <bind> */
	bool sm_resumable;         /* ... with resume='true' */
	bool resume;               /* <resume xmlns='urn:xmpp:sm:3'> ... */
	char *previd, *h;          /* ... its attributes as sent (NULL: missing) */
} sasl2_req;

static void sasl2_req_free(sasl2_req *r)
{
	if (!r)
		return;
	pv_free(r->tag);
	pv_free(r->ua);
	pv_free(r->previd);
	pv_free(r->h);
	pv_free(r);
}

typedef struct throttle {
	unsigned count;
	uint64_t since;
} throttle;

/* A bound session that read nothing for this long frees its XML parser and its TLS
 * memory buffers (rebuilt on the next input: a few microseconds). */
#define IDLE_TRIM_MS 5000
/* Channel binding data: tls-exporter is 32 bytes, tls-unique a Finished message (12, or
 * up to 64 with some TLS 1.3 suites). */
#define CB_MAX 64

static void c2s_tick(pv_tnode *n);

static void tick_in(pv_c2s *c, uint64_t ms)
{
	pv_wheel_start(c->srv->worker.wheel, &c->tick, ms, c2s_tick);
}
static void on_tls_cb(pv_c2s *c);

/* The channel-binding buffer, made on first use (freed at SASL success). */
static unsigned char *cb_buf(pv_c2s *c)
{
	if (!c->cb)
		c->cb = pv_malloc(CB_MAX);
	return c->cb;
}

/* Back to the 1 s tick: something needs watching again (input, output backlog). */
static void tick_soon(pv_c2s *c)
{
	if (c->slow_tick && pv_wheel_active(&c->tick)) {
		c->slow_tick = false;
		tick_in(c, 1000);
	}
}
static void start_stream_features(pv_c2s *c);

/* ---- output ---- */

/* A client that stops reading is cut off rather than buffered without bound; its
 * session keeps its unacknowledged stanzas (resumption, other resources, offline).
 * A burst (offline messages at login) may exceed the limit for a moment: only output
 * that stays above it for limits.slow_reader_grace, or grows past four times it, counts. */
static void check_output(pv_c2s *c)
{
	size_t pending = pv_conn_out_pending(c->conn);
	size_t max = c->srv->lim.max_output;
	if (pending <= max) {
		c->over_since = 0;
		return;
	}
	uint64_t now = pv_now_ms();
	if (!c->over_since) {
		c->over_since = now;
		tick_soon(c);
	}
	if (pending > 4 * max || now - c->over_since >= c->srv->lim.slow_reader_grace_ms) {
		pv_info("c2s", "[%s] output buffer at %zu bytes (limit %zu), disconnecting slow reader", c->ip,
			pending, max);
		c->closing = true;
		pv_conn_abort(c->conn);
	}
}

void pv_c2s_write_raw(pv_c2s *c, const char *data, size_t n)
{
	if (!c->conn || c->closing)
		return;
	pv_conn_write(c->conn, data, n, NULL, NULL);
	check_output(c);
}

static void write_str(pv_c2s *c, const char *s)
{
	pv_c2s_write_raw(c, s, strlen(s));
}

/* A message's write, tracked so its hold is released once the kernel has it.  The
 * c2s outlives every successful write callback (callbacks still pending when the
 * connection goes get UV_ECANCELED before on_close frees it), and its session is
 * cleared by pv_c2s_detach, so no lookup by session id is needed. */
typedef struct wtrack {
	pv_c2s *c;
	uint64_t seq;
} wtrack;

/* Without XEP-0198 the best we can know is that the kernel took the bytes. */
static void write_done(void *ud, int status)
{
	wtrack *w = ud;
	if (status == 0 && w->c->sess)
		pv_session_written(w->c->sess, w->seq);
	pv_free(w);
}

void pv_c2s_write_stanza(pv_c2s *c, pv_stanza *st, bool track_write, pv_session *s, uint64_t seq)
{
	if (!c->conn || c->closing)
		return;
	const pv_buf *b = pv_stanza_wire(st);
	if (track_write) {
		wtrack *w = pv_malloc(sizeof(*w));
		PV_ASSERT(c->sess == s);
		w->c = c;
		w->seq = seq;
		pv_conn_write(c->conn, b->data, b->len, write_done, w);
	} else {
		pv_conn_write(c->conn, b->data, b->len, NULL, NULL);
	}
	c->srv->stats.stanzas_out++;
	check_output(c);
}

static void send_header(pv_c2s *c)
{
	if (c->header_sent)
		return;
	/* A c2s stream id is only ever said, never checked later: not kept. */
	char *id = pv_random_hex(12);
	pv_buf b;
	pv_buf_init(&b);
	pv_stream_header(&b, PV_NS_CLIENT, false, id, c->host ? c->host->name : NULL, NULL, true);
	pv_free(id);
	pv_c2s_write_raw(c, b.data, b.len);
	pv_buf_fini(&b);
	c->header_sent = true;
}

/* RFC 6120 4.9: send the error (opening our stream first if needed), close the stream,
 * close the connection.  The session (if any) hibernates or ends in on_close. */
void pv_c2s_stream_error(pv_c2s *c, const char *cond, const char *text)
{
	if (c->closing)
		return;
	c->srv->stats.stream_errors++;
	pv_info("c2s", "[%s] stream error %s%s%s", c->ip, cond, text ? ": " : "", text ? text : "");
	send_header(c);
	pv_buf b;
	pv_buf_init(&b);
	pv_stream_error(&b, cond, text, NULL);
	pv_c2s_write_raw(c, b.data, b.len);
	pv_buf_fini(&b);
	c->closing = true;
	if (c->conn)
		pv_conn_close(c->conn);
}

static void stream_error_xml(pv_c2s *c, const char *cond, const char *text, const char *extra)
{
	/* Stream error with an application-specific child (XEP-0198 handled-count-too-high). */
	if (c->closing)
		return;
	c->srv->stats.stream_errors++;
	pv_info("c2s", "[%s] stream error %s: %s", c->ip, cond, text);
	send_header(c);
	pv_buf b;
	pv_buf_init(&b);
	pv_stream_error(&b, cond, text, extra);
	pv_c2s_write_raw(c, b.data, b.len);
	pv_buf_fini(&b);
	c->closing = true;
	pv_conn_close(c->conn);
}

void pv_c2s_close(pv_c2s *c, const char *why)
{
	if (c->closing || !c->conn)
		return;
	pv_debug("c2s", "[%s] closing: %s", c->ip, why);
	send_header(c);
	write_str(c, "</stream:stream>");
	c->closing = true;
	pv_conn_close(c->conn);
}

void pv_c2s_detach(pv_c2s *c)
{
	c->sess = NULL;
}

bool pv_c2s_is_secure(const pv_c2s *c)
{
	return c->tls_done;
}

const char *pv_c2s_peer_ip(const pv_c2s *c)
{
	return c->ip;
}

const char *pv_c2s_info(const pv_c2s *c, char *buf, size_t n)
{
	snprintf(buf, n, "ip=%s tls=%s", c->ip,
		c->conn && pv_conn_tls_version(c->conn) ? pv_conn_tls_version(c->conn) : "none");
	return buf;
}

void pv_c2s_answer_ack(pv_c2s *c, uint64_t h)
{
	char b[96];
	snprintf(b, sizeof(b), "<a xmlns='" PV_NS_SM "' h='%u'/>", (unsigned)(uint32_t)h);
	write_str(c, b);
}

/* ---- throttling of failed logins (per IP and per account) ---- */

static throttle *throttle_get(pv_c2s *c, const char *key, bool create)
{
	pv_worker *w = &c->srv->worker;
	throttle *t = pv_map_get(w->auth_fail, key);
	uint64_t now = pv_now_ms();
	if (t && now - t->since > c->srv->lim.auth_fail_window_ms) {
		t->count = 0;
		t->since = now;
	}
	if (!t && create) {
		t = pv_calloc(1, sizeof(*t));
		t->since = now;
		pv_map_put(w->auth_fail, key, t);
	}
	return t;
}

static bool throttled(pv_c2s *c, const char *user)
{
	char key[1200];
	snprintf(key, sizeof(key), "ip:%s", c->ip);
	throttle *t = throttle_get(c, key, false);
	if (t && t->count >= c->srv->lim.auth_fail_ip)
		return true;
	if (user && c->host) {
		snprintf(key, sizeof(key), "acct:%s@%s", user, c->host->name);
		t = throttle_get(c, key, false);
		if (t && t->count >= c->srv->lim.auth_fail_account)
			return true;
	}
	return false;
}

static void note_failure(pv_c2s *c, const char *user)
{
	char key[1200];
	snprintf(key, sizeof(key), "ip:%s", c->ip);
	throttle_get(c, key, true)->count++;
	if (user && c->host) {
		snprintf(key, sizeof(key), "acct:%s@%s", user, c->host->name);
		throttle_get(c, key, true)->count++;
	}
}

/* ---- SASL ---- */

static int get_cred(void *ud, const char *user, const char *mech, pv_scram_cred *out)
{
	pv_c2s *c = ud;
	/* issue 6: an exchange hosts no people; its logins fail like an unknown account's. */
	if (pv_host_is_exchange(c->host))
		return PV_ENOENT;
	return pv_store_user_get_cred(c->srv->store, c->host->name, user, mech, out);
}

/* A failure in the profile of the exchange: XEP-0388 wraps RFC 6120's conditions. */
static void sasl_failure(pv_c2s *c, const char *cond)
{
	char b[200];
	if (c->sasl2)
		snprintf(b, sizeof(b), "<failure xmlns='" PV_NS_SASL2 "'><%s xmlns='" PV_NS_SASL
			"'/></failure>", cond);
	else
		snprintf(b, sizeof(b), "<failure xmlns='" PV_NS_SASL "'><%s/></failure>", cond);
	write_str(c, b);
}

static void put_base64(pv_buf *b, const unsigned char *data, size_t n)
{
	char *enc = pv_base64_encode(data, n);
	pv_buf_puts(b, enc);
	pv_free(enc);
}

/* <challenge/> or RFC 6120's <success/>.  RFC 6120 6.4.2 spells empty data "=";
 * XEP-0388 has no empty challenges. */
static void sasl_reply(pv_c2s *c, const char *el, const unsigned char *data, size_t n)
{
	pv_buf b;
	pv_buf_init(&b);
	pv_buf_printf(&b, "<%s xmlns='%s'>", el, c->sasl2 ? PV_NS_SASL2 : PV_NS_SASL);
	if (data && n)
		put_base64(&b, data, n);
	else if (data && !c->sasl2)
		pv_buf_puts(&b, "=");
	pv_buf_printf(&b, "</%s>", el);
	pv_c2s_write_raw(c, b.data, b.len);
	pv_buf_fini(&b);
}

static const char *bind_session(pv_c2s *c, const char *norm, const char **etype,
	const char **text);
static void replace_session(pv_c2s *c, pv_session *old, const char *why);
/* XEP-0198 (below), also inline in XEP-0388 and XEP-0386 */
static bool is_true(const char *v);
static void sm_failed_to(pv_buf *out, const char *cond);
static void sm_enable(pv_c2s *c, bool resumable, pv_buf *out);
static const char *sm_resume_check(pv_c2s *c, const char *prev, const char *hs, pv_session **old,
	uint32_t *h);
static void sm_take_over(pv_c2s *c, pv_session *old, pv_buf *out);
static void sm_resume_finish(pv_session *s, uint32_t h);

/* The resource suffix of one client of one account (XEP-0386 "stable resource
 * identifiers"): a keyed hash of the account and the client's SASL2 <user-agent id>,
 * so the id itself never shows (the XEP forbids exposing it).  16 characters of
 * base32: 80 bits.  NULL if the hash fails. */
static char *client_suffix(pv_c2s *c, const char *ua)
{
	char *in = pv_sprintf("urn:peyvand:bind2:0 %zu:%s %s", strlen(c->sess->user), c->sess->user, ua);
	char h[PV_BLIND_LEN];
	int rc = pv_blind(c->srv->secret, sizeof(c->srv->secret), in, h);
	pv_free(in);
	return rc == 0 ? pv_strndup(h, 16) : NULL;
}

/* XEP-0386: the resource is ours to make -- the client's tag (when it is a valid
 * resource), "/" and a suffix: the same one every time for a client that names itself
 * with a <user-agent id> (client_suffix), random hex otherwise.  The same client's
 * earlier session, under this resource or under another tag, is replaced ("the server
 * SHOULD terminate any earlier sessions from the same client"): a phone that could not
 * resume gets its new session at once, and the old one's unacknowledged messages are
 * rerouted now rather than when its resumption time runs out.  NULL if the binding
 * failed (too many resources): the client then sees no <bound/> and binds the RFC 6120
 * way, which answers with the stanza error. */
static const char *bind2(pv_c2s *c, const char *tag, const char *ua)
{
	char *sfx = ua && *ua ? client_suffix(c, ua) : NULL;
	bool stable = sfx != NULL;
	if (!sfx)
		sfx = pv_random_hex(8);
	char *norm = NULL;
	if (tag && *tag) {
		char *want = pv_sprintf("%s/%s", tag, sfx);
		norm = pv_jid_norm_resource(want, strlen(want));
		pv_free(want);
	}
	if (!norm)
		norm = pv_strdup(sfx);
	if (stable) {
		pv_session *all[64];
		size_t n = pv_host_user_sessions(c->host, c->sess->user, all, 64);
		size_t sl = strlen(sfx);
		for (size_t i = 0; i < n && i < 64; i++) {
			const char *r = all[i]->jid.resource;
			size_t rl = r ? strlen(r) : 0;
			if (all[i] != c->sess && rl >= sl && strcmp(r + rl - sl, sfx) == 0 &&
			    (rl == sl || r[rl - sl - 1] == '/') && strcmp(r, norm) != 0)
				replace_session(c, all[i], "the same client bound again");
		}
	}
	pv_free(sfx);
	const char *etype, *text;
	const char *err = bind_session(c, norm, &etype, &text);
	if (err)
		pv_info("c2s", "[%s] bind 2 for %s failed: %s", c->ip, c->sess->user, err);
	pv_free(norm);
	return err ? NULL : c->sess->jid.full;
}

/* The inline requests of an <authenticate/> (NULL when it has none). */
static sasl2_req *sasl2_req_read(const pv_xml *auth)
{
	pv_xml *b = pv_xml_child(auth, "bind", PV_NS_BIND2);
	pv_xml *rs = pv_xml_child(auth, "resume", PV_NS_SM);
	if (!b && !rs)
		return NULL;
	sasl2_req *r = pv_calloc(1, sizeof(*r));
	if (b) {
		r->bind = true;
		r->tag = pv_xml_child_text(b, "tag", PV_NS_BIND2);
		pv_xml *ua = pv_xml_child(auth, "user-agent", PV_NS_SASL2);
		const char *id = ua ? pv_xml_attr(ua, "id") : NULL;
		if (id && *id && strlen(id) <= 1024)
			r->ua = pv_strdup(id);
		pv_xml *en = pv_xml_child(b, "enable", PV_NS_SM);
		r->sm_enable = en != NULL;
		r->sm_resumable = en && is_true(pv_xml_attr(en, "resume"));
	}
	if (rs) {
		r->previd = pv_strdup(pv_xml_attr(rs, "previd"));
		r->h = pv_strdup(pv_xml_attr(rs, "h"));
		r->resume = true;
	}
	return r;
}

/* XEP-0388 success: the server's final data, who the client now is, what became of the
 * inline requests, then the new stream features -- no stream restart.  XEP-0198 (its
 * SASL2 and Bind 2 section): a resumption asked for inline comes first and, when it
 * works, replaces the binding; <resumed/> or <failed/> goes in the <success/>, the
 * retransmission after the features.  An <enable/> inside the binding is answered
 * inside <bound/>. */
static void sasl2_success(pv_c2s *c, const unsigned char *data, size_t n)
{
	sasl2_req *r = c->req;
	c->req = NULL;
	pv_buf sm, bound;
	pv_buf_init(&sm);
	pv_buf_init(&bound);
	pv_session *resumed = NULL;
	uint32_t h = 0;
	const char *full = NULL;
	if (r && r->resume) {
		const char *cond = sm_resume_check(c, r->previd, r->h, &resumed, &h);
		if (cond && !*cond)
			goto done; /* h too high: a stream error, already sent */
		if (cond)
			sm_failed_to(&sm, cond);
		else
			sm_take_over(c, resumed, &sm);
	}
	if (resumed) {
		full = c->sess->jid.full;
	} else if (r && r->bind) {
		full = bind2(c, r->tag, r->ua);
		if (full) {
			pv_buf_puts(&bound, "<bound xmlns='" PV_NS_BIND2 "'>");
			if (r->sm_enable)
				sm_enable(c, r->sm_resumable, &bound);
			pv_buf_puts(&bound, "</bound>");
		}
	}
	pv_buf b;
	pv_buf_init(&b);
	pv_buf_puts(&b, "<success xmlns='" PV_NS_SASL2 "'>");
	if (data && n) {
		pv_buf_puts(&b, "<additional-data>");
		put_base64(&b, data, n);
		pv_buf_puts(&b, "</additional-data>");
	}
	pv_buf_puts(&b, "<authorization-identifier>");
	if (full) {
		pv_xml_escape(full, strlen(full), &b);
	} else {
		pv_xml_escape(c->sess->user, strlen(c->sess->user), &b);
		pv_buf_puts(&b, "@");
		pv_xml_escape(c->host->name, strlen(c->host->name), &b);
	}
	pv_buf_puts(&b, "</authorization-identifier>");
	if (sm.len)
		pv_buf_append(&b, sm.data, sm.len);
	if (bound.len)
		pv_buf_append(&b, bound.data, bound.len);
	pv_buf_puts(&b, "</success>");
	pv_c2s_write_raw(c, b.data, b.len);
	pv_buf_fini(&b);
	start_stream_features(c);
	if (resumed)
		sm_resume_finish(resumed, h);
done:
	pv_buf_fini(&sm);
	pv_buf_fini(&bound);
	sasl2_req_free(r);
}

/* An exchange that failed or was aborted: nothing of it, inline requests included
 * (XEP-0388: none is processed after a failure), carries over to the next. */
static void sasl_end(pv_c2s *c)
{
	pv_sasl_free(c->sasl);
	c->sasl = NULL;
	sasl2_req_free(c->req);
	c->req = NULL;
}

/* The result of one SASL step, on the loop thread. */
static void sasl_finish(pv_c2s *c, pv_sasl_rc rc, unsigned char *out, size_t outlen, const char *cond)
{
	const char *user = pv_sasl_user(c->sasl);
	if (rc != PV_SASL_FAILURE && user && throttled(c, user)) {
		/* The account is under attack: refuse even a correct password for a while. */
		sasl_failure(c, "temporary-auth-failure");
		pv_info("c2s", "[%s] login for %s refused: too many failures", c->ip, user);
		sasl_end(c);
		pv_free(out);
		return;
	}
	if (rc == PV_SASL_FAILURE && user && throttled(c, user))
		cond = "temporary-auth-failure";
	if (rc == PV_SASL_CONTINUE) {
		sasl_reply(c, "challenge", out ? out : (const unsigned char *)"", out ? outlen : 0);
	} else if (rc == PV_SASL_SUCCESS && user) {
		c->authed = true;
		c->srv->stats.c2s_auth_ok++;
		c->sess->user = pv_strdup(user);
		pv_info("c2s", "[%s] authenticated %s@%s%s", c->ip, user, c->host->name,
			c->sasl2 ? " (SASL2)" : "");
		pv_sasl_free(c->sasl);
		c->sasl = NULL;
		pv_free(c->cb); /* no more SASL on this stream (RFC 6120 6.4.8) */
		c->cb = NULL;
		c->cblen = 0;
		/* Nor any other use for OpenSSL's object: with our own TLS 1.3 records it
		 * goes (net/conn.h), most of an idle session's memory. */
		if (c->conn)
			pv_conn_tls_release(c->conn);
		if (c->sasl2) {
			sasl2_success(c, out, out ? outlen : 0);
		} else {
			sasl_reply(c, "success", out ? out : (const unsigned char *)"", out ? outlen : 0);
			c->restart = true;
		}
	} else {
		c->srv->stats.c2s_auth_fail++;
		note_failure(c, user);
		pv_info("c2s", "[%s] authentication failed user=%s reason=%s", c->ip, user ? user : "?", cond);
		sasl_failure(c, cond);
		sasl_end(c);
		/* RFC 6120 6.4.5: a reasonable number of retries, then the stream ends. */
		if (++c->sasl_failures >= 5)
			pv_c2s_stream_error(c, "policy-violation", "too many failed authentication attempts");
	}
	pv_free(out);
}

/* PLAIN derives SCRAM keys from the password (PBKDF2, milliseconds of CPU): that step
 * runs in libuv's thread pool while the connection's reading is paused. */
typedef struct sasl_job {
	uv_work_t req;
	pv_c2s *c;
	unsigned char *in, *out;
	size_t inlen, outlen;
	const char *cond;
	pv_sasl_rc rc;
} sasl_job;

static void c2s_free(pv_c2s *c);

static void sasl_work(uv_work_t *req)
{
	sasl_job *j = req->data;
	j->rc = pv_sasl_step(j->c->sasl, j->in ? j->in : (const unsigned char *)"", j->inlen, &j->out,
		&j->outlen, &j->cond);
}

static void sasl_work_done(uv_work_t *req, int status)
{
	sasl_job *j = req->data;
	pv_c2s *c = j->c;
	c->busy = false;
	pv_free(j->in);
	if (c->free_pending) {
		pv_free(j->out);
		pv_free(j);
		c2s_free(c);
		return;
	}
	sasl_finish(c, status == 0 ? j->rc : PV_SASL_FAILURE, j->out, j->outlen, j->cond);
	pv_free(j);
	if (c->conn && !c->closing) {
		if (c->restart) {
			c->restart = false;
			pv_xmlstream_reset(c->xs);
			c->header_sent = false;
		}
		pv_conn_read_resume(c->conn);
	}
}

/* One step with el's text as the client's data (el NULL: no data). */
static void sasl_step(pv_c2s *c, pv_xml *el)
{
	char *txt = el ? pv_xml_text(el) : pv_strdup("");
	unsigned char *in = NULL;
	size_t inlen = 0;
	const char *t = txt;
	while (*t == ' ' || *t == '\n' || *t == '\r' || *t == '\t')
		t++;
	size_t tl = strlen(t);
	while (tl && (t[tl - 1] == ' ' || t[tl - 1] == '\n' || t[tl - 1] == '\r' || t[tl - 1] == '\t'))
		tl--;
	if (!(tl == 1 && t[0] == '=') && tl > 0 && pv_base64_decode(t, tl, &in, &inlen) < 0) {
		pv_free(txt);
		pv_sasl_free(c->sasl);
		c->sasl = NULL;
		sasl_failure(c, "incorrect-encoding");
		return;
	}
	pv_free(txt);
	if (c->sasl_slow) {
		sasl_job *j = pv_calloc(1, sizeof(*j));
		j->req.data = j;
		j->c = c;
		j->in = in;
		j->inlen = inlen;
		j->cond = "not-authorized";
		c->busy = true;
		pv_conn_read_pause(c->conn);
		uv_queue_work(c->srv->loop, &j->req, sasl_work, sasl_work_done);
		return;
	}
	unsigned char *out = NULL;
	size_t outlen = 0;
	const char *cond = "not-authorized";
	pv_sasl_rc rc = pv_sasl_step(c->sasl, in ? in : (const unsigned char *)"", inlen, &out, &outlen, &cond);
	pv_free(in);
	sasl_finish(c, rc, out, outlen, cond);
	if (c->restart)
		pv_xmlstream_stop(c->xs);
}

/* Channel binding data for the type the client asks for in its gs2 header ("p=type,").
 * TLS 1.3 gives tls-exporter (RFC 9266).  COMPAT: deployed clients (slixmpp 1.8, older
 * Gajim/Conversations) only know tls-unique and compute it over TLS 1.3 too, from the
 * first Finished message, as OpenSSL exposes it; we accept that rather than make them
 * fall back to a weaker mechanism (or fail the RFC 5802 downgrade check). */
static void choose_cb(pv_c2s *c, pv_xml *el)
{
	char *txt = el ? pv_xml_text(el) : NULL;
	unsigned char *in = NULL;
	size_t inlen = 0;
	if (txt && *txt && pv_base64_decode(txt, strlen(txt), &in, &inlen) >= 0 && inlen > 12 &&
	    memcmp(in, "p=tls-unique,", 13) == 0) {
		SSL *ssl = pv_conn_ssl(c->conn);
		int n = pv_conn_tls_cb(c->conn, "tls-unique", cb_buf(c), CB_MAX);
		if (n <= 0 && ssl && !SSL_session_reused(ssl))
			n = (int)SSL_get_peer_finished(ssl, c->cb, CB_MAX);
		pv_debug("c2s", "[%s] client binds with tls-unique (%d bytes)", c->ip, n);
		if (n > 0) {
			c->cblen = n;
			c->cbtype = "tls-unique";
		}
	} else if (c->cbtype && strcmp(c->cbtype, "tls-unique") == 0) {
		/* Back to the connection's preferred type. */
		on_tls_cb(c);
	}
	pv_free(in);
	pv_free(txt);
}

/* <auth/> (RFC 6120) or <authenticate/> (XEP-0388): mechanism mech, the client's
 * first data in el's text (el NULL: none). */
static void sasl_begin(pv_c2s *c, const char *mech, pv_xml *el)
{
	if (!c->tls_done && pv_conf_bool(c->srv->conf, "c2s.require_encryption", true)) {
		sasl_failure(c, "encryption-required");
		return;
	}
	if (throttled(c, NULL)) {
		sasl_failure(c, "temporary-auth-failure");
		return;
	}
	pv_sasl_free(c->sasl);
	choose_cb(c, el);
	pv_sasl_ctx ctx = {
		.get_cred = get_cred,
		.ud = c,
		.tls = c->tls_done,
		.cb_type = c->cblen > 0 ? c->cbtype : NULL,
		.cb_data = c->cb,
		.cb_len = c->cblen > 0 ? (size_t)c->cblen : 0,
		.offer_plus = c->cblen > 0,
		.secret = c->srv->secret,
		.secret_len = sizeof(c->srv->secret),
		.fake_iterations = c->srv->lim.scram_iterations,
		.host = c->host->name,
	};
	c->sasl = mech ? pv_sasl_new(mech, &ctx) : NULL;
	c->sasl_slow = mech && strcmp(mech, "PLAIN") == 0;
	if (!c->sasl) {
		sasl_failure(c, "invalid-mechanism");
		return;
	}
	sasl_step(c, el);
}

static void handle_sasl(pv_c2s *c, pv_xml *el)
{
	if (c->authed) {
		/* RFC 6120 6.4.8; XEP-0388 ("Multiple Authentication") for <authenticate/>. */
		pv_c2s_stream_error(c, "policy-violation", "already authenticated");
		return;
	}
	bool two = strcmp(el->ns, PV_NS_SASL2) == 0;
	if (pv_xml_is(el, "auth", PV_NS_SASL) || pv_xml_is(el, "authenticate", PV_NS_SASL2)) {
		c->sasl2 = two;
		sasl2_req_free(c->req); /* carried out at the success */
		c->req = two ? sasl2_req_read(el) : NULL;
		sasl_begin(c, pv_xml_attr(el, "mechanism"),
			two ? pv_xml_child(el, "initial-response", PV_NS_SASL2) : el);
		return;
	}
	bool response = strcmp(el->name, "response") == 0, abort = strcmp(el->name, "abort") == 0;
	if (!response && !abort) {
		pv_c2s_stream_error(c, "unsupported-stanza-type", NULL);
		return;
	}
	if (!c->sasl || two != c->sasl2) {
		/* Nothing under way, or an answer in the other profile than the exchange's. */
		sasl_end(c);
		c->sasl2 = two;
		sasl_failure(c, abort ? "aborted" : "malformed-request");
		return;
	}
	if (response) {
		sasl_step(c, el);
	} else {
		sasl_end(c);
		sasl_failure(c, "aborted");
	}
}

/* ---- features ---- */

static void start_stream_features(pv_c2s *c)
{
	pv_xml *f = pv_xml_new("features", PV_NS_STREAM);
	bool require_tls = pv_conf_bool(c->srv->conf, "c2s.require_encryption", true);
	if (!c->tls_done) {
		pv_xml *st = pv_xml_add_child(f, "starttls", PV_NS_TLS);
		if (require_tls)
			pv_xml_add_child(st, "required", PV_NS_TLS);
	}
	if (!c->authed && (c->tls_done || !require_tls)) {
		/* The same mechanisms in both profiles: RFC 6120's and XEP-0388's. */
		pv_xml *m = pv_xml_add_child(f, "mechanisms", PV_NS_SASL);
		pv_xml *a = pv_xml_add_child(f, "authentication", PV_NS_SASL2);
		for (const char *const *p = pv_sasl_mechs(c->tls_done, c->cblen > 0); *p; p++) {
			pv_xml_add_text(pv_xml_add_child(m, "mechanism", PV_NS_SASL), *p, strlen(*p));
			pv_xml_add_text(pv_xml_add_child(a, "mechanism", PV_NS_SASL2), *p, strlen(*p));
		}
		/* Inline: XEP-0198 resumption, and XEP-0386 binding with XEP-0198 enabled in it. */
		pv_xml *in = pv_xml_add_child(a, "inline", PV_NS_SASL2);
		pv_xml_add_child(in, "sm", PV_NS_SM);
		pv_xml *bi = pv_xml_add_child(pv_xml_add_child(in, "bind", PV_NS_BIND2), "inline",
			PV_NS_BIND2);
		pv_xml_set_attr(pv_xml_add_child(bi, "feature", PV_NS_BIND2), "var", PV_NS_SM);
		if (c->cblen > 0) {
			/* XEP-0440: which channel-binding types we can verify. */
			pv_xml *cbs = pv_xml_add_child(f, "sasl-channel-binding", "urn:xmpp:sasl-cb:0");
			pv_xml_set_attr(pv_xml_add_child(cbs, "channel-binding", "urn:xmpp:sasl-cb:0"), "type", c->cbtype);
			if (strcmp(c->cbtype, "tls-exporter") == 0)
				pv_xml_set_attr(pv_xml_add_child(cbs, "channel-binding", "urn:xmpp:sasl-cb:0"),
					"type", "tls-unique");
		}
	}
	if (c->authed) {
		if (!c->sess->bound) { /* XEP-0386 may have bound it already */
			pv_xml_add_child(f, "bind", PV_NS_BIND);
			pv_xml_add_child(pv_xml_add_child(f, "session", PV_NS_SESSION), "optional",
				PV_NS_SESSION);
		}
		if (!c->sess->sm) /* XEP-0198 may be on already (inline, or resumed) */
			pv_xml_add_child(f, "sm", PV_NS_SM);
	}
	pv_event ev = {.host = c->host, .origin = c->sess, .payload = f};
	pv_fire(c->host, "stream-features", &ev);
	pv_buf b;
	pv_buf_init(&b);
	/* Serialise children with the stream prefix on the wrapper. */
	pv_buf_puts(&b, "<stream:features>");
	for (pv_xml *x = f->first; x; x = x->next)
		pv_xml_serialize(x, PV_NS_CLIENT, &b);
	pv_buf_puts(&b, "</stream:features>");
	pv_c2s_write_raw(c, b.data, b.len);
	pv_buf_fini(&b);
	pv_xml_free(f);
}

/* ---- stream callbacks ---- */

static void on_open(void *ud, const pv_xml *hdr, const char *default_ns)
{
	pv_c2s *c = ud;
	c->header_sent = false;
	const char *to = pv_xml_attr(hdr, "to");
	if (to && !c->host) {
		char *d = pv_jid_norm_domain(to, strlen(to));
		c->host = d ? pv_server_host(c->srv, d) : NULL;
		pv_free(d);
	} else if (to && c->host) {
		char *d = pv_jid_norm_domain(to, strlen(to));
		bool same = d && strcmp(d, c->host->name) == 0;
		pv_free(d);
		if (!same) {
			pv_c2s_stream_error(c, "host-unknown", "the stream restarted for another host");
			return;
		}
	}
	if (!c->host) {
		/* Our header needs a from; use the first host so the error is well-formed. */
		c->host = NULL;
		pv_c2s_stream_error(c, "host-unknown", to ? "this server does not serve that domain" : "no 'to' address");
		return;
	}
	if (!c->sess) {
		c->sess = pv_session_new(c->srv, c->host);
		c->sess->c2s = c;
	}
	if (!default_ns || strcmp(default_ns, PV_NS_CLIENT) != 0) {
		pv_c2s_stream_error(c, "invalid-namespace", "the default namespace must be jabber:client");
		return;
	}
	const char *ver = pv_xml_attr(hdr, "version");
	if (!ver || strncmp(ver, "1.", 2) != 0) {
		pv_c2s_stream_error(c, "unsupported-version", "version 1.0 is required");
		return;
	}
	if (c->over_limit) {
		pv_c2s_stream_error(c, "policy-violation", "too many connections from your address");
		return;
	}
	send_header(c);
	start_stream_features(c);
}

static void on_close_tag(void *ud)
{
	pv_c2s *c = ud;
	/* A clean close ends the session: no resumption (XEP-0198 5). */
	if (c->sess)
		c->sess->resumable = false;
	pv_c2s_close(c, "client closed the stream");
}

static void handle_starttls(pv_c2s *c, pv_xml *el)
{
	if (c->tls_done || !pv_xml_is(el, "starttls", PV_NS_TLS)) {
		write_str(c, "<failure xmlns='" PV_NS_TLS "'/></stream:stream>");
		c->closing = true;
		pv_conn_close(c->conn);
		return;
	}
	write_str(c, "<proceed xmlns='" PV_NS_TLS "'/>");
	c->starttls = true;
	/* Anything after <starttls/> in this read is discarded, never parsed (RFC 6120
	 * 5.4.3.3 and the classic command-injection attack). */
	pv_xmlstream_stop(c->xs);
}

/* RFC 6120 7.7.2.2: the new session wins; the old one, connected or waiting to be
 * resumed, ends with <conflict/> and its unacknowledged messages are rerouted. */
static void replace_session(pv_c2s *c, pv_session *old, const char *why)
{
	pv_info("c2s", "[%s] %s for %s: replacing the old session", c->ip, why, old->jid.full);
	old->resumable = false;
	if (old->c2s)
		pv_c2s_stream_error(old->c2s, "conflict", "replaced by a new session");
	pv_session_unbind(old, "conflict");
}

/* Binds the normalised resource norm to c's session (RFC 6120 7.7 rules: the new
 * session wins a conflict).  NULL when bound, else the stanza error's condition, with
 * its type and text. */
static const char *bind_session(pv_c2s *c, const char *norm, const char **etype,
	const char **text)
{
	pv_session *s = c->sess;
	pv_session *old = pv_host_find_resource(c->host, s->user, norm);
	if (old)
		replace_session(c, old, "resource conflict");
	pv_session *others[1];
	if (pv_host_user_sessions(c->host, s->user, others, 1) >= c->srv->lim.max_resources) {
		*etype = "wait";
		*text = "too many resources";
		return "resource-constraint";
	}
	if (pv_jid_make(&s->jid, s->user, c->host->name, norm) != 0) {
		*etype = "modify";
		*text = "invalid resource";
		return "bad-request";
	}
	s->bound = true;
	s->sid = pv_random_hex(16);
	pv_host_register(c->host, s);
	pv_map_put(c->srv->worker.by_sid, s->sid, s);
	pv_info("c2s", "[%s] bound %s", c->ip, s->jid.full);
	pv_event ev = {.host = c->host, .origin = s};
	pv_fire(c->host, "resource-bind", &ev);
	return NULL;
}

static void bind_resource(pv_c2s *c, pv_stanza *st, pv_xml *bind)
{
	pv_session *s = c->sess;
	pv_stanza *reply = NULL;
	char *res = pv_xml_child_text(bind, "resource", PV_NS_BIND);
	char *norm = NULL;
	if (s->bound) {
		reply = pv_stanza_error(st, "cancel", "not-allowed", "already bound");
		goto out;
	}
	if (res && *res) {
		norm = pv_jid_norm_resource(res, strlen(res));
		if (!norm) {
			reply = pv_stanza_error(st, "modify", "bad-request", "invalid resource");
			goto out;
		}
	} else {
		norm = pv_random_hex(8);
	}
	const char *etype, *text;
	const char *err = bind_session(c, norm, &etype, &text);
	if (err) {
		reply = pv_stanza_error(st, etype, err, text);
		goto out;
	}
	reply = pv_stanza_iq_result(st);
	pv_xml *b = pv_xml_add_child(reply->xml, "bind", PV_NS_BIND);
	pv_xml *j = pv_xml_add_child(b, "jid", PV_NS_BIND);
	pv_xml_add_text(j, s->jid.full, strlen(s->jid.full));
out:
	if (reply) {
		pv_stanza_set_to(reply, NULL);
		pv_session_send(s, reply);
		pv_stanza_unref(reply);
	}
	pv_free(res);
	pv_free(norm);
}

/* Stanzas from an authenticated but unbound stream: bind, legacy session, register. */
static void handle_prebind_iq(pv_c2s *c, pv_stanza *st)
{
	pv_xml *q = pv_xml_first_element(st->xml);
	if (st->type && strcmp(st->type, "set") == 0 && q && pv_xml_is(q, "bind", PV_NS_BIND)) {
		bind_resource(c, st, q);
		return;
	}
	pv_stanza *e = pv_stanza_error(st, "cancel", "not-allowed", "bind a resource first");
	if (e) {
		pv_stanza_set_to(e, NULL);
		pv_c2s_write_stanza(c, e, false, NULL, 0);
		pv_stanza_unref(e);
	}
}

/* Namespaces served before authentication: in-band registration (XEP-0077) and
 * registration by phone number (issue 6, urn:peyvand:phone:0, mod_phone). */
static bool preauth_ns(const char *ns)
{
	return ns && (strcmp(ns, "jabber:iq:register") == 0 || strcmp(ns, "urn:peyvand:phone:0") == 0);
}

/* In-band registration before authentication: only iq to the host. */
static void handle_preauth_iq(pv_c2s *c, pv_stanza *st)
{
	pv_xml *q = pv_xml_first_element(st->xml);
	if (q && preauth_ns(q->ns) && c->tls_done && st->type &&
	    (strcmp(st->type, "get") == 0 || strcmp(st->type, "set") == 0)) {
		char ev_name[64];
		snprintf(ev_name, sizeof(ev_name), "iq-%s/host/%s", st->type, q->ns);
		pv_event ev = {.host = c->host, .origin = c->sess, .stanza = st};
		if (pv_fire(c->host, ev_name, &ev) == PV_HANDLED)
			return;
		pv_stanza *e = pv_stanza_error(st, "cancel", "service-unavailable", NULL);
		if (e) {
			pv_c2s_write_stanza(c, e, false, NULL, 0);
			pv_stanza_unref(e);
		}
		return;
	}
	pv_c2s_stream_error(c, "not-authorized", "authenticate first");
}

/* ---- XEP-0198 ---- */

/* <failed/> with a stanza error condition, appended to out. */
static void sm_failed_to(pv_buf *out, const char *cond)
{
	pv_buf_printf(out, "<failed xmlns='" PV_NS_SM "'><%s xmlns='" PV_NS_STANZAS "'/></failed>", cond);
}

static void sm_failed(pv_c2s *c, const char *cond)
{
	pv_buf b;
	pv_buf_init(&b);
	sm_failed_to(&b, cond);
	pv_c2s_write_raw(c, b.data, b.len);
	pv_buf_fini(&b);
}

static void too_high(pv_c2s *c, uint32_t h, uint64_t sent)
{
	char extra[200], text[160];
	snprintf(extra, sizeof(extra), "<handled-count-too-high xmlns='" PV_NS_SM "' h='%u' send-count='%u'/>",
		h, (unsigned)(uint32_t)sent);
	snprintf(text, sizeof(text), "You acknowledged %u stanzas, but I only sent you %u so far.", h,
		(unsigned)(uint32_t)sent);
	stream_error_xml(c, "undefined-condition", text, extra);
}

static bool parse_h(const char *s, uint32_t *out)
{
	if (!s || !*s)
		return false;
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (*end || v > 0xffffffffULL || s[0] == '-')
		return false;
	*out = (uint32_t)v;
	return true;
}

static bool is_true(const char *v)
{
	return v && (strcmp(v, "true") == 0 || strcmp(v, "1") == 0);
}

/* XEP-0198 3 on a bound session: enabled, and the <enabled/> answer appended to out. */
static void sm_enable(pv_c2s *c, bool resumable, pv_buf *out)
{
	pv_session *s = c->sess;
	s->sm = true;
	s->resumable = resumable;
	s->out_base = s->out_acked = s->out_seq;
	s->in.base = s->in.count;
	pv_session_put_row(s);
	if (s->resumable)
		pv_buf_printf(out, "<enabled xmlns='" PV_NS_SM "' id='%s' resume='true' max='%u'/>",
			s->sid, (unsigned)(c->srv->lim.resume_timeout_ms / 1000));
	else
		pv_buf_puts(out, "<enabled xmlns='" PV_NS_SM "'/>");
}

/* XEP-0198 5: may this authenticated, unbound stream resume session prev after h of its
 * stanzas?  NULL with *old and *h set if so; else the <failed/> condition, or "" when
 * h was too high (the stream error is sent). */
static const char *sm_resume_check(pv_c2s *c, const char *prev, const char *hs, pv_session **old,
	uint32_t *h)
{
	if (!parse_h(hs, h) || !prev)
		return "bad-request";
	pv_session *o = pv_host_find_sid(c->srv, prev);
	if (!o || !o->resumable || o->host != c->host || !o->user ||
	    strcmp(o->user, c->sess->user) != 0)
		return "item-not-found"; /* someone else's or an expired session: one answer */
	uint64_t acked;
	if (pv_session_ack_check(o, *h, &acked) != 0) {
		too_high(c, *h, o->out_seq - o->out_base);
		return "";
	}
	*old = o;
	return NULL;
}

/* The stream takes session old over (its connection, if still there, is dropped) and
 * <resumed/> is appended to out.  Once that answer is written, sm_resume_finish
 * retransmits what the client had not acknowledged. */
static void sm_take_over(pv_c2s *c, pv_session *old, pv_buf *out)
{
	if (old->c2s) {
		pv_c2s *oc = old->c2s;
		old->c2s = NULL;
		oc->sess = NULL;
		pv_c2s_stream_error(oc, "conflict", "the session was resumed elsewhere");
	}
	pv_session_free(c->sess);
	c->sess = old;
	old->c2s = c;
	if (old->hib_timer)
		uv_timer_stop(old->hib_timer);
	if (old->expiry_stored) { /* only restart recovery and clean stops write one */
		pv_store_sess_set_expiry(c->srv->store, old->sid, 0, NULL, NULL);
		old->expiry_stored = false;
	}
	c->srv->stats.resumed++;
	pv_buf_printf(out, "<resumed xmlns='" PV_NS_SM "' previd='%s' h='%u'/>", old->sid,
		(unsigned)(uint32_t)(old->in.durable - old->in.base));
	pv_info("c2s", "[%s] resumed %s%s", c->ip, old->jid.full, c->sasl2 ? " (SASL2)" : "");
}

static void sm_resume_finish(pv_session *s, uint32_t h)
{
	pv_session_ack_apply(s, h); /* no <r/> before the retransmission */
	pv_session_resend_unacked(s);
}

static void handle_sm(pv_c2s *c, pv_xml *el)
{
	pv_session *s = c->sess;
	const char *name = el->name;
	if (strcmp(name, "r") == 0) {
		if (!s || !s->sm)
			return;
		/* Answered once every stanza received so far is durably handled. */
		pv_inq_request(&s->in);
		return;
	}
	if (strcmp(name, "a") == 0) {
		uint32_t h;
		if (!s || !s->sm)
			return;
		if (!parse_h(pv_xml_attr(el, "h"), &h)) {
			pv_c2s_stream_error(c, "bad-format", "invalid h");
			return;
		}
		uint64_t acked;
		if (pv_session_ack_check(s, h, &acked) != 0) {
			too_high(c, h, s->out_seq - s->out_base);
			return;
		}
		pv_session_ack_in(s, h);
		return;
	}
	if (strcmp(name, "enable") == 0) {
		if (!s || !s->bound || s->sm) {
			sm_failed(c, "unexpected-request");
			return;
		}
		pv_buf b;
		pv_buf_init(&b);
		sm_enable(c, is_true(pv_xml_attr(el, "resume")), &b);
		pv_c2s_write_raw(c, b.data, b.len);
		pv_buf_fini(&b);
		return;
	}
	if (strcmp(name, "resume") == 0) {
		if (!c->authed || s->bound) {
			sm_failed(c, "unexpected-request");
			return;
		}
		pv_session *old;
		uint32_t h;
		const char *cond = sm_resume_check(c, pv_xml_attr(el, "previd"), pv_xml_attr(el, "h"),
			&old, &h);
		if (cond) {
			if (*cond)
				sm_failed(c, cond);
			return;
		}
		pv_buf b;
		pv_buf_init(&b);
		sm_take_over(c, old, &b);
		pv_c2s_write_raw(c, b.data, b.len);
		pv_buf_fini(&b);
		sm_resume_finish(old, h);
		return;
	}
	pv_c2s_stream_error(c, "unsupported-stanza-type", NULL);
}

/* ---- depth-1 elements ---- */

/* RFC 6120's SASL or XEP-0388's: both go to handle_sasl. */
static bool sasl_ns(const char *ns)
{
	return strcmp(ns, PV_NS_SASL) == 0 || strcmp(ns, PV_NS_SASL2) == 0;
}

static void on_element(void *ud, pv_xml *el)
{
	pv_c2s *c = ud;
	if (c->closing) {
		pv_xml_free(el);
		return;
	}
	const char *ns = el->ns ? el->ns : "";
	if (c->busy) {
		/* The client must wait for the SASL outcome (RFC 6120 6.4); pipelining here
		 * would race the thread-pool step. */
		pv_c2s_stream_error(c, "policy-violation", "wait for the authentication result");
	} else if (strcmp(ns, PV_NS_TLS) == 0) {
		handle_starttls(c, el);
	} else if (!c->tls_done && pv_conf_bool(c->srv->conf, "c2s.require_encryption", true) &&
		   !sasl_ns(ns)) {
		/* RFC 6120 5.3.1: TLS is mandatory here and the client tried something else. */
		pv_c2s_stream_error(c, strcmp(ns, PV_NS_CLIENT) == 0 ? "not-authorized" : "policy-violation",
			"STARTTLS is required");
	} else if (sasl_ns(ns)) {
		handle_sasl(c, el);
	} else if (strcmp(ns, PV_NS_SM) == 0) {
		if (!c->authed)
			pv_c2s_stream_error(c, "not-authorized", "authenticate first");
		else
			handle_sm(c, el);
	} else if (strcmp(ns, PV_NS_CLIENT) == 0 &&
		   (strcmp(el->name, "message") == 0 || strcmp(el->name, "presence") == 0 ||
			   strcmp(el->name, "iq") == 0)) {
		const char *bad = NULL;
		pv_xml *keep = el;
		pv_stanza *st = pv_stanza_new(el, &bad);
		if (!st) {
			if (bad && strcmp(bad, "from") == 0) {
				pv_c2s_stream_error(c, "invalid-from", "malformed from address");
				pv_xml_free(keep);
				return;
			}
			/* Malformed 'to': a stanza error (RFC 6120 8.3.3.8 jid-malformed).  Build a
			 * stanza without the bad address to answer it. */
			pv_xml_set_attr(keep, "to", NULL);
			st = pv_stanza_new(keep, &bad);
			if (!st) {
				pv_xml_free(keep);
				pv_c2s_stream_error(c, "invalid-from", "malformed from address");
				return;
			}
			pv_stanza *e = pv_stanza_error(st, "modify", "jid-malformed", NULL);
			if (e) {
				pv_stanza_set_to(e, NULL);
				pv_stanza_set_from(e, NULL);
				pv_c2s_write_stanza(c, e, false, NULL, 0);
				pv_stanza_unref(e);
			}
			if (c->sess && c->sess->bound) {
				/* Still counts for XEP-0198. */
				pv_inq_end(pv_inq_begin(&c->sess->in, 0));
			}
			pv_stanza_unref(st);
			return;
		}
		c->srv->stats.stanzas_in++;
		if (!c->authed) {
			if (st->kind == PV_ST_IQ)
				handle_preauth_iq(c, st);
			else
				pv_c2s_stream_error(c, "not-authorized", "authenticate first");
		} else if (!c->sess->bound) {
			if (st->kind == PV_ST_IQ)
				handle_prebind_iq(c, st);
			else
				pv_c2s_stream_error(c, "not-authorized", "bind a resource first");
		} else if (st->has_from && !pv_jid_eq(&st->from, &c->sess->jid) &&
			   !(st->from.resource == NULL && strcmp(st->from.bare, c->sess->jid.bare) == 0)) {
			/* RFC 6120 8.1.2.1: a client may only send from its own address. */
			pv_c2s_stream_error(c, "invalid-from", "you may only send from your own address");
		} else {
			pv_session *s = c->sess;
			pv_inrec *r = pv_inq_begin(&s->in, 0);
			pv_stanza_set_from_jid(st, &s->jid);
			c->srv->worker.cur_stanza = st;
			pv_router_from_client(s, st);
			pv_inq_end(r);
		}
		pv_stanza_unref(st);
		return;
	} else if (strcmp(ns, "http://jabber.org/protocol/compress") == 0) {
		/* No stream compression (XEP-0138 is not offered: CRIME-style attacks). */
		pv_c2s_stream_error(c, "unsupported-stanza-type", "stream compression is not supported");
	} else {
		pv_c2s_stream_error(c, "unsupported-stanza-type", NULL);
	}
	pv_xml_free(el);
}

static const pv_xmlstream_cb xs_cb = {
	.open = on_open,
	.element = on_element,
	.close = on_close_tag,
};

static const char *xs_error_cond(pv_xs_error e)
{
	switch (e) {
	case PV_XS_ERR_RESTRICTED: return "restricted-xml";
	case PV_XS_ERR_SIZE: return "policy-violation";
	case PV_XS_ERR_DEPTH: return "policy-violation";
	case PV_XS_ERR_NAMESPACE: return "invalid-namespace";
	default: return "not-well-formed";
	}
}

/* ---- connection callbacks ---- */

static void rate_resume(pv_c2s *c)
{
	if (c->paused && c->conn && !c->closing) {
		c->paused = false;
		if (!c->busy)
			pv_conn_read_resume(c->conn);
	}
}

static void on_data(pv_conn *conn, const char *data, size_t n)
{
	pv_c2s *c = pv_conn_owner(conn);
	if (c->closing)
		return;
	uint64_t now = pv_now_ms();
	c->last_read_ms = now;
	c->trimmed = false;
	tick_soon(c);
	/* Token bucket on bytes read: a flooding client is slowed down, not disconnected. */
	size_t rate = c->srv->lim.read_rate;
	c->tokens += (double)(now - c->tokens_ms) * (double)rate / 1000.0;
	if (c->tokens > (double)rate)
		c->tokens = (double)rate;
	c->tokens_ms = now;
	c->tokens -= (double)n;
	pv_xs_error e = pv_xmlstream_feed(c->xs, data, n);
	if (e != PV_XS_OK) {
		pv_info("c2s", "[%s] bad XML: %s", c->ip, pv_xmlstream_error_text(c->xs));
		pv_c2s_stream_error(c, xs_error_cond(e), e == PV_XS_ERR_SIZE ? "stanza too large"
					: e == PV_XS_ERR_DEPTH ? "XML nested too deeply" : NULL);
		return;
	}
	if (c->closing)
		return;
	if (c->starttls) {
		c->starttls = false;
		pv_xmlstream_reset(c->xs);
		c->header_sent = false;
		if (pv_conn_starttls(c->conn, c->host->tls) != 0)
			pv_c2s_stream_error(c, "internal-server-error", NULL);
		return;
	}
	if (c->restart) {
		c->restart = false;
		pv_xmlstream_reset(c->xs);
		c->header_sent = false;
	}
	if (c->tokens < 0 && !c->paused) {
		c->paused = true;
		pv_conn_read_pause(conn);
		uint64_t wait = (uint64_t)(-c->tokens * 1000.0 / (double)rate) + 1;
		tick_in(c, wait < 1000 ? wait : 1000);
	}
}

static void on_tls_cb(pv_c2s *c)
{
	/* Channel binding for SCRAM-*-PLUS: tls-exporter on TLS 1.3, tls-unique below. */
	c->cblen = pv_conn_tls_cb(c->conn, "tls-exporter", cb_buf(c), CB_MAX);
	c->cbtype = "tls-exporter";
	if (c->cblen <= 0) {
		c->cblen = pv_conn_tls_cb(c->conn, "tls-unique", c->cb, CB_MAX);
		c->cbtype = "tls-unique";
	}
}

static void on_tls(pv_conn *conn)
{
	pv_c2s *c = pv_conn_owner(conn);
	c->tls_done = true;
	on_tls_cb(c);
	if (!c->host && !c->direct_tls)
		return;
	pv_debug("c2s", "[%s] TLS established (%s)", c->ip, pv_conn_tls_version(conn));
}

static void on_conn_close(pv_conn *conn, const char *why)
{
	pv_c2s *c = pv_conn_owner(conn);
	pv_worker *w = &c->srv->worker;
	pv_debug("c2s", "[%s] connection closed: %s", c->ip, why);
	c->conn = NULL;
	c->closing = true;
	if (c->sess) {
		pv_session *s = c->sess;
		s->c2s = NULL;
		c->sess = NULL;
		if (!s->bound)
			pv_session_free(s);
		else if (s->sm && s->resumable && !c->srv->stopping)
			pv_session_hibernate(s);
		else if (!c->srv->stopping)
			pv_session_unbind(s, why);
	}
	if (c->counted_ip) {
		uintptr_t n = (uintptr_t)pv_map_get(w->conn_per_ip, c->ip);
		if (n <= 1)
			pv_map_del(w->conn_per_ip, c->ip);
		else
			pv_map_put(w->conn_per_ip, c->ip, (void *)(n - 1));
	}
	if (c->prev)
		c->prev->next = c->next;
	else
		w->c2s_list = c->next;
	if (c->next)
		c->next->prev = c->prev;
	w->nconns--;
	pv_wheel_stop(w->wheel, &c->tick);
	if (c->busy) {
		c->free_pending = true; /* sasl_work_done frees it */
		return;
	}
	c2s_free(c);
}

static void c2s_free(pv_c2s *c)
{
	pv_xmlstream_free(c->xs);
	pv_sasl_free(c->sasl);
	pv_free(c->cb);
	sasl2_req_free(c->req);
	pv_free(c);
}

static const pv_conn_cb conn_cb = {
	.on_data = on_data,
	.on_tls = on_tls,
	.on_close = on_conn_close,
};

/* Auth and idle deadlines; also re-arms the read-rate resume. */
/* What idle sessions freed lies between live allocations, where glibc keeps it; at
 * most once a second, hand whole free pages back to the kernel (malloc_trim madvises
 * them away).  Without this the server's RSS did not fall at all. */
static void give_back_memory(uint64_t now)
{
	static _Thread_local uint64_t last;
	if (now - last < 1000)
		return;
	last = now;
	malloc_trim(0);
}

static void c2s_tick(pv_tnode *n)
{
	pv_c2s *c = (pv_c2s *)((char *)n - offsetof(pv_c2s, tick));
	uint64_t now = pv_now_ms();
	if (c->closing)
		return;
	if (c->paused) {
		rate_resume(c);
	}
	if (c->conn && c->over_since) {
		check_output(c);
		if (c->closing)
			return;
	}
	if (!(c->sess && c->sess->bound) && now - c->opened_ms >= c->srv->lim.auth_timeout_ms) {
		pv_c2s_stream_error(c, "connection-timeout", "authentication took too long");
		return;
	}
	if (now - c->last_read_ms >= c->srv->lim.idle_timeout_ms) {
		pv_c2s_stream_error(c, "connection-timeout", "idle for too long");
		return;
	}
	if (!c->trimmed && c->sess && c->sess->bound && now - c->last_read_ms >= IDLE_TRIM_MS) {
		/* Most sessions are idle most of the time; what they hold then is what a box
		 * of many sessions pays for (bench/NOTES.md, idle sessions). */
		c->trimmed = true;
		pv_xmlstream_release(c->xs);
		if (c->conn)
			pv_conn_trim(c->conn);
		give_back_memory(now);
	}
	if (c->trimmed && !c->paused && !c->over_since) {
		/* Nothing to watch until the idle timeout or new input (tick_soon): one wake-up
		 * per second per idle connection was 3 % of a core at 19,000 sessions, a core
		 * at a million. */
		c->slow_tick = true;
		tick_in(c, c->last_read_ms + c->srv->lim.idle_timeout_ms - now);
		return;
	}
	c->slow_tick = false;
	tick_in(c, 1000);
}

void pv_c2s_accept(pv_server *srv, uv_stream_t *listener, bool direct_tls)
{
	pv_worker *w = &srv->worker;
	pv_c2s *c = pv_calloc(1, sizeof(*c));
	c->srv = srv;
	c->direct_tls = direct_tls;
	SSL_CTX *ctx = direct_tls && srv->nhosts ? srv->hosts[0]->tls : NULL;
	c->conn = pv_conn_accept(listener, &conn_cb, c, ctx);
	if (!c->conn) {
		pv_free(c);
		return;
	}
	srv->stats.c2s_accepted++;
	snprintf(c->ip, sizeof(c->ip), "%s", pv_conn_peer_ip(c->conn));
	pv_xmlstream_limits lim = {.max_stanza = srv->lim.max_stanza, .max_depth = srv->lim.max_depth};
	c->xs = pv_xmlstream_new(&xs_cb, c, &lim);
	c->opened_ms = c->last_read_ms = c->tokens_ms = pv_now_ms();
	c->tokens = (double)srv->lim.read_rate;
	tick_in(c, 1000);
	uintptr_t n = (uintptr_t)pv_map_get(w->conn_per_ip, c->ip);
	pv_map_put(w->conn_per_ip, c->ip, (void *)(n + 1));
	c->counted_ip = true;
	if (n + 1 > srv->lim.max_conn_per_ip)
		c->over_limit = true;
	c->next = w->c2s_list;
	if (w->c2s_list)
		w->c2s_list->prev = c;
	w->c2s_list = c;
	w->nconns++;
}

/* SIGTERM: every stream gets system-shutdown and a proper close. */
void pv_c2s_shutdown_all(pv_server *srv)
{
	for (pv_c2s *c = srv->worker.c2s_list; c; c = c->next)
		pv_c2s_stream_error(c, "system-shutdown", NULL);
}

void pv_c2s_reload_tls(pv_server *srv)
{
	(void)srv; /* contexts are looked up per connection at handshake time */
}
