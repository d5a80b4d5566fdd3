/* s2s_deliver.c -- a stanza from a peer server, whichever stream brought it: a peer's
 * inbound stream (s2s_in.c) or, with XEP-0288 bidirectional streams, our own outbound
 * stream to it (s2s_out.c).  One place for the checks and the durability rules.
 *
 * RFC 6120 13.7.1.2 / 8.1.1: after authentication a stanza's 'from' must be in the
 * authenticated domain (invalid-from) and its 'to' in ours (host-unknown).  A peyvand
 * peer stamps each queued stanza with an XEP-0359 <stanza-id by='PEER' id='EPOCH:SEQ'/>;
 * we drop what we already committed (seq <= the pair's high-water mark in that epoch)
 * and write the mark in the same storage batch as the delivery, so an acknowledged
 * stanza is delivered exactly once whichever side crashed.  The mark lives on the link
 * of the pair (local host, peer), shared by every stream between the two servers: when
 * XEP-0288 moves a link from one connection to another, the resends can arrive on
 * another stream than the originals.
 * Threading: the worker loop only. */
#include <stdlib.h>
#include <string.h>

#include "peyvand/pv_log.h"
#include "xmpp/s2s_int.h"

static void rxq_answer(void *owner, uint32_t h)
{
	pv_s2s_rxq *r = owner;
	char b[80];
	int n = snprintf(b, sizeof(b), "<a xmlns='" PV_NS_SM "' h='%u'/>", h);
	if (r->conn)
		pv_conn_write(r->conn, b, (size_t)n, NULL, NULL);
}

/* The delivery and the high-water mark commit together (one storage batch), so when
 * the holds are released everything is durable. */
static void rxq_advanced(void *owner)
{
	pv_s2s_rxq *r = owner;
	pv_inq_set_durable(&r->in, r->in.done);
}

void pv_s2s_rxq_init(pv_s2s_rxq *r, pv_conn *conn, const pv_s2s_conf *conf)
{
	pv_inq_init(&r->in, r, rxq_advanced, rxq_answer);
	r->conn = conn;
	r->tokens = conf->stanza_rate * 2;
	r->tokens_ms = pv_now_ms();
	r->stanzas = 0;
	r->paused = false;
}

void pv_s2s_rxq_fini(pv_s2s_rxq *r)
{
	pv_inq_fini(&r->in);
	r->conn = NULL;
	r->paused = false;
}

/* A token bucket on stanzas (burst: two seconds' worth); nothing is dropped. */
uint64_t pv_s2s_rxq_throttle(pv_s2s_rxq *r, const pv_s2s_conf *conf, uint64_t now)
{
	double rate = conf->stanza_rate;
	if (rate <= 0 || !r->conn)
		return 0;
	r->tokens += (double)(now - r->tokens_ms) * rate / 1000.0;
	if (r->tokens > 2 * rate)
		r->tokens = 2 * rate;
	r->tokens_ms = now;
	r->tokens -= (double)r->stanzas;
	r->stanzas = 0;
	if (r->tokens >= 0 || r->paused)
		return 0;
	r->paused = true;
	pv_conn_read_pause(r->conn);
	uint64_t wait = (uint64_t)(-r->tokens * 1000.0 / rate) + 1;
	return wait < 1000 ? wait : 1000;
}

void pv_s2s_rxq_resume(pv_s2s_rxq *r, uint64_t now)
{
	if (!r->paused)
		return;
	r->paused = false;
	/* tokens_ms stays: the time spent paused is what refills the bucket (resetting it
	 * here kept the bucket empty forever and stalled busy links). */
	if (r->conn)
		pv_conn_read_resume(r->conn);
}

bool pv_s2s_is_stanza(const pv_xml *el)
{
	return el->ns && strcmp(el->ns, PV_NS_SERVER) == 0 &&
	       (strcmp(el->name, "message") == 0 || strcmp(el->name, "presence") == 0 ||
		       strcmp(el->name, "iq") == 0);
}

/* The pair's link with its high-water mark loaded (before any batch: a read in a batch
 * may not wait for the batch's own writes). */
static pv_s2s_link *rx_link(pv_s2s *s, pv_host *host, const char *peer)
{
	pv_s2s_link *l = pv_s2s_link_get(s, host, peer, true);
	if (!l->rx_loaded) {
		char *epoch = NULL;
		uint64_t hwm = 0;
		if (pv_store_s2s_hwm_get(s->srv->store, host->name, peer, &epoch, &hwm) == 0) {
			pv_free(l->rx_epoch);
			l->rx_epoch = epoch;
			l->rx_hwm = hwm;
		}
		l->rx_loaded = true;
	}
	return l;
}

/* Our dedup id from a peyvand peer: <stanza-id by='PEER' id='EPOCH:SEQ'/>.  Removes it
 * (and any stanza-id claiming to be by one of our hosts: XEP-0359 7) from the stanza. */
static void take_sid(pv_s2s *s, const char *peer, pv_xml *el, char **epoch, uint64_t *seq)
{
	*epoch = NULL;
	*seq = 0;
	for (pv_xml *x = pv_xml_first_element(el), *nx; x; x = nx) {
		nx = pv_xml_next_element(x);
		if (!pv_xml_is(x, "stanza-id", PV_NS_SID))
			continue;
		const char *by = pv_xml_attr(x, "by");
		const char *id = pv_xml_attr(x, "id");
		if (by && strcmp(by, peer) == 0 && id && !*epoch) {
			const char *colon = strrchr(id, ':');
			char *end = NULL;
			unsigned long long v = colon ? strtoull(colon + 1, &end, 10) : 0;
			if (colon && end && !*end && v > 0) {
				*epoch = pv_strndup(id, (size_t)(colon - id));
				*seq = v;
			}
			pv_xml_free(x);
		} else if (by && pv_server_host(s->srv, by)) {
			pv_xml_free(x);
		}
	}
}

int pv_s2s_deliver(pv_s2s *s, pv_host *host, const char *peer, pv_s2s_rxq *rx, pv_xml *el,
	const char **cond, const char **text)
{
	const char *bad = NULL;
	char *epoch;
	uint64_t seq;
	take_sid(s, peer, el, &epoch, &seq);
	pv_stanza *st = pv_stanza_new(el, &bad);
	if (!st) {
		pv_xml_free(el);
		pv_free(epoch);
		*cond = bad && strcmp(bad, "from") == 0 ? "invalid-from" : "improper-addressing";
		*text = "malformed address";
		return PV_EPERM;
	}
	/* issue 6: or relayed by our exchange from a member (s2s_relay.c) */
	if (!st->has_from || (strcmp(st->from.domain, peer) != 0 && !pv_s2s_relay_from_ok(s, host, peer, st))) {
		*cond = "invalid-from";
		*text = "the stanza's from is not the authenticated domain";
		goto fail;
	}
	/* issue 6: or, on an exchange, for another member to relay to */
	if (!st->has_to || (strcmp(st->to.domain, host->name) != 0 && !pv_s2s_relay_to_ok(s, host, st))) {
		*cond = "host-unknown";
		*text = "the stanza's to is not the stream's domain";
		goto fail;
	}
	s->stats.in_stanzas++;
	rx->stanzas++;
	pv_s2s_link *l = rx_link(s, host, peer);
	pv_store *store = s->srv->store;
	bool dup = epoch && l->rx_epoch && strcmp(epoch, l->rx_epoch) == 0 && seq <= l->rx_hwm;
	pv_inrec *r = pv_inq_begin(&rx->in, dup ? 0 : seq);
	if (dup) {
		s->stats.in_dups++;
		pv_debug("s2s", "%s -> %s: dropped resend %s:%llu", peer, host->name, epoch,
			(unsigned long long)seq);
		/* The first copy may have come on another stream and still be on its way to
		 * disk: acknowledge the resend only after a write queued behind that commit
		 * (the store commits in order). */
		pv_store_s2s_hwm_set(store, host->name, peer, l->rx_epoch, l->rx_hwm, pv_hold_store_done,
			pv_hold_take());
	} else {
		if (epoch)
			pv_store_batch_begin(store);
		pv_s2s_relay_dispatch(s, host, peer, st); /* issue 6: pv_router_dispatch unless relayed */
		if (epoch) {
			if (!l->rx_epoch || strcmp(l->rx_epoch, epoch) != 0) {
				pv_free(l->rx_epoch);
				l->rx_epoch = pv_strdup(epoch);
			}
			l->rx_hwm = seq;
			pv_store_s2s_hwm_set(store, host->name, peer, epoch, seq, NULL, NULL);
			pv_store_batch_end(store);
		}
	}
	pv_inq_end(r);
	pv_free(epoch);
	pv_stanza_unref(st);
	return 0;
fail:
	pv_stanza_unref(st);
	pv_free(epoch);
	return PV_EPERM;
}
