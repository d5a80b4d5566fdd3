/* session.c -- bound client sessions: what modules see (pv_session_* of pv_module.h),
 * delivery to the client, and the XEP-0198 bookkeeping that carries the durability
 * promise:
 *  - inbound: every stanza from the client gets a pv_inrec with one hold for its
 *    dispatch; handlers take more holds for storage writes (core/inq.c).  in.done is the prefix of
 *    stanzas whose holds are all released; for resumable sessions it is written to
 *    storage (sess.h_in) and only the committed value (in.durable) is ever sent as h.
 *  - outbound: every stanza gets a sequence number and messages stay in the in-memory
 *    queue until the client acked them (XEP-0198) or, without XEP-0198, the kernel took
 *    the bytes.  A message that a client just sent (worker.cur_stanza, whose only copy
 *    is in memory and whose sender waits on the hold) is not written to disk on the way:
 *    the sender's acknowledgement waits until the message is taken by the kernel (no
 *    XEP-0198), acked by the recipient, or -- if the recipient has not acked it within
 *    sm.store_after -- appended to the session's stored queue (outq).  Every other
 *    message (from offline storage, from a peer server whose high-water mark commits
 *    with the delivery, made by a module) is appended to outq before the socket, as
 *    whoever deletes its stored copy next relies on that.  Measured in bench/NOTES.md:
 *    the per-message outq insert+delete and its fsync share were most of the CPU per
 *    delivered message at moderate rates.
 *  - a session that ends hands its unacknowledged messages to the user's other
 *    resources or to offline storage (RFC 6121 8.5.3.2.1 rules), never to the void.
 * Threading: the worker loop only. */
#include <string.h>

#include "core/core.h"
#include "peyvand/pv_log.h"

pv_server *pv_the_server;

static void in_advanced(void *owner);
static void in_answer(void *owner, uint32_t h);

static void outrec_free(pv_outrec *o)
{
	/* Whoever drops a record without rerouting it has decided its fate; the sender
	 * must not wait for it forever. */
	pv_hold_release(o->hold);
	pv_stanza_unref(o->st);
	pv_free(o);
}

/* ---- messages to store when the client does not ack them in time ---- */

static void store_list_del(pv_session *s)
{
	if (!s->store_queued)
		return;
	pv_worker *w = &s->srv->worker;
	if (s->store_prev)
		s->store_prev->store_next = s->store_next;
	else
		w->store_list = s->store_next;
	if (s->store_next)
		s->store_next->store_prev = s->store_prev;
	s->store_prev = s->store_next = NULL;
	s->store_queued = false;
}

void pv_session_put_row(pv_session *s)
{
	pv_store_sess rec = {.sid = s->sid, .host = s->host->name, .user = s->user,
		.resource = s->jid.resource, .sm = s->resumable, .h_in = s->in.durable,
		.in_base = s->in.base, .out_base = s->out_base};
	pv_store_sess_put(s->srv->store, &rec, NULL, NULL);
	s->row_stored = true;
}

/* Stored messages hang off the session's row (a restart reroutes them from there). */
static void outq_append(pv_session *s, uint64_t seq, pv_stanza *st, pv_hold *h)
{
	if (!s->row_stored)
		pv_session_put_row(s);
	const pv_buf *b = pv_stanza_wire(st);
	pv_store_outq_append(s->srv->store, s->sid, seq, b->data, b->len,
		h ? pv_hold_store_done : NULL, h);
}

/* Appends to outq the session's unstored messages queued before tick `before` (all of
 * them when `all`); each one's hold is released when its row is committed.  The session
 * leaves the list once none is left unstored. */
static void store_unacked(pv_session *s, bool all, uint32_t before)
{
	bool left = false;
	for (pv_outrec *o = s->unacked; o; o = o->next) {
		if (!o->durable || o->stored)
			continue;
		if (!all && (int32_t)(o->tick - before) >= 0) {
			left = true;
			continue;
		}
		outq_append(s, o->seq, o->st, o->hold);
		o->hold = NULL;
		o->stored = true;
	}
	if (!left)
		store_list_del(s);
}

void pv_sessions_store_pending(pv_server *srv)
{
	while (srv->worker.store_list)
		store_unacked(srv->worker.store_list, true, 0);
}

/* Every sm.store_after while sessions wait for acks.  A message queued under tick t is
 * stored at the tick after next, t + 2, if still unacknowledged: it has then waited
 * between one and two periods, never less than sm.store_after.  (Storing everything at
 * each tick stored messages a moment old: at saturation with XEP-0198 clients, whose
 * acks come well within the period, that was a stored copy and a delete per message
 * for nothing.) */
static void store_timer_cb(uv_timer_t *t)
{
	pv_server *srv = t->data;
	pv_worker *w = &srv->worker;
	uint32_t now = ++w->store_tick;
	for (pv_session *s = w->store_list, *nx; s; s = nx) {
		nx = s->store_next;
		store_unacked(s, false, now - 1);
	}
	if (w->store_list)
		uv_timer_start(&w->store_timer, store_timer_cb, srv->lim.sm_store_after_ms, 0);
}

void pv_sessions_init(pv_server *srv)
{
	uv_timer_init(srv->loop, &srv->worker.store_timer);
	srv->worker.store_timer.data = srv;
	uv_unref((uv_handle_t *)&srv->worker.store_timer);
}

static void store_list_add(pv_session *s)
{
	if (s->store_queued)
		return;
	pv_worker *w = &s->srv->worker;
	s->store_queued = true;
	s->store_prev = NULL;
	s->store_next = w->store_list;
	if (w->store_list)
		w->store_list->store_prev = s;
	w->store_list = s;
	/* One timer for all sessions (store_timer_cb): a message waits one to two periods
	 * before it is stored, which only delays its sender's ack, never loses anything. */
	if (!uv_is_active((uv_handle_t *)&w->store_timer))
		uv_timer_start(&w->store_timer, store_timer_cb, s->srv->lim.sm_store_after_ms, 0);
}

pv_session *pv_session_new(pv_server *srv, pv_host *host)
{
	pv_session *s = pv_calloc(1, sizeof(*s));
	s->srv = srv;
	s->host = host;
	pv_inq_init(&s->in, s, in_advanced, in_answer);
	s->created = pv_wall_s();
	return s;
}

static void hib_close_cb(uv_handle_t *h)
{
	pv_free(h);
}

void pv_session_free(pv_session *s)
{
	if (!s)
		return;
	if (s->sid && pv_map_get(s->srv->worker.by_sid, s->sid) == s)
		pv_map_del(s->srv->worker.by_sid, s->sid);
	if (s->c2s) {
		/* The connection outlives us only while it is being closed. */
		pv_c2s_detach(s->c2s);
		s->c2s = NULL;
	}
	store_list_del(s);
	for (pv_outrec *o = s->unacked, *nx; o; o = nx) {
		nx = o->next;
		outrec_free(o);
	}
	pv_inq_fini(&s->in);
	for (pv_sdata *d = s->data, *nx; d; d = nx) {
		nx = d->next;
		if (d->free_fn)
			d->free_fn(d->data);
		pv_free(d);
	}
	for (size_t i = 0; i < s->ndirected; i++)
		pv_free(s->directed[i]);
	pv_free(s->directed);
	pv_xml_free(s->presence);
	if (s->hib_timer) {
		uv_timer_stop(s->hib_timer);
		uv_close((uv_handle_t *)s->hib_timer, hib_close_cb);
	}
	pv_jid_fini(&s->jid);
	pv_free(s->user);
	pv_free(s->sid);
	pv_free(s);
}

/* ---- module API ---- */

const pv_jid *pv_session_jid(const pv_session *s)
{
	return s->bound ? &s->jid : NULL;
}

pv_host *pv_session_host(const pv_session *s)
{
	return s->host;
}

bool pv_session_is_available(const pv_session *s)
{
	return s->available;
}

int pv_session_priority(const pv_session *s)
{
	return s->priority;
}

pv_stanza *pv_session_presence(const pv_session *s)
{
	if (!s->presence)
		return NULL;
	pv_stanza *p = pv_stanza_new(pv_xml_dup(s->presence), NULL);
	PV_ASSERT(p != NULL); /* it was a valid stanza when stored */
	pv_stanza_set_from_jid(p, &s->jid);
	return p;
}

void pv_session_set_presence(pv_session *s, pv_stanza *p)
{
	bool was = s->available;
	pv_xml_free(s->presence);
	s->presence = NULL;
	s->available = false;
	s->priority = 0;
	if (p && !(p->type && strcmp(p->type, "unavailable") == 0)) {
		s->presence = pv_xml_dup(p->xml);
		s->available = true;
		char *prio = pv_xml_child_text(p->xml, "priority", NULL);
		if (prio) {
			long v = strtol(prio, NULL, 10);
			s->priority = v < -128 ? -128 : v > 127 ? 127 : (int)v;
			pv_free(prio);
		}
	}
	if (!was && s->available) {
		pv_event ev = {.host = s->host, .origin = s};
		pv_fire(s->host, "session-available", &ev);
	}
}

bool pv_session_is_interested(const pv_session *s)
{
	return s->interested;
}

void pv_session_set_interested(pv_session *s, bool on)
{
	s->interested = on;
}

bool pv_session_is_secure(const pv_session *s)
{
	return s->c2s && pv_c2s_is_secure(s->c2s);
}

const char *pv_session_peer_ip(const pv_session *s)
{
	return s->c2s ? pv_c2s_peer_ip(s->c2s) : "";
}

void *pv_session_get_data(const pv_session *s, const void *key)
{
	for (pv_sdata *d = s->data; d; d = d->next)
		if (d->key == key)
			return d->data;
	return NULL;
}

void pv_session_set_data(pv_session *s, const void *key, void *data, void (*free_fn)(void *))
{
	for (pv_sdata *d = s->data; d; d = d->next) {
		if (d->key == key) {
			if (d->free_fn && d->data != data)
				d->free_fn(d->data);
			d->data = data;
			d->free_fn = free_fn;
			return;
		}
	}
	pv_sdata *d = pv_calloc(1, sizeof(*d));
	d->key = key;
	d->data = data;
	d->free_fn = free_fn;
	d->next = s->data;
	s->data = d;
}

void pv_session_add_directed(pv_session *s, const char *full_jid)
{
	for (size_t i = 0; i < s->ndirected; i++)
		if (strcmp(s->directed[i], full_jid) == 0)
			return;
	if (s->ndirected >= 1000)
		return; /* bounded: a client cannot grow this without limit */
	s->directed = pv_realloc(s->directed, (s->ndirected + 1) * sizeof(char *));
	s->directed[s->ndirected++] = pv_strdup(full_jid);
}

void pv_session_del_directed(pv_session *s, const char *full_jid)
{
	for (size_t i = 0; i < s->ndirected; i++) {
		if (strcmp(s->directed[i], full_jid) == 0) {
			pv_free(s->directed[i]);
			s->directed[i] = s->directed[--s->ndirected];
			return;
		}
	}
}

/* ---- delivery to the client ---- */

/* One <r/> outstanding at a time: the client's <a/> clocks the next request, so a burst
 * costs a request per round trip, not per stanza. */
static void request_ack(pv_session *s)
{
	if (!s->sm || s->r_out || !s->unacked || !s->c2s)
		return;
	s->r_out = true;
	pv_c2s_write_raw(s->c2s, "<r xmlns='" PV_NS_SM "'/>", sizeof("<r xmlns='" PV_NS_SM "'/>") - 1);
}

void pv_session_send(pv_session *s, pv_stanza *st)
{
	if (s->closing)
		return;
	if (!s->bound) {
		/* Pre-bind answers (registration, bind errors) go straight out. */
		if (s->c2s)
			pv_c2s_write_stanza(s->c2s, st, false, NULL, 0);
		return;
	}
	uint64_t seq = ++s->out_seq;
	bool durable = st->kind == PV_ST_MESSAGE;
	pv_hold *h = durable ? pv_hold_take() : NULL;
	/* The fast path (see the file comment) needs a sender to hold back, and this very
	 * stanza: a copy or a stored message has another owner that may delete its copy. */
	bool fast = h && st == s->srv->worker.cur_stanza && s->srv->lim.sm_store_after_ms > 0;
	if (durable && !fast) {
		outq_append(s, seq, st, h);
		h = NULL;
	}
	if (s->sm || durable) {
		/* Kept until the client acks it (XEP-0198) or, without stream management,
		 * until the kernel took it (pv_session_written); a session that ends hands
		 * what is left here to its user's other resources or offline storage. */
		pv_outrec *o = pv_calloc(1, sizeof(*o));
		o->seq = seq;
		o->st = pv_stanza_ref(st);
		o->durable = durable;
		o->stored = durable && !fast;
		o->hold = h;
		o->tick = s->srv->worker.store_tick;
		if (s->unacked_tail)
			s->unacked_tail->next = o;
		else
			s->unacked = o;
		s->unacked_tail = o;
		if (fast && (s->sm || !s->c2s))
			store_list_add(s);
	}
	if (s->c2s) {
		pv_c2s_write_stanza(s->c2s, st, durable && !s->sm, s, seq);
		request_ack(s);
	}
}

int pv_session_ack_check(const pv_session *s, uint32_t h, uint64_t *out)
{
	uint32_t cur = (uint32_t)(s->out_acked - s->out_base);
	uint32_t delta = (uint32_t)(h - cur);
	/* h never goes backwards; a "negative" delta is an old or repeated ack. */
	uint64_t acked = delta > 0x80000000u ? s->out_acked : s->out_acked + delta;
	if (s->restored) {
		/* After a restart we do not know how many non-durable stanzas went out before
		 * the crash; trust the client's count. */
		*out = s->out_base + h;
		return 0;
	}
	if (acked > s->out_seq)
		return PV_EINVAL;
	*out = acked;
	return 0;
}

void pv_session_ack_apply(pv_session *s, uint32_t h)
{
	uint64_t acked;
	if (pv_session_ack_check(s, h, &acked) != 0)
		return;
	if (s->restored) {
		/* First ack after a restart: the client's count is the truth. */
		s->restored = false;
		if (acked > s->out_seq)
			s->out_seq = acked;
		s->out_acked = acked;
	}
	bool any_stored = false;
	while (s->unacked && s->unacked->seq <= acked) {
		pv_outrec *o = s->unacked;
		s->unacked = o->next;
		any_stored |= o->stored;
		outrec_free(o);
	}
	if (!s->unacked) {
		s->unacked_tail = NULL;
		store_list_del(s);
	}
	if (any_stored)
		pv_store_outq_ack(s->srv->store, s->sid, acked, NULL, NULL);
	if (acked > s->out_acked)
		s->out_acked = acked;
}

void pv_session_ack_in(pv_session *s, uint32_t h)
{
	pv_session_ack_apply(s, h);
	s->r_out = false;
	request_ack(s);
}

void pv_session_resend_unacked(pv_session *s)
{
	for (pv_outrec *o = s->unacked; o; o = o->next)
		if (s->c2s)
			pv_c2s_write_stanza(s->c2s, o->st, false, s, o->seq);
	s->r_out = false;
	request_ack(s);
}

/* ---- inbound durability (inq.h) ---- */

typedef struct hsave {
	pv_server *srv;
	char *sid;
	uint64_t value;
} hsave;

static void h_saved(void *ud, int rc)
{
	hsave *hs = ud;
	pv_session *s = pv_map_get(hs->srv->worker.by_sid, hs->sid);
	if (s && rc == 0)
		pv_inq_set_durable(&s->in, hs->value);
	pv_free(hs->sid);
	pv_free(hs);
}

/* More received stanzas are handled: a resumable session commits the new count first
 * (so a resumption after a crash neither loses nor repeats them); others have nothing
 * to resume and acknowledge at once. */
static void in_advanced(void *owner)
{
	pv_session *s = owner;
	if (!s->sm) {
		pv_inq_set_durable(&s->in, s->in.done);
		return;
	}
	if (s->in_saving < s->in.done) {
		s->in_saving = s->in.done;
		hsave *hs = pv_malloc(sizeof(*hs));
		hs->srv = s->srv;
		hs->sid = pv_strdup(s->sid);
		hs->value = s->in.done;
		pv_store_sess_set_h(s->srv->store, s->sid, s->in.done, h_saved, hs);
	}
}

static void in_answer(void *owner, uint32_t h)
{
	pv_session *s = owner;
	if (s->c2s)
		pv_c2s_answer_ack(s->c2s, h);
}

/* ---- end of a session ---- */

typedef struct reroute_ctx {
	pv_host *h;
	uint64_t after;
	size_t n;
} reroute_ctx;

/* RFC 6121 8.5.3.2.1: a message for a resource that is gone -- normal and chat go to the
 * bare JID (other resources or offline storage), the rest is dropped. */
static void reroute_one(pv_host *h, pv_stanza *st)
{
	if (st->kind != PV_ST_MESSAGE)
		return;
	const char *t = st->type ? st->type : "normal";
	if (strcmp(t, "normal") != 0 && strcmp(t, "chat") != 0)
		return;
	pv_deliver_bare(h, st);
}

static void reroute_row(void *ud, uint64_t seq, const char *xml, size_t len)
{
	reroute_ctx *rc = ud;
	if (seq <= rc->after)
		return;
	pv_stanza *st = pv_stanza_parse(xml, len);
	if (!st) {
		pv_error("session", "unparsable queued stanza seq=%llu dropped", (unsigned long long)seq);
		return;
	}
	reroute_one(rc->h, st);
	pv_stanza_unref(st);
	rc->n++;
}

void pv_session_written(pv_session *s, uint64_t seq)
{
	/* Since XEP-0198 was enabled, the client's acks release its messages instead. */
	if (s->sm)
		return;
	bool any_stored = false;
	while (s->unacked && s->unacked->seq <= seq) {
		pv_outrec *o = s->unacked;
		s->unacked = o->next;
		any_stored |= o->stored;
		outrec_free(o);
	}
	if (!s->unacked) {
		s->unacked_tail = NULL;
		store_list_del(s);
	}
	if (any_stored)
		pv_store_outq_ack(s->srv->store, s->sid, seq, NULL, NULL);
}

void pv_session_reroute_unacked(pv_session *s)
{
	/* The in-memory queue is exact: everything not acknowledged (or, without XEP-0198,
	 * not taken by the kernel) is still in it, as stored messages are in outq. */
	size_t n = 0;
	for (pv_outrec *o = s->unacked; o; o = o->next) {
		if (!o->durable || o->seq <= s->out_acked)
			continue;
		reroute_one(s->host, o->st);
		n++;
		if (o->hold) {
			/* Its sender is acked once whatever the reroute wrote (offline storage,
			 * another session's queue) is committed: the store commits in order. */
			pv_store_barrier(s->srv->store, pv_hold_store_done, o->hold);
			o->hold = NULL;
		}
	}
	if (n)
		pv_info("session", "%s: %zu unacknowledged message(s) rerouted", s->jid.full, n);
}

void pv_session_unbind(pv_session *s, const char *why)
{
	if (s->closing)
		return;
	s->closing = true;
	if (s->c2s) {
		pv_c2s *c = s->c2s;
		s->c2s = NULL;
		pv_c2s_detach(c);
		pv_c2s_close(c, why);
	}
	if (s->bound) {
		pv_info("session", "%s ended: %s", s->jid.full, why);
		s->closing = false; /* modules may still address it during unbind */
		pv_event ev = {.host = s->host, .origin = s};
		pv_fire(s->host, "resource-unbind", &ev);
		s->closing = true;
		pv_host_unregister(s->host, s);
		pv_map_del(s->srv->worker.by_sid, s->sid);
		pv_session_reroute_unacked(s);
		if (s->row_stored)
			pv_store_sess_del(s->srv->store, s->sid, NULL, NULL);
	}
	pv_session_free(s);
}

static void hib_expired(uv_timer_t *t)
{
	pv_session *s = t->data;
	pv_session_unbind(s, "resumption timeout");
}

void pv_session_hibernate(pv_session *s)
{
	pv_info("session", "%s waiting for resumption (%llus)", s->jid.full,
		(unsigned long long)(s->srv->lim.resume_timeout_ms / 1000));
	if (!s->hib_timer) {
		s->hib_timer = pv_calloc(1, sizeof(uv_timer_t));
		uv_timer_init(s->srv->loop, s->hib_timer);
		s->hib_timer->data = s;
	}
	uv_timer_start(s->hib_timer, hib_expired, s->srv->lim.resume_timeout_ms, 0);
	/* Nothing is written.  A phone that changes networks hibernates and resumes within
	 * seconds, and each of the two used to commit its own write of the deadline (the
	 * commonest reconnect: 15 % of its CPU, bench/NOTES.md).  The row keeps expires 0,
	 * which restart recovery after a kill -9 reads as a full resume_timeout from the
	 * restart: a little longer than the session had left, never shorter.  A clean stop
	 * writes the real deadlines (pv_sessions_store_expiries). */
}

static int store_expiry(void *ud, const char *key, void *val)
{
	(void)key;
	pv_session *s = val;
	int64_t now = *(const int64_t *)ud;
	if (!s->c2s && s->row_stored && s->hib_timer && uv_is_active((uv_handle_t *)s->hib_timer)) {
		uint64_t left_ms = uv_timer_get_due_in(s->hib_timer);
		pv_store_sess_set_expiry(s->srv->store, s->sid, now + (int64_t)((left_ms + 999) / 1000),
			NULL, NULL);
		s->expiry_stored = true;
	}
	return 0;
}

void pv_sessions_store_expiries(pv_server *srv)
{
	int64_t now = pv_wall_s();
	pv_map_each(srv->worker.by_sid, store_expiry, &now);
}

/* ---- start-up: sessions that were alive when the server stopped ---- */

typedef struct restore_ctx {
	pv_server *srv;
	pv_store_sess *list;
	size_t n;
} restore_ctx;

static void collect(void *ud, const pv_store_sess *ss)
{
	restore_ctx *rc = ud;
	rc->list = pv_realloc(rc->list, (rc->n + 1) * sizeof(pv_store_sess));
	pv_store_sess *d = &rc->list[rc->n++];
	*d = *ss;
	d->sid = pv_strdup(ss->sid);
	d->host = pv_strdup(ss->host);
	d->user = pv_strdup(ss->user);
	d->resource = pv_strdup(ss->resource);
}

typedef struct lastseq {
	uint64_t first, last;
	size_t n;
} lastseq;

static void seq_row(void *ud, uint64_t seq, const char *xml, size_t len)
{
	lastseq *l = ud;
	if (!l->n++)
		l->first = seq;
	l->last = seq;
}

static void load_row(void *ud, uint64_t seq, const char *xml, size_t len)
{
	pv_session *s = ud;
	pv_stanza *st = pv_stanza_parse(xml, len);
	if (!st)
		return;
	pv_outrec *o = pv_calloc(1, sizeof(*o));
	o->seq = seq;
	o->st = st;
	o->durable = true;
	o->stored = true;
	if (s->unacked_tail)
		s->unacked_tail->next = o;
	else
		s->unacked = o;
	s->unacked_tail = o;
}

int pv_sessions_restore(pv_server *srv)
{
	restore_ctx rc = {.srv = srv};
	int rv = pv_store_sess_list(srv->store, collect, &rc);
	if (rv < 0)
		return rv;
	int64_t now = pv_wall_s();
	size_t kept = 0, ended = 0;
	for (size_t i = 0; i < rc.n; i++) {
		pv_store_sess *ss = &rc.list[i];
		pv_host *h = pv_server_host(srv, ss->host);
		pv_session *s = pv_session_new(srv, h);
		s->user = pv_strdup(ss->user);
		s->sid = pv_strdup(ss->sid);
		bool ok_jid = h && pv_jid_make(&s->jid, ss->user, ss->host, ss->resource) == 0;
		s->sm = ss->sm;
		s->resumable = ss->sm;
		s->in.base = ss->in_base;
		s->out_base = ss->out_base;
		s->in.count = s->in.done = s->in.durable = s->in_saving = ss->h_in;
		lastseq l = {0};
		pv_store_outq_list(srv->store, ss->sid, 0, seq_row, &l);
		s->out_acked = l.n ? l.first - 1 : s->out_base;
		if (s->out_acked < s->out_base)
			s->out_acked = s->out_base;
		s->out_seq = l.n ? l.last : s->out_acked;
		bool alive = ok_jid && ss->sm && (ss->expires == 0 || ss->expires > now);
		if (!alive) {
			if (h && ok_jid) {
				reroute_ctx r = {.h = h, .after = s->sm ? s->out_acked : 0};
				pv_store_outq_list(srv->store, ss->sid, r.after, reroute_row, &r);
			}
			pv_store_sess_del(srv->store, ss->sid, NULL, NULL);
			pv_session_free(s);
			ended++;
			continue;
		}
		/* Rebuild the queue in memory so a resume re-sends it. */
		s->bound = true;
		s->restored = true;
		s->row_stored = true;
		pv_host_register(h, s);
		pv_map_put(srv->worker.by_sid, s->sid, s);
		pv_store_outq_list(srv->store, ss->sid, 0, load_row, s);
		kept++;
		int64_t left = ss->expires ? ss->expires - now : (int64_t)(srv->lim.resume_timeout_ms / 1000);
		s->hib_timer = pv_calloc(1, sizeof(uv_timer_t));
		uv_timer_init(srv->loop, s->hib_timer);
		s->hib_timer->data = s;
		uv_timer_start(s->hib_timer, hib_expired, (uint64_t)(left > 0 ? left : 1) * 1000, 0);
		if (!ss->expires)
			pv_store_sess_set_expiry(srv->store, ss->sid, now + left, NULL, NULL);
		s->expiry_stored = true;
	}
	for (size_t i = 0; i < rc.n; i++)
		pv_store_sess_fini(&rc.list[i]);
	pv_free(rc.list);
	if (kept || ended)
		pv_info("session", "restored %zu resumable session(s), ended %zu", kept, ended);
	return 0;
}

const char *pv_session_user(const pv_session *s)
{
	return s->user;
}

size_t pv_session_directed(const pv_session *s, const char **out, size_t cap)
{
	for (size_t i = 0; i < s->ndirected && i < cap; i++)
		out[i] = s->directed[i];
	return s->ndirected;
}
