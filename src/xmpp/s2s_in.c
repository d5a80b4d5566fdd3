/* s2s_in.c -- inbound server-to-server streams (RFC 6120; XEP-0178 SASL EXTERNAL,
 * XEP-0220 dialback in both its receiving and authoritative roles, XEP-0198 acks,
 * XEP-0288 bidirectional streams).
 *
 * A peer connects, opens a jabber:server stream to one of our hosts, negotiates TLS,
 * then authenticates its domain: SASL EXTERNAL when its certificate names that domain
 * (RFC 6125 checks, s2s_auth.c), or dialback when allowed.  The interconnect policy of
 * the host (open / members, pins) decides.  Afterwards every stanza's 'from' must be in
 * the authenticated domain and its 'to' in ours.  Stanzas go to the router with a hold
 * (core/inq.c); our XEP-0198 <a h/> counts only stanzas whose delivery is committed,
 * and a peyvand peer's XEP-0359 stanza-id (EPOCH:SEQ) lets us drop resends: the
 * high-water mark is written in the same storage transaction as the delivery.
 * Limits per remote domain: connections, stanza rate (reading pauses), stanza size.
 * XEP-0288: we offer <bidi/> until the peer is authenticated; a peer that sent
 * <bidi xmlns='urn:xmpp:bidi'/> (after TLS) gets our stanzas for it on this stream
 * once authenticated: the stream becomes the "carrier" of our link (host -> peer) in
 * s2s_out.c, which then sends its rows here and takes the peer's <a h/> for them.
 * Stanza handling itself is s2s_deliver.c (shared with our own bidi streams).
 * Threading: the worker loop only. */
#include <stdio.h>
#include <string.h>

#include "peyvand/pv_log.h"
#include "xmpp/s2s_int.h"
#include "xmpp/streamio.h"

struct pv_s2s_in {
	pv_s2s *s2s;
	pv_s2s_in *next, *prev;
	pv_conn *conn;
	pv_xmlstream *xs;
	pv_host *host;             /* our domain (stream 'to') */
	char *claimed;             /* the peer's 'from' in its stream header */
	char *peer;                /* authenticated domain */
	const char *auth;
	char *stream_id;
	char ip[64];
	bool direct_tls, tls, header_sent, restart, starttls, closing, counted;
	bool sm, db_pending;
	pv_s2s_rxq rx;             /* what the peer sends here, XEP-0198 */
	/* XEP-0288 */
	bool bidi;                 /* the peer asked for it */
	bool bidi_wait;            /* authenticated: waiting to learn whether it enables XEP-0198 */
	pv_s2s_link *carrying;     /* our link whose rows go out on this stream */
	uint64_t authed_ms;
	uint64_t opened_ms, last_read_ms;
	uv_timer_t *timer;
};

static void in_free(pv_s2s_in *c);
static bool cert_authenticates(pv_s2s_in *c, const char *domain, const char **why);

static void iwrite(pv_s2s_in *c, const char *s)
{
	if (c->conn && !c->closing)
		pv_conn_write(c->conn, s, strlen(s), NULL, NULL);
}

static void send_header(pv_s2s_in *c)
{
	if (c->header_sent)
		return;
	pv_free(c->stream_id);
	c->stream_id = pv_random_hex(12);
	pv_buf b;
	pv_buf_init(&b);
	pv_stream_header(&b, PV_NS_SERVER, true, c->stream_id, c->host ? c->host->name : NULL, c->claimed,
		false);
	if (c->conn)
		pv_conn_write(c->conn, b.data, b.len, NULL, NULL);
	pv_buf_fini(&b);
	c->header_sent = true;
}

/* RFC 6120 4.9: the error, our close tag, then the connection. */
static void stream_error(pv_s2s_in *c, const char *cond, const char *text)
{
	if (c->closing)
		return;
	pv_info("s2s", "[%s] inbound from %s refused: %s%s%s", c->ip,
		c->peer ? c->peer : c->claimed ? c->claimed : "?", cond, text ? ": " : "", text ? text : "");
	c->s2s->stats.in_refused++;
	send_header(c);
	pv_buf b;
	pv_buf_init(&b);
	pv_stream_error(&b, cond, text, NULL);
	if (c->conn)
		pv_conn_write(c->conn, b.data, b.len, NULL, NULL);
	pv_buf_fini(&b);
	c->closing = true;
	if (c->conn)
		pv_conn_close(c->conn);
}

static void features(pv_s2s_in *c)
{
	pv_buf b;
	pv_buf_init(&b);
	pv_buf_puts(&b, "<stream:features>");
	if (!c->tls) {
		pv_buf_puts(&b, "<starttls xmlns='" PV_NS_TLS "'>");
		if (c->s2s->conf.require_tls)
			pv_buf_puts(&b, "<required/>");
		pv_buf_puts(&b, "</starttls>");
	}
	if (!c->peer && (c->tls || !c->s2s->conf.require_tls)) {
		SSL *ssl = c->conn ? pv_conn_ssl(c->conn) : NULL;
		const char *why = NULL;
		/* XEP-0178: offer EXTERNAL when the certificate already names the claimed domain. */
		if (ssl && c->claimed && cert_authenticates(c, c->claimed, &why))
			pv_buf_puts(&b, "<mechanisms xmlns='" PV_NS_SASL "'><mechanism>EXTERNAL</mechanism></mechanisms>");
		if (c->s2s->conf.dialback)
			pv_buf_puts(&b, "<dialback xmlns='" PV_NS_DIALBACK_FEATURE "'><errors/></dialback>");
	}
	if (c->peer || c->s2s->conf.dialback)
		pv_buf_puts(&b, "<sm xmlns='" PV_NS_SM "'/>");
	/* XEP-0288 2.1: before and after TLS, until the peer has authenticated (it asks
	 * before SASL or dialback). */
	if (!c->peer && pv_s2s_bidi_on(c->s2s))
		pv_buf_puts(&b, "<bidi xmlns='" PV_NS_BIDI_FEATURE "'/>");
	pv_buf_puts(&b, "</stream:features>");
	if (c->conn)
		pv_conn_write(c->conn, b.data, b.len, NULL, NULL);
	pv_buf_fini(&b);
}

static void on_open(void *ud, const pv_xml *hdr, const char *default_ns)
{
	pv_s2s_in *c = ud;
	c->header_sent = false;
	const char *to = pv_xml_attr(hdr, "to");
	const char *from = pv_xml_attr(hdr, "from");
	char *d = to ? pv_jid_norm_domain(to, strlen(to)) : NULL;
	pv_host *h = d ? pv_server_host(c->s2s->srv, d) : NULL;
	pv_free(d);
	if (from && !c->claimed) {
		c->claimed = pv_jid_norm_domain(from, strlen(from));
		if (!c->claimed) {
			stream_error(c, "invalid-from", "malformed from");
			return;
		}
	}
	if (c->host && h && h != c->host) {
		stream_error(c, "host-unknown", "the stream restarted for another host");
		return;
	}
	if (!h) {
		stream_error(c, "host-unknown", to ? "this server does not serve that domain" : "no 'to' address");
		return;
	}
	c->host = h;
	if (!default_ns || strcmp(default_ns, PV_NS_SERVER) != 0) {
		stream_error(c, "invalid-namespace", "the default namespace must be jabber:server");
		return;
	}
	const char *ver = pv_xml_attr(hdr, "version");
	send_header(c);
	if (!ver || strncmp(ver, "1.", 2) != 0) {
		/* A pre-1.0 peer gets no features: only dialback is possible. */
		if (!c->s2s->conf.dialback || c->s2s->conf.require_tls)
			stream_error(c, "unsupported-version", "version 1.0 is required");
		return;
	}
	features(c);
}

/* ---- authentication ---- */

/* Does the peer's certificate authenticate `domain`: by the configured trust (RFC 6125),
 * or by what the interconnect says of that member (its own CA or a pinned key)? */
static bool cert_authenticates(pv_s2s_in *c, const char *domain, const char **why)
{
	SSL *ssl = c->conn ? pv_conn_ssl(c->conn) : NULL;
	if (!ssl)
		return false;
	if (pv_cert_verify_peer(ssl, c->s2s->conf.trust, domain, why))
		return true;
	const pv_membership *m = c->host ? pv_s2s_membership(c->host) : NULL;
	const char *w2 = NULL;
	return m && pv_membership_find(m, domain) && pv_membership_allows(m, domain, ssl, false, false, &w2);
}

typedef enum { ADMIT_OK, ADMIT_UNAUTHENTICATED, ADMIT_POLICY } admit_rc;

/* May `domain` use this stream?  UNAUTHENTICATED: its proof failed (SASL failure or
 * dialback invalid); POLICY: it proved who it is but the interconnect refuses it
 * (policy-violation stream error, issue 3). */
static admit_rc admit(pv_s2s_in *c, const char *domain, bool via_dialback, const char **why)
{
	SSL *ssl = c->conn ? pv_conn_ssl(c->conn) : NULL;
	bool cert_ok = cert_authenticates(c, domain, why);
	if (!cert_ok && !via_dialback)
		return ADMIT_UNAUTHENTICATED;
	/* issue 6: an exchange takes members authenticated by certificate only. */
	if (!cert_ok && pv_host_is_exchange(c->host)) {
		*why = "an exchange accepts certificate-authenticated members only";
		return ADMIT_POLICY;
	}
	const pv_membership *m = pv_s2s_membership(c->host);
	if (m && !pv_membership_allows(m, domain, ssl, cert_ok, via_dialback, why))
		return ADMIT_POLICY;
	uintptr_t n = (uintptr_t)pv_map_get(c->s2s->in_per_domain, domain);
	if (n >= c->s2s->conf.max_conn_per_domain) {
		*why = "too many connections from this domain";
		return ADMIT_POLICY;
	}
	pv_map_put(c->s2s->in_per_domain, domain, (void *)(n + 1));
	c->counted = true;
	return ADMIT_OK;
}

/* XEP-0288: the peer asked for bidi and is authenticated.  Our stanzas may go out here
 * (2.2: never before authentication) once we know whether the peer counts them: a
 * peer that wants XEP-0198 sends <enable/> as its first element after authentication,
 * so that element (or two quiet seconds) decides. */
static void bidi_begin(pv_s2s_in *c)
{
	if (c->bidi && c->peer && !c->carrying && !c->bidi_wait) {
		c->bidi_wait = true;
		c->authed_ms = pv_now_ms();
	}
}

static void bidi_settle(pv_s2s_in *c)
{
	c->bidi_wait = false;
	if (c->closing || !c->conn)
		return;
	pv_s2s_link *l = pv_s2s_link_get(c->s2s, c->host, c->peer, true);
	if (pv_s2s_link_take_carrier(l, c, c->conn, c->sm, c->auth))
		c->carrying = l;
	else
		pv_debug("s2s", "[%s] %s -> %s: bidi stream kept idle (our own connection stays)", c->ip,
			c->host->name, c->peer);
}

bool pv_s2s_in_lend(pv_s2s *s, pv_s2s_link *l)
{
	if (!pv_s2s_bidi_on(s))
		return false;
	for (pv_s2s_in *c = s->ins; c; c = c->next) {
		if (!c->bidi || !c->peer || c->bidi_wait || c->carrying || c->closing || !c->conn ||
		    c->host != l->host || strcmp(c->peer, l->remote) != 0)
			continue;
		if (pv_s2s_link_take_carrier(l, c, c->conn, c->sm, c->auth)) {
			c->carrying = l;
			return true;
		}
	}
	return false;
}

void pv_s2s_in_unlend(pv_s2s_in *c)
{
	c->carrying = NULL;
}

/* XEP-0288 2.2: <bidi xmlns='urn:xmpp:bidi'/>, after TLS (checked by on_element), no
 * answer.  SHOULD come before authentication; after it we take it all the same. */
static void handle_bidi(pv_s2s_in *c)
{
	if (!pv_s2s_bidi_on(c->s2s)) {
		pv_debug("s2s", "[%s] bidi requested but not offered (s2s.bidi is off): ignored", c->ip);
		return;
	}
	c->bidi = true;
	bidi_begin(c);
}

static void authenticated(pv_s2s_in *c, const char *domain, const char *how)
{
	c->peer = pv_strdup(domain);
	c->auth = how;
	c->s2s->stats.in_accepted++;
	pv_info("s2s", "[%s] %s -> %s: inbound link authenticated (%s, %s%s)", c->ip, c->peer, c->host->name,
		how, c->conn && pv_conn_tls_version(c->conn) ? pv_conn_tls_version(c->conn) : "no TLS",
		c->bidi ? ", bidi" : "");
	bidi_begin(c);
}

static void handle_sasl(pv_s2s_in *c, pv_xml *el)
{
	if (c->peer || !pv_xml_is(el, "auth", PV_NS_SASL)) {
		stream_error(c, "policy-violation", "unexpected SASL element");
		return;
	}
	const char *mech = pv_xml_attr(el, "mechanism");
	if (!mech || strcmp(mech, "EXTERNAL") != 0) {
		iwrite(c, "<failure xmlns='" PV_NS_SASL "'><invalid-mechanism/></failure>");
		return;
	}
	char *txt = pv_xml_text(el);
	unsigned char *authz = NULL;
	size_t alen = 0;
	char *domain = NULL;
	if (txt && *txt && strcmp(txt, "=") != 0) {
		if (pv_base64_decode(txt, strlen(txt), &authz, &alen) < 0) {
			pv_free(txt);
			iwrite(c, "<failure xmlns='" PV_NS_SASL "'><incorrect-encoding/></failure>");
			return;
		}
		domain = pv_jid_norm_domain((const char *)authz, alen);
	} else if (c->claimed) {
		domain = pv_strdup(c->claimed);
	}
	pv_free(txt);
	pv_free(authz);
	const char *why = "no authorization identity";
	admit_rc rc = ADMIT_UNAUTHENTICATED;
	if (domain && (!c->claimed || strcmp(domain, c->claimed) == 0))
		rc = admit(c, domain, false, &why);
	if (rc == ADMIT_POLICY) {
		stream_error(c, "policy-violation", why);
		pv_free(domain);
		return;
	}
	if (rc != ADMIT_OK) {
		pv_info("s2s", "[%s] SASL EXTERNAL for %s refused: %s", c->ip, domain ? domain : "?", why ? why : "");
		c->s2s->stats.in_refused++;
		iwrite(c, "<failure xmlns='" PV_NS_SASL "'><not-authorized/></failure></stream:stream>");
		c->closing = true;
		pv_conn_close(c->conn);
		pv_free(domain);
		return;
	}
	iwrite(c, "<success xmlns='" PV_NS_SASL "'/>");
	authenticated(c, domain, "external");
	pv_free(domain);
	c->restart = true;
	pv_xmlstream_stop(c->xs);
}

/* XEP-0220 2.1.3: the authoritative server's answer arrived. */
static void dialback_verified(void *ud, bool valid)
{
	pv_s2s_in *c = ud;
	c->db_pending = false;
	if (!c->conn || c->closing)
		return;
	const char *origin = c->claimed;
	const char *why = NULL;
	pv_buf b;
	pv_buf_init(&b);
	admit_rc rc = valid && origin ? admit(c, origin, true, &why) : ADMIT_UNAUTHENTICATED;
	bool ok = rc == ADMIT_OK;
	pv_buf_puts(&b, "<db:result from='");
	pv_xml_escape(c->host->name, strlen(c->host->name), &b);
	pv_buf_puts(&b, "' to='");
	pv_xml_escape(origin ? origin : "", origin ? strlen(origin) : 0, &b);
	pv_buf_printf(&b, "' type='%s'/>", ok ? "valid" : "invalid");
	iwrite(c, b.data);
	pv_buf_fini(&b);
	if (ok) {
		c->s2s->stats.dialback_ok++;
		authenticated(c, origin, "dialback");
	} else {
		c->s2s->stats.dialback_fail++;
		pv_info("s2s", "[%s] dialback for %s failed: %s", c->ip, origin ? origin : "?",
			valid ? (why ? why : "policy") : "key not confirmed by its server");
		stream_error(c, rc == ADMIT_POLICY ? "policy-violation" : "not-authorized",
			rc == ADMIT_POLICY ? why : "dialback failed");
	}
}

void pv_s2s_answer_verify(pv_s2s *s, const pv_xml *el, pv_buf *out)
{
	const char *from = pv_xml_attr(el, "from");
	const char *to = pv_xml_attr(el, "to");
	const char *id = pv_xml_attr(el, "id");
	char *key = pv_xml_text(el);
	char *f = from ? pv_jid_norm_domain(from, strlen(from)) : NULL;
	char *t = to ? pv_jid_norm_domain(to, strlen(to)) : NULL;
	/* Was this key made by us?  Keys are made by pv_s2s_dialback_key(receiving=f,
	 * originating=t, id). */
	bool ok = f && t && id && key && pv_server_host(s->srv, t) &&
		  pv_dialback_key_ok(s->srv->secret, sizeof(s->srv->secret), f, t, id, key);
	pv_buf_puts(out, "<db:verify from='");
	pv_xml_escape(t ? t : "", t ? strlen(t) : 0, out);
	pv_buf_puts(out, "' to='");
	pv_xml_escape(f ? f : "", f ? strlen(f) : 0, out);
	pv_buf_puts(out, "' id='");
	pv_xml_escape(id ? id : "", id ? strlen(id) : 0, out);
	pv_buf_printf(out, "' type='%s'/>", ok ? "valid" : "invalid");
	pv_free(key);
	pv_free(f);
	pv_free(t);
}

static void handle_dialback(pv_s2s_in *c, pv_xml *el)
{
	if (pv_xml_attr(el, "type")) {
		/* An answer: we never ask on a peer's stream, so it answers nothing (XEP-0220
		 * 2.2 and 5.1, XEP-0288 4: an unsolicited 'valid' grants nothing). */
		pv_debug("s2s", "[%s] unsolicited <db:%s type='%s'/> ignored", c->ip, el->name,
			pv_xml_attr(el, "type"));
		return;
	}
	if (strcmp(el->name, "verify") == 0) {
		pv_buf b;
		pv_buf_init(&b);
		pv_s2s_answer_verify(c->s2s, el, &b);
		iwrite(c, b.data);
		pv_buf_fini(&b);
		return;
	}
	const char *from = pv_xml_attr(el, "from");
	const char *to = pv_xml_attr(el, "to");
	char *key = pv_xml_text(el);
	char *f = from ? pv_jid_norm_domain(from, strlen(from)) : NULL;
	char *t = to ? pv_jid_norm_domain(to, strlen(to)) : NULL;
	if (strcmp(el->name, "result") == 0) {
		if (!c->s2s->conf.dialback) {
			stream_error(c, "not-authorized", "dialback is not accepted here");
		} else if (!f || !t || !key || !*key || !c->host || strcmp(t, c->host->name) != 0) {
			stream_error(c, "improper-addressing", "bad dialback request");
		} else if (c->peer || c->db_pending) {
			stream_error(c, "policy-violation", "one authentication per stream");
		} else if (c->s2s->conf.require_tls && !c->tls) {
			stream_error(c, "policy-violation", "TLS is required");
		} else {
			if (!c->claimed)
				c->claimed = pv_strdup(f);
			if (strcmp(c->claimed, f) != 0) {
				stream_error(c, "invalid-from", "dialback for another domain than the stream's");
			} else {
				c->db_pending = true;
				pv_s2s_verify_dialback(c->s2s->srv, t, f, c->stream_id, key, dialback_verified, c);
			}
		}
	}
	pv_free(key);
	pv_free(f);
	pv_free(t);
}

/* ---- stanzas ---- */

static void handle_stanza(pv_s2s_in *c, pv_xml *el)
{
	if (!c->peer) {
		stream_error(c, "not-authorized", "authenticate first");
		pv_xml_free(el);
		return;
	}
	const char *cond = NULL, *text = NULL;
	if (pv_s2s_deliver(c->s2s, c->host, c->peer, &c->rx, el, &cond, &text) != 0)
		stream_error(c, cond, text);
}

static void handle_sm(pv_s2s_in *c, pv_xml *el)
{
	if (!c->peer) {
		stream_error(c, "not-authorized", "authenticate first");
		return;
	}
	if (strcmp(el->name, "enable") == 0) {
		if (c->sm) {
			iwrite(c, "<failed xmlns='" PV_NS_SM "'><unexpected-request xmlns='" PV_NS_STANZAS "'/></failed>");
			return;
		}
		c->sm = true;
		c->rx.in.base = c->rx.in.count;
		iwrite(c, "<enabled xmlns='" PV_NS_SM "'/>");
		/* From here on both sides count what the other sent on this stream. */
		if (c->bidi_wait)
			bidi_settle(c);
		else if (c->carrying)
			pv_s2s_link_carrier_sm(c->carrying);
	} else if (strcmp(el->name, "r") == 0) {
		if (c->sm)
			pv_inq_request(&c->rx.in);
	} else if (strcmp(el->name, "a") == 0) {
		/* The peer acknowledges the rows our link sent on this stream (XEP-0288). */
		const char *text = NULL;
		const char *cond = c->carrying ? pv_s2s_link_acked(c->carrying, pv_xml_attr(el, "h"), &text) : NULL;
		if (cond)
			stream_error(c, cond, text);
	} else {
		stream_error(c, "unsupported-stanza-type", NULL);
	}
}

static void on_element(void *ud, pv_xml *el)
{
	pv_s2s_in *c = ud;
	const char *ns = el->ns ? el->ns : "";
	if (c->closing) {
		pv_xml_free(el);
		return;
	}
	if (c->bidi_wait && !(strcmp(ns, PV_NS_SM) == 0 && strcmp(el->name, "enable") == 0))
		bidi_settle(c); /* no XEP-0198 from this peer */
	if (strcmp(ns, PV_NS_TLS) == 0 && strcmp(el->name, "starttls") == 0 && !c->tls) {
		iwrite(c, "<proceed xmlns='" PV_NS_TLS "'/>");
		c->starttls = true;
		c->bidi = false; /* XEP-0288 2.1: asked again after TLS, or not at all */
		pv_xmlstream_stop(c->xs);
	} else if (!c->tls && c->s2s->conf.require_tls) {
		stream_error(c, strcmp(ns, PV_NS_SERVER) == 0 ? "not-authorized" : "policy-violation",
			"STARTTLS is required");
	} else if (strcmp(ns, PV_NS_SASL) == 0) {
		handle_sasl(c, el);
	} else if (strcmp(ns, PV_NS_SERVER_DIALBACK) == 0) {
		handle_dialback(c, el);
	} else if (strcmp(ns, PV_NS_SM) == 0) {
		handle_sm(c, el);
	} else if (strcmp(ns, PV_NS_BIDI) == 0 && strcmp(el->name, "bidi") == 0) {
		handle_bidi(c);
	} else if (pv_s2s_is_stanza(el)) {
		handle_stanza(c, el);
		return;
	} else {
		stream_error(c, "unsupported-stanza-type", NULL);
	}
	pv_xml_free(el);
}

static void on_stream_close(void *ud)
{
	pv_s2s_in *c = ud;
	if (!c->closing && c->conn) {
		iwrite(c, "</stream:stream>");
		c->closing = true;
		pv_conn_close(c->conn);
	}
}

static const pv_xmlstream_cb xs_cb = {.open = on_open, .element = on_element, .close = on_stream_close};

static void timer_cb(uv_timer_t *t);

static void on_data(pv_conn *conn, const char *data, size_t n)
{
	pv_s2s_in *c = pv_conn_owner(conn);
	if (!c || c->closing)
		return;
	uint64_t now = pv_now_ms();
	c->last_read_ms = now;
	pv_xs_error e = pv_xmlstream_feed(c->xs, data, n);
	if (e != PV_XS_OK) {
		stream_error(c, e == PV_XS_ERR_SIZE || e == PV_XS_ERR_DEPTH ? "policy-violation"
				: e == PV_XS_ERR_RESTRICTED ? "restricted-xml" : "not-well-formed",
			pv_xmlstream_error_text(c->xs));
		return;
	}
	if (c->closing)
		return;
	if (c->starttls) {
		c->starttls = false;
		pv_xmlstream_reset(c->xs);
		c->header_sent = false;
		if (pv_conn_starttls(c->conn, pv_s2s_server_ctx(c->host)) != 0)
			stream_error(c, "internal-server-error", NULL);
		return;
	}
	if (c->restart) {
		c->restart = false;
		pv_xmlstream_reset(c->xs);
		c->header_sent = false;
	}
	/* Inbound stanza rate per stream: reading pauses above it. */
	uint64_t wait = c->peer ? pv_s2s_rxq_throttle(&c->rx, &c->s2s->conf, now) : 0;
	if (wait)
		uv_timer_start(c->timer, timer_cb, wait, 0);
}

static void on_tls(pv_conn *conn)
{
	pv_s2s_in *c = pv_conn_owner(conn);
	c->tls = true;
}

static void timer_close_cb(uv_handle_t *h)
{
	pv_free(h);
}

static void on_close(pv_conn *conn, const char *why)
{
	pv_s2s_in *c = pv_conn_owner(conn);
	pv_s2s *s = c->s2s;
	c->conn = NULL;
	c->rx.conn = NULL;
	pv_debug("s2s", "[%s] inbound from %s closed: %s", c->ip, c->peer ? c->peer : "?", why);
	if (c->carrying) {
		pv_s2s_link *l = c->carrying;
		c->carrying = NULL;
		pv_s2s_link_carrier_gone(l);
	}
	if (c->counted && c->peer) {
		uintptr_t n = (uintptr_t)pv_map_get(s->in_per_domain, c->peer);
		if (n <= 1)
			pv_map_del(s->in_per_domain, c->peer);
		else
			pv_map_put(s->in_per_domain, c->peer, (void *)(n - 1));
	}
	if (c->db_pending)
		pv_s2s_verify_cancel(s->srv, c);
	if (c->prev)
		c->prev->next = c->next;
	else
		s->ins = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->nin--;
	in_free(c);
}

static void in_free(pv_s2s_in *c)
{
	pv_s2s_rxq_fini(&c->rx);
	uv_timer_stop(c->timer);
	uv_close((uv_handle_t *)c->timer, timer_close_cb);
	pv_xmlstream_free(c->xs);
	pv_free(c->claimed);
	pv_free(c->peer);
	pv_free(c->stream_id);
	pv_free(c);
}

static const pv_conn_cb conn_cb = {.on_data = on_data, .on_tls = on_tls, .on_close = on_close};

static void timer_cb(uv_timer_t *t)
{
	pv_s2s_in *c = t->data;
	if (c->closing || !c->conn)
		return;
	uint64_t now = pv_now_ms();
	pv_s2s_rxq_resume(&c->rx, now);
	if (c->bidi_wait && now - c->authed_ms >= 2000)
		bidi_settle(c); /* the peer did not enable XEP-0198 */
	if (!c->peer && now - c->opened_ms > c->s2s->conf.connect_timeout_ms * 3) {
		stream_error(c, "connection-timeout", "authentication took too long");
		return;
	}
	if (now - c->last_read_ms > c->s2s->conf.idle_timeout_ms) {
		stream_error(c, "connection-timeout", "idle");
		return;
	}
	uv_timer_start(c->timer, timer_cb, 1000, 0);
}

void pv_s2s_in_accept(pv_s2s *s, uv_stream_t *listener, bool direct_tls)
{
	pv_s2s_in *c = pv_calloc(1, sizeof(*c));
	c->s2s = s;
	c->direct_tls = direct_tls;
	/* Direct TLS: the SNI callback picks the host's s2s context. */
	SSL_CTX *ctx = direct_tls && s->srv->nhosts ? pv_s2s_server_ctx(s->srv->hosts[0]) : NULL;
	c->conn = pv_conn_accept(listener, &conn_cb, c, ctx);
	if (!c->conn) {
		pv_free(c);
		return;
	}
	snprintf(c->ip, sizeof(c->ip), "%s", pv_conn_peer_ip(c->conn));
	pv_xmlstream_limits lim = {.max_stanza = s->conf.max_stanza, .max_depth = s->srv->lim.max_depth};
	c->xs = pv_xmlstream_new(&xs_cb, c, &lim);
	pv_s2s_rxq_init(&c->rx, c->conn, &s->conf);
	c->opened_ms = c->last_read_ms = pv_now_ms();
	c->timer = pv_calloc(1, sizeof(uv_timer_t));
	uv_timer_init(s->srv->loop, c->timer);
	c->timer->data = c;
	uv_timer_start(c->timer, timer_cb, 1000, 0);
	c->next = s->ins;
	if (s->ins)
		s->ins->prev = c;
	s->ins = c;
	s->nin++;
}

void pv_s2s_in_close_all(pv_s2s *s, const char *cond)
{
	for (pv_s2s_in *c = s->ins; c; c = c->next)
		stream_error(c, cond, NULL);
}

void pv_s2s_in_describe(pv_s2s *s, pv_buf *out)
{
	for (pv_s2s_in *c = s->ins; c; c = c->next) {
		pv_buf_printf(out, "%s <- %s state=%s auth=%s tls=%s in=%llu bidi=%s\n", c->host ? c->host->name : "?",
			c->peer ? c->peer : c->claimed ? c->claimed : "?", c->peer ? "connected" : "negotiating",
			c->auth ? c->auth : "none",
			c->conn && pv_conn_tls_version(c->conn) ? pv_conn_tls_version(c->conn) : "none",
			(unsigned long long)c->rx.in.count, c->carrying ? "carrier" : c->bidi ? "yes" : "no");
	}
}
