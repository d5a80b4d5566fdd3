/* resolver.c -- where a remote XMPP server listens: static routes, then DNS SRV
 * (RFC 6120 3.2, RFC 2782, XEP-0368), then the domain's A/AAAA on port 5269.
 *
 * One c-ares channel per pv_resolver, driven by the caller's libuv loop: c-ares tells
 * us which sockets to watch (ARES_OPT_SOCK_STATE_CB) and we keep one uv_poll_t per
 * socket plus one uv_timer_t for ares_timeout(); both hand events to ares_process_fd.
 *
 * A lookup runs in up to two phases.  SRV phase: _xmpps-server._tcp.<domain> and
 * _xmpp-server._tcp.<domain> in parallel.  Address phase: every SRV target (or, without
 * SRV records, the domain itself on 5269; or a static route's host name) goes through
 * ares_getaddrinfo, and the addresses are flattened in record order, capped at
 * PV_MAX_TARGETS.  The outcome is never handed to the caller from inside c-ares or from
 * inside pv_resolve_xmpp_server: finished lookups wait on a ready queue that a uv_idle_t
 * drains on the next loop iteration, so a callback may start lookups or even free the
 * resolver.
 *
 * Threading: everything runs on the resolver's loop thread.  Ownership: the resolver
 * owns its lookups; a lookup is freed once its callback has run and c-ares has no
 * operation of it outstanding.  pv_resolver_free delivers "cancelled" to every lookup
 * not yet delivered (synchronously, inside the free), destroys the channel and closes
 * the uv handles; the memory goes in the last close callback, so the caller must run
 * the loop afterwards (as any libuv shutdown does) before uv_loop_close. */
#include "net/resolver.h"

#include <ares.h>
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "peyvand/pv_log.h"
#include "peyvand/pv_util.h"
#include "peyvand/pv_map.h"

#define PV_MAX_TARGETS 32
#define PV_MAX_SRV 32        /* SRV records kept per lookup (both services together) */
#define PV_S2S_PORT 5269     /* RFC 6120 3.2.2 fallback */
#define SUB "resolver"

typedef struct route {
	bool tls;
	bool is_ip;                  /* addr is ready; otherwise host is resolved */
	unsigned short port;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	char host[256];
} route;

typedef struct poller {
	uv_poll_t h;
	pv_resolver *r;
	ares_socket_t fd;
	struct poller *next;
} poller;

typedef struct lookup lookup;

/* One place to connect to, before and after its addresses are known. */
typedef struct srv_rec {
	lookup *l;                   /* back pointer: the getaddrinfo callback's argument */
	char qname[256];             /* what to resolve */
	char host[256];              /* what to report in pv_target.host */
	unsigned short port, priority, weight;
	bool tls;
	pv_target *addrs;
	size_t naddrs;
} srv_rec;

typedef struct srv_query {
	lookup *l;
	int idx;                     /* 0: _xmpps-server (direct TLS), 1: _xmpp-server */
} srv_query;

struct lookup {
	pv_resolver *r;
	lookup *prev, *next;         /* r->lookups: every lookup not yet freed */
	lookup *ready_next;          /* r->ready: finished, waiting for delivery */
	char domain[256];
	pv_resolve_cb cb;
	void *ud;
	int pending;                 /* c-ares operations not yet called back */
	bool finished, delivered;
	srv_query sq[2];
	int srv_status[2];
	bool srv_dot[2];             /* answered "." (RFC 2782: decidedly not available) */
	srv_rec *recs;
	size_t nrecs;
	int last_status;             /* of the address phase, for the error text */
	pv_target *targets;
	size_t ntargets;
	const char *err;
	char errbuf[200];
};

struct pv_resolver {
	uv_loop_t *loop;
	ares_channel ch;
	uv_timer_t timer;            /* ares_timeout() */
	uv_idle_t idle;              /* drains the ready queue */
	int open_handles;            /* timer, idle and pollers not yet closed */
	poller *pollers;
	pv_map *routes;              /* lowercase domain -> route */
	lookup *lookups, *lookups_tail;
	lookup *ready, *ready_tail;
	bool closing;
};

static pthread_once_t ares_once = PTHREAD_ONCE_INIT;
static int ares_init_status;

static void ares_global_init(void)
{
	ares_init_status = ares_library_init(ARES_LIB_INIT_ALL);
}

/* ---- handles ---------------------------------------------------------------------- */

static void handle_gone(pv_resolver *r)
{
	PV_ASSERT(r->open_handles > 0);
	if (--r->open_handles == 0 && r->closing)
		pv_free(r);
}

static void on_base_closed(uv_handle_t *h)
{
	handle_gone(h->data);
}

static void on_poller_closed(uv_handle_t *h)
{
	poller *p = h->data;
	pv_resolver *r = p->r;

	pv_free(p);
	handle_gone(r);
}

static void on_timer(uv_timer_t *t);

/* Re-arm the timer for c-ares' next retransmit or timeout; stop it when idle. */
static void rearm(pv_resolver *r)
{
	struct timeval tv, *tvp;
	uint64_t ms;

	if (r->closing)
		return;
	tvp = ares_timeout(r->ch, NULL, &tv);
	if (!tvp) {
		uv_timer_stop(&r->timer);
		return;
	}
	/* Round up: a timer firing a hair early makes c-ares do nothing and us spin. */
	ms = (uint64_t)tvp->tv_sec * 1000 + ((uint64_t)tvp->tv_usec + 999) / 1000;
	uv_timer_start(&r->timer, on_timer, ms, 0);
}

static void on_timer(uv_timer_t *t)
{
	pv_resolver *r = t->data;

	ares_process_fd(r->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	rearm(r);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
	poller *p = h->data;
	pv_resolver *r = p->r;
	ares_socket_t fd = p->fd;
	/* On a poll error let c-ares try both directions: it sees the socket error itself
	 * and fails over to the next server. */
	ares_socket_t rfd = (status < 0 || (events & UV_READABLE)) ? fd : ARES_SOCKET_BAD;
	ares_socket_t wfd = (status < 0 || (events & UV_WRITABLE)) ? fd : ARES_SOCKET_BAD;

	/* p may be closed by the socket-state callback inside this call: not used after. */
	ares_process_fd(r->ch, rfd, wfd);
	rearm(r);
}

static void on_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
	pv_resolver *r = data;
	poller **pp, *p;
	int events = (readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0);
	int rc;

	for (pp = &r->pollers; *pp && (*pp)->fd != fd; pp = &(*pp)->next)
		;
	p = *pp;
	if (!events) {
		/* c-ares is about to close fd: stop watching it first (libuv forbids closing
		 * a polled descriptor), so a new socket reusing the number gets a fresh handle. */
		if (p) {
			*pp = p->next;
			uv_close((uv_handle_t *)&p->h, on_poller_closed);
		}
		return;
	}
	if (!p) {
		p = pv_calloc(1, sizeof *p);
		p->r = r;
		p->fd = fd;
		rc = uv_poll_init_socket(r->loop, &p->h, fd);
		if (rc < 0) {
			/* c-ares will time the query out and try the next server. */
			pv_error(SUB, "cannot watch dns socket fd=%d err=%s", (int)fd, uv_strerror(rc));
			pv_free(p);
			return;
		}
		p->h.data = p;
		r->open_handles++;
		p->next = r->pollers;
		r->pollers = p;
	}
	rc = uv_poll_start(&p->h, events, on_poll);
	if (rc < 0)
		pv_error(SUB, "cannot poll dns socket fd=%d err=%s", (int)fd, uv_strerror(rc));
}

/* ---- lookups: bookkeeping and delivery --------------------------------------------- */

static void lookup_unlink(lookup *l)
{
	pv_resolver *r = l->r;

	if (l->prev)
		l->prev->next = l->next;
	else if (r->lookups == l)
		r->lookups = l->next;
	if (l->next)
		l->next->prev = l->prev;
	else if (r->lookups_tail == l)
		r->lookups_tail = l->prev;
	l->prev = l->next = NULL;
}

static void lookup_free(lookup *l)
{
	size_t i;

	lookup_unlink(l);
	for (i = 0; i < l->nrecs; i++)
		pv_free(l->recs[i].addrs);
	pv_free(l->recs);
	pv_free(l->targets);
	pv_free(l);
}

static void on_idle(uv_idle_t *h);

/* The outcome is decided; the callback runs from the idle handle. */
static void finish(lookup *l, const char *err)
{
	pv_resolver *r = l->r;

	PV_ASSERT(!l->finished);
	l->finished = true;
	l->err = err;
	if (err) {
		l->ntargets = 0;
		pv_debug(SUB, "lookup failed domain=%s err=\"%s\"", l->domain, err);
	} else {
		pv_debug(SUB, "lookup done domain=%s targets=%zu", l->domain, l->ntargets);
	}
	if (r->closing)
		return; /* pv_resolver_free delivers "cancelled" instead */
	l->ready_next = NULL;
	if (r->ready_tail)
		r->ready_tail->ready_next = l;
	else
		r->ready = l;
	r->ready_tail = l;
	uv_idle_start(&r->idle, on_idle);
}

static void finishf(lookup *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void finishf(lookup *l, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(l->errbuf, sizeof l->errbuf, fmt, ap);
	va_end(ap);
	finish(l, l->errbuf);
}

static void on_idle(uv_idle_t *h)
{
	pv_resolver *r = h->data;
	lookup *l;

	/* A callback may free the resolver: r itself stays valid until its handles have
	 * closed, and closing means the remaining lookups were already told "cancelled". */
	while (r->ready && !r->closing) {
		l = r->ready;
		r->ready = l->ready_next;
		if (!r->ready)
			r->ready_tail = NULL;
		PV_ASSERT(l->pending == 0);
		lookup_unlink(l);
		l->delivered = true;
		l->cb(l->ud, l->err ? NULL : l->targets, l->err ? 0 : l->ntargets, l->err);
		lookup_free(l);
	}
	if (!r->closing && !r->ready)
		uv_idle_stop(h);
}

/* Every c-ares callback starts here: false when the lookup was cancelled meanwhile (the
 * callback must then only release what c-ares handed it). */
static bool op_returned(lookup *l)
{
	PV_ASSERT(l->pending > 0);
	l->pending--;
	if (!l->delivered && !l->r->closing)
		return true;
	if (l->pending == 0)
		lookup_free(l);
	return false;
}

/* ---- address phase ------------------------------------------------------------------ */

static void addr_done(lookup *l)
{
	size_t i, j, n = 0;

	for (i = 0; i < l->nrecs; i++)
		n += l->recs[i].naddrs;
	if (n > PV_MAX_TARGETS)
		n = PV_MAX_TARGETS;
	if (n == 0) {
		finishf(l, "no address for %s: %s", l->nrecs == 1 ? l->recs[0].qname : "any SRV target",
			ares_strerror(l->last_status));
		return;
	}
	l->targets = pv_calloc(n, sizeof *l->targets);
	for (i = 0; i < l->nrecs && l->ntargets < n; i++)
		for (j = 0; j < l->recs[i].naddrs && l->ntargets < n; j++)
			l->targets[l->ntargets++] = l->recs[i].addrs[j];
	finish(l, NULL);
}

static void fill_target(pv_target *t, const srv_rec *rec, const struct sockaddr *sa)
{
	memset(t, 0, sizeof *t);
	if (sa->sa_family == AF_INET) {
		memcpy(&t->addr, sa, sizeof(struct sockaddr_in));
		((struct sockaddr_in *)&t->addr)->sin_port = htons(rec->port);
		t->addrlen = sizeof(struct sockaddr_in);
	} else {
		memcpy(&t->addr, sa, sizeof(struct sockaddr_in6));
		((struct sockaddr_in6 *)&t->addr)->sin6_port = htons(rec->port);
		t->addrlen = sizeof(struct sockaddr_in6);
	}
	t->direct_tls = rec->tls;
	snprintf(t->host, sizeof t->host, "%s", rec->host);
	t->priority = rec->priority;
	t->weight = rec->weight;
}

static void on_addrinfo(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
	srv_rec *rec = arg;
	lookup *l = rec->l;
	struct ares_addrinfo_node *nd;
	size_t n = 0;

	if (!op_returned(l))
		goto out;
	if (status == ARES_SUCCESS && res) {
		for (nd = res->nodes; nd; nd = nd->ai_next)
			if (nd->ai_family == AF_INET || nd->ai_family == AF_INET6)
				n++;
		if (n > PV_MAX_TARGETS)
			n = PV_MAX_TARGETS;
		rec->addrs = pv_calloc(n ? n : 1, sizeof *rec->addrs);
		for (nd = res->nodes; nd && rec->naddrs < n; nd = nd->ai_next)
			if (nd->ai_family == AF_INET || nd->ai_family == AF_INET6)
				fill_target(&rec->addrs[rec->naddrs++], rec, nd->ai_addr);
		if (!n)
			l->last_status = ARES_ENODATA;
	} else {
		l->last_status = status;
		pv_debug(SUB, "no address domain=%s host=%s err=\"%s\"", l->domain, rec->qname,
			ares_strerror(status));
	}
	if (l->pending == 0)
		addr_done(l);
out:
	if (res)
		ares_freeaddrinfo(res);
}

/* Resolve every record in l->recs (already in connection order). */
static void start_addrs(lookup *l)
{
	struct ares_addrinfo_hints hints;
	size_t i;

	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	/* One extra count while issuing: c-ares may call back before ares_getaddrinfo
	 * returns (hosts file, literals), and the phase must not end half-issued. */
	l->pending++;
	for (i = 0; i < l->nrecs; i++) {
		l->recs[i].l = l;
		l->pending++;
		ares_getaddrinfo(l->r->ch, l->recs[i].qname, NULL, &hints, on_addrinfo, &l->recs[i]);
	}
	l->pending--;
	if (l->pending == 0)
		addr_done(l);
}

/* A single place to resolve: the fallback domain or a static route's host name. */
static void start_one(lookup *l, const char *qname, unsigned short port, bool tls)
{
	l->recs = pv_calloc(1, sizeof *l->recs);
	l->nrecs = 1;
	snprintf(l->recs[0].qname, sizeof l->recs[0].qname, "%s", qname);
	snprintf(l->recs[0].host, sizeof l->recs[0].host, "%s", l->domain);
	l->recs[0].port = port;
	l->recs[0].tls = tls;
	start_addrs(l);
}

/* ---- SRV phase ---------------------------------------------------------------------- */

static int rec_cmp(const void *a, const void *b)
{
	const srv_rec *x = a, *y = b;

	if (x->priority != y->priority)
		return x->priority < y->priority ? -1 : 1;
	/* XEP-0368 lets the initiator prefer one kind: at equal priority, direct TLS first
	 * (no STARTTLS round trips, nothing to strip). */
	if (x->tls != y->tls)
		return x->tls ? -1 : 1;
	/* RFC 2782: weight-0 records go to the front before the weighted draw. */
	if ((x->weight == 0) != (y->weight == 0))
		return x->weight == 0 ? -1 : 1;
	return 0;
}

/* RFC 2782 ordering: priority ascending; within one priority (and kind) repeatedly
 * draw a record with probability proportional to its weight. */
static void order_recs(srv_rec *recs, size_t n)
{
	size_t g, end, k, m;
	uint64_t sum, run, pick;
	uint32_t rnd;
	srv_rec chosen;

	qsort(recs, n, sizeof *recs, rec_cmp);
	for (g = 0; g < n; g = end) {
		for (end = g + 1; end < n && recs[end].priority == recs[g].priority &&
				  recs[end].tls == recs[g].tls; end++)
			;
		for (k = g; k + 1 < end; k++) {
			sum = 0;
			for (m = k; m < end; m++)
				sum += recs[m].weight;
			pv_random(&rnd, sizeof rnd);
			pick = rnd % (sum + 1); /* bias < 2^-10: weights sum below 2^22 */
			run = 0;
			for (m = k; m < end - 1; m++) {
				run += recs[m].weight;
				if (run >= pick)
					break;
			}
			/* Move the chosen one to k, keeping the rest in order so the weight-0
			 * records stay in front for the next draw. */
			chosen = recs[m];
			memmove(&recs[k + 1], &recs[k], (m - k) * sizeof *recs);
			recs[k] = chosen;
		}
	}
}

static void srv_done(lookup *l)
{
	int st = l->srv_status[1];

	if (l->nrecs > 0) {
		order_recs(l->recs, l->nrecs);
		start_addrs(l);
		return;
	}
	/* RFC 2782 / RFC 6120 3.2.1: "." means no service; XEP-0368 also forbids the A/AAAA
	 * fallback when only _xmpps-server said ".", since SRV is evidently in use. */
	if (l->srv_dot[0] || l->srv_dot[1]) {
		finish(l, "service not available");
		return;
	}
	/* RFC 6120 3.2.2: no SRV records -> the domain itself on 5269.  A failing DNS
	 * (timeout, SERVFAIL) is not "no records": report it and let the caller retry. */
	if (st == ARES_ENOTFOUND || st == ARES_ENODATA) {
		start_one(l, l->domain, PV_S2S_PORT, false);
		return;
	}
	finishf(l, "SRV lookup for %s failed: %s", l->domain, ares_strerror(st));
}

static void on_srv(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	srv_query *q = arg;
	lookup *l = q->l;
	struct ares_srv_reply *reply = NULL, *it;
	srv_rec *rec;

	if (!op_returned(l))
		return;
	if (status == ARES_SUCCESS)
		status = ares_parse_srv_reply(abuf, alen, &reply);
	l->srv_status[q->idx] = status;
	for (it = reply; it; it = it->next) {
		if (!it->host[0] || strcmp(it->host, ".") == 0) {
			l->srv_dot[q->idx] = true;
			continue;
		}
		if (l->nrecs == PV_MAX_SRV)
			break;
		if (!l->recs)
			l->recs = pv_calloc(PV_MAX_SRV, sizeof *l->recs);
		rec = &l->recs[l->nrecs++];
		snprintf(rec->qname, sizeof rec->qname, "%s", it->host);
		snprintf(rec->host, sizeof rec->host, "%s", it->host);
		rec->port = it->port;
		rec->priority = it->priority;
		rec->weight = it->weight;
		rec->tls = q->idx == 0;
	}
	if (reply)
		ares_free_data(reply);
	if (l->pending == 0)
		srv_done(l);
}

static void start_srv(lookup *l)
{
	static const char *const service[2] = {"_xmpps-server._tcp.", "_xmpp-server._tcp."};
	char name[300];
	int i;

	l->pending++; /* see start_addrs */
	for (i = 0; i < 2; i++) {
		l->sq[i].l = l;
		l->sq[i].idx = i;
		snprintf(name, sizeof name, "%s%s", service[i], l->domain);
		l->pending++;
		ares_query(l->r->ch, name, ns_c_in, ns_t_srv, on_srv, &l->sq[i]);
	}
	l->pending--;
	if (l->pending == 0)
		srv_done(l);
}

/* ---- parsing ------------------------------------------------------------------------ */

/* An IP literal ("192.0.2.1", "::1" or "[::1]") with the given port. */
static bool parse_ip(const char *s, size_t len, unsigned short port, struct sockaddr_storage *ss,
	socklen_t *sslen)
{
	char buf[INET6_ADDRSTRLEN + 2];
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

	if (len >= 2 && s[0] == '[' && s[len - 1] == ']') {
		s++;
		len -= 2;
	}
	if (len == 0 || len >= sizeof buf)
		return false;
	memcpy(buf, s, len);
	buf[len] = '\0';
	memset(ss, 0, sizeof *ss);
	if (inet_pton(AF_INET, buf, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons(port);
		*sslen = sizeof *s4;
		return true;
	}
	if (inet_pton(AF_INET6, buf, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		*sslen = sizeof *s6;
		return true;
	}
	return false;
}

/* A host name as DNS carries it: LDH labels (underscore tolerated), at most 253 chars. */
static bool is_hostname(const char *s, size_t len)
{
	size_t i, label = 0;

	if (len == 0 || len > 253)
		return false;
	for (i = 0; i < len; i++) {
		char c = s[i];
		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			    c == '-' || c == '_'))
			return false;
		if (++label > 63)
			return false;
	}
	return true;
}

/* Lowercase copy without one trailing dot; false when it cannot be a domain. */
static bool norm_domain(const char *in, char out[256])
{
	size_t i, len = strlen(in);

	if (len > 0 && in[len - 1] == '.')
		len--;
	if (len == 0 || len > 253)
		return false;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];
		if (c <= ' ' || c >= 0x7f)
			return false; /* U-labels must be converted to A-labels first */
		out[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : (char)c;
	}
	out[len] = '\0';
	return true;
}

static bool parse_port(const char *s, unsigned short *port)
{
	unsigned long v = 0;

	if (!*s)
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
		v = v * 10 + (unsigned long)(*s - '0');
		if (v > 65535)
			return false;
	}
	if (v == 0)
		return false;
	*port = (unsigned short)v;
	return true;
}

static int parse_route(const char *target, route *rt)
{
	const char *s = target, *hostp, *colon, *close;
	size_t hlen;

	memset(rt, 0, sizeof *rt);
	if (strncasecmp(s, "tls:", 4) == 0) {
		rt->tls = true;
		s += 4;
	}
	if (s[0] == '[') {
		close = strchr(s, ']');
		if (!close || close[1] != ':')
			return PV_EINVAL;
		hostp = s;
		hlen = (size_t)(close - s) + 1;
		colon = close + 1;
		if (!parse_port(colon + 1, &rt->port) ||
			!parse_ip(hostp, hlen, rt->port, &rt->addr, &rt->addrlen) ||
			rt->addr.ss_family != AF_INET6)
			return PV_EINVAL;
		rt->is_ip = true;
		snprintf(rt->host, sizeof rt->host, "%.*s", (int)(hlen - 2), hostp + 1);
		return 0;
	}
	colon = strchr(s, ':');
	/* A bare IPv6 address is ambiguous with the port: brackets are required. */
	if (!colon || strchr(colon + 1, ':') || !parse_port(colon + 1, &rt->port))
		return PV_EINVAL;
	hlen = (size_t)(colon - s);
	if (parse_ip(s, hlen, rt->port, &rt->addr, &rt->addrlen))
		rt->is_ip = true;
	else if (!is_hostname(s, hlen))
		return PV_EINVAL;
	snprintf(rt->host, sizeof rt->host, "%.*s", (int)hlen, s);
	return 0;
}

/* ---- public API --------------------------------------------------------------------- */

pv_resolver *pv_resolver_new(uv_loop_t *loop, const char *dns_server)
{
	struct ares_options opts;
	pv_resolver *r;
	int rc;

	pthread_once(&ares_once, ares_global_init);
	if (ares_init_status != ARES_SUCCESS) {
		pv_error(SUB, "c-ares init failed err=\"%s\"", ares_strerror(ares_init_status));
		return NULL;
	}
	r = pv_calloc(1, sizeof *r);
	r->loop = loop;
	memset(&opts, 0, sizeof opts);
	opts.sock_state_cb = on_sock_state;
	opts.sock_state_cb_data = r;
	/* No search list: remote XMPP domains and SRV targets are fully qualified, and
	 * trying "xmpp.example.org.corp.lan" after a failure only leaks and slows. */
	opts.domains = NULL;
	opts.ndomains = 0;
	rc = ares_init_options(&r->ch, &opts, ARES_OPT_SOCK_STATE_CB | ARES_OPT_DOMAINS);
	if (rc != ARES_SUCCESS) {
		pv_error(SUB, "c-ares channel failed err=\"%s\"", ares_strerror(rc));
		goto fail;
	}
	if (dns_server) {
		rc = ares_set_servers_ports_csv(r->ch, dns_server);
		if (rc != ARES_SUCCESS) {
			pv_error(SUB, "bad dns server addr=%s err=\"%s\"", dns_server, ares_strerror(rc));
			ares_destroy(r->ch);
			goto fail;
		}
	}
	uv_timer_init(loop, &r->timer);
	r->timer.data = r;
	uv_idle_init(loop, &r->idle);
	r->idle.data = r;
	r->open_handles = 2;
	r->routes = pv_map_new();
	return r;
fail:
	pv_free(r);
	return NULL;
}

void pv_resolver_free(pv_resolver *r)
{
	lookup *l, *next;
	poller *p;

	if (!r || r->closing)
		return;
	r->closing = true;
	uv_idle_stop(&r->idle);
	uv_timer_stop(&r->timer);
	r->ready = r->ready_tail = NULL;

	/* Tell everyone not yet told.  A callback may start another lookup (appended to
	 * the list and cancelled in turn by this same walk), hence next is read late. */
	for (l = r->lookups; l; l = next) {
		if (!l->delivered) {
			l->delivered = true;
			l->cb(l->ud, NULL, 0, "cancelled");
		}
		next = l->next;
		if (l->pending == 0)
			lookup_free(l);
	}
	/* Calls every outstanding c-ares callback (which now only frees) and reports each
	 * socket closed, which closes its poller. */
	ares_destroy(r->ch);
	while (r->lookups) /* none should remain: c-ares has answered everything */
		lookup_free(r->lookups);
	while ((p = r->pollers)) {
		r->pollers = p->next;
		uv_close((uv_handle_t *)&p->h, on_poller_closed);
	}
	pv_resolver_clear_routes(r);
	pv_map_free(r->routes, NULL);
	r->routes = NULL;
	uv_close((uv_handle_t *)&r->timer, on_base_closed);
	uv_close((uv_handle_t *)&r->idle, on_base_closed);
}

int pv_resolver_add_route(pv_resolver *r, const char *domain, const char *target)
{
	char key[256];
	route rt, *copy;

	if (!r || !domain || !target || !norm_domain(domain, key) || parse_route(target, &rt) < 0) {
		pv_warn(SUB, "bad static route domain=%s target=%s", domain ? domain : "(null)",
			target ? target : "(null)");
		return PV_EINVAL;
	}
	copy = pv_malloc(sizeof *copy);
	*copy = rt;
	pv_free(pv_map_put(r->routes, key, copy));
	return 0;
}

static int drop_route(void *ud, const char *key, void *val)
{
	pv_free(val);
	return 1;
}

void pv_resolver_clear_routes(pv_resolver *r)
{
	if (r && r->routes)
		pv_map_each(r->routes, drop_route, NULL);
}

void pv_resolve_xmpp_server(pv_resolver *r, const char *domain, pv_resolve_cb cb, void *ud)
{
	lookup *l;
	route *rt;
	struct sockaddr_storage ss;
	socklen_t sslen;

	PV_ASSERT(r && cb);
	l = pv_calloc(1, sizeof *l);
	l->r = r;
	l->cb = cb;
	l->ud = ud;
	l->prev = r->lookups_tail;
	if (r->lookups_tail)
		r->lookups_tail->next = l;
	else
		r->lookups = l;
	r->lookups_tail = l;
	if (r->closing)
		return; /* inside pv_resolver_free: its walk delivers "cancelled" */

	if (!domain || !norm_domain(domain, l->domain)) {
		snprintf(l->domain, sizeof l->domain, "?");
		finish(l, "invalid domain");
		goto out;
	}
	rt = pv_map_get(r->routes, l->domain);
	if (rt) {
		pv_debug(SUB, "static route domain=%s target=%s%s:%u", l->domain, rt->tls ? "tls:" : "",
			rt->host, rt->port);
		if (!rt->is_ip) {
			start_one(l, rt->host, rt->port, rt->tls);
			goto out;
		}
		l->targets = pv_calloc(1, sizeof *l->targets);
		l->ntargets = 1;
		memcpy(&l->targets[0].addr, &rt->addr, rt->addrlen);
		l->targets[0].addrlen = rt->addrlen;
		l->targets[0].direct_tls = rt->tls;
		snprintf(l->targets[0].host, sizeof l->targets[0].host, "%s", l->domain);
		finish(l, NULL);
		goto out;
	}
	/* RFC 7622 allows an IP literal as domainpart: nothing to look up. */
	if (parse_ip(l->domain, strlen(l->domain), PV_S2S_PORT, &ss, &sslen)) {
		l->targets = pv_calloc(1, sizeof *l->targets);
		l->ntargets = 1;
		memcpy(&l->targets[0].addr, &ss, sslen);
		l->targets[0].addrlen = sslen;
		snprintf(l->targets[0].host, sizeof l->targets[0].host, "%s", l->domain);
		finish(l, NULL);
		goto out;
	}
	if (!is_hostname(l->domain, strlen(l->domain))) {
		finish(l, "invalid domain");
		goto out;
	}
	start_srv(l);
out:
	rearm(r);
}
