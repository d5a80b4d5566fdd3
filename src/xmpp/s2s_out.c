/* s2s_out.c -- outbound server-to-server links (RFC 6120 4-6, XEP-0178, XEP-0220,
 * XEP-0198, XEP-0368, XEP-0288).
 *
 * A link is (local host, remote domain).  Its queue is in storage; the head of it is
 * mirrored in memory (rows) so sending never waits for a read.  Life of a link:
 *   IDLE -> RESOLVING -> CONNECTING (each target in turn) -> NEGOTIATING (stream
 *   header, STARTTLS, SASL EXTERNAL or dialback, XEP-0198 enable) -> READY (pump rows)
 *   -> on failure WAIT (exponential backoff with jitter) -> IDLE -> ...
 * While not READY, rows older than s2s.queue_expiry bounce to their senders with
 * remote-server-timeout.  A "verify_only" link carries XEP-0220 <db:verify/> requests
 * for inbound dialback and nothing else.
 * XEP-0288 (s2s.bidi): on our own connection we send <bidi xmlns='urn:xmpp:bidi'/>
 * when the receiver offers it, after TLS and before SASL or dialback, and then accept
 * its stanzas on that stream like an inbound stream would (s2s_deliver.c; XEP-0198
 * counts them and <a/> answers only what is durable).  The other way round, a peer's
 * authenticated bidi inbound stream can carry a link (pv_s2s_link_take_carrier): the
 * rows go out there, the peer's <a h/> on it acknowledges them, and no connection of
 * our own is opened while it lasts; when it closes the link connects by itself again
 * and resends what was not acknowledged (the receiver drops resends by stanza-id).
 * A link is also where the pair's inbound high-water mark lives (s2s_deliver.c), so a
 * peer that only sends to us has a link too, without a queue ("links" hides it).
 * Threading: the worker loop only.  Links live until the server stops. */
#include <stdio.h>
#include <string.h>

#include "peyvand/pv_log.h"
#include "xmpp/s2s_int.h"
#include "xmpp/streamio.h"

#define MEM_ROWS 4096     /* queue rows mirrored in memory per link */
#define WINDOW 512        /* stanzas in flight before waiting for an XEP-0198 ack */

static void link_fail(pv_s2s_link *l, const char *why);
static void try_target(pv_s2s_link *l);
static void pump(pv_s2s_link *l);

static void lwrite(pv_s2s_link *l, const char *s, size_t n)
{
	if (l->conn && !l->closing)
		pv_conn_write(l->conn, s, n, NULL, NULL);
}

/* Where the rows go out: the peer's stream carrying the link (XEP-0288), else ours. */
static pv_conn *tx_conn(const pv_s2s_link *l)
{
	if (l->carrier)
		return l->carrier_conn;
	return l->closing ? NULL : l->conn;
}

static void lputs(pv_s2s_link *l, const char *s)
{
	lwrite(l, s, strlen(s));
}

/* ---- creation and memory rows ---- */

pv_s2s_link *pv_s2s_link_get(pv_s2s *s, pv_host *h, const char *remote, bool create)
{
	char *key = pv_sprintf("%s %s", h->name, remote);
	pv_s2s_link *l = pv_map_get(s->links, key);
	if (l || !create) {
		pv_free(key);
		return l;
	}
	l = pv_calloc(1, sizeof(*l));
	l->s2s = s;
	l->host = h;
	l->local = pv_strdup(h->name);
	l->remote = pv_strdup(remote);
	l->key = key;
	l->timer = pv_calloc(1, sizeof(uv_timer_t));
	uv_timer_init(s->srv->loop, l->timer);
	l->timer->data = l;
	/* The epoch comes with the first row (need_epoch): a link may only receive. */
	/* Seqs only grow within an epoch: start above anything this link ever used. */
	l->next_seq = 1;
	l->acked_upto = 0;
	pv_map_put(s->links, key, l);
	return l;
}

static void need_epoch(pv_s2s_link *l)
{
	if (!l->epoch && pv_store_s2s_epoch(l->s2s->srv->store, l->local, l->remote, &l->epoch) != 0)
		l->epoch = pv_random_hex(8);
}

static void free_row(pv_qrow *r)
{
	pv_free(r->xml);
	pv_free(r);
}

static void append_row(pv_s2s_link *l, pv_qrow *r)
{
	if (l->rows_tail)
		l->rows_tail->next = r;
	else
		l->rows = r;
	l->rows_tail = r;
	l->nrows++;
}

/* Refill the in-memory window from storage when rows exist only there. */
static void refill_cb(void *ud, uint64_t seq, int64_t created, const char *xml, size_t len)
{
	pv_s2s_link *l = ud;
	pv_qrow *r = pv_calloc(1, sizeof(*r));
	r->seq = seq;
	r->created = created;
	r->xml = pv_strndup(xml, len);
	r->len = len;
	r->committed = true;
	append_row(l, r);
}

static void refill(pv_s2s_link *l)
{
	if (!l->mem_partial || l->nrows >= MEM_ROWS / 2)
		return;
	uint64_t after = l->rows_tail ? l->rows_tail->seq : l->acked_upto;
	size_t want = MEM_ROWS - l->nrows;
	int n = pv_store_s2s_list(l->s2s->srv->store, l->local, l->remote, after, want, refill_cb, l);
	if (n >= 0 && (size_t)n < want)
		l->mem_partial = false;
}

/* A push on its way to disk.  It names its link by key: at shutdown the links are
 * freed before the store runs its last callbacks (pv_server_fini). */
typedef struct push_ctx {
	char *key;
	pv_qrow *r;       /* NULL when the row is not mirrored in memory */
	pv_hold *hold;
} push_ctx;

static void pushed(void *ud, int rc)
{
	push_ctx *p = ud;
	pv_s2s *s = pv_the_server ? pv_the_server->s2s : NULL;
	pv_s2s_link *l = s ? pv_map_get(s->links, p->key) : NULL;
	pv_hold_release(p->hold);
	if (l && p->r)
		p->r->committed = true; /* uncommitted rows live as long as their link */
	pv_free(p->key);
	pv_free(p);
	if (l)
		pv_s2s_link_kick(l);
}

void pv_s2s_row_pushed(pv_s2s_link *l, pv_qrow *r)
{
	need_epoch(l);
	push_ctx *p = pv_calloc(1, sizeof(*p));
	p->key = pv_strdup(l->key);
	p->hold = pv_hold_take();
	pv_store_s2s_push(l->s2s->srv->store, l->local, l->remote, r->seq, r->created, r->xml, r->len,
		pushed, p);
	l->queued++;
	if (l->mem_partial || l->nrows >= MEM_ROWS) {
		l->mem_partial = true; /* storage has it; refill() brings it in order */
		free_row(r);
	} else {
		p->r = r;
		append_row(l, r);
	}
}

void pv_s2s_link_restore(pv_s2s *s, const pv_store_s2s_queue *q)
{
	pv_host *h = pv_server_host(s->srv, q->local);
	if (!h)
		return;
	pv_s2s_link *l = pv_s2s_link_get(s, h, q->remote, true);
	if (q->epoch && (!l->epoch || strcmp(q->epoch, l->epoch) != 0)) {
		pv_free(l->epoch);
		l->epoch = pv_strdup(q->epoch);
	}
	l->next_seq = q->last_seq + 1;
	l->acked_upto = q->count ? q->first_seq - 1 : q->last_seq;
	l->queued = q->count;
	l->mem_partial = q->count > 0;
	refill(l);
	if (q->count)
		pv_info("s2s", "%s -> %s: %zu queued stanza(s) restored", l->local, l->remote, q->count);
	pv_s2s_link_kick(l);
}

/* Rows up to `upto` left the queue (acked, bounced or dropped). */
static void forget_upto(pv_s2s_link *l, uint64_t upto)
{
	while (l->rows && l->rows->seq <= upto) {
		pv_qrow *r = l->rows;
		l->rows = r->next;
		free_row(r);
		l->nrows--;
		if (l->queued)
			l->queued--;
	}
	if (!l->rows)
		l->rows_tail = NULL;
	if (upto > l->acked_upto)
		l->acked_upto = upto;
}

/* ---- connection life ---- */

static void timer_close_cb(uv_handle_t *h)
{
	pv_free(h);
}

static uint64_t backoff_ms(pv_s2s_link *l)
{
	const pv_s2s_conf *c = &l->s2s->conf;
	uint64_t d = c->retry_min_ms;
	for (unsigned i = 0; i < l->retries && d < c->retry_max_ms; i++)
		d *= 2;
	if (d > c->retry_max_ms)
		d = c->retry_max_ms;
	/* +-25% jitter so that many links do not retry in lock-step */
	uint32_t rnd;
	pv_random(&rnd, sizeof(rnd));
	return d * 3 / 4 + (d / 2) * (rnd % 1000) / 1000;
}

/* Negotiation state of our own connection. */
static void reset_stream_state(pv_s2s_link *l)
{
	l->tls = l->authed = l->sm_offered = l->restart = l->starttls = l->header_sent = false;
	l->db_sent = l->bidi = false;
	l->closing = false;
	l->auth = NULL;
	pv_free(l->stream_id);
	l->stream_id = NULL;
}

/* XEP-0198 state of the connection the rows go out on: what was not acknowledged
 * there goes again on the next one. */
static void reset_tx(pv_s2s_link *l)
{
	l->sm = false;
	l->nin = l->inhead = 0;
	l->peer_h = 0;
	l->r_out = false;
	l->sent_upto = l->acked_upto;
}

static void finish_verifies(pv_s2s_link *l, bool valid_default)
{
	for (pv_dbv *v = l->verifies, *nx; v; v = nx) {
		nx = v->next;
		v->cb(v->ud, false);
		pv_free(v->receiving);
		pv_free(v->originating);
		pv_free(v->stream_id);
		pv_free(v->key);
		pv_free(v);
	}
	l->verifies = NULL;
	(void)valid_default;
}

static void on_close(pv_conn *c, const char *why)
{
	pv_s2s_link *l = pv_conn_owner(c);
	if (!l)
		return; /* the link was freed at shutdown and let go of this connection */
	l->conn = NULL;
	pv_xmlstream_free(l->xs);
	l->xs = NULL;
	pv_s2s_rxq_fini(&l->rx);
	pv_debug("s2s", "%s -> %s: connection closed (%s)", l->local, l->remote, why);
	reset_stream_state(l);
	reset_tx(l);
	if (l->state == L_CONNECTING || l->state == L_NEGOTIATING) {
		/* Try the next address, then back off. */
		if (l->ti + 1 < l->ntargets && !l->s2s->srv->stopping) {
			l->ti++;
			try_target(l);
			return;
		}
		link_fail(l, l->last_error[0] ? l->last_error : why);
		return;
	}
	if (l->state == L_WAIT)
		return; /* link_fail closed it and scheduled the next attempt (tick) */
	l->state = L_IDLE;
	if (!l->s2s->srv->stopping && (l->queued || l->verifies)) {
		pv_s2s_link_kick(l); /* what was not acknowledged goes again */
		return;
	}
	finish_verifies(l, false);
}

static void link_fail(pv_s2s_link *l, const char *why)
{
	l->s2s->stats.out_failures++;
	if (why != l->last_error)
		snprintf(l->last_error, sizeof(l->last_error), "%s", why);
	pv_info("s2s", "%s -> %s: link failed: %s (retry %u)", l->local, l->remote, why, l->retries + 1);
	finish_verifies(l, false);
	if (l->conn && !l->closing) {
		l->closing = true;
		pv_conn_abort(l->conn);
	}
	l->state = L_WAIT;
	uint64_t d = backoff_ms(l);
	l->retries++;
	l->next_try_ms = pv_now_ms() + d;
	/* Meanwhile a bidi stream of the peer may carry the link (XEP-0288).  Not while our
	 * connection is still being torn down: we may be inside its callbacks. */
	if (!l->conn && !l->verify_only && !l->s2s->srv->stopping)
		pv_s2s_in_lend(l->s2s, l);
}

void pv_s2s_link_close(pv_s2s_link *l, const char *why)
{
	if (l->conn && !l->closing) {
		if (why && strcmp(why, "system-shutdown") == 0)
			lputs(l, "</stream:stream>");
		l->closing = true;
		pv_conn_close(l->conn);
	}
}

void pv_s2s_link_free(pv_s2s_link *l)
{
	finish_verifies(l, false);
	if (l->carrier)
		pv_s2s_in_unlend(l->carrier);
	if (l->conn) {
		pv_conn_set_owner(l->conn, NULL);
		pv_conn_abort(l->conn);
	}
	pv_xmlstream_free(l->xs);
	pv_s2s_rxq_fini(&l->rx);
	for (pv_qrow *r = l->rows, *nx; r; r = nx) {
		nx = r->next;
		free_row(r);
	}
	uv_timer_stop(l->timer);
	uv_close((uv_handle_t *)l->timer, timer_close_cb);
	pv_free(l->inflight);
	pv_free(l->stream_id);
	pv_free(l->epoch);
	pv_free(l->rx_epoch);
	pv_free(l->local);
	pv_free(l->remote);
	pv_free(l->key);
	pv_free(l);
}

/* ---- the stream ---- */

static void send_header(pv_s2s_link *l)
{
	pv_buf b;
	pv_buf_init(&b);
	pv_stream_header(&b, PV_NS_SERVER, true, NULL, l->local, l->remote, false);
	lwrite(l, b.data, b.len);
	pv_buf_fini(&b);
	l->header_sent = true;
}

static void stream_error(pv_s2s_link *l, const char *cond, const char *text)
{
	pv_buf b;
	pv_buf_init(&b);
	pv_stream_error(&b, cond, text, NULL);
	lwrite(l, b.data, b.len);
	pv_buf_fini(&b);
	if (l->conn && !l->closing) {
		/* Flush the error (RFC 6120 4.9), then the connection goes. */
		l->closing = true;
		pv_conn_close(l->conn);
	}
	snprintf(l->last_error, sizeof(l->last_error), "%s: %s", cond, text ? text : "");
	link_fail(l, l->last_error);
}

static void on_open(void *ud, const pv_xml *hdr, const char *default_ns)
{
	pv_s2s_link *l = ud;
	if (!default_ns || strcmp(default_ns, PV_NS_SERVER) != 0) {
		stream_error(l, "invalid-namespace", "expected jabber:server");
		return;
	}
	const char *id = pv_xml_attr(hdr, "id");
	pv_free(l->stream_id);
	l->stream_id = pv_strdup(id ? id : "");
}

static void send_verifies(pv_s2s_link *l)
{
	for (pv_dbv *v = l->verifies; v; v = v->next) {
		if (v->sent)
			continue;
		v->sent = true;
		pv_buf b;
		pv_buf_init(&b);
		pv_buf_puts(&b, "<db:verify from='");
		pv_xml_escape(v->receiving, strlen(v->receiving), &b);
		pv_buf_puts(&b, "' to='");
		pv_xml_escape(v->originating, strlen(v->originating), &b);
		pv_buf_puts(&b, "' id='");
		pv_xml_escape(v->stream_id, strlen(v->stream_id), &b);
		pv_buf_puts(&b, "'>");
		pv_xml_escape(v->key, strlen(v->key), &b);
		pv_buf_puts(&b, "</db:verify>");
		lwrite(l, b.data, b.len);
		pv_buf_fini(&b);
	}
}

static void become_ready(pv_s2s_link *l)
{
	l->state = L_READY;
	l->retries = 0;
	l->last_error[0] = 0;
	pv_info("s2s", "%s -> %s: link up (auth=%s, %s, sm=%s, bidi=%s)", l->local, l->remote,
		l->auth ? l->auth : "none", pv_conn_tls_version(l->conn) ? pv_conn_tls_version(l->conn) : "no TLS",
		l->sm ? "yes" : "no", l->bidi ? "yes" : "no");
	pump(l);
}

/* The peer's identity as RFC 6125 sees it, and the interconnect policy for it. */
static bool peer_ok(pv_s2s_link *l, bool via_dialback)
{
	SSL *ssl = pv_conn_ssl(l->conn);
	const char *why = NULL;
	const pv_membership *mm = pv_s2s_membership(l->host);
	const char *w2 = NULL;
	bool cert_ok = ssl && (pv_cert_verify_peer(ssl, l->s2s->conf.trust, l->remote, &why) ||
				      (mm && pv_membership_find(mm, l->remote) &&
					      pv_membership_allows(mm, l->remote, ssl, false, false, &w2)));
	if (!cert_ok && !(via_dialback && l->s2s->conf.dialback)) {
		snprintf(l->last_error, sizeof(l->last_error), "peer certificate: %s", why ? why : "missing");
		return false;
	}
	const pv_membership *m = pv_s2s_membership(l->host);
	if (m && !pv_membership_allows(m, l->remote, ssl, cert_ok, via_dialback, &why)) {
		snprintf(l->last_error, sizeof(l->last_error), "interconnect policy: %s", why ? why : "refused");
		return false;
	}
	return true;
}

static void on_features(pv_s2s_link *l, pv_xml *f)
{
	pv_xml *st = pv_xml_child(f, "starttls", PV_NS_TLS);
	if (!l->tls) {
		if (st) {
			lputs(l, "<starttls xmlns='" PV_NS_TLS "'/>");
			return;
		}
		if (l->s2s->conf.require_tls) {
			stream_error(l, "policy-violation", "TLS is required");
			return;
		}
	}
	if (l->verify_only) {
		/* A dialback verification stream needs no authentication of its own. */
		l->state = L_READY;
		send_verifies(l);
		return;
	}
	if (!l->authed) {
		/* XEP-0288 2.2: after TLS, before SASL or dialback; pipelined (no answer). */
		if (!l->bidi && pv_s2s_bidi_on(l->s2s) && pv_xml_child(f, "bidi", PV_NS_BIDI_FEATURE)) {
			lputs(l, "<bidi xmlns='" PV_NS_BIDI "'/>");
			l->bidi = true;
		}
		pv_xml *mechs = pv_xml_child(f, "mechanisms", PV_NS_SASL);
		bool external = false;
		for (pv_xml *m = mechs ? pv_xml_first_element(mechs) : NULL; m; m = pv_xml_next_element(m)) {
			char *t = pv_xml_text(m);
			if (t && strcmp(t, "EXTERNAL") == 0)
				external = true;
			pv_free(t);
		}
		if (external && peer_ok(l, false)) {
			char *b64 = pv_base64_encode(l->local, strlen(l->local));
			pv_buf b;
			pv_buf_init(&b);
			pv_buf_printf(&b, "<auth xmlns='" PV_NS_SASL "' mechanism='EXTERNAL'>%s</auth>", b64);
			lwrite(l, b.data, b.len);
			pv_buf_fini(&b);
			pv_free(b64);
			return;
		}
		bool db_offered = pv_xml_child(f, "dialback", PV_NS_DIALBACK_FEATURE) != NULL;
		if (l->s2s->conf.dialback && db_offered) {
			if (!peer_ok(l, true)) {
				link_fail(l, l->last_error);
				return;
			}
			/* Remember whether stream management is on offer for after dialback. */
			l->sm_offered = pv_xml_child(f, "sm", PV_NS_SM) != NULL;
			l->db_sent = true;
			char key[65];
			pv_s2s_dialback_key(l->s2s->srv, l->remote, l->local, l->stream_id, key);
			pv_buf b;
			pv_buf_init(&b);
			pv_buf_puts(&b, "<db:result from='");
			pv_xml_escape(l->local, strlen(l->local), &b);
			pv_buf_puts(&b, "' to='");
			pv_xml_escape(l->remote, strlen(l->remote), &b);
			pv_buf_printf(&b, "'>%s</db:result>", key);
			lwrite(l, b.data, b.len);
			pv_buf_fini(&b);
			return;
		}
		if (!l->last_error[0])
			snprintf(l->last_error, sizeof(l->last_error), "no usable authentication (%s)",
				external ? "EXTERNAL offered but the peer's certificate is not acceptable"
					 : "peer did not accept our certificate and dialback is off");
		pv_s2s_link_close(l, NULL);
		link_fail(l, l->last_error);
		return;
	}
	/* Authenticated by SASL: stream management if offered, then ready. */
	if (pv_xml_child(f, "sm", PV_NS_SM)) {
		lputs(l, "<enable xmlns='" PV_NS_SM "'/>");
		return;
	}
	become_ready(l);
}

const char *pv_s2s_link_acked(pv_s2s_link *l, const char *hs, const char **text)
{
	char *end = NULL;
	unsigned long long h = hs ? strtoull(hs, &end, 10) : 0;
	if (!hs || *end || h > 0xffffffffULL) {
		*text = "invalid h";
		return "bad-format";
	}
	uint32_t delta = (uint32_t)h - l->peer_h;
	if (delta > l->nin - l->inhead) {
		*text = "handled-count-too-high";
		return "undefined-condition";
	}
	if (delta) {
		uint64_t upto = l->inflight[l->inhead + delta - 1];
		l->inhead += delta;
		l->peer_h = (uint32_t)h;
		l->acked_total += delta;
		l->s2s->stats.acked += delta;
		pv_store_s2s_ack(l->s2s->srv->store, l->local, l->remote, upto, NULL, NULL);
		forget_upto(l, upto);
		if (l->inhead == l->nin)
			l->nin = l->inhead = 0;
	}
	l->r_out = false;
	pump(l);
	/* Rows written while our last <r/> was out are not covered by its answer: ask again
	 * (found by issue 6's relay tests: the tail of a burst stayed unacknowledged, so
	 * queued, until the next stanza came along). */
	pv_conn *conn = tx_conn(l);
	if (l->sm && !l->r_out && l->nin > l->inhead && conn) {
		static const char r_el[] = "<r xmlns='" PV_NS_SM "'/>";
		l->r_out = true;
		pv_conn_write(conn, r_el, sizeof(r_el) - 1, NULL, NULL);
	}
	return NULL;
}

static void on_sm(pv_s2s_link *l, pv_xml *el)
{
	if (strcmp(el->name, "enabled") == 0) {
		l->sm = true;
		l->rx.in.base = l->rx.in.count; /* XEP-0198: we count the peer's stanzas from here */
		become_ready(l);
	} else if (strcmp(el->name, "failed") == 0) {
		l->sm = false;
		if (l->state != L_READY)
			become_ready(l);
	} else if (strcmp(el->name, "r") == 0) {
		/* What the peer sent us here (XEP-0288), once durable; 0 without bidi. */
		pv_inq_request(&l->rx.in);
	} else if (strcmp(el->name, "a") == 0) {
		const char *text = NULL;
		const char *cond = pv_s2s_link_acked(l, pv_xml_attr(el, "h"), &text);
		if (cond)
			stream_error(l, cond, text);
	}
}

/* Our <db:result/> went from local to remote; the answer comes back swapped. */
static bool answers_our_result(pv_s2s_link *l, const pv_xml *el)
{
	const char *from = pv_xml_attr(el, "from");
	const char *to = pv_xml_attr(el, "to");
	char *f = from ? pv_jid_norm_domain(from, strlen(from)) : NULL;
	char *t = to ? pv_jid_norm_domain(to, strlen(to)) : NULL;
	bool ok = l->db_sent && f && t && strcmp(f, l->remote) == 0 && strcmp(t, l->local) == 0;
	pv_free(f);
	pv_free(t);
	return ok;
}

/* A dialback request from the receiving server on our own stream: only with XEP-0288.
 * A <db:verify/> asks us as the authoritative server (XEP-0220 2.1.2: the stream may
 * be reused for that); a <db:result/> would authenticate one more domain of the peer
 * here (XEP-0288 2.2, multiplexing), which we do not do: it gets a dialback error
 * (XEP-0220 2.4, not fatal for the stream) and the peer can connect by itself. */
static void request_on_own_stream(pv_s2s_link *l, pv_xml *el)
{
	if (!l->bidi || !l->authed) {
		pv_debug("s2s", "%s -> %s: <db:%s/> request on a one-way stream ignored", l->local, l->remote,
			el->name);
		return;
	}
	pv_buf b;
	pv_buf_init(&b);
	if (strcmp(el->name, "verify") == 0) {
		pv_s2s_answer_verify(l->s2s, el, &b);
	} else {
		const char *from = pv_xml_attr(el, "from");
		const char *to = pv_xml_attr(el, "to");
		char *t = to ? pv_jid_norm_domain(to, strlen(to)) : NULL;
		pv_buf_puts(&b, "<db:result from='");
		pv_xml_escape(to ? to : "", to ? strlen(to) : 0, &b);
		pv_buf_puts(&b, "' to='");
		pv_xml_escape(from ? from : "", from ? strlen(from) : 0, &b);
		pv_buf_printf(&b, "' type='error'><error type='cancel'><%s xmlns='" PV_NS_STANZAS "'/></error></db:result>",
			t && pv_server_host(l->s2s->srv, t) ? "not-acceptable" : "item-not-found");
		pv_free(t);
	}
	lwrite(l, b.data, b.len);
	pv_buf_fini(&b);
}

static void on_dialback(pv_s2s_link *l, pv_xml *el)
{
	const char *type = pv_xml_attr(el, "type");
	if (!type) {
		request_on_own_stream(l, el);
		return;
	}
	if (strcmp(el->name, "result") == 0) {
		if (!answers_our_result(l, el)) {
			/* XEP-0220 5.1, XEP-0288 4: an answer to nothing we asked grants nothing. */
			pv_info("s2s", "%s -> %s: unsolicited <db:result type='%s'/> ignored", l->local, l->remote, type);
			return;
		}
		l->db_sent = false;
		if (strcmp(type, "valid") == 0) {
			l->authed = true;
			l->auth = "dialback";
			l->s2s->stats.dialback_ok++;
			if (l->sm_offered) {
				lputs(l, "<enable xmlns='" PV_NS_SM "'/>");
				return;
			}
			become_ready(l);
		} else {
			l->s2s->stats.dialback_fail++;
			snprintf(l->last_error, sizeof(l->last_error), "dialback refused by %s", l->remote);
			pv_s2s_link_close(l, NULL);
			link_fail(l, l->last_error);
		}
		return;
	}
	if (strcmp(el->name, "verify") == 0) {
		const char *id = pv_xml_attr(el, "id");
		for (pv_dbv **pp = &l->verifies; *pp; pp = &(*pp)->next) {
			pv_dbv *v = *pp;
			if (v->sent && id && strcmp(v->stream_id, id) == 0) {
				*pp = v->next;
				v->cb(v->ud, type && strcmp(type, "valid") == 0);
				pv_free(v->receiving);
				pv_free(v->originating);
				pv_free(v->stream_id);
				pv_free(v->key);
				pv_free(v);
				break;
			}
		}
	}
}

static void on_element(void *ud, pv_xml *el)
{
	pv_s2s_link *l = ud;
	const char *ns = el->ns ? el->ns : "";
	if (l->closing || !l->conn) {
		pv_xml_free(el);
		return;
	}
	if (strcmp(el->name, "features") == 0 && strcmp(ns, PV_NS_STREAM) == 0) {
		on_features(l, el);
	} else if (strcmp(el->name, "error") == 0 && strcmp(ns, PV_NS_STREAM) == 0) {
		pv_xml *c = pv_xml_first_element(el);
		snprintf(l->last_error, sizeof(l->last_error), "stream error from peer: %s",
			c ? c->name : "?");
		pv_info("s2s", "%s -> %s: %s", l->local, l->remote, l->last_error);
		l->closing = true;
		pv_conn_close(l->conn);
	} else if (strcmp(ns, PV_NS_TLS) == 0 && strcmp(el->name, "proceed") == 0) {
		l->starttls = true;
		pv_xmlstream_stop(l->xs);
	} else if (strcmp(ns, PV_NS_TLS) == 0) {
		stream_error(l, "undefined-condition", "STARTTLS refused by the peer");
	} else if (strcmp(ns, PV_NS_SASL) == 0 && strcmp(el->name, "success") == 0) {
		l->authed = true;
		l->auth = "external";
		l->restart = true;
		pv_xmlstream_stop(l->xs);
	} else if (strcmp(ns, PV_NS_SASL) == 0) {
		pv_xml *c = pv_xml_first_element(el);
		snprintf(l->last_error, sizeof(l->last_error), "SASL EXTERNAL refused: %s", c ? c->name : "?");
		pv_s2s_link_close(l, NULL);
		link_fail(l, l->last_error);
	} else if (strcmp(ns, PV_NS_SM) == 0) {
		on_sm(l, el);
	} else if (strcmp(ns, PV_NS_SERVER_DIALBACK) == 0) {
		on_dialback(l, el);
	} else if (pv_s2s_is_stanza(el) && l->bidi && l->authed) {
		/* XEP-0288: the receiving server sends us its stanzas on our stream. */
		const char *cond = NULL, *text = NULL;
		if (pv_s2s_deliver(l->s2s, l->host, l->remote, &l->rx, el, &cond, &text) != 0)
			stream_error(l, cond, text);
		return;
	} else {
		/* Stanzas on a one-way stream (no bidi asked): not for us. */
		pv_debug("s2s", "%s -> %s: ignoring <%s/> on an outbound stream", l->local, l->remote, el->name);
	}
	pv_xml_free(el);
}

static void on_stream_close(void *ud)
{
	pv_s2s_link *l = ud;
	pv_s2s_link_close(l, NULL);
}

static const pv_xmlstream_cb xs_cb = {.open = on_open, .element = on_element, .close = on_stream_close};

static void rx_resume_cb(uv_timer_t *t)
{
	pv_s2s_link *l = t->data;
	pv_s2s_rxq_resume(&l->rx, pv_now_ms());
}

static void on_data(pv_conn *c, const char *data, size_t n)
{
	pv_s2s_link *l = pv_conn_owner(c);
	if (!l || l->closing)
		return;
	pv_xs_error e = pv_xmlstream_feed(l->xs, data, n);
	if (e != PV_XS_OK) {
		stream_error(l, e == PV_XS_ERR_SIZE || e == PV_XS_ERR_DEPTH ? "policy-violation" : "not-well-formed",
			pv_xmlstream_error_text(l->xs));
		return;
	}
	/* XEP-0288: what the peer sends here is held to s2s.stanza_rate as on its own
	 * stream (l->timer is free: links have no other timer). */
	uint64_t wait = l->bidi && !l->closing ? pv_s2s_rxq_throttle(&l->rx, &l->s2s->conf, pv_now_ms()) : 0;
	if (wait)
		uv_timer_start(l->timer, rx_resume_cb, wait, 0);
	if (l->starttls) {
		l->starttls = false;
		pv_xmlstream_reset(l->xs);
		if (pv_conn_client_tls(l->conn, pv_s2s_client_ctx(l->host), l->remote) != 0)
			link_fail(l, "TLS setup failed");
		return;
	}
	if (l->restart) {
		l->restart = false;
		pv_xmlstream_reset(l->xs);
		send_header(l);
	}
}

static void on_tls(pv_conn *c)
{
	pv_s2s_link *l = pv_conn_owner(c);
	if (!l)
		return;
	l->tls = true;
	send_header(l);
}

static const pv_conn_cb conn_cb = {.on_data = on_data, .on_tls = on_tls, .on_close = on_close};

static void connected(pv_conn *c, int status)
{
	pv_s2s_link *l = pv_conn_owner(c);
	if (!l)
		return;
	if (status != 0) {
		snprintf(l->last_error, sizeof(l->last_error), "connect: %s", uv_strerror(status));
		return; /* on_close follows and tries the next target */
	}
	l->state = L_NEGOTIATING;
	if (!l->targets[l->ti].direct_tls)
		send_header(l);
}

static void try_target(pv_s2s_link *l)
{
	pv_target *t = &l->targets[l->ti];
	l->state = L_CONNECTING;
	l->s2s->stats.out_connects++;
	pv_xmlstream_limits lim = {.max_stanza = l->s2s->conf.max_stanza, .max_depth = l->s2s->srv->lim.max_depth};
	l->xs = pv_xmlstream_new(&xs_cb, l, &lim);
	reset_stream_state(l);
	reset_tx(l);
	l->conn = pv_conn_connect(l->s2s->srv->loop, (struct sockaddr *)&t->addr, &conn_cb, l, connected);
	pv_s2s_rxq_init(&l->rx, l->conn, &l->s2s->conf);
	if (!l->conn) {
		pv_xmlstream_free(l->xs);
		l->xs = NULL;
		link_fail(l, "cannot create a socket");
		return;
	}
	if (t->direct_tls)
		pv_conn_client_tls(l->conn, pv_s2s_client_ctx(l->host), l->remote);
	l->next_try_ms = pv_now_ms() + l->s2s->conf.connect_timeout_ms; /* negotiation deadline */
}

static void resolved(void *ud, const pv_target *targets, size_t n, const char *err)
{
	pv_s2s_link *l = ud;
	if (l->state != L_RESOLVING)
		return;
	if (n == 0) {
		link_fail(l, err ? err : "no address");
		return;
	}
	l->ntargets = n < 32 ? n : 32;
	memcpy(l->targets, targets, l->ntargets * sizeof(pv_target));
	l->ti = 0;
	try_target(l);
}

void pv_s2s_link_kick(pv_s2s_link *l)
{
	if (l->s2s->srv->stopping)
		return;
	if (l->state == L_READY) {
		pump(l);
		return;
	}
	bool work = (l->queued > 0 && !l->paused) || l->verifies;
	/* A connection still closing comes back through on_close, which kicks again. */
	if (l->state != L_IDLE || !work || l->conn)
		return;
	if (!l->verify_only && pv_s2s_in_lend(l->s2s, l))
		return; /* the peer's bidi stream carries us */
	l->state = L_RESOLVING;
	pv_resolve_xmpp_server(l->s2s->res, l->remote, resolved, l);
}

/* ---- sending ---- */

/* The stored stanza plus our XEP-0359 stanza-id, for a jabber:server stream.  Stored
 * bytes are the jabber:client serialisation without a namespace on the top element, so
 * they are valid in the server namespace as they are. */
static void wire_row(pv_s2s_link *l, pv_qrow *r, pv_buf *b)
{
	char sid[160];
	snprintf(sid, sizeof(sid), "<stanza-id xmlns='" PV_NS_SID "' by='%s' id='%s:%llu'/>", l->local, l->epoch,
		(unsigned long long)r->seq);
	const char *x = r->xml;
	size_t n = r->len;
	if (n >= 2 && x[n - 2] == '/' && x[n - 1] == '>' && memchr(x + 1, '<', n - 1) == NULL) {
		/* <message .../> -> <message ...>sid</message> */
		const char *name_end = x + 1;
		while (name_end < x + n && *name_end != ' ' && *name_end != '/' && *name_end != '>')
			name_end++;
		pv_buf_append(b, x, n - 2);
		pv_buf_puts(b, ">");
		pv_buf_puts(b, sid);
		pv_buf_puts(b, "</");
		pv_buf_append(b, x + 1, (size_t)(name_end - x - 1));
		pv_buf_puts(b, ">");
		return;
	}
	const char *close = x + n;
	while (close > x && *close != '<')
		close--;
	pv_buf_append(b, x, (size_t)(close - x));
	pv_buf_puts(b, sid);
	pv_buf_append(b, close, (size_t)(x + n - close));
}

typedef struct wctx {
	pv_s2s_link *l;
	uint64_t seq;
} wctx;

/* Without XEP-0198 on the peer, the kernel taking the bytes is all we learn. */
static void written(void *ud, int status)
{
	wctx *w = ud;
	if (status == 0) {
		pv_store_s2s_ack(w->l->s2s->srv->store, w->l->local, w->l->remote, w->seq, NULL, NULL);
		forget_upto(w->l, w->seq);
		w->l->acked_total++;
	}
	pv_free(w);
}

static void pump(pv_s2s_link *l)
{
	pv_conn *conn = tx_conn(l);
	if (l->state != L_READY || l->paused || !conn || l->verify_only)
		return;
	need_epoch(l);
	refill(l);
	size_t sent = 0;
	pv_buf b;
	pv_buf_init(&b);
	for (pv_qrow *r = l->rows; r; r = r->next) {
		if (r->seq <= l->sent_upto)
			continue;
		if (!r->committed)
			break;
		if (l->sm && l->nin - l->inhead >= WINDOW)
			break;
		pv_buf_reset(&b);
		wire_row(l, r, &b);
		if (l->sm) {
			if (l->nin == l->capin) {
				l->capin = l->capin ? l->capin * 2 : 64;
				l->inflight = pv_realloc(l->inflight, l->capin * sizeof(uint64_t));
			}
			l->inflight[l->nin++] = r->seq;
			pv_conn_write(conn, b.data, b.len, NULL, NULL);
		} else {
			wctx *w = pv_malloc(sizeof(*w));
			w->l = l;
			w->seq = r->seq;
			pv_conn_write(conn, b.data, b.len, written, w);
		}
		l->sent_upto = r->seq;
		l->sent_total++;
		l->s2s->stats.sent++;
		sent++;
	}
	pv_buf_fini(&b);
	if (l->sm && sent && !l->r_out) {
		static const char r_el[] = "<r xmlns='" PV_NS_SM "'/>";
		l->r_out = true;
		pv_conn_write(conn, r_el, sizeof(r_el) - 1, NULL, NULL);
	}
}

/* ---- timers: retries, expiry, idle ---- */

static void bounce_row(pv_s2s_link *l, pv_qrow *r)
{
	pv_xml *x = pv_xml_parse(r->xml, r->len);
	const char *bad = NULL;
	pv_stanza *st = x ? pv_stanza_new(x, &bad) : NULL;
	if (!st) {
		pv_xml_free(x);
		return;
	}
	pv_stanza *e = pv_stanza_error(st, "wait", "remote-server-timeout", "the remote server could not be reached");
	/* issue 6: an exchange answers in its own name (a provider accepts relayed stanzas
	 * only with their origin's proof, which the exchange cannot make) */
	if (e && pv_s2s_relay_to_ok(l->s2s, l->host, st))
		pv_stanza_set_from(e, l->local);
	if (e && e->has_to) {
		pv_route(l->host, e);
		l->bounced_total++;
		l->s2s->stats.bounced++;
	}
	if (e)
		pv_stanza_unref(e);
	pv_stanza_unref(st);
}

static void expire(pv_s2s_link *l)
{
	int64_t limit = pv_wall_s() - (int64_t)(l->s2s->conf.queue_expiry_ms / 1000);
	uint64_t upto = 0;
	size_t n = 0;
	refill(l);
	/* The bounces and the queue's cut commit together: one bounce, even across a crash. */
	pv_store_batch_begin(l->s2s->srv->store);
	while (l->rows && l->rows->committed && l->rows->created <= limit) {
		pv_qrow *r = l->rows;
		bounce_row(l, r);
		upto = r->seq;
		forget_upto(l, r->seq);
		n++;
		if (!l->rows)
			refill(l);
	}
	if (n)
		pv_store_s2s_ack(l->s2s->srv->store, l->local, l->remote, upto, NULL, NULL);
	pv_store_batch_end(l->s2s->srv->store);
	if (n) {
		pv_info("s2s", "%s -> %s: %zu queued stanza(s) expired and bounced", l->local, l->remote, n);
	}
}

void pv_s2s_link_tick(pv_s2s_link *l, uint64_t now)
{
	if (l->state != L_READY && l->queued)
		expire(l);
	if (l->state == L_WAIT && now >= l->next_try_ms && !l->conn) {
		l->state = L_IDLE;
		pv_s2s_link_kick(l);
	} else if ((l->state == L_CONNECTING || l->state == L_NEGOTIATING) && now >= l->next_try_ms) {
		snprintf(l->last_error, sizeof(l->last_error), "connection or negotiation timed out");
		if (l->conn) {
			l->closing = true;
			pv_conn_abort(l->conn); /* on_close tries the next target */
		}
	}
}

void pv_s2s_link_drop(pv_s2s_link *l)
{
	pv_store_s2s_drop(l->s2s->srv->store, l->local, l->remote, NULL, NULL);
	uint64_t last = l->next_seq - 1;
	/* Uncommitted rows are still being written: keep them (they belong after the drop). */
	while (l->rows && l->rows->committed) {
		pv_qrow *r = l->rows;
		l->rows = r->next;
		free_row(r);
		l->nrows--;
	}
	if (!l->rows)
		l->rows_tail = NULL;
	l->queued = l->nrows;
	l->mem_partial = false;
	l->acked_upto = l->rows ? l->rows->seq - 1 : last;
	if (l->sent_upto < l->acked_upto)
		l->sent_upto = l->acked_upto;
}

static const char *state_name(pv_link_state s)
{
	switch (s) {
	case L_IDLE: return "idle";
	case L_RESOLVING: return "resolving";
	case L_CONNECTING: return "connecting";
	case L_NEGOTIATING: return "negotiating";
	case L_READY: return "connected";
	case L_WAIT: return "waiting";
	}
	return "?";
}

void pv_s2s_link_describe(const pv_s2s_link *l, pv_buf *out)
{
	if (!l->epoch && l->state == L_IDLE)
		return; /* it only ever received */
	int64_t oldest = l->rows ? pv_wall_s() - l->rows->created : 0;
	pv_conn *c = l->carrier ? l->carrier_conn : l->conn;
	const char *auth = l->carrier ? l->carrier_auth : l->auth;
	pv_buf_printf(out, "%s -> %s state=%s auth=%s tls=%s queue=%zu oldest=%lld retries=%u paused=%s sent=%llu acked=%llu bounced=%llu bidi=%s%s%s\n",
		l->local, l->remote, state_name(l->state), auth ? auth : "none",
		c && pv_conn_tls_version(c) ? pv_conn_tls_version(c) : "none", l->queued, (long long)oldest,
		l->retries, l->paused ? "yes" : "no", (unsigned long long)l->sent_total,
		(unsigned long long)l->acked_total, (unsigned long long)l->bounced_total,
		l->carrier ? "carrier" : l->bidi ? "yes" : "no", l->last_error[0] ? " error=" : "",
		l->last_error[0] ? l->last_error : "");
}

/* ---- XEP-0288: carried by the peer's stream ---- */

/* Let go of our own connection (it is not needed while a carrier is up). */
static void drop_own(pv_s2s_link *l)
{
	pv_conn *c = l->conn;
	l->conn = NULL;
	pv_conn_set_owner(c, NULL);
	if (l->state == L_READY && !l->closing) {
		pv_conn_write(c, "</stream:stream>", 16, NULL, NULL);
		pv_conn_close(c);
	} else {
		pv_conn_abort(c);
	}
	pv_xmlstream_free(l->xs);
	l->xs = NULL;
	pv_s2s_rxq_fini(&l->rx);
	reset_stream_state(l);
}

bool pv_s2s_link_take_carrier(pv_s2s_link *l, pv_s2s_in *c, pv_conn *conn, bool sm, const char *auth)
{
	if (l->verify_only || l->carrier || l->s2s->srv->stopping)
		return false;
	bool own = l->state == L_RESOLVING || l->state == L_CONNECTING || l->state == L_NEGOTIATING ||
		   l->state == L_READY;
	/* Both servers connected at once: each side keeps the connection opened by the
	 * domain that sorts first, so the other one goes away on both sides. */
	if (own && strcmp(l->local, l->remote) < 0)
		return false;
	if (l->conn)
		drop_own(l);
	l->carrier = c;
	l->carrier_conn = conn;
	l->carrier_auth = auth;
	reset_tx(l);
	l->sm = sm;
	l->state = L_READY;
	l->retries = 0;
	l->last_error[0] = 0;
	pv_info("s2s", "%s -> %s: link up on the peer's connection (XEP-0288, auth=%s, %s, sm=%s)", l->local,
		l->remote, auth ? auth : "none", pv_conn_tls_version(conn) ? pv_conn_tls_version(conn) : "no TLS",
		sm ? "yes" : "no");
	pump(l);
	return true;
}

void pv_s2s_link_carrier_sm(pv_s2s_link *l)
{
	/* Rows written before <enabled/> are settled by their write callbacks (the peer
	 * does not count them); what follows is counted. */
	l->sm = true;
}

void pv_s2s_link_carrier_gone(pv_s2s_link *l)
{
	pv_info("s2s", "%s -> %s: the peer's connection carrying the link closed", l->local, l->remote);
	l->carrier = NULL;
	l->carrier_conn = NULL;
	l->carrier_auth = NULL;
	reset_tx(l);
	l->state = L_IDLE;
	pv_s2s_link_kick(l);
}

/* ---- dialback verification requests (we are the receiving server) ---- */

void pv_s2s_verify_dialback(pv_server *srv, const char *receiving, const char *originating,
	const char *stream_id, const char *key, void (*cb)(void *ud, bool valid), void *ud)
{
	pv_s2s *s = srv->s2s;
	pv_host *h = pv_server_host(srv, receiving);
	char *vkey = pv_sprintf("verify %s", originating);
	pv_s2s_link *l = pv_map_get(s->links, vkey);
	if (!l && h) {
		l = pv_calloc(1, sizeof(*l));
		l->s2s = s;
		l->host = h;
		l->local = pv_strdup(receiving);
		l->remote = pv_strdup(originating);
		l->key = pv_strdup(vkey);
		l->epoch = pv_strdup("-");
		l->verify_only = true;
		l->timer = pv_calloc(1, sizeof(uv_timer_t));
		uv_timer_init(srv->loop, l->timer);
		l->timer->data = l;
		pv_map_put(s->links, vkey, l);
	}
	pv_free(vkey);
	if (!l) {
		cb(ud, false);
		return;
	}
	pv_dbv *v = pv_calloc(1, sizeof(*v));
	v->receiving = pv_strdup(receiving);
	v->originating = pv_strdup(originating);
	v->stream_id = pv_strdup(stream_id);
	v->key = pv_strdup(key);
	v->cb = cb;
	v->ud = ud;
	v->next = l->verifies;
	l->verifies = v;
	if (l->state == L_READY)
		send_verifies(l);
	else if (l->state == L_WAIT)
		finish_verifies(l, false);
	else
		pv_s2s_link_kick(l);
}

static int cancel_in(void *ud, const char *key, void *val)
{
	pv_s2s_link *l = val;
	for (pv_dbv **pp = &l->verifies; *pp;) {
		if ((*pp)->ud == ud) {
			pv_dbv *v = *pp;
			*pp = v->next;
			pv_free(v->receiving);
			pv_free(v->originating);
			pv_free(v->stream_id);
			pv_free(v->key);
			pv_free(v);
		} else {
			pp = &(*pp)->next;
		}
	}
	return 0;
}

void pv_s2s_verify_cancel(pv_server *srv, void *ud)
{
	if (srv->s2s)
		pv_map_each(srv->s2s->links, cancel_in, ud);
}
