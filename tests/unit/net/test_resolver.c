/* test_resolver.c -- tests for src/net/resolver.c on a real libuv loop, against a tiny
 * DNS server in this process: a UDP socket on 127.0.0.1 that parses the question and
 * answers SRV/A/AAAA records from a table (NXDOMAIN for unknown names, NOERROR/no data
 * for known names without that type, silence for names marked DROP).
 *
 * Covers: static routes (v4, [v6], tls:, host names, case, replacement, clearing, bad
 * syntax) without touching DNS; SRV ordering by priority with direct TLS first at equal
 * priority and unresolvable targets skipped; RFC 2782 weights; "." -> not available
 * (including XEP-0368's no-fallback rule); no SRV -> A/AAAA on 5269; NXDOMAIN -> error;
 * the 32-target cap; IP-literal domains; cancellation on free in both phases and from
 * inside a callback; and that no callback ever runs inside pv_resolve_xmpp_server
 * (checked after every call).  Teardown asserts every uv handle is closed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "net/resolver.h"
#include "peyvand/pv_util.h"

#define WAIT_MS 5000
#define MAXT 40

/* ---- the fake DNS server ------------------------------------------------------------ */

enum { T_A = 1, T_AAAA = 28, T_SRV = 33, T_DROP = -1 };

typedef struct rr {
	char name[128];
	int type;
	char data[128]; /* A/AAAA: address; SRV: "priority weight port target" */
} rr;

typedef struct dns_server {
	uv_udp_t udp;
	int port;
	int queries;
	rr *zone;
	size_t nzone;
} dns_server;

static void zone_add(dns_server *d, const char *name, int type, const char *data)
{
	d->zone = realloc(d->zone, (d->nzone + 1) * sizeof *d->zone);
	assert_non_null(d->zone);
	snprintf(d->zone[d->nzone].name, sizeof d->zone[0].name, "%s", name);
	d->zone[d->nzone].type = type;
	snprintf(d->zone[d->nzone].data, sizeof d->zone[0].data, "%s", data ? data : "");
	d->nzone++;
}

static const struct {
	const char *name;
	int type;
	const char *data;
} fixed_zone[] = {
	/* a.test: priorities 5 < 10 < 15 < 20, xmpps and xmpp both at 10. */
	{"_xmpps-server._tcp.a.test", T_SRV, "10 0 5270 tls.a.test"},
	{"_xmpps-server._tcp.a.test", T_SRV, "20 0 5400 last.a.test"},
	{"_xmpp-server._tcp.a.test", T_SRV, "10 0 5269 plain.a.test"},
	{"_xmpp-server._tcp.a.test", T_SRV, "15 0 5500 gone.a.test"}, /* no address: skipped */
	{"_xmpp-server._tcp.a.test", T_SRV, "5 0 5300 first.a.test"},
	{"tls.a.test", T_A, "127.0.0.2"},
	{"plain.a.test", T_A, "127.0.0.3"},
	{"first.a.test", T_A, "127.0.0.4"},
	{"last.a.test", T_AAAA, "::1"},
	/* "." answers */
	{"_xmpp-server._tcp.dot.test", T_SRV, "0 0 0 ."},
	{"_xmpps-server._tcp.xdot.test", T_SRV, "0 0 0 ."},
	{"xdot.test", T_A, "127.0.0.1"}, /* exists, yet XEP-0368 forbids falling back to it */
	{"_xmpps-server._tcp.sdot.test", T_SRV, "0 0 0 ."},
	{"_xmpp-server._tcp.sdot.test", T_SRV, "0 0 5269 srv.sdot.test"},
	{"srv.sdot.test", T_A, "127.0.0.6"},
	/* no SRV: fallback */
	{"fb.test", T_A, "127.0.0.5"},
	{"fb.test", T_AAAA, "::1"},
	/* SRV whose only target has no address */
	{"_xmpp-server._tcp.dead.test", T_SRV, "0 0 5269 gone.dead.test"},
	/* weights */
	{"_xmpp-server._tcp.w.test", T_SRV, "0 50 1001 w1.w.test"},
	{"_xmpp-server._tcp.w.test", T_SRV, "0 50 1002 w2.w.test"},
	{"_xmpp-server._tcp.w.test", T_SRV, "1 1 1003 h1.w.test"},
	{"_xmpp-server._tcp.w.test", T_SRV, "1 65535 1004 h2.w.test"},
	{"w1.w.test", T_A, "127.0.0.7"},
	{"w2.w.test", T_A, "127.0.0.7"},
	{"h1.w.test", T_A, "127.0.0.7"},
	{"h2.w.test", T_A, "127.0.0.7"},
	/* static route by name */
	{"host.rn.test", T_A, "127.0.0.9"},
	/* never answered: lookups stay pending in the SRV phase, or in the address phase */
	{"_xmpps-server._tcp.slow.test", T_DROP, NULL},
	{"_xmpp-server._tcp.slow.test", T_DROP, NULL},
	{"_xmpp-server._tcp.slowaddr.test", T_SRV, "0 0 5269 h.slowaddr.test"},
	{"h.slowaddr.test", T_DROP, NULL},
};

static void zone_build(dns_server *d)
{
	char data[64];
	int i;

	for (i = 0; i < (int)PV_ARRAY_LEN(fixed_zone); i++)
		zone_add(d, fixed_zone[i].name, fixed_zone[i].type, fixed_zone[i].data);
	/* many.test: 12 + 12 records, each target with 2 addresses = 48 > the cap of 32. */
	for (i = 0; i < 12; i++) {
		snprintf(data, sizeof data, "0 0 %d m.many.test", 7000 + i);
		zone_add(d, "_xmpps-server._tcp.many.test", T_SRV, data);
		snprintf(data, sizeof data, "0 0 %d m.many.test", 8000 + i);
		zone_add(d, "_xmpp-server._tcp.many.test", T_SRV, data);
	}
	zone_add(d, "m.many.test", T_A, "127.0.1.1");
	zone_add(d, "m.many.test", T_A, "127.0.1.2");
}

static size_t put16(unsigned char *p, unsigned v)
{
	p[0] = (unsigned char)(v >> 8);
	p[1] = (unsigned char)v;
	return 2;
}

/* Uncompressed wire form of a dotted name; "." is the root. */
static size_t put_name(unsigned char *p, const char *name)
{
	size_t n = 0, len;
	const char *dot;

	while (*name && strcmp(name, ".") != 0) {
		dot = strchr(name, '.');
		len = dot ? (size_t)(dot - name) : strlen(name);
		p[n++] = (unsigned char)len;
		memcpy(p + n, name, len);
		n += len;
		name += len + (dot ? 1 : 0);
	}
	p[n++] = 0;
	return n;
}

static size_t put_rdata(unsigned char *p, const rr *z)
{
	unsigned prio, weight, port;
	char target[128];

	switch (z->type) {
	case T_A:
		assert_int_equal(inet_pton(AF_INET, z->data, p), 1);
		return 4;
	case T_AAAA:
		assert_int_equal(inet_pton(AF_INET6, z->data, p), 1);
		return 16;
	default:
		assert_int_equal(sscanf(z->data, "%u %u %u %127s", &prio, &weight, &port, target), 4);
		put16(p, prio);
		put16(p + 2, weight);
		put16(p + 4, port);
		return 6 + put_name(p + 6, target);
	}
}

/* The response to query q, or -1 to stay silent. */
static int dns_answer(dns_server *d, const unsigned char *q, size_t qlen, unsigned char *out)
{
	char name[256];
	size_t pos = 12, nl = 0, o, i, lenpos;
	unsigned qtype, an = 0;
	bool exists = false;

	if (qlen < 12 || q[4] != 0 || q[5] != 1)
		return -1;
	while (pos < qlen && q[pos] != 0) {
		size_t len = q[pos++];
		if (len > 63 || pos + len > qlen || nl + len + 1 >= sizeof name)
			return -1;
		if (nl)
			name[nl++] = '.';
		for (i = 0; i < len; i++) {
			char c = (char)q[pos + i];
			name[nl++] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
		}
		pos += len;
	}
	name[nl] = '\0';
	if (pos + 5 > qlen)
		return -1;
	pos++;
	qtype = (unsigned)q[pos] << 8 | q[pos + 1];
	pos += 4;

	memcpy(out, q, 2);                       /* id */
	out[2] = (unsigned char)(0x80 | 0x04 | (q[2] & 0x79)); /* QR, AA, opcode, RD */
	out[3] = 0x80;                           /* RA, rcode filled below */
	put16(out + 4, 1);
	memset(out + 6, 0, 6);
	memcpy(out + 12, q + 12, pos - 12);      /* the question, verbatim */
	o = pos;
	for (i = 0; i < d->nzone; i++) {
		const rr *z = &d->zone[i];
		if (strcmp(z->name, name) != 0)
			continue;
		if (z->type == T_DROP)
			return -1;
		exists = true;
		if ((unsigned)z->type != qtype)
			continue;
		out[o++] = 0xc0; /* pointer to the question's name */
		out[o++] = 0x0c;
		o += put16(out + o, qtype);
		o += put16(out + o, 1);
		o += put16(out + o, 0);
		o += put16(out + o, 60);
		lenpos = o;
		o += 2;
		put16(out + lenpos, (unsigned)put_rdata(out + o, z));
		o += (size_t)out[lenpos] << 8 | out[lenpos + 1];
		an++;
		assert_true(o < 480); /* stay under 512 so nothing needs truncation */
	}
	put16(out + 6, an);
	if (!exists)
		out[3] |= 3; /* NXDOMAIN */
	return (int)o;
}

static void dns_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	static char mem[1500];

	buf->base = mem;
	buf->len = sizeof mem;
}

static void dns_recv(uv_udp_t *h, ssize_t n, const uv_buf_t *buf, const struct sockaddr *from,
	unsigned flags)
{
	dns_server *d = h->data;
	unsigned char out[1024];
	uv_buf_t b;
	int len;

	if (n <= 0 || !from)
		return;
	d->queries++;
	len = dns_answer(d, (const unsigned char *)buf->base, (size_t)n, out);
	if (len < 0)
		return;
	b = uv_buf_init((char *)out, (unsigned)len);
	assert_int_equal(uv_udp_try_send(h, &b, 1, from), len);
}

static void dns_start(dns_server *d, uv_loop_t *loop)
{
	struct sockaddr_in sin;
	struct sockaddr_storage ss;
	int sslen = sizeof ss;

	zone_build(d);
	assert_int_equal(uv_udp_init(loop, &d->udp), 0);
	d->udp.data = d;
	assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &sin), 0);
	assert_int_equal(uv_udp_bind(&d->udp, (struct sockaddr *)&sin, 0), 0);
	assert_int_equal(uv_udp_getsockname(&d->udp, (struct sockaddr *)&ss, &sslen), 0);
	d->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	assert_int_equal(uv_udp_recv_start(&d->udp, dns_alloc, dns_recv), 0);
}

/* ---- fixture and helpers ------------------------------------------------------------ */

typedef struct fx {
	uv_loop_t loop;
	uv_timer_t tick; /* wakes uv_run(ONCE) so waits can time out */
	dns_server dns;
	pv_resolver *r;
} fx;

typedef struct result {
	fx *f;
	int calls;
	bool has_err;
	char err[200];
	size_t n;
	char t[MAXT][160];
	/* actions for the callback */
	bool free_resolver;
	const char *then_resolve;
	struct result *then_res;
} result;

static void fmt_target(const pv_target *t, char *out, size_t cap)
{
	char ip[INET6_ADDRSTRLEN];
	unsigned port;

	if (t->addr.ss_family == AF_INET) {
		const struct sockaddr_in *s = (const struct sockaddr_in *)&t->addr;
		assert_int_equal(t->addrlen, sizeof *s);
		inet_ntop(AF_INET, &s->sin_addr, ip, sizeof ip);
		port = ntohs(s->sin_port);
		snprintf(out, cap, "%s %s:%u %s %u", t->direct_tls ? "tls" : "tcp", ip, port, t->host,
			t->priority);
	} else {
		const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)&t->addr;
		assert_int_equal(t->addr.ss_family, AF_INET6);
		assert_int_equal(t->addrlen, sizeof *s);
		inet_ntop(AF_INET6, &s->sin6_addr, ip, sizeof ip);
		port = ntohs(s->sin6_port);
		snprintf(out, cap, "%s [%s]:%u %s %u", t->direct_tls ? "tls" : "tcp", ip, port, t->host,
			t->priority);
	}
}

static void on_result(void *ud, const pv_target *targets, size_t n, const char *err)
{
	result *res = ud;
	size_t i;

	res->calls++;
	res->has_err = err != NULL;
	snprintf(res->err, sizeof res->err, "%s", err ? err : "");
	/* The contract: n == 0 exactly when err is set. */
	assert_true((err != NULL) == (n == 0));
	assert_true(n <= 32);
	res->n = n;
	for (i = 0; i < n && i < MAXT; i++)
		fmt_target(&targets[i], res->t[i], sizeof res->t[i]);
	if (res->then_resolve) {
		pv_resolve_xmpp_server(res->f->r, res->then_resolve, on_result, res->then_res);
		assert_int_equal(res->then_res->calls, 0);
		res->then_resolve = NULL;
	}
	if (res->free_resolver) {
		pv_resolver_free(res->f->r);
		res->f->r = NULL;
	}
}

/* Start a lookup and check the callback did not run inside the call. */
static void resolve(fx *f, const char *domain, result *res)
{
	memset(res, 0, sizeof *res);
	res->f = f;
	pv_resolve_xmpp_server(f->r, domain, on_result, res);
	assert_int_equal(res->calls, 0);
}

static void on_tick(uv_timer_t *t)
{
}

static void run_until(fx *f, bool (*done)(void *), void *arg)
{
	uint64_t deadline;

	uv_update_time(&f->loop);
	deadline = uv_now(&f->loop) + WAIT_MS;
	uv_timer_start(&f->tick, on_tick, 20, 20);
	while (!done(arg)) {
		if (uv_now(&f->loop) > deadline)
			fail_msg("timed out waiting");
		uv_run(&f->loop, UV_RUN_ONCE);
	}
	uv_timer_stop(&f->tick);
}

static bool res_done(void *arg)
{
	return ((result *)arg)->calls > 0;
}

static void wait_res(fx *f, result *res)
{
	run_until(f, res_done, res);
	assert_int_equal(res->calls, 1);
}

/* Resolve and wait; returns res for convenience. */
static result *lookup(fx *f, const char *domain, result *res)
{
	resolve(f, domain, res);
	wait_res(f, res);
	return res;
}

static void expect_targets(const result *res, const char *const *want, size_t nwant)
{
	size_t i;

	if (res->has_err)
		fail_msg("unexpected error: %s", res->err);
	assert_int_equal(res->n, nwant);
	for (i = 0; i < nwant; i++)
		assert_string_equal(res->t[i], want[i]);
}

static bool has_target(const result *res, const char *want)
{
	size_t i;

	for (i = 0; i < res->n; i++)
		if (strcmp(res->t[i], want) == 0)
			return true;
	return false;
}

static void expect_err(const result *res, const char *substr)
{
	assert_true(res->has_err);
	assert_int_equal(res->n, 0);
	if (!strstr(res->err, substr))
		fail_msg("error \"%s\" lacks \"%s\"", res->err, substr);
}

static int setup(void **state)
{
	fx *f = calloc(1, sizeof *f);
	char addr[64];

	assert_non_null(f);
	assert_int_equal(uv_loop_init(&f->loop), 0);
	assert_int_equal(uv_timer_init(&f->loop, &f->tick), 0);
	dns_start(&f->dns, &f->loop);
	snprintf(addr, sizeof addr, "127.0.0.1:%d", f->dns.port);
	f->r = pv_resolver_new(&f->loop, addr);
	assert_non_null(f->r);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fx *f = *state;
	int i;

	pv_resolver_free(f->r);
	uv_close((uv_handle_t *)&f->dns.udp, NULL);
	uv_close((uv_handle_t *)&f->tick, NULL);
	/* Every handle of the resolver must close by itself now. */
	for (i = 0; i < 100 && uv_loop_alive(&f->loop); i++)
		uv_run(&f->loop, UV_RUN_NOWAIT);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	free(f->dns.zone);
	free(f);
	return 0;
}

/* ---- tests -------------------------------------------------------------------------- */

static void test_static_routes(void **state)
{
	static const struct {
		const char *domain, *target, *query, *want;
	} cases[] = {
		{"r4.test", "127.0.0.1:5299", "r4.test", "tcp 127.0.0.1:5299 r4.test 0"},
		{"r6.test", "[::1]:5300", "r6.test", "tcp [::1]:5300 r6.test 0"},
		{"rt.test", "tls:127.0.0.1:5223", "rt.test", "tls 127.0.0.1:5223 rt.test 0"},
		{"Rc.Test", "TLS:[::1]:5270", "rC.tEST", "tls [::1]:5270 rc.test 0"},
		{"rd.test", "127.0.0.1:5301", "rd.test.", "tcp 127.0.0.1:5301 rd.test 0"},
	};
	fx *f = *state;
	result res;
	size_t i;

	for (i = 0; i < PV_ARRAY_LEN(cases); i++)
		assert_int_equal(pv_resolver_add_route(f->r, cases[i].domain, cases[i].target), 0);
	for (i = 0; i < PV_ARRAY_LEN(cases); i++) {
		lookup(f, cases[i].query, &res);
		expect_targets(&res, &cases[i].want, 1);
	}
	assert_int_equal(f->dns.queries, 0); /* static routes replace DNS */

	/* A later route for the same domain replaces the earlier one. */
	assert_int_equal(pv_resolver_add_route(f->r, "r4.test", "127.0.0.1:6000"), 0);
	lookup(f, "r4.test", &res);
	expect_targets(&res, (const char *[]){"tcp 127.0.0.1:6000 r4.test 0"}, 1);

	/* A host name in a route is resolved, keeping the route's port and TLS mode. */
	assert_int_equal(pv_resolver_add_route(f->r, "rn.test", "tls:host.rn.test:6001"), 0);
	lookup(f, "rn.test", &res);
	expect_targets(&res, (const char *[]){"tls 127.0.0.9:6001 rn.test 0"}, 1);
	assert_true(f->dns.queries > 0);

	/* After clearing, DNS decides again (and knows nothing of r4.test). */
	pv_resolver_clear_routes(f->r);
	expect_err(lookup(f, "r4.test", &res), "r4.test");
}

static void test_bad_routes(void **state)
{
	static const struct {
		const char *domain, *target;
	} bad[] = {
		{"x.test", ""},
		{"x.test", "host"},
		{"x.test", "host:"},
		{"x.test", "host:0"},
		{"x.test", "host:65536"},
		{"x.test", "host:52a"},
		{"x.test", "::1:5269"},
		{"x.test", "[::1]"},
		{"x.test", "[::1]5269"},
		{"x.test", "[127.0.0.1]:5269"},
		{"x.test", "[nope]:5269"},
		{"x.test", "tls:"},
		{"x.test", "bad host:5269"},
		{"x.test", "a..b:5269"},
		{"", "127.0.0.1:5269"},
		{"sp ace.test", "127.0.0.1:5269"},
	};
	fx *f = *state;
	result res;
	size_t i;

	for (i = 0; i < PV_ARRAY_LEN(bad); i++)
		if (pv_resolver_add_route(f->r, bad[i].domain, bad[i].target) != PV_EINVAL)
			fail_msg("accepted route %s -> \"%s\"", bad[i].domain, bad[i].target);
	assert_int_equal(pv_resolver_add_route(f->r, NULL, "127.0.0.1:1"), PV_EINVAL);
	assert_int_equal(pv_resolver_add_route(f->r, "x.test", NULL), PV_EINVAL);
	/* None of them was stored: x.test goes to DNS and is not found there. */
	expect_err(lookup(f, "x.test", &res), "x.test");
}

static void test_srv_order(void **state)
{
	static const char *const want[] = {
		"tcp 127.0.0.4:5300 first.a.test 5",
		"tls 127.0.0.2:5270 tls.a.test 10", /* xmpps before xmpp at equal priority */
		"tcp 127.0.0.3:5269 plain.a.test 10",
		/* gone.a.test (priority 15) has no address and is skipped */
		"tls [::1]:5400 last.a.test 20",
	};
	fx *f = *state;
	result res;

	lookup(f, "a.test", &res);
	expect_targets(&res, want, PV_ARRAY_LEN(want));
	lookup(f, "A.Test", &res); /* case does not matter */
	expect_targets(&res, want, PV_ARRAY_LEN(want));
}

static void test_srv_dot(void **state)
{
	fx *f = *state;
	result res;

	expect_err(lookup(f, "dot.test", &res), "service not available");
	/* Only _xmpps-server says "."; no _xmpp-server; the domain has an A record, but
	 * XEP-0368 forbids the A/AAAA fallback. */
	expect_err(lookup(f, "xdot.test", &res), "service not available");
	/* "." for direct TLS, real records for STARTTLS: those are used. */
	lookup(f, "sdot.test", &res);
	expect_targets(&res, (const char *[]){"tcp 127.0.0.6:5269 srv.sdot.test 0"}, 1);
}

static void test_fallback_and_errors(void **state)
{
	fx *f = *state;
	result res;

	lookup(f, "fb.test", &res);
	if (res.has_err)
		fail_msg("fb.test: %s", res.err);
	assert_int_equal(res.n, 2); /* address order is c-ares' RFC 6724 sort: compare as a set */
	assert_true(has_target(&res, "tcp 127.0.0.5:5269 fb.test 0"));
	assert_true(has_target(&res, "tcp [::1]:5269 fb.test 0"));

	expect_err(lookup(f, "nx.test", &res), "nx.test");
	expect_err(lookup(f, "dead.test", &res), "no address");
}

static void test_weights(void **state)
{
	fx *f = *state;
	result res;
	int i, w1_first = 0, heavy_first = 0, runs = 40;

	for (i = 0; i < runs; i++) {
		lookup(f, "w.test", &res);
		assert_false(res.has_err);
		assert_int_equal(res.n, 4);
		/* Priority 0 always before priority 1, whatever the weights. */
		assert_true(strstr(res.t[0], ":1001 ") || strstr(res.t[0], ":1002 "));
		assert_true(strstr(res.t[1], ":1001 ") || strstr(res.t[1], ":1002 "));
		assert_true(strstr(res.t[2], ":1003 ") || strstr(res.t[2], ":1004 "));
		assert_true(strstr(res.t[3], ":1003 ") || strstr(res.t[3], ":1004 "));
		if (strstr(res.t[0], ":1001 "))
			w1_first++;
		if (strstr(res.t[2], ":1004 "))
			heavy_first++;
	}
	/* Equal weights: both orders occur (P(fail) < 1e-7).  Weight 65535 vs 1: the heavy
	 * one comes first nearly always (each run errs with p = 2/65537). */
	assert_in_range(w1_first, 5, 35);
	assert_true(heavy_first >= runs - 3);
}

static void test_cap(void **state)
{
	fx *f = *state;
	result res;
	size_t i;

	lookup(f, "many.test", &res);
	assert_false(res.has_err);
	assert_int_equal(res.n, 32);
	for (i = 0; i < 24; i++) /* 12 xmpps records x 2 addresses, all at priority 0 */
		assert_true(strncmp(res.t[i], "tls ", 4) == 0);
	for (; i < 32; i++)
		assert_true(strncmp(res.t[i], "tcp ", 4) == 0);
}

static void test_literal_and_invalid_domains(void **state)
{
	fx *f = *state;
	result res;

	lookup(f, "127.0.0.1", &res);
	expect_targets(&res, (const char *[]){"tcp 127.0.0.1:5269 127.0.0.1 0"}, 1);
	lookup(f, "[::1]", &res);
	expect_targets(&res, (const char *[]){"tcp [::1]:5269 [::1] 0"}, 1);
	assert_int_equal(f->dns.queries, 0);

	expect_err(lookup(f, "", &res), "invalid domain");
	expect_err(lookup(f, "a b.test", &res), "invalid domain");
	expect_err(lookup(f, "caf\xc3\xa9.test", &res), "invalid domain");
	expect_err(lookup(f, NULL, &res), "invalid domain");
}

static bool queries_at_least_6(void *arg)
{
	return ((fx *)arg)->dns.queries >= 6;
}

static void test_cancel_on_free(void **state)
{
	fx *f = *state;
	result slow, slowaddr, queued;

	/* slow.test waits in the SRV phase; slowaddr.test in the address phase (2 SRV
	 * queries answered, then A and AAAA for its target unanswered): 6 queries. */
	resolve(f, "slow.test", &slow);
	resolve(f, "slowaddr.test", &slowaddr);
	run_until(f, queries_at_least_6, f);
	/* A result that is ready but not yet delivered is pending too. */
	assert_int_equal(pv_resolver_add_route(f->r, "q.test", "127.0.0.1:5269"), 0);
	resolve(f, "q.test", &queued);

	pv_resolver_free(f->r);
	f->r = NULL;
	/* Delivered inside the free, so the caller knows no callback comes later. */
	assert_int_equal(slow.calls, 1);
	assert_int_equal(slowaddr.calls, 1);
	assert_int_equal(queued.calls, 1);
	assert_string_equal(slow.err, "cancelled");
	assert_string_equal(slowaddr.err, "cancelled");
	assert_string_equal(queued.err, "cancelled");
	/* Nothing more arrives while the handles close (teardown checks they all do). */
	uv_run(&f->loop, UV_RUN_NOWAIT);
	assert_int_equal(slow.calls + slowaddr.calls + queued.calls, 3);
}

static void test_free_inside_callback(void **state)
{
	fx *f = *state;
	result first, second, late, chained, chained_next;

	assert_int_equal(pv_resolver_add_route(f->r, "one.test", "127.0.0.1:1"), 0);
	assert_int_equal(pv_resolver_add_route(f->r, "two.test", "127.0.0.1:2"), 0);

	/* A callback may start a new lookup on the same resolver. */
	resolve(f, "one.test", &chained);
	memset(&chained_next, 0, sizeof chained_next);
	chained_next.f = f;
	chained.then_resolve = "two.test";
	chained.then_res = &chained_next;
	wait_res(f, &chained);
	wait_res(f, &chained_next);
	expect_targets(&chained_next, (const char *[]){"tcp 127.0.0.1:2 two.test 0"}, 1);

	/* Both results are queued; the first callback frees the resolver; the second is
	 * then cancelled, and a lookup started from that cancel callback is cancelled too. */
	resolve(f, "one.test", &first);
	first.free_resolver = true;
	resolve(f, "two.test", &second);
	memset(&late, 0, sizeof late);
	late.f = f;
	second.then_resolve = "one.test";
	second.then_res = &late;
	wait_res(f, &first);
	assert_null(f->r);
	assert_false(first.has_err);
	assert_int_equal(second.calls, 1);
	assert_string_equal(second.err, "cancelled");
	assert_int_equal(late.calls, 1);
	assert_string_equal(late.err, "cancelled");
}

static void test_new_rejects_bad_server(void **state)
{
	fx *f = *state;

	assert_null(pv_resolver_new(&f->loop, "not an address"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_static_routes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_routes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_srv_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_srv_dot, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fallback_and_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_weights, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_literal_and_invalid_domains, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel_on_free, setup, teardown),
		cmocka_unit_test_setup_teardown(test_free_inside_callback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_new_rejects_bad_server, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
