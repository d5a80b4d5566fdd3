/* conn.c -- pv_conn: a byte stream over a libuv TCP handle, optionally TLS through
 * OpenSSL through a BIO of ours (the socket never touches OpenSSL directly).
 *
 * Specs: STARTTLS switch-over as RFC 6120 section 5.4.3.3 needs it (every byte after
 * the switch is TLS; nothing of the plaintext phase may reach the TLS engine);
 * channel bindings "tls-exporter" (RFC 9266 section 2: EKM with label
 * "EXPORTER-Channel-Binding", empty context, 32 bytes; TLS 1.3 only here) and
 * "tls-unique" (RFC 5929 section 3.1: the first Finished message of the most recent
 * handshake; TLS <= 1.2 only).
 *
 * Threading: a conn belongs to one loop; every function must be called on that
 * loop's thread.  The shared read buffer is per thread (one loop per thread), which
 * is as good as per loop: data is consumed synchronously in the read callback.
 *
 * Lifetime: states CONNECTING -> OPEN -> CLOSING (flush, close_notify, FIN, read and
 * discard until the peer's FIN) -> CLOSED (uv_close issued).  When both handles have
 * closed, pending write callbacks get UV_ECANCELED, on_close runs once, then the conn
 * is freed.  Nothing is freed inside a callback that the conn is still running.
 *
 * Output is batched per loop turn: pv_conn_write appends plaintext to the conn's
 * batch, and a uv_check handle (after the loop's I/O callbacks) turns each batch into
 * one TLS record run and one write(2), tried on the socket at once (send_bytes).  A
 * session that gets several stanzas in one turn (a burst, or the login's stream
 * header and features) then costs one syscall instead of one per stanza: at login
 * that was 14 writes, the kernel's TCP send path 17 % of the server's CPU per login
 * (perf).  A uv_idle handle is active while anything is batched, so the loop never
 * sleeps in poll on unsent bytes. */
#include "net/conn.h"
#include "net/tlsrec.h"

#include "peyvand/pv_log.h"
#include "peyvand/pv_util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <pthread.h>
#include <string.h>

#define RBUF_SIZE 65536
/* A graceful close that cannot flush within this time (peer stopped reading) turns
 * into an abort, so a stuck peer cannot hold a conn forever. */
#define CLOSE_TIMEOUT_MS 10000
/* After our FIN, how long we keep reading (and discarding) for the peer's FIN.
 * Closing a socket with unread input makes Linux send RST, which can destroy the
 * last bytes we sent before the peer read them. */
#define LINGER_MS 2000
/* The ciphertext buffers keep their allocation up to this size between uses; above it
 * they are freed once empty, so a conn does not hold the buffer of its largest burst. */
#define TBUF_KEEP 16384
#define TLS_RECORD_MAX 16384
/* Largest single uv_write / SSL_write: lengths there are unsigned / int. */
#define WRITE_CHUNK (1 << 30)

#define EXPORTER_LABEL "EXPORTER-Channel-Binding"
#define EXPORTER_LEN 32

enum conn_state { ST_CONNECTING, ST_OPEN, ST_CLOSING, ST_CLOSED };

typedef struct wcb {
	pv_conn_write_fn cb;
	void *ud;
} wcb;

/* One uv_write: carries its own copy of the bytes and the owner callbacks of the
 * writes it holds (one inline; more in `more` when a batch merged several). */
typedef struct wreq {
	uv_write_t req;
	pv_conn *c;
	size_t n;
	pv_conn_write_fn cb;
	void *ud;
	wcb *more;
	size_t nmore;
	char data[];
} wreq;

/* Plaintext written during this loop turn, sent by the batcher's check callback. */
typedef struct obatch {
	struct obatch *next, **pprev;  /* the batcher's list of conns with output */
	pv_conn *c;
	char *data;
	size_t len, cap;
	wcb *cbs;
	size_t ncb, cbcap;
} obatch;

/* Plaintext written before the TLS handshake finished, or (n == 0, no data) a
 * callback that will be told UV_ECANCELED when the conn is gone. */
typedef struct qent {
	struct qent *next;
	size_t n;
	pv_conn_write_fn cb;
	void *ud;
	char data[];
} qent;

typedef struct qlist {
	qent *head;
	qent **tail;
} qlist;

struct pv_conn {
	uv_tcp_t tcp;
	/* OPEN: deferred TLS drain after resume; CLOSING: deadlines.  Made on first use:
	 * an idle connection never needs one (152 bytes of every idle session). */
	uv_timer_t *timer;
	/* the connect and shutdown requests are allocated when made: an idle conn
	 * needs neither (176 bytes of each idle session, massif) */
	uv_loop_t *loop;
	pv_conn_cb cb;
	void *owner;
	void (*connected)(pv_conn *c, int status);
	SSL *ssl;
	/* TLS 1.3 records after a server handshake (tlsrec.c); before it, the traffic
	 * secrets the keylog callback gave.  NULL: OpenSSL does the records. */
	pv_tlsrec *rec;
	enum conn_state state;
	bool tls_done;
	bool reading;
	bool paused;
	bool eof;
	bool shutdown_done;
	bool notify_close; /* false for a conn that never reached the owner */
	unsigned char handles_open;
	unsigned nreq; /* uv_writes not yet called back (see send_bytes) */
	size_t out_pending;
	qlist tls_q;     /* plaintext waiting for the handshake */
	qlist cancelled; /* callbacks to fail before on_close */
	obatch *ob;      /* output of this loop turn, NULL when none */
	struct batcher *batch; /* its loop's batcher; NULL: writes go out at once */
	const char *why;
	/* Ciphertext, seen by OpenSSL through the conn's BIO (see "TLS BIO"): */
	char *tin;         /* the socket read being fed (borrowed during on_read) */
	size_t tin_len;
	pv_buf tkeep;      /* read but not yet taken by OpenSSL (paused owner), from */
	size_t tkeep_off;  /* this offset on */
	pv_buf tout;       /* made by OpenSSL, not yet handed to libuv */
	char peer_ip[INET6_ADDRSTRLEN];
};

/* Every byte on the wire is TLS from here on: OpenSSL's object, or after
 * pv_conn_tls_release only tlsrec.c's records. */
static inline bool is_tls(const pv_conn *c)
{
	return c->ssl || c->rec;
}

/* ---- shared read buffer ---- */

static _Thread_local struct {
	bool busy;
	char buf[RBUF_SIZE];
} t_rbuf;

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	/* busy only if a read callback re-entered the loop; never expected, but a
	 * private buffer keeps that case correct instead of corrupting data. */
	if (!t_rbuf.busy) {
		t_rbuf.busy = true;
		*buf = uv_buf_init(t_rbuf.buf, RBUF_SIZE);
	} else {
		*buf = uv_buf_init(pv_malloc(RBUF_SIZE), RBUF_SIZE);
	}
}

static void rbuf_release(const uv_buf_t *buf)
{
	if (!buf || !buf->base)
		return;
	if (buf->base == t_rbuf.buf)
		t_rbuf.busy = false;
	else
		pv_free(buf->base);
}

/* ---- per-loop output batching ---- */

/* Batches bigger than this go out at once instead of at the end of the turn. */
#define BATCH_FLUSH_AT 65536
/* Spare batch structs kept per thread, and the buffer size they may keep. */
#define BATCH_POOL 256
#define BATCH_KEEP 16384

typedef struct batcher {
	uv_loop_t *loop;
	uv_check_t check;
	uv_idle_t idle;
	obatch *dirty;
	size_t nconns;      /* conns using it; it closes with the last one */
	int handles_open;
	bool closing;
	obatch *pool;
	size_t npool;
} batcher;

/* The batcher new conns of this thread's loop join (one loop per thread, see the file
 * comment).  A closing batcher is replaced at once; it lives on until its last conn
 * and both its handles are gone. */
static _Thread_local batcher *t_batch;

static void batch_flush_all(uv_check_t *h);
static void batch_send(pv_conn *c);
static void batch_send_now(pv_conn *c, bool sync_cbs);

static void on_idle(uv_idle_t *h)
{
	(void)h; /* only there so poll does not block while output waits */
}

static void batcher_maybe_free(batcher *b)
{
	if (b->handles_open > 0 || b->nconns > 0)
		return;
	while (b->pool) {
		obatch *o = b->pool;
		b->pool = o->next;
		pv_free(o->data);
		pv_free(o->cbs);
		pv_free(o);
	}
	if (t_batch == b)
		t_batch = NULL;
	pv_free(b);
}

static void batcher_closed(uv_handle_t *h)
{
	batcher *b = h->data;
	b->handles_open--;
	batcher_maybe_free(b);
}

static void batcher_close(batcher *b)
{
	if (!b->closing) {
		b->closing = true;
		if (t_batch == b)
			t_batch = NULL;
	}
	/* The server's shutdown walk may have closed the handles already. */
	if (!uv_is_closing((uv_handle_t *)&b->check))
		uv_close((uv_handle_t *)&b->check, batcher_closed);
	if (!uv_is_closing((uv_handle_t *)&b->idle))
		uv_close((uv_handle_t *)&b->idle, batcher_closed);
}

void pv_conn_loop_closing(uv_loop_t *loop)
{
	batcher *b = t_batch;
	if (b && b->loop == loop)
		batcher_close(b);
}

/* c's batcher while it can take output, else NULL (write at once). */
static batcher *batcher_of(pv_conn *c)
{
	batcher *b = c->batch;
	return b && !b->closing && !uv_is_closing((uv_handle_t *)&b->check) ? b : NULL;
}

static void batcher_attach(pv_conn *c)
{
	batcher *b = t_batch;
	if (b && b->loop != c->loop)
		return; /* a second loop on this thread: its conns write unbatched */
	if (!b) {
		b = pv_calloc(1, sizeof(*b));
		b->loop = c->loop;
		PV_ASSERT(uv_check_init(c->loop, &b->check) == 0);
		PV_ASSERT(uv_idle_init(c->loop, &b->idle) == 0);
		b->check.data = b;
		b->idle.data = b;
		/* Neither handle may keep a loop alive that has nothing else to do. */
		uv_unref((uv_handle_t *)&b->check);
		uv_unref((uv_handle_t *)&b->idle);
		b->handles_open = 2;
		t_batch = b;
	}
	b->nconns++;
	c->batch = b;
}

static void batcher_detach(pv_conn *c)
{
	batcher *b = c->batch;
	if (!b)
		return;
	c->batch = NULL;
	if (--b->nconns == 0)
		batcher_close(b);
	batcher_maybe_free(b);
}

static obatch *batch_get(batcher *b, pv_conn *c)
{
	obatch *o = b->pool;
	if (o) {
		b->pool = o->next;
		b->npool--;
	} else {
		o = pv_calloc(1, sizeof(*o));
	}
	o->c = c;
	o->len = 0;
	o->ncb = 0;
	if (!b->dirty) {
		uv_check_start(&b->check, batch_flush_all);
		uv_idle_start(&b->idle, on_idle);
	}
	o->next = b->dirty;
	if (o->next)
		o->next->pprev = &o->next;
	o->pprev = &b->dirty;
	b->dirty = o;
	return o;
}

static void batch_unlink(batcher *b, obatch *o)
{
	*o->pprev = o->next;
	if (o->next)
		o->next->pprev = o->pprev;
	o->next = NULL;
	if (b->dirty == NULL) {
		uv_check_stop(&b->check);
		uv_idle_stop(&b->idle);
	}
}

/* Keeps an unlinked batch struct for reuse (buffers above BATCH_KEEP go). */
static void batch_recycle(batcher *b, obatch *o)
{
	if (!b->closing && b->npool < BATCH_POOL) {
		if (o->cap > BATCH_KEEP) {
			pv_free(o->data);
			o->data = NULL;
			o->cap = 0;
		}
		o->next = b->pool;
		b->pool = o;
		b->npool++;
		return;
	}
	pv_free(o->data);
	pv_free(o->cbs);
	pv_free(o);
}

static void batch_add(pv_conn *c, batcher *b, const void *data, size_t n, pv_conn_write_fn cb,
	void *ud)
{
	obatch *o = c->ob ? c->ob : (c->ob = batch_get(b, c));
	if (o->len + n > o->cap) {
		size_t cap = o->cap ? o->cap : 1024;
		while (cap < o->len + n)
			cap *= 2;
		o->data = pv_realloc(o->data, cap);
		o->cap = cap;
	}
	if (n)
		memcpy(o->data + o->len, data, n);
	o->len += n;
	c->out_pending += n;
	if (cb) {
		if (o->ncb == o->cbcap) {
			o->cbcap = o->cbcap ? 2 * o->cbcap : 4;
			o->cbs = pv_realloc(o->cbs, o->cbcap * sizeof(*o->cbs));
		}
		o->cbs[o->ncb++] = (wcb){cb, ud};
	}
	if (o->len >= BATCH_FLUSH_AT)
		batch_send(c);
}

static void batch_flush_all(uv_check_t *h)
{
	batcher *b = h->data;
	/* batch_send unlinks each batch; a write failure may close its conn, which
	 * never touches another conn's batch. */
	while (b->dirty)
		batch_send_now(b->dirty->c, true);
}

/* Detaches c's batch (NULL if none) and takes its bytes off out_pending. */
static obatch *batch_take(pv_conn *c)
{
	obatch *o = c->ob;
	if (!o)
		return NULL;
	c->ob = NULL;
	batch_unlink(c->batch, o);
	c->out_pending -= o->len;
	return o;
}

/* Drops c's batch: its callbacks are failed with the conn's other pending ones. */
static void cancel_cbs(pv_conn *c, const wcb *cbs, size_t n);
static void batch_cancel(pv_conn *c)
{
	obatch *o = batch_take(c);
	if (!o)
		return;
	cancel_cbs(c, o->cbs, o->ncb);
	batch_recycle(c->batch, o);
}

/* ---- logging of peer misbehaviour, rate limited per thread ---- */

static bool log_allowed(void)
{
	static _Thread_local uint64_t window;
	static _Thread_local unsigned count;
	uint64_t now = pv_now_ms() / 1000;

	if (now != window) {
		window = now;
		count = 0;
	}
	return ++count <= 20;
}

static void log_tls_error(pv_conn *c, const char *what)
{
	unsigned long e = ERR_peek_last_error();
	char msg[256];

	if (!log_allowed()) {
		ERR_clear_error();
		return;
	}
	if (e)
		ERR_error_string_n(e, msg, sizeof msg);
	else
		snprintf(msg, sizeof msg, "none");
	pv_info("net", "tls %s failed peer=%s err=\"%s\"", what, c->peer_ip, msg);
	ERR_clear_error();
}

/* Empties the thread's OpenSSL error queue before an SSL call (SSL_get_error needs
 * that).  ERR_clear_error walks all 16 slots even when the queue is empty; a peek first
 * costs a fraction of that, and the queue is almost always empty: ERR_clear_error was
 * 1.4 % of the server's CPU at chat saturation, called before every SSL_read and
 * SSL_write (perf). */
static void tls_err_clear(void)
{
	if (ERR_peek_error() != 0)
		ERR_clear_error();
}

/* ---- small queue helpers ---- */

static void q_init(qlist *q)
{
	q->head = NULL;
	q->tail = &q->head;
}

static void q_push(qlist *q, qent *e)
{
	e->next = NULL;
	*q->tail = e;
	q->tail = &e->next;
}

static qent *q_pop(qlist *q)
{
	qent *e = q->head;

	if (e) {
		q->head = e->next;
		if (!q->head)
			q->tail = &q->head;
	}
	return e;
}

static void cancel_cb(pv_conn *c, pv_conn_write_fn cb, void *ud)
{
	qent *e;

	if (!cb)
		return;
	e = pv_calloc(1, sizeof *e);
	e->cb = cb;
	e->ud = ud;
	q_push(&c->cancelled, e);
}

/* Queued plaintext can never be sent once the conn is closing. */
static void cancel_tls_queue(pv_conn *c)
{
	qent *e;

	while ((e = q_pop(&c->tls_q))) {
		c->out_pending -= e->n;
		cancel_cb(c, e->cb, e->ud);
		pv_free(e);
	}
}

/* ---- lifecycle ---- */

static void on_handle_closed(uv_handle_t *h)
{
	pv_conn *c = h->data;
	qent *e;

	if (--c->handles_open > 0)
		return;
	/* A write callback may write again; such writes land in `cancelled` too. */
	while ((e = q_pop(&c->cancelled))) {
		e->cb(e->ud, UV_ECANCELED);
		pv_free(e);
	}
	if (c->notify_close && c->cb.on_close)
		c->cb.on_close(c, c->why ? c->why : "closed");
	while ((e = q_pop(&c->cancelled))) {
		e->cb(e->ud, UV_ECANCELED);
		pv_free(e);
	}
	if (c->ssl)
		SSL_free(c->ssl);
	pv_tlsrec_free(c->rec);
	pv_buf_fini(&c->tkeep);
	pv_buf_fini(&c->tout);
	batcher_detach(c);
	pv_free(c);
}

static void on_timer_closed(uv_handle_t *h)
{
	pv_conn *c = h->data;
	pv_free(h);
	on_handle_closed((uv_handle_t *)&c->tcp);
}

static void on_timer(uv_timer_t *t);

/* Starts the conn's timer, making it first if needed. */
static void timer_start(pv_conn *c, uint64_t ms)
{
	PV_ASSERT(c->state != ST_CLOSED); /* hard_close closed it (or never will) */
	if (!c->timer) {
		c->timer = pv_malloc(sizeof *c->timer);
		PV_ASSERT(uv_timer_init(c->loop, c->timer) == 0);
		c->timer->data = c;
		c->handles_open++;
	}
	uv_timer_start(c->timer, on_timer, ms, 0);
}

static void hard_close(pv_conn *c, const char *why)
{
	if (c->state == ST_CLOSED)
		return;
	if (!c->why)
		c->why = why;
	c->state = ST_CLOSED;
	cancel_tls_queue(c);
	batch_cancel(c);
	/* libuv fails in-flight writes (UV_ECANCELED) before the close callbacks. */
	uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
	if (c->timer)
		uv_close((uv_handle_t *)c->timer, on_timer_closed); /* closing stops it */
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void read_start(pv_conn *c)
{
	if (c->reading)
		return;
	if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
		c->reading = true;
}

static void read_stop(pv_conn *c)
{
	if (!c->reading)
		return;
	uv_read_stop((uv_stream_t *)&c->tcp);
	c->reading = false;
}

static void flush_wbio(pv_conn *c, pv_conn_write_fn cb, void *ud);

static void on_shutdown(uv_shutdown_t *req, int status)
{
	pv_conn *c = req->data;

	pv_free(req); /* libuv calls this exactly once, also when the close cancels it */
	if (c->state != ST_CLOSING)
		return;
	c->shutdown_done = true;
	if (status < 0 || c->eof) {
		hard_close(c, NULL);
		return;
	}
	/* Output is out and our FIN sent; give the peer a moment to close its side. */
	timer_start(c, LINGER_MS);
}

static void begin_close(pv_conn *c, const char *why)
{
	int r;

	if (c->state >= ST_CLOSING)
		return;
	if (c->state == ST_CONNECTING) {
		hard_close(c, why);
		return;
	}
	batch_send(c); /* what was written goes before close_notify and FIN */
	if (c->state != ST_OPEN)
		return;
	c->why = why;
	c->state = ST_CLOSING;
	cancel_tls_queue(c);
	if (pv_tlsrec_started(c->rec)) {
		pv_tlsrec_alert(c->rec, &c->tout, PV_TLSALERT_CLOSE_NOTIFY);
		flush_wbio(c, NULL, NULL);
		if (c->state != ST_CLOSING)
			return;
	} else if (c->ssl) {
		if (c->tls_done) {
			ERR_clear_error();
			SSL_shutdown(c->ssl); /* queues close_notify; we do not wait for the peer's */
			ERR_clear_error();
		}
		flush_wbio(c, NULL, NULL); /* close_notify, or a handshake alert */
		if (c->state != ST_CLOSING)
			return;
	}
	timer_start(c, CLOSE_TIMEOUT_MS);
	uv_shutdown_t *sreq = pv_malloc(sizeof(*sreq));
	sreq->data = c;
	r = uv_shutdown(sreq, (uv_stream_t *)&c->tcp, on_shutdown);
	if (r < 0) {
		pv_free(sreq);
		hard_close(c, NULL);
		return;
	}
	/* Keep reading (and discarding) so we notice the peer's FIN or reset. */
	if (!c->eof)
		read_start(c);
}

/* ---- output ---- */

static void on_write_done(uv_write_t *req, int status)
{
	wreq *w = req->data;
	pv_conn *c = w->c;

	c->out_pending -= w->n;
	c->nreq--;
	if (w->cb)
		w->cb(w->ud, status);
	for (size_t i = 0; i < w->nmore; i++)
		w->more[i].cb(w->more[i].ud, status);
	pv_free(w->more);
	pv_free(w);
	if (status < 0 && status != UV_ECANCELED) {
		if (log_allowed())
			pv_debug("net", "write failed peer=%s err=%s", c->peer_ip, uv_strerror(status));
		hard_close(c, "write error");
	}
}

static void cancel_cbs(pv_conn *c, const wcb *cbs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		cancel_cb(c, cbs[i].cb, cbs[i].ud);
}

/* Hands a filled wreq to libuv; on failure the callbacks are failed at close. */
static void submit(pv_conn *c, wreq *w)
{
	uv_buf_t b = uv_buf_init(w->data, (unsigned)w->n);
	int r;

	w->c = c;
	w->req.data = w;
	r = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write_done);
	if (r < 0) {
		cancel_cb(c, w->cb, w->ud);
		cancel_cbs(c, w->more, w->nmore);
		pv_free(w->more);
		pv_free(w);
		hard_close(c, "write error");
		return;
	}
	c->out_pending += w->n;
	c->nreq++;
}

static wreq *wreq_new(size_t n, const wcb *cbs, size_t ncb)
{
	wreq *w = pv_malloc(sizeof *w + n);

	w->n = n;
	w->cb = ncb ? cbs[0].cb : NULL;
	w->ud = ncb ? cbs[0].ud : NULL;
	w->more = NULL;
	w->nmore = ncb > 1 ? ncb - 1 : 0;
	if (w->nmore) {
		w->more = pv_malloc(w->nmore * sizeof(*w->more));
		memcpy(w->more, cbs + 1, w->nmore * sizeof(*w->more));
	}
	return w;
}

/* Frees b's allocation if it is empty and holds more than keep bytes. */
static void tbuf_trim(pv_buf *b, size_t keep)
{
	if (b->len == 0 && b->cap > keep)
		pv_buf_fini(b);
}

/* Sends n bytes at p (ciphertext, or plaintext before TLS) with the owner's callbacks
 * for them, which fire when all n are out.
 *
 * When none of c's earlier writes is still in libuv's hands, the socket is tried at
 * once (uv_try_write).  A uv_write costs a request, a copy of the bytes, and, when it
 * completes, the POLLOUT watcher change libuv makes in uv__drain: one epoll_ctl per
 * write.  Under the chat benchmark that was as many epoll_ctl calls as writes (strace).
 * What the socket does not take goes the uv_write way, behind what it took.
 *
 * Callbacks of a write that went out at once fire here, so the direct path is taken
 * with callbacks only when the caller says that is safe (sync_cbs: the batcher's check
 * callback, which runs inside no owner's call).  The other callers only ever pass
 * callbacks during the handshake or a close, rarely; they take libuv's path, which
 * calls back from the loop.  nreq == 0 keeps callbacks in write order.
 *
 * p may point into c->tout: nothing below appends to it before the callbacks, which
 * run last. */
static void send_bytes(pv_conn *c, const char *p, size_t n, const wcb *cbs, size_t ncb,
	bool sync_cbs)
{
	if (n > 0 && c->nreq == 0 && c->state == ST_OPEN && (ncb == 0 || sync_cbs)) {
		uv_buf_t b = uv_buf_init((char *)p, (unsigned)(n > WRITE_CHUNK ? WRITE_CHUNK : n));
		int r = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);

		if (r < 0 && r != UV_EAGAIN) {
			if (log_allowed())
				pv_debug("net", "write failed peer=%s err=%s", c->peer_ip, uv_strerror(r));
			cancel_cbs(c, cbs, ncb);
			hard_close(c, "write error");
			return;
		}
		if (r > 0) {
			p += r;
			n -= (size_t)r;
		}
		if (n == 0) {
			for (size_t i = 0; i < ncb; i++)
				cbs[i].cb(cbs[i].ud, 0);
			return;
		}
	}
	if (n == 0 && !ncb)
		return;
	do {
		size_t chunk = n > WRITE_CHUNK ? WRITE_CHUNK : n;
		bool last = chunk == n;
		wreq *w = wreq_new(chunk, cbs, last ? ncb : 0);

		if (chunk)
			memcpy(w->data, p, chunk);
		p += chunk;
		n -= chunk;
		submit(c, w);
		if (c->state == ST_CLOSED) {
			if (!last)
				cancel_cbs(c, cbs, ncb);
			return;
		}
	} while (n > 0);
}

/* Sends all ciphertext the TLS engine produced.  The owner's callbacks for the
 * plaintext just encrypted fire when all of it is out. */
static void flush_wbio_cbs(pv_conn *c, const wcb *cbs, size_t ncb, bool sync_cbs)
{
	size_t n = c->tout.len;

	if (n == 0 && !ncb)
		return;
	/* Taken: a write that closes c must not find it again.  The NUL pv_buf keeps
	 * after len is not written: the bytes are still being read below. */
	c->tout.len = 0;
	send_bytes(c, c->tout.data, n, cbs, ncb, sync_cbs);
	tbuf_trim(&c->tout, TBUF_KEEP);
}

static void flush_wbio(pv_conn *c, pv_conn_write_fn cb, void *ud)
{
	wcb one = {cb, ud};
	flush_wbio_cbs(c, &one, cb ? 1 : 0, false);
}

/* Sends what OpenSSL wrote on its own (the TLS 1.3 session ticket at the end of the
 * handshake, a KeyUpdate answer) with c's batch at the end of this loop turn, so
 * that it shares a write(2) and a segment with whatever the owner answers in the
 * same turn: the ticket went out alone in every login (strace: 11 writes per
 * login, 10 with this).  An empty batch still flushes the ciphertext. */
static void flush_wbio_soon(pv_conn *c)
{
	batcher *b = batcher_of(c);

	if (b && c->state == ST_OPEN && c->tout.len)
		batch_add(c, b, NULL, 0, NULL, NULL);
	else
		flush_wbio(c, NULL, NULL);
}

static void tls_write_cbs(pv_conn *c, const char *p, size_t n, const wcb *cbs, size_t ncb,
	bool sync_cbs)
{
	if (pv_tlsrec_started(c->rec)) {
		pv_tlsrec_seal(c->rec, &c->tout, p, n);
		flush_wbio_cbs(c, cbs, ncb, sync_cbs);
		return;
	}
	/* Our BIO never blocks, so SSL_write takes every byte it is given; the chunking
	 * keeps each call's length inside an int. */
	while (n > 0) {
		int chunk = n > WRITE_CHUNK ? WRITE_CHUNK : (int)n;
		int r;

		tls_err_clear();
		r = SSL_write(c->ssl, p, chunk);
		if (r <= 0) {
			log_tls_error(c, "write");
			cancel_cbs(c, cbs, ncb);
			hard_close(c, "tls error");
			return;
		}
		p += r;
		n -= (size_t)r;
	}
	flush_wbio_cbs(c, cbs, ncb, sync_cbs);
}

static void tls_write(pv_conn *c, const char *p, size_t n, pv_conn_write_fn cb, void *ud)
{
	wcb one = {cb, ud};
	tls_write_cbs(c, p, n, &one, cb ? 1 : 0, false);
}

/* Sends c's batch now: at the end of the loop turn (sync_cbs, from the check
 * callback), or early for a big batch or before a state change that must see the
 * bytes go first (close, STARTTLS). */
static void batch_send_now(pv_conn *c, bool sync_cbs)
{
	/* Detached first: a write below may close c, and the close must not find it. */
	obatch *o = batch_take(c);
	if (!o)
		return;
	if (c->state >= ST_CLOSED)
		cancel_cbs(c, o->cbs, o->ncb);
	else if (is_tls(c))
		tls_write_cbs(c, o->data, o->len, o->cbs, o->ncb, sync_cbs);
	else
		send_bytes(c, o->data, o->len, o->cbs, o->ncb, sync_cbs);
	batch_recycle(c->batch, o);
}

static void batch_send(pv_conn *c)
{
	batch_send_now(c, false);
}

void pv_conn_write(pv_conn *c, const void *data, size_t n, pv_conn_write_fn cb, void *ud)
{
	qent *e;
	batcher *b;

	if (c->state >= ST_CLOSING) {
		cancel_cb(c, cb, ud);
		return;
	}
	if (is_tls(c) && !c->tls_done) {
		e = pv_malloc(sizeof *e + n);
		e->n = n;
		e->cb = cb;
		e->ud = ud;
		if (n)
			memcpy(e->data, data, n);
		q_push(&c->tls_q, e);
		c->out_pending += n;
		return;
	}
	if ((b = batcher_of(c))) {
		batch_add(c, b, data, n, cb, ud);
		return;
	}
	if (!is_tls(c)) {
		wcb one = {cb, ud};
		send_bytes(c, data, n, &one, cb ? 1 : 0, false);
		return;
	}
	tls_write(c, data, n, cb, ud);
}

void pv_conn_trim(pv_conn *c)
{
	if (!is_tls(c) || !c->tls_done || c->state != ST_OPEN || c->ob)
		return;
	/* An empty buffer still holds the allocation of its last use. */
	tbuf_trim(&c->tkeep, 0);
	tbuf_trim(&c->tout, 0);
}

size_t pv_conn_out_pending(const pv_conn *c)
{
	return c->out_pending;
}

/* ---- input ---- */

/* Opens the records of the kept bytes, then of the socket read, as far as the owner
 * lets us (pause, close); tlsrec.c decrypts them in place.  A partial record waits in
 * tkeep for the rest. */
static void rec_pump(pv_conn *c)
{
	while (c->state == ST_OPEN && !c->paused) {
		bool kept = c->tkeep.len > c->tkeep_off;
		if (kept && c->tin_len) {
			/* the rest of a record begun in an earlier read */
			pv_buf_append(&c->tkeep, c->tin, c->tin_len);
			c->tin_len = 0;
		}
		uint8_t *p = (uint8_t *)(kept ? c->tkeep.data + c->tkeep_off : c->tin);
		size_t n = kept ? c->tkeep.len - c->tkeep_off : c->tin_len, used, ptlen;
		uint8_t *pt;
		if (n == 0)
			break;
		pv_tlsrec_ev ev = pv_tlsrec_open(c->rec, p, n, &used, &pt, &ptlen, &c->tout);
		if (ev == PV_TLSREC_MORE) {
			if (!kept) {
				pv_buf_append(&c->tkeep, c->tin, c->tin_len);
				c->tin_len = 0;
			}
			break;
		}
		/* Consumed before the owner runs; pt stays valid (tkeep is only reset). */
		if (kept) {
			c->tkeep_off += used;
			if (c->tkeep_off == c->tkeep.len) {
				pv_buf_reset(&c->tkeep);
				c->tkeep_off = 0;
			}
		} else {
			c->tin += used;
			c->tin_len -= used;
		}
		if (ev == PV_TLSREC_DATA) {
			if (ptlen)
				c->cb.on_data(c, (const char *)pt, ptlen);
		} else if (ev != PV_TLSREC_NONE) {
			flush_wbio(c, NULL, NULL); /* our alert, if any */
			if (ev == PV_TLSREC_CLOSED) {
				begin_close(c, "tls closed by peer");
			} else {
				if (log_allowed())
					pv_info("net", "tls record refused peer=%s alert=%u", c->peer_ip,
						pv_tlsrec_last_alert(c->rec));
				begin_close(c, "tls error");
			}
			return;
		}
	}
	if (c->state == ST_OPEN) {
		flush_wbio_soon(c); /* a KeyUpdate answer */
		tbuf_trim(&c->tkeep, TBUF_KEEP);
	}
}

/* Advances the handshake and decrypts whatever the rbio holds, as far as the
 * owner lets us (pause, close). */
static void tls_pump(pv_conn *c)
{
	char buf[TLS_RECORD_MAX];
	qent *e;
	int r, err;

	if (!c->tls_done) {
		tls_err_clear();
		r = SSL_do_handshake(c->ssl);
		if (r != 1) {
			err = SSL_get_error(c->ssl, r);
			flush_wbio(c, NULL, NULL);
			if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
				return;
			log_tls_error(c, "handshake");
			begin_close(c, "tls handshake failed");
			return;
		}
		c->tls_done = true;
		/* What OpenSSL wrote in this call (its tickets) is in tout: from here on
		 * tlsrec.c does the records, if it can (TLS 1.3). */
		if (c->rec && pv_tlsrec_start(c->rec, c->ssl, c->tout.data, c->tout.len) < 0) {
			pv_tlsrec_free(c->rec);
			c->rec = NULL;
		}
		flush_wbio_soon(c);
		/* Plaintext written during the handshake goes first, in order. */
		while (c->state == ST_OPEN && (e = q_pop(&c->tls_q))) {
			c->out_pending -= e->n;
			tls_write(c, e->data, e->n, e->cb, e->ud);
			pv_free(e);
		}
		if (c->state != ST_OPEN)
			return;
		if (c->cb.on_tls)
			c->cb.on_tls(c);
	}
	if (c->rec) {
		rec_pump(c);
		return;
	}
	while (c->state == ST_OPEN && !c->paused) {
		tls_err_clear();
		r = SSL_read(c->ssl, buf, sizeof buf);
		if (r > 0) {
			c->cb.on_data(c, buf, (size_t)r);
			/* Nothing left in the socket read, the kept bytes or OpenSSL: another
			 * SSL_read could only say WANT_READ, after taking and releasing a
			 * fresh 17 KiB record buffer (SSL_MODE_RELEASE_BUFFERS). */
			if (!c->tin_len && c->tkeep.len == c->tkeep_off && !SSL_has_pending(c->ssl))
				break;
			continue;
		}
		err = SSL_get_error(c->ssl, r);
		if (err == SSL_ERROR_WANT_READ)
			break;
		flush_wbio(c, NULL, NULL);
		if (err == SSL_ERROR_ZERO_RETURN) {
			begin_close(c, "tls closed by peer");
		} else {
			log_tls_error(c, "read");
			begin_close(c, "tls error");
		}
		return;
	}
	if (c->state == ST_OPEN) {
		/* TLS 1.3 tickets, KeyUpdate answers */
		flush_wbio_soon(c);
		tbuf_trim(&c->tkeep, TBUF_KEEP);
	}
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	pv_conn *c = s->data;

	if (nread > 0 && c->state == ST_OPEN) {
		if (!is_tls(c)) {
			c->cb.on_data(c, buf->base, (size_t)nread);
		} else {
			/* OpenSSL reads it in place (tls_bread); what it leaves (the owner paused
			 * or closed) is kept for later.  If this read arrived after
			 * pv_conn_starttls(), it is the peer's TLS, as it must be. */
			c->tin = buf->base;
			c->tin_len = (size_t)nread;
			tls_pump(c);
			if (c->tin_len && c->state == ST_OPEN)
				pv_buf_append(&c->tkeep, c->tin, c->tin_len);
			c->tin = NULL;
			c->tin_len = 0;
		}
	} else if (nread < 0) {
		if (nread == UV_EOF) {
			c->eof = true;
			read_stop(c);
			if (c->state == ST_OPEN)
				begin_close(c, "peer closed");
			else if (c->state == ST_CLOSING && c->shutdown_done)
				hard_close(c, NULL);
		} else {
			if (log_allowed())
				pv_debug("net", "read failed peer=%s err=%s", c->peer_ip,
					uv_strerror((int)nread));
			hard_close(c, "read error");
		}
	}
	/* nread > 0 while CLOSING: discarded on purpose. */
	rbuf_release(buf);
}

static void on_timer(uv_timer_t *t)
{
	pv_conn *c = t->data;

	if (c->state == ST_OPEN) {
		/* Deferred drain after pv_conn_read_resume(). */
		if (is_tls(c) && !c->paused)
			tls_pump(c);
	} else if (c->state == ST_CLOSING) {
		pv_debug("net", "close deadline passed peer=%s flushed=%d", c->peer_ip,
			c->shutdown_done);
		hard_close(c, NULL);
	}
}

/* ---- creation ---- */

static pv_conn *conn_new(uv_loop_t *loop, const pv_conn_cb *cb, void *owner)
{
	pv_conn *c = pv_calloc(1, sizeof *c);

	c->loop = loop;
	if (cb)
		c->cb = *cb;
	c->owner = owner;
	q_init(&c->tls_q);
	q_init(&c->cancelled);
	PV_ASSERT(uv_tcp_init(loop, &c->tcp) == 0);
	c->tcp.data = c;
	c->handles_open = 1;
	batcher_attach(c);
	return c;
}

/* Frees a conn that the owner never saw: no on_close. */
static void conn_discard(pv_conn *c)
{
	c->notify_close = false;
	hard_close(c, NULL);
}

static void set_peer_ip(pv_conn *c, const struct sockaddr *sa)
{
	const struct sockaddr_in6 *s6;
	struct in_addr v4;

	c->peer_ip[0] = '\0';
	if (sa->sa_family == AF_INET) {
		uv_ip4_name((const struct sockaddr_in *)sa, c->peer_ip, sizeof c->peer_ip);
	} else if (sa->sa_family == AF_INET6) {
		s6 = (const struct sockaddr_in6 *)sa;
		/* A dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d; logs and
		 * limits should see the IPv4 address. */
		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
			memcpy(&v4, &s6->sin6_addr.s6_addr[12], 4);
			inet_ntop(AF_INET, &v4, c->peer_ip, sizeof c->peer_ip);
		} else {
			uv_ip6_name(s6, c->peer_ip, sizeof c->peer_ip);
		}
	}
}

/* ---- TLS BIO ----
 * OpenSSL reads ciphertext straight from the socket read being handled (then from what
 * a paused owner left, tkeep) and appends what it makes to tout, which flush_wbio
 * hands to libuv.  Two memory BIOs did the same with two BIO objects, two buffer
 * objects and their locks, ~0.4 KiB of every idle session (massif), and a copy each
 * way.  It never blocks: no input is "retry", and every write is taken. */

static int tls_bread(BIO *b, char *out, int outl)
{
	pv_conn *c = BIO_get_data(b);
	size_t want = outl > 0 ? (size_t)outl : 0, n = 0;

	BIO_clear_retry_flags(b);
	if (c->tkeep.len) {
		size_t have = c->tkeep.len - c->tkeep_off;
		n = have < want ? have : want;
		memcpy(out, c->tkeep.data + c->tkeep_off, n);
		c->tkeep_off += n;
		if (c->tkeep_off == c->tkeep.len) {
			pv_buf_reset(&c->tkeep);
			c->tkeep_off = 0;
		}
	} else if (c->tin_len) {
		n = c->tin_len < want ? c->tin_len : want;
		memcpy(out, c->tin, n);
		c->tin += n;
		c->tin_len -= n;
	}
	if (n == 0) {
		BIO_set_retry_read(b);
		return -1;
	}
	return (int)n;
}

static int tls_bwrite(BIO *b, const char *in, int inl)
{
	pv_conn *c = BIO_get_data(b);

	BIO_clear_retry_flags(b);
	if (inl <= 0)
		return 0;
	pv_buf_append(&c->tout, in, (size_t)inl);
	return inl;
}

static long tls_bctrl(BIO *b, int cmd, long num, void *ptr)
{
	pv_conn *c = BIO_get_data(b);

	(void)num;
	(void)ptr;
	switch (cmd) {
	case BIO_CTRL_PENDING:
		return c ? (long)(c->tkeep.len - c->tkeep_off + c->tin_len) : 0;
	case BIO_CTRL_WPENDING:
		return c ? (long)c->tout.len : 0;
	case BIO_CTRL_FLUSH:
		return 1; /* flush_wbio sends it */
	default:
		return 0; /* no kTLS, no datagrams, nothing else to report */
	}
}

static int tls_bcreate(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static int tls_bdestroy(BIO *b)
{
	BIO_set_data(b, NULL); /* the conn frees itself */
	return 1;
}

static BIO_METHOD *t_bio_method;
static int t_bio_type;
static pthread_once_t bio_method_once = PTHREAD_ONCE_INIT;

static void bio_method_make(void)
{
	int type = BIO_get_new_index() | BIO_TYPE_SOURCE_SINK;
	BIO_METHOD *m = BIO_meth_new(type, "peyvand conn");

	if (m && (!BIO_meth_set_read(m, tls_bread) || !BIO_meth_set_write(m, tls_bwrite) ||
		  !BIO_meth_set_ctrl(m, tls_bctrl) || !BIO_meth_set_create(m, tls_bcreate) ||
		  !BIO_meth_set_destroy(m, tls_bdestroy))) {
		BIO_meth_free(m);
		m = NULL;
	}
	t_bio_method = m;
	t_bio_type = type;
}

static const BIO_METHOD *tls_bio_method(void)
{
	pthread_once(&bio_method_once, bio_method_make);
	return t_bio_method;
}

/* Where an SSL of ours keeps its pv_tlsrec: in the conn its BIO reads for. */
static pv_tlsrec **rec_slot(const SSL *ssl)
{
	BIO *b = SSL_get_rbio(ssl);
	const BIO_METHOD *m = tls_bio_method();

	if (!b || !m || BIO_method_type(b) != t_bio_type)
		return NULL;
	pv_conn *c = BIO_get_data(b);
	return c ? &c->rec : NULL;
}

void pv_conn_tls_ctx_init(SSL_CTX *ctx)
{
	pv_tlsrec_ctx_init(ctx, rec_slot);
}

static int tls_setup(pv_conn *c, SSL_CTX *ctx, bool server)
{
	SSL *ssl = SSL_new(ctx);
	const BIO_METHOD *m = tls_bio_method();
	BIO *b = m ? BIO_new(m) : NULL;

	if (!ssl || !b) {
		log_tls_error(c, "setup");
		BIO_free(b);
		SSL_free(ssl);
		return PV_EIO;
	}
	BIO_set_data(b, c);
	SSL_set_bio(ssl, b, b); /* one BIO both ways: one reference */
	SSL_set_mode(ssl, SSL_MODE_RELEASE_BUFFERS);
	if (server)
		SSL_set_accept_state(ssl);
	else
		SSL_set_connect_state(ssl);
	c->ssl = ssl;
	c->tls_done = false;
	return 0;
}

pv_conn *pv_conn_accept(uv_stream_t *server, const pv_conn_cb *cb, void *owner, SSL_CTX *tls_ctx)
{
	pv_conn *c = conn_new(server->loop, cb, owner);
	struct sockaddr_storage ss;
	int len = sizeof ss;
	int r;

	r = uv_accept(server, (uv_stream_t *)&c->tcp);
	if (r < 0) {
		pv_warn("net", "accept failed err=%s", uv_strerror(r));
		goto fail;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0)
		set_peer_ip(c, (struct sockaddr *)&ss);
	if (tls_ctx && tls_setup(c, tls_ctx, true) < 0)
		goto fail;
	c->state = ST_OPEN;
	c->notify_close = true;
	read_start(c);
	if (!c->reading)
		goto fail;
	return c;
fail:
	conn_discard(c);
	return NULL;
}

static void on_connect(uv_connect_t *req, int status)
{
	pv_conn *c = req->data;

	pv_free(req); /* called exactly once, with UV_ECANCELED if the conn closed first */
	if (c->state != ST_CONNECTING)
		return; /* closed by the owner meanwhile */
	if (status < 0) {
		if (c->connected)
			c->connected(c, status);
		hard_close(c, "connect failed");
		return;
	}
	c->state = ST_OPEN;
	uv_tcp_nodelay(&c->tcp, 1);
	if (!c->paused)
		read_start(c);
	if (c->connected)
		c->connected(c, 0);
}

pv_conn *pv_conn_connect(uv_loop_t *loop, const struct sockaddr *addr, const pv_conn_cb *cb,
	void *owner, void (*connected)(pv_conn *c, int status))
{
	pv_conn *c = conn_new(loop, cb, owner);
	int r;

	c->connected = connected;
	c->state = ST_CONNECTING;
	set_peer_ip(c, addr);
	uv_connect_t *creq = pv_malloc(sizeof(*creq));
	creq->data = c;
	r = uv_tcp_connect(creq, &c->tcp, addr, on_connect);
	if (r < 0) {
		pv_free(creq);
		pv_info("net", "connect failed peer=%s err=%s", c->peer_ip, uv_strerror(r));
		conn_discard(c);
		return NULL;
	}
	c->notify_close = true;
	return c;
}

/* ---- accessors and control ---- */

void *pv_conn_owner(pv_conn *c)
{
	return c->owner;
}

void pv_conn_set_owner(pv_conn *c, void *owner)
{
	c->owner = owner;
}

uv_loop_t *pv_conn_loop(pv_conn *c)
{
	return c->loop;
}

int pv_conn_starttls(pv_conn *c, SSL_CTX *ctx)
{
	if (!ctx || is_tls(c) || c->state != ST_OPEN)
		return PV_EINVAL;
	batch_send(c); /* <proceed/> and anything before it go out in plaintext */
	if (c->state != ST_OPEN)
		return PV_EIO;
	/* Nothing is buffered here from the plaintext phase (reads are handed over
	 * whole), so from now on every byte read goes to the TLS engine. */
	return tls_setup(c, ctx, true);
}

int pv_conn_client_tls(pv_conn *c, SSL_CTX *ctx, const char *sni)
{
	int r;

	if (!ctx || is_tls(c) || c->state > ST_OPEN)
		return PV_EINVAL;
	batch_send(c); /* the plaintext phase ends here */
	if (c->state > ST_OPEN)
		return PV_EIO;
	r = tls_setup(c, ctx, false);
	if (r < 0)
		return r;
	if (sni && *sni) {
		SSL_set_tlsext_host_name(c->ssl, sni);
		/* Lets SSL_get_verify_result() cover the name as well as the chain. */
		SSL_set1_host(c->ssl, sni);
	}
	if (c->state == ST_OPEN) {
		tls_pump(c); /* sends the ClientHello */
	} else {
		/* Still connecting: libuv holds the ClientHello until connected. */
		ERR_clear_error();
		SSL_do_handshake(c->ssl);
		ERR_clear_error();
		flush_wbio(c, NULL, NULL);
	}
	return 0;
}

bool pv_conn_is_tls(const pv_conn *c)
{
	return is_tls(c);
}

bool pv_conn_tls_done(const pv_conn *c)
{
	return is_tls(c) && c->tls_done;
}

bool pv_conn_tls_own_records(const pv_conn *c)
{
	return pv_tlsrec_started(c->rec);
}

void pv_conn_tls_release(pv_conn *c)
{
	/* OpenSSL keeps nothing a conn whose records are ours still needs. */
	if (c->ssl && pv_tlsrec_started(c->rec)) {
		SSL_free(c->ssl); /* and the conn's BIO with it */
		c->ssl = NULL;
	}
}

SSL *pv_conn_ssl(const pv_conn *c)
{
	return c->ssl;
}

const char *pv_conn_tls_version(const pv_conn *c)
{
	if (!is_tls(c) || !c->tls_done)
		return NULL;
	/* tlsrec.c only ever takes TLS 1.3 over */
	return c->ssl ? SSL_get_version(c->ssl) : "TLSv1.3";
}

const char *pv_conn_tls_sni(const pv_conn *c)
{
	if (!c->ssl)
		return NULL;
	return SSL_get_servername(c->ssl, TLSEXT_NAMETYPE_host_name);
}

int pv_conn_tls_cb(const pv_conn *c, const char *type, unsigned char *out, size_t cap)
{
	unsigned char fin[EVP_MAX_MD_SIZE];
	size_t n;
	bool ours_first;
	int ver;

	if (!c->ssl || !c->tls_done || !type)
		return PV_ENOENT;
	ver = SSL_version(c->ssl);
	if (strcmp(type, "tls-exporter") == 0) {
		/* RFC 9266 defines it for TLS 1.3; on 1.2 it is only safe with extended
		 * master secret, and tls-unique is what 1.2 peers expect. */
		if (ver != TLS1_3_VERSION)
			return PV_ENOENT;
		if (cap < EXPORTER_LEN)
			return PV_EINVAL;
		if (SSL_export_keying_material(c->ssl, out, EXPORTER_LEN, EXPORTER_LABEL,
			    strlen(EXPORTER_LABEL), NULL, 0, 0) != 1) {
			ERR_clear_error();
			return PV_EIO;
		}
		return EXPORTER_LEN;
	}
	if (strcmp(type, "tls-unique") == 0) {
		/* RFC 8446 section 7.5 leaves tls-unique undefined for TLS 1.3. */
		if (ver >= TLS1_3_VERSION)
			return PV_ENOENT;
		/* RFC 5929 3.1: the FIRST Finished of the handshake.  A full handshake
		 * starts with the client's Finished; an abbreviated (resumed) one with
		 * the server's.  Renegotiation is off, so there is one handshake. */
		if (SSL_is_server(c->ssl))
			ours_first = SSL_session_reused(c->ssl);
		else
			ours_first = !SSL_session_reused(c->ssl);
		n = ours_first ? SSL_get_finished(c->ssl, fin, sizeof fin)
			       : SSL_get_peer_finished(c->ssl, fin, sizeof fin);
		if (n == 0 || n > sizeof fin)
			return PV_ENOENT;
		if (cap < n)
			return PV_EINVAL;
		memcpy(out, fin, n);
		return (int)n;
	}
	return PV_ENOENT;
}

void pv_conn_read_pause(pv_conn *c)
{
	if (c->state > ST_OPEN)
		return;
	c->paused = true;
	read_stop(c);
}

void pv_conn_read_resume(pv_conn *c)
{
	if (c->state > ST_OPEN || !c->paused)
		return;
	c->paused = false;
	if (c->state != ST_OPEN)
		return; /* on_connect starts reading */
	read_start(c);
	/* Records already decrypted or buffered would wait for the next socket read;
	 * drain them from the loop rather than re-entering the owner from here. */
	if (is_tls(c) && ((c->ssl && SSL_has_pending(c->ssl)) || c->tkeep.len > 0))
		timer_start(c, 0);
}

void pv_conn_close(pv_conn *c)
{
	begin_close(c, "closed");
}

void pv_conn_abort(pv_conn *c)
{
	hard_close(c, "aborted");
}

bool pv_conn_is_closing(const pv_conn *c)
{
	return c->state >= ST_CLOSING;
}

const char *pv_conn_peer_ip(const pv_conn *c)
{
	return c->peer_ip;
}
