/* s2s_relay.c -- relay through an exchange (issue 6; docs/protocol/exchange.md, the
 * "Relay" section of docs/s2s.md).
 *
 * Provider side:
 *   - route_via_exchange: a stanza for a domain with no static route goes on the link
 *     to the configured exchange (as mail goes to a relay host), so the provider keeps
 *     one link instead of N.  The stanza keeps its addresses.
 *   - every stanza queued for the exchange carries an origin proof (s2s_origin.c)
 *     signed with the host's s2s key, so the recipient can tell which provider sent it.
 *   - inbound: a stanza whose from-domain is not the authenticated peer is accepted only
 *     when the peer is our configured exchange and the from-domain a member; it is then
 *     delivered only if its origin proof verifies.  One that does not is counted,
 *     logged (rate-limited), never delivered, and a message or iq get/set is answered
 *     with not-authorized + <origin-invalid/>; the stream is not touched, so one bad
 *     stanza cannot cut the exchange off for everyone.
 * Exchange side (role: exchange):
 *   - a stanza from a member provider for another member's domain is pushed to the link
 *     queue of (exchange, destination) inside the storage batch that also records the
 *     inbound high-water mark (s2s_deliver.c): acknowledged only when durable, relayed
 *     exactly once, bounced once at expiry (s2s_out.c) in the exchange's own name.
 *   - per source provider: a stanza rate (token bucket) and a daily count; per
 *     destination: a queue length.  Refusals are stanza errors from the exchange's
 *     domain with an urn:peyvand:relay:0 condition; other providers are unaffected.
 *   - counters per provider (never bodies) for `peyvandctl exchange` and stats.
 * Number addresses (<blinded>@<exchange>) are resolved by mod_exchange, which routes the
 * readdressed copy back here through pv_route -> pv_s2s_relay.
 * Threading: the worker loop only. */
#include <stdio.h>
#include <string.h>

#include "peyvand/pv_log.h"
#include "peyvand/pv_module.h"
#include "xmpp/s2s_int.h"
#include "xmpp/s2s_origin.h"

typedef struct relay_peer {
	uint64_t in, in_bytes, out, out_bytes, numbers;
	uint64_t refused_rate, refused_daily, refused_queue, refused_member;
	double tokens;
	uint64_t tokens_ms;
	int64_t day;
	uint64_t day_count;
} relay_peer;

typedef struct pv_relay {
	pv_map *peers;             /* provider domain -> relay_peer */
	uint64_t relayed_in, origin_ok, origin_failed, forwarded, refused;
	uint64_t last_log_ms;
} pv_relay;

static pv_relay *relay_of(pv_s2s *s)
{
	if (!s->relay) {
		s->relay = pv_calloc(1, sizeof(pv_relay));
		s->relay->peers = pv_map_new();
	}
	return s->relay;
}

static relay_peer *peer_of(pv_s2s *s, const char *domain)
{
	pv_relay *r = relay_of(s);
	relay_peer *p = pv_map_get(r->peers, domain);
	if (!p) {
		p = pv_calloc(1, sizeof(*p));
		p->tokens = -1; /* filled on first use */
		pv_map_put(r->peers, domain, p);
	}
	return p;
}

static void free_peer(void *p)
{
	pv_free(p);
}

void pv_s2s_relay_free(pv_s2s *s)
{
	if (!s->relay)
		return;
	pv_map_free(s->relay->peers, free_peer);
	pv_free(s->relay);
	s->relay = NULL;
}

static pv_s2s_host *shost(pv_s2s *s, const pv_host *h)
{
	return pv_map_get(s->hosts, h->name);
}

/* ---- host settings ---- */

int pv_s2s_relay_host_load(pv_s2s *s, pv_host *h, pv_s2s_host *sh, char **err)
{
	const char *ex = pv_conf_str(h->conf, "interconnect.exchange", NULL);
	if (ex && *ex) {
		sh->exchange = pv_jid_norm_domain(ex, strlen(ex));
		if (!sh->exchange) {
			*err = pv_sprintf("hosts.%s.interconnect.exchange: not a valid domain", h->name);
			return PV_EINVAL;
		}
		sh->via_exchange = pv_conf_bool(h->conf, "interconnect.route_via_exchange", false);
		/* Origin proofs are signed with the key of the certificate the host shows on
		 * its s2s links: the one the interconnect CA issued for its domain. */
		sh->signer = pv_origin_signer_load(h->cert_file, h->key_file);
		if (!sh->signer) {
			*err = pv_sprintf("hosts.%s: cannot load the certificate and key that sign origin proofs",
				h->name);
			return PV_EINVAL;
		}
	}
	sh->direct = pv_map_new();
	const pv_conf *routes = pv_conf_get(s->srv->conf, "s2s.routes");
	for (size_t i = 0; routes && i < pv_conf_len(routes); i++) {
		const char *d = pv_conf_key_at(routes, i);
		char *nd = pv_jid_norm_domain(d, strlen(d));
		if (nd)
			pv_map_put(sh->direct, nd, (void *)1);
		pv_free(nd);
	}
	return 0;
}

void pv_s2s_relay_host_fini(pv_s2s_host *sh)
{
	pv_free(sh->exchange);
	sh->exchange = NULL;
	if (sh->direct)
		pv_map_free(sh->direct, NULL);
	sh->direct = NULL;
	pv_origin_signer_free(sh->signer);
	sh->signer = NULL;
}

/* ---- provider side: routing and signing ---- */

const char *pv_s2s_relay_hop(pv_s2s *s, pv_host *h, const char *to_domain)
{
	pv_s2s_host *sh = shost(s, h);
	if (!sh || !sh->exchange || !sh->via_exchange || strcmp(to_domain, sh->exchange) == 0 ||
	    pv_map_get(sh->direct, to_domain))
		return to_domain;
	return sh->exchange;
}

pv_stanza *pv_s2s_relay_sign(pv_s2s *s, pv_host *h, const char *hop, pv_stanza *st)
{
	pv_s2s_host *sh = shost(s, h);
	if (!sh || !sh->exchange || !sh->signer || strcmp(hop, sh->exchange) != 0 || !st->has_from)
		return pv_stanza_ref(st);
	/* Stanzas for the exchange itself (directory lookups, publishes) go nowhere else:
	 * no proof (an iq's payload must stay one element, RFC 6120 8.2.3). */
	if (!st->to.local && strcmp(st->to.domain, sh->exchange) == 0)
		return pv_stanza_ref(st);
	pv_stanza *cp = pv_stanza_copy(st);
	if (pv_origin_sign(sh->signer, cp->xml, (int64_t)pv_wall_s() * 1000) != 0) {
		pv_warn("s2s", "%s -> %s: origin proof not made (the recipient will refuse the stanza)", h->name,
			st->to.domain);
	}
	pv_buf_reset(&cp->wire); /* the cached bytes predate the proof */
	return cp;
}

/* ---- both sides: admission ---- */

bool pv_s2s_relay_from_ok(pv_s2s *s, pv_host *host, const char *peer, const pv_stanza *st)
{
	pv_s2s_host *sh = shost(s, host);
	if (!sh || !sh->exchange || strcmp(sh->exchange, peer) != 0 || !st->has_from)
		return false;
	/* A relayed stanza claiming one of our own domains is forged by definition. */
	if (pv_server_host(s->srv, st->from.domain))
		return false;
	if (sh->members.members_only && !pv_membership_find(&sh->members, st->from.domain))
		return false;
	return true;
}

bool pv_s2s_relay_to_ok(pv_s2s *s, pv_host *host, const pv_stanza *st)
{
	return st->has_to && pv_host_is_exchange(host) && !pv_server_host(s->srv, st->to.domain);
}

/* An error for `st` from `from` (the exchange's domain, or our recipient), with an
 * application condition of urn:peyvand:relay:0, routed back to st's sender. */
static void relay_error(pv_host *h, const pv_stanza *st, const char *from, const char *etype, const char *cond,
	const char *app)
{
	pv_stanza *e = pv_stanza_error(st, etype, cond, NULL);
	if (!e)
		return;
	pv_xml *err = NULL;
	for (pv_xml *c = pv_xml_first_element(e->xml); c; c = pv_xml_next_element(c))
		if (strcmp(c->name, "error") == 0)
			err = c;
	if (err && app)
		pv_xml_add_child(err, app, PV_NS_RELAY);
	pv_stanza_set_from(e, from);
	if (e->has_to)
		pv_route(h, e);
	pv_stanza_unref(e);
}

/* At most one refusal line per second: a flood must not become a log flood. */
static bool log_now(pv_s2s *s)
{
	pv_relay *r = relay_of(s);
	uint64_t now = pv_now_ms();
	if (now - r->last_log_ms < 1000)
		return false;
	r->last_log_ms = now;
	return true;
}

/* ---- provider side: a stanza relayed to us ---- */

/* The sender addressed either our recipient itself or a number address at our exchange
 * (which the exchange readdressed: mod_exchange). */
static bool addressed_ok(const pv_s2s_host *sh, const pv_stanza *st, const char *addressed)
{
	pv_jid a;
	if (pv_jid_parse_str(&a, addressed) != 0)
		return false;
	bool ok = strcmp(a.full, st->to.full) == 0 || strcmp(a.bare, st->to.bare) == 0 ||
		  (a.local && !a.resource && sh->exchange && strcmp(a.domain, sh->exchange) == 0);
	pv_jid_fini(&a);
	return ok;
}

static void relayed_in(pv_s2s *s, pv_host *host, const char *peer, pv_stanza *st)
{
	pv_relay *r = relay_of(s);
	pv_s2s_host *sh = shost(s, host);
	const pv_member *m = pv_membership_find(&sh->members, st->from.domain);
	const char *addressed = NULL, *why = NULL;
	r->relayed_in++;
	if (!pv_origin_verify(st->xml, m && m->ca ? m->ca : s->conf.trust, m ? m->fingerprint : NULL, &addressed,
		    &why) ||
	    !addressed_ok(sh, st, addressed)) {
		r->origin_failed++;
		if (log_now(s))
			pv_info("s2s", "relayed stanza from %s via %s refused: %s", st->from.domain, peer,
				why ? why : "addressed elsewhere");
		bool answer = (st->kind == PV_ST_MESSAGE && !(st->type && strcmp(st->type, "error") == 0)) ||
			      (st->kind == PV_ST_IQ && st->type &&
				      (strcmp(st->type, "get") == 0 || strcmp(st->type, "set") == 0));
		if (answer)
			relay_error(host, st, st->to.full, "cancel", "not-authorized", "origin-invalid");
		return;
	}
	r->origin_ok++;
	/* The proof has done its work; recipients and archives need not carry it. */
	pv_xml *o = pv_xml_child(st->xml, "origin", PV_NS_RELAY);
	if (o)
		pv_xml_free(o);
	pv_buf_reset(&st->wire);
	pv_router_dispatch(host, NULL, st);
}

/* ---- exchange side ---- */

static long long xconf(pv_host *h, const char *key, long long def)
{
	return pv_conf_int(h->conf, key, def);
}

/* The source provider's rate (token bucket, burst two seconds' worth) and day. */
static const char *charge(pv_host *h, relay_peer *p)
{
	long long rate = xconf(h, "exchange.rate", 1000);
	long long daily = xconf(h, "exchange.daily", 0);
	uint64_t now = pv_now_ms();
	if (rate > 0) {
		if (p->tokens < 0) {
			p->tokens = 2.0 * (double)rate;
			p->tokens_ms = now;
		}
		p->tokens += (double)(now - p->tokens_ms) * (double)rate / 1000.0;
		if (p->tokens > 2.0 * (double)rate)
			p->tokens = 2.0 * (double)rate;
		p->tokens_ms = now;
		if (p->tokens < 1.0) {
			p->refused_rate++;
			return "rate-limited";
		}
	}
	int64_t day = pv_wall_s() / 86400;
	if (day != p->day) {
		p->day = day;
		p->day_count = 0;
	}
	if (daily > 0 && p->day_count >= (uint64_t)daily) {
		p->refused_daily++;
		return "quota-exceeded";
	}
	if (rate > 0)
		p->tokens -= 1.0;
	p->day_count++;
	return NULL;
}

void pv_s2s_relay_dispatch(pv_s2s *s, pv_host *host, const char *peer, pv_stanza *st)
{
	if (st->has_from && strcmp(st->from.domain, peer) != 0) {
		relayed_in(s, host, peer, st);
		return;
	}
	if (pv_host_is_exchange(host)) {
		relay_peer *p = peer_of(s, peer);
		p->in++;
		p->in_bytes += pv_stanza_wire(st)->len;
		bool to_self = strcmp(st->to.domain, host->name) == 0;
		if (!to_self || st->to.local) {
			const char *lim = charge(host, p);
			if (lim) {
				relay_of(s)->refused++;
				if (log_now(s))
					pv_info("s2s", "exchange %s: stanza from %s refused: %s", host->name, peer, lim);
				relay_error(host, st, host->name, "wait", "policy-violation", lim);
				return;
			}
			if (!to_self) {
				pv_route(host, st); /* -> pv_s2s_relay */
				return;
			}
			p->numbers++;
		}
	}
	pv_router_dispatch(host, NULL, st);
}

int pv_s2s_relay(pv_server *srv, pv_host *h, pv_stanza *st)
{
	pv_s2s *s = srv->s2s;
	if (!s || !pv_host_is_exchange(h) || !st->has_to)
		return PV_EPERM;
	pv_s2s_host *sh = shost(s, h);
	const char *src = st->has_from ? st->from.domain : h->name;
	if (!sh || !pv_membership_find(&sh->members, st->to.domain)) {
		peer_of(s, src)->refused_member++;
		relay_of(s)->refused++;
		if (log_now(s))
			pv_info("s2s", "exchange %s: relay %s -> %s refused: not a member", h->name, src,
				st->to.domain);
		relay_error(h, st, h->name, "cancel", "remote-server-not-found", "not-member");
		return 0;
	}
	pv_s2s_link *l = pv_s2s_link_get(s, h, st->to.domain, true);
	long long max_queue = xconf(h, "exchange.max_queue", 100000);
	if (max_queue > 0 && l->queued >= (size_t)max_queue) {
		peer_of(s, src)->refused_queue++;
		relay_of(s)->refused++;
		if (log_now(s))
			pv_info("s2s", "exchange %s: relay %s -> %s refused: queue full", h->name, src, st->to.domain);
		relay_error(h, st, h->name, "wait", "resource-constraint", "queue-full");
		return 0;
	}
	relay_peer *d = peer_of(s, st->to.domain);
	d->out++;
	d->out_bytes += pv_stanza_wire(st)->len;
	relay_of(s)->forwarded++;
	pv_s2s_push(l, st);
	return 0;
}

/* ---- operators ---- */

void pv_s2s_relay_stats(pv_s2s *s, pv_buf *out)
{
	pv_relay *r = relay_of(s);
	pv_buf_printf(out,
		"s2s_relay_forwarded %llu\ns2s_relay_refused %llu\ns2s_relay_in %llu\n"
		"s2s_relay_origin_ok %llu\ns2s_relay_origin_failed %llu\n",
		(unsigned long long)r->forwarded, (unsigned long long)r->refused, (unsigned long long)r->relayed_in,
		(unsigned long long)r->origin_ok, (unsigned long long)r->origin_failed);
}

typedef struct xdesc {
	pv_s2s *s;
	pv_host *h;
	pv_buf *out;
	const char *only;
	int n;
} xdesc;

static void provider_line(xdesc *x, const char *dom)
{
	relay_peer *p = pv_map_get(relay_of(x->s)->peers, dom);
	relay_peer zero = {0};
	if (!p)
		p = &zero;
	pv_s2s_link *l = pv_s2s_link_get(x->s, x->h, dom, false);
	pv_buf_printf(x->out,
		"%s <> %s queue=%zu acked=%llu bounced=%llu in=%llu in_bytes=%llu out=%llu out_bytes=%llu "
		"numbers=%llu refused=%llu refused_rate=%llu refused_daily=%llu refused_queue=%llu "
		"refused_member=%llu today=%llu link=%s\n",
		x->h->name, dom, l ? l->queued : 0, (unsigned long long)(l ? l->acked_total : 0),
		(unsigned long long)(l ? l->bounced_total : 0), (unsigned long long)p->in,
		(unsigned long long)p->in_bytes, (unsigned long long)p->out, (unsigned long long)p->out_bytes,
		(unsigned long long)p->numbers,
		(unsigned long long)(p->refused_rate + p->refused_daily + p->refused_queue + p->refused_member),
		(unsigned long long)p->refused_rate, (unsigned long long)p->refused_daily,
		(unsigned long long)p->refused_queue, (unsigned long long)p->refused_member,
		(unsigned long long)(p->day == pv_wall_s() / 86400 ? p->day_count : 0),
		!l ? "none" : l->state == L_READY ? "ready" : l->paused ? "paused" : l->queued ? "waiting" : "idle");
	x->n++;
}

int pv_s2s_relay_admin(pv_s2s *s, int argc, char **argv, pv_buf *out)
{
	if (argc > 2) {
		pv_buf_puts(out, "usage: exchange [PROVIDER]");
		return PV_EINVAL;
	}
	int hosts = 0;
	for (size_t i = 0; i < s->srv->nhosts; i++) {
		pv_host *h = s->srv->hosts[i];
		pv_s2s_host *sh = shost(s, h);
		if (!sh || !pv_host_is_exchange(h))
			continue;
		hosts++;
		xdesc x = {.s = s, .h = h, .out = out, .only = argc == 2 ? argv[1] : NULL};
		for (size_t k = 0; k < sh->members.n; k++)
			if (!x.only || strcmp(x.only, sh->members.members[k].domain) == 0)
				provider_line(&x, sh->members.members[k].domain);
		if (x.only && !x.n) {
			pv_buf_printf(out, "%s is not a member provider of %s\n", x.only, h->name);
			return PV_ENOENT;
		}
	}
	if (!hosts) {
		pv_buf_puts(out, "no host here has role: exchange");
		return PV_EINVAL;
	}
	return 0;
}
