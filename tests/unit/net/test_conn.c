/* test_conn.c -- tests for src/net/{conn,tls,listener}.c over real loopback sockets:
 * a server and a client pv_conn on one libuv loop in this process.
 *
 * Covers: plain echo, a 1 MiB write arriving intact with write callbacks and
 * out_pending accounting, direct TLS, STARTTLS with trailing plaintext dropped,
 * TLS 1.2 minimum, channel bindings (RFC 9266 tls-exporter on 1.3, RFC 5929
 * tls-unique on 1.2) equal on both ends, SNI context switching, read pause/resume
 * with TLS records held inside OpenSSL or tlsrec.c, on_close exactly once, and that every
 * handle is gone afterwards (uv_loop_close succeeds).  A server's TLS 1.3 records are
 * tlsrec.c's (own_records), also after OpenSSL's object is released. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "net/conn.h"
#include "peyvand/pv_log.h"
#include "peyvand/pv_util.h"

#define BULK_N (1024 * 1024)
#define GUARD_MS 15000

enum mode {
	M_ECHO,       /* client sends a line, server echoes, client closes */
	M_BULK,       /* client sends BULK_N bytes, server checks and closes */
	M_STARTTLS,   /* plaintext "STARTTLS\n" + junk, switch, then echo over TLS */
	M_TLS_ECHO,   /* direct TLS, echo */
	M_TLS_BULK,   /* direct TLS, BULK_N bytes, server pauses after every chunk */
	M_CLOSE_LOCAL /* client closes at once, repeatedly */
};

typedef struct end {
	pv_conn *c;
	int closes;
	const char *why;
	int tls;
	int data_calls;
	pv_buf rx;
	int connect_status;
	char version[16];
	bool own_records;
	char cipher[64];
	char sni[64];
	char peer_ip[64];
	unsigned char exporter[64];
	int exporter_len;
	unsigned char unique[64];
	int unique_len;
	char peer_cn[64];
} end;

typedef struct tctx {
	uv_loop_t loop;
	uv_tcp_t *lis;
	uv_timer_t guard;
	uv_timer_t resume;
	enum mode mode;
	SSL_CTX *sctx; /* direct TLS (accept) or STARTTLS (switch) */
	SSL_CTX *cctx;
	const char *sni;
	end srv, cli;
	int wcb_calls;
	int wcb_status;
	size_t pending_after_write;
	size_t pending_at_cb;
	size_t dropped;
	int cancelled_cbs;
	int empty_cbs;
	bool tls_at_connect; /* client starts TLS before the TCP connect completes */
	int pauses;
	bool release_tls; /* the server drops OpenSSL's object once TLS is up */
	bool released;
	char version_after[16];
	bool timed_out;
	bool finished;
	/* split echo: the server answers in three writes of one turn (batching) */
	bool split;
	int split_tag[3];
	int split_order[3];
	int split_cbs;
	int split_status;
	size_t split_pending;
	/* the last split callback writes "+" and closes the conn from inside itself */
	bool cb_writes_and_closes;
	int plus_cbs;
	int plus_status;
	size_t expect_len; /* the client closes once it has this much (0: PING) */
} tctx;

static char g_dir[64];
static char g_cert[128], g_key[128], g_cert2[128], g_key2[128];
static SSL_CTX *g_sctx, *g_sctx2;
static const char *g_sni_seen;

static const char PING[] = "hello over the wire\n";

/* ---- harness ---- */

static void finish_if_done(tctx *t)
{
	if (t->finished || t->srv.closes == 0 || t->cli.closes == 0)
		return;
	t->finished = true;
	pv_listen_close(t->lis);
	uv_close((uv_handle_t *)&t->guard, NULL);
	uv_close((uv_handle_t *)&t->resume, NULL);
}

static void on_guard(uv_timer_t *tm)
{
	tctx *t = tm->data;

	t->timed_out = true;
	if (t->srv.c && !t->srv.closes)
		pv_conn_abort(t->srv.c);
	if (t->cli.c && !t->cli.closes)
		pv_conn_abort(t->cli.c);
	if (!t->srv.c)
		t->srv.closes = 1; /* never accepted */
	finish_if_done(t);
}

static void record_tls(end *e, pv_conn *c)
{
	const char *v = pv_conn_tls_version(c);
	const char *s = pv_conn_tls_sni(c);

	e->tls++;
	snprintf(e->version, sizeof e->version, "%s", v ? v : "");
	e->own_records = pv_conn_tls_own_records(c);
	snprintf(e->cipher, sizeof e->cipher, "%s",
		SSL_CIPHER_get_name(SSL_get_current_cipher(pv_conn_ssl(c))));
	snprintf(e->sni, sizeof e->sni, "%s", s ? s : "");
	e->exporter_len = pv_conn_tls_cb(c, "tls-exporter", e->exporter, sizeof e->exporter);
	e->unique_len = pv_conn_tls_cb(c, "tls-unique", e->unique, sizeof e->unique);
	X509 *peer = SSL_get0_peer_certificate(pv_conn_ssl(c));
	if (peer)
		X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, e->peer_cn,
			sizeof e->peer_cn);
}

static void on_resume(uv_timer_t *tm)
{
	tctx *t = tm->data;

	if (t->srv.c && !t->srv.closes)
		pv_conn_read_resume(t->srv.c);
}

/* server side */

static tctx *g_split_t;

static void on_plus_written(void *ud, int status)
{
	tctx *t = ud;

	t->plus_cbs++;
	t->plus_status = status;
}

static void on_split_written(void *ud, int status)
{
	tctx *t = g_split_t;
	int tag = *(int *)ud;

	if (t->split_cbs < 3)
		t->split_order[t->split_cbs] = tag;
	t->split_cbs++;
	if (status != 0)
		t->split_status = status;
	if (tag == 2 && t->cb_writes_and_closes) {
		pv_conn_write(t->srv.c, "+", 1, on_plus_written, t);
		pv_conn_close(t->srv.c);
	}
}

static void srv_data(pv_conn *c, const char *data, size_t n)
{
	tctx *t = pv_conn_owner(c);
	const char *nl;

	t->srv.data_calls++;
	switch (t->mode) {
	case M_ECHO:
	case M_TLS_ECHO:
		pv_buf_append(&t->srv.rx, data, n);
		if (t->split && n >= 3) {
			size_t a = n / 3, b = n / 3;
			size_t before = pv_conn_out_pending(c);
			g_split_t = t;
			for (int i = 0; i < 3; i++)
				t->split_tag[i] = i;
			pv_conn_write(c, data, a, on_split_written, &t->split_tag[0]);
			pv_conn_write(c, data + a, b, on_split_written, &t->split_tag[1]);
			pv_conn_write(c, data + a + b, n - a - b, on_split_written, &t->split_tag[2]);
			t->split_pending = pv_conn_out_pending(c) - before;
			break;
		}
		pv_conn_write(c, data, n, NULL, NULL);
		break;
	case M_BULK:
	case M_TLS_BULK:
		pv_buf_append(&t->srv.rx, data, n);
		if (t->mode == M_TLS_BULK && t->srv.rx.len < BULK_N) {
			/* Pause with more records still inside OpenSSL; resume must drain
			 * them even though no new bytes arrive on the socket. */
			pv_conn_read_pause(c);
			t->pauses++;
			uv_timer_start(&t->resume, on_resume, 1, 0);
		}
		if (t->srv.rx.len >= BULK_N)
			pv_conn_close(c);
		break;
	case M_STARTTLS:
		if (pv_conn_is_tls(c)) {
			pv_buf_append(&t->srv.rx, data, n);
			pv_conn_write(c, data, n, NULL, NULL);
			break;
		}
		nl = memchr(data, '\n', n);
		assert_non_null(nl);
		assert_memory_equal(data, "STARTTLS\n", 9);
		/* Answer in plaintext first, then switch; the rest of this read is the
		 * client's junk and must never reach TLS. */
		pv_conn_write(c, "PROCEED\n", 8, NULL, NULL);
		assert_int_equal(pv_conn_starttls(c, t->sctx), 0);
		assert_true(pv_conn_is_tls(c));
		assert_false(pv_conn_tls_done(c));
		/* a second switch is refused */
		assert_int_equal(pv_conn_starttls(c, t->sctx), PV_EINVAL);
		t->dropped = n - (size_t)(nl + 1 - data);
		break;
	case M_CLOSE_LOCAL:
		break;
	}
}

static void srv_tls(pv_conn *c)
{
	tctx *t = pv_conn_owner(c);

	record_tls(&t->srv, c);
	if (t->release_tls) {
		pv_conn_tls_release(c);
		t->released = pv_conn_ssl(c) == NULL;
		snprintf(t->version_after, sizeof t->version_after, "%s", pv_conn_tls_version(c));
		assert_int_equal(pv_conn_tls_cb(c, "tls-exporter", t->srv.exporter, 64), PV_ENOENT);
	}
}

static void srv_close(pv_conn *c, const char *why)
{
	tctx *t = pv_conn_owner(c);

	t->srv.closes++;
	t->srv.why = why;
	finish_if_done(t);
}

static const pv_conn_cb srv_cb = {srv_data, srv_tls, srv_close};

static void on_accept(uv_stream_t *server, int status)
{
	tctx *t = server->data;
	SSL_CTX *direct = (t->mode == M_STARTTLS) ? NULL : t->sctx;

	assert_int_equal(status, 0);
	assert_null(t->srv.c);
	t->srv.c = pv_conn_accept(server, &srv_cb, t, direct);
	assert_non_null(t->srv.c);
	snprintf(t->srv.peer_ip, sizeof t->srv.peer_ip, "%s", pv_conn_peer_ip(t->srv.c));
	assert_ptr_equal(pv_conn_loop(t->srv.c), &t->loop);
	assert_int_equal(pv_conn_is_tls(t->srv.c), direct != NULL);
}

/* client side */

static void bulk_fill(char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (char)((i * 7 + i / 251) & 0xff);
}

static void on_written(void *ud, int status)
{
	tctx *t = ud;

	t->wcb_calls++;
	t->wcb_status = status;
	t->pending_at_cb = pv_conn_out_pending(t->cli.c);
}

static void on_empty_written(void *ud, int status)
{
	tctx *t = ud;

	assert_int_equal(status, 0);
	assert_int_equal(t->wcb_calls, 1); /* after the write queued before it */
	t->empty_cbs++;
}

static void on_cancelled(void *ud, int status)
{
	tctx *t = ud;

	assert_int_equal(status, UV_ECANCELED);
	/* runs before on_close */
	assert_int_equal(t->cli.closes, 0);
	t->cancelled_cbs++;
}

static void cli_send_bulk(tctx *t, pv_conn *c)
{
	char *p = pv_malloc(BULK_N);

	bulk_fill(p, BULK_N);
	pv_conn_write(c, p, BULK_N, on_written, t);
	pv_free(p); /* the conn copied it */
	/* Nothing is accepted by the kernel synchronously as far as the accounting
	 * goes: the callback (and the decrement) comes from the loop. */
	t->pending_after_write = pv_conn_out_pending(c);
}

static void cli_connected(pv_conn *c, int status)
{
	tctx *t = pv_conn_owner(c);

	t->cli.connect_status = status;
	assert_int_equal(status, 0);
	switch (t->mode) {
	case M_ECHO:
		pv_conn_write(c, PING, strlen(PING), on_written, t);
		/* an empty write still completes, in order */
		pv_conn_write(c, "", 0, on_empty_written, t);
		break;
	case M_BULK:
		cli_send_bulk(t, c);
		break;
	case M_STARTTLS:
		/* One write: the command and bytes a broken (or hostile) client sends
		 * before the server's answer. */
		pv_conn_write(c, "STARTTLS\n<junk that must be dropped/>", 38, NULL, NULL);
		break;
	case M_TLS_ECHO:
	case M_TLS_BULK:
		if (t->tls_at_connect)
			break;
		assert_int_equal(pv_conn_client_tls(c, t->cctx, t->sni), 0);
		assert_int_equal(pv_conn_client_tls(c, t->cctx, t->sni), PV_EINVAL);
		if (t->mode == M_TLS_ECHO) {
			/* written before the handshake: held, counted, sent afterwards */
			pv_conn_write(c, PING, strlen(PING), on_written, t);
			assert_int_equal(pv_conn_out_pending(c) >= strlen(PING), 1);
		} else {
			cli_send_bulk(t, c);
		}
		break;
	case M_CLOSE_LOCAL:
		pv_conn_close(c);
		assert_true(pv_conn_is_closing(c));
		pv_conn_close(c);
		pv_conn_write(c, "late", 4, on_cancelled, t);
		pv_conn_abort(c);
		pv_conn_close(c);
		break;
	}
}

static void cli_data(pv_conn *c, const char *data, size_t n)
{
	tctx *t = pv_conn_owner(c);

	t->cli.data_calls++;
	pv_buf_append(&t->cli.rx, data, n);
	switch (t->mode) {
	case M_STARTTLS:
		if (!pv_conn_is_tls(c)) {
			assert_int_equal(t->cli.rx.len, 8);
			assert_memory_equal(t->cli.rx.data, "PROCEED\n", 8);
			pv_buf_reset(&t->cli.rx);
			assert_int_equal(pv_conn_client_tls(c, t->cctx, t->sni), 0);
			pv_conn_write(c, PING, strlen(PING), NULL, NULL);
			break;
		}
		/* fall through */
	case M_ECHO:
	case M_TLS_ECHO:
		if (t->cli.rx.len >= (t->expect_len ? t->expect_len : strlen(PING))) {
			pv_conn_close(c);
		}
		break;
	default:
		break;
	}
}

static void cli_tls(pv_conn *c)
{
	tctx *t = pv_conn_owner(c);

	record_tls(&t->cli, c);
}

static void cli_close(pv_conn *c, const char *why)
{
	tctx *t = pv_conn_owner(c);

	t->cli.closes++;
	t->cli.why = why;
	finish_if_done(t);
}

static const pv_conn_cb cli_cb = {cli_data, cli_tls, cli_close};

static void tctx_init(tctx *t, enum mode mode, SSL_CTX *sctx, SSL_CTX *cctx)
{
	memset(t, 0, sizeof *t);
	t->mode = mode;
	t->sctx = sctx;
	t->cctx = cctx;
	t->sni = "localhost";
	pv_buf_init(&t->srv.rx);
	pv_buf_init(&t->cli.rx);
	assert_int_equal(uv_loop_init(&t->loop), 0);
}

/* Runs one conversation to the end; afterwards no handle may be left. */
static void tctx_run(tctx *t, const char *listen_ip)
{
	struct sockaddr_storage ss;
	int port;

	assert_int_equal(pv_listen_tcp(&t->loop, listen_ip, 0, on_accept, t, &t->lis), 0);
	assert_non_null(t->lis);
	port = pv_listen_port(t->lis);
	assert_true(port > 0);
	if (strchr(listen_ip, ':'))
		uv_ip6_addr("::1", port, (struct sockaddr_in6 *)&ss);
	else
		uv_ip4_addr("127.0.0.1", port, (struct sockaddr_in *)&ss);
	uv_timer_init(&t->loop, &t->guard);
	uv_timer_init(&t->loop, &t->resume);
	t->guard.data = t;
	t->resume.data = t;
	uv_timer_start(&t->guard, on_guard, GUARD_MS, 0);
	t->cli.c = pv_conn_connect(&t->loop, (struct sockaddr *)&ss, &cli_cb, t, cli_connected);
	assert_non_null(t->cli.c);
	if (t->tls_at_connect) {
		assert_int_equal(pv_conn_client_tls(t->cli.c, t->cctx, t->sni), 0);
		pv_conn_write(t->cli.c, PING, strlen(PING), on_written, t);
	}
	uv_run(&t->loop, UV_RUN_DEFAULT);
	assert_false(t->timed_out);
	assert_int_equal(uv_loop_close(&t->loop), 0);
}

static void tctx_fini(tctx *t)
{
	pv_buf_fini(&t->srv.rx);
	pv_buf_fini(&t->cli.rx);
}

/* ---- fixtures ---- */

static SSL_CTX *sni_lookup(void *ud, const char *name)
{
	g_sni_seen = name;
	return strcmp(name, "other.test") == 0 ? g_sctx2 : NULL;
}

static int group_setup(void **state)
{
	struct stat st;

	snprintf(g_dir, sizeof g_dir, "/tmp/pv_test_conn_XXXXXX");
	if (!mkdtemp(g_dir))
		return -1;
	/* nested, missing parent directory: make_selfsigned must create it */
	snprintf(g_cert, sizeof g_cert, "%s/certs/localhost.crt", g_dir);
	snprintf(g_key, sizeof g_key, "%s/certs/localhost.key", g_dir);
	snprintf(g_cert2, sizeof g_cert2, "%s/other.crt", g_dir);
	snprintf(g_key2, sizeof g_key2, "%s/other.key", g_dir);
	if (pv_tls_make_selfsigned("localhost", g_cert, g_key) != 0 ||
		pv_tls_make_selfsigned("other.test", g_cert2, g_key2) != 0)
		return -1;
	if (stat(g_key, &st) != 0 || (st.st_mode & 0777) != 0600)
		return -1;
	g_sctx = pv_tls_server_ctx(g_cert, g_key);
	g_sctx2 = pv_tls_server_ctx(g_cert2, g_key2);
	if (!g_sctx || !g_sctx2)
		return -1;
	pv_tls_set_sni(g_sctx, sni_lookup, NULL);
	return 0;
}

static int group_teardown(void **state)
{
	char p[160];

	SSL_CTX_free(g_sctx);
	SSL_CTX_free(g_sctx2);
	unlink(g_cert);
	unlink(g_key);
	unlink(g_cert2);
	unlink(g_key2);
	snprintf(p, sizeof p, "%s/certs", g_dir);
	rmdir(p);
	rmdir(g_dir);
	return 0;
}

/* ---- tests ---- */

static void test_plain_echo(void **state)
{
	tctx t;

	tctx_init(&t, M_ECHO, NULL, NULL);
	tctx_run(&t, "127.0.0.1");
	assert_int_equal(t.cli.connect_status, 0);
	assert_int_equal(t.srv.rx.len, strlen(PING));
	assert_memory_equal(t.srv.rx.data, PING, strlen(PING));
	assert_int_equal(t.cli.rx.len, strlen(PING));
	assert_memory_equal(t.cli.rx.data, PING, strlen(PING));
	assert_string_equal(t.srv.peer_ip, "127.0.0.1");
	assert_int_equal(t.wcb_calls, 1);
	assert_int_equal(t.wcb_status, 0);
	assert_int_equal(t.pending_at_cb, 0);
	assert_int_equal(t.empty_cbs, 1);
	/* exactly once each: the client's local close and the server's peer close */
	assert_int_equal(t.cli.closes, 1);
	assert_int_equal(t.srv.closes, 1);
	assert_string_equal(t.cli.why, "closed");
	assert_string_equal(t.srv.why, "peer closed");
	assert_int_equal(t.srv.tls + t.cli.tls, 0);
	tctx_fini(&t);
}

/* Three writes in one loop turn leave as one write(2) (plain) or one record run
 * (TLS): the client gets them in a single read; the three callbacks fire in order
 * once the kernel has the bytes, and the batch counts as pending output meanwhile. */
static void test_writes_batched_per_turn(void **state)
{
	for (int tls = 0; tls < 2; tls++) {
		SSL_CTX *cctx = tls ? pv_tls_client_ctx() : NULL;
		tctx t;

		tctx_init(&t, tls ? M_TLS_ECHO : M_ECHO, tls ? g_sctx : NULL, cctx);
		t.split = true;
		tctx_run(&t, "127.0.0.1");
		assert_int_equal(t.srv.rx.len, strlen(PING));
		assert_int_equal(t.cli.rx.len, strlen(PING));
		assert_memory_equal(t.cli.rx.data, PING, strlen(PING));
		assert_int_equal(t.cli.data_calls, 1);
		assert_int_equal(t.split_pending, strlen(PING));
		assert_int_equal(t.split_cbs, 3);
		assert_int_equal(t.split_status, 0);
		for (int i = 0; i < 3; i++)
			assert_int_equal(t.split_order[i], i);
		tctx_fini(&t);
		if (cctx)
			SSL_CTX_free(cctx);
	}
}

/* A write callback may write to its own conn and close it.  At the end of a turn
 * the socket usually takes a batch at once, so the callbacks fire inside the batch's
 * send: the new write must go out after the batch and before the close. */
static void test_write_callback_writes_and_closes(void **state)
{
	for (int tls = 0; tls < 2; tls++) {
		SSL_CTX *cctx = tls ? pv_tls_client_ctx() : NULL;
		tctx t;

		tctx_init(&t, tls ? M_TLS_ECHO : M_ECHO, tls ? g_sctx : NULL, cctx);
		t.split = true;
		t.cb_writes_and_closes = true;
		t.expect_len = strlen(PING) + 1;
		tctx_run(&t, "127.0.0.1");
		assert_false(t.timed_out);
		assert_int_equal(t.split_cbs, 3);
		assert_int_equal(t.split_status, 0);
		assert_int_equal(t.cli.rx.len, strlen(PING) + 1);
		assert_memory_equal(t.cli.rx.data, PING, strlen(PING));
		assert_int_equal(t.cli.rx.data[strlen(PING)], '+');
		assert_int_equal(t.plus_cbs, 1);
		assert_int_equal(t.plus_status, 0);
		assert_int_equal(t.srv.closes, 1);
		assert_int_equal(t.cli.closes, 1);
		tctx_fini(&t);
		if (cctx)
			SSL_CTX_free(cctx);
	}
}

/* Some containers run without IPv6 on loopback; that is not our failure. */
static bool have_ipv6_loopback(void)
{
	struct sockaddr_in6 sa;
	int fd = socket(AF_INET6, SOCK_STREAM, 0);
	bool ok;

	if (fd < 0)
		return false;
	uv_ip6_addr("::1", 0, &sa);
	ok = bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
	close(fd);
	return ok;
}

static void test_plain_echo_ipv6(void **state)
{
	tctx t;

	if (!have_ipv6_loopback()) {
		print_message("no IPv6 loopback here, skipping\n");
		skip();
	}
	tctx_init(&t, M_ECHO, NULL, NULL);
	tctx_run(&t, "[::1]");
	assert_string_equal(t.srv.peer_ip, "::1");
	assert_int_equal(t.cli.rx.len, strlen(PING));
	assert_int_equal(t.cli.closes, 1);
	assert_int_equal(t.srv.closes, 1);
	tctx_fini(&t);
}

static void check_bulk(tctx *t)
{
	char *want = pv_malloc(BULK_N);

	bulk_fill(want, BULK_N);
	assert_int_equal(t->srv.rx.len, BULK_N);
	assert_memory_equal(t->srv.rx.data, want, BULK_N);
	pv_free(want);
	assert_int_equal(t->wcb_calls, 1);
	assert_int_equal(t->wcb_status, 0);
	assert_int_equal(t->pending_at_cb, 0);
	assert_int_equal(t->srv.closes, 1);
	assert_int_equal(t->cli.closes, 1);
	assert_string_equal(t->srv.why, "closed");
}

static void test_plain_bulk(void **state)
{
	tctx t;

	tctx_init(&t, M_BULK, NULL, NULL);
	tctx_run(&t, "127.0.0.1");
	assert_int_equal(t.pending_after_write, BULK_N);
	check_bulk(&t);
	assert_string_equal(t.cli.why, "peer closed");
	tctx_fini(&t);
}

static void test_tls_bulk_pause(void **state)
{
	SSL_CTX *cctx = pv_tls_client_ctx();
	tctx t;

	tctx_init(&t, M_TLS_BULK, g_sctx, cctx);
	tctx_run(&t, "127.0.0.1");
	/* held until the handshake: the plaintext counts as pending, and so would the
	 * ClientHello if the socket had not taken it at once (send_bytes) */
	assert_true(t.pending_after_write >= BULK_N);
	assert_true(t.pending_after_write < BULK_N + 2048);
	check_bulk(&t);
	assert_true(t.srv.own_records); /* the pauses hold tlsrec's records, not OpenSSL's */
	assert_true(t.pauses > 1);
	/* at most one record per delivery here, since the server pauses every time */
	assert_true(t.srv.data_calls >= BULK_N / 16384);
	assert_string_equal(t.cli.why, "tls closed by peer");
	tctx_fini(&t);
	SSL_CTX_free(cctx);
}

/* After pv_conn_tls_release the records (tlsrec.c) go on alone: echo, a paused bulk
 * read, close_notify both ways. */
static void test_tls_after_release(void **state)
{
	(void)state;
	for (int bulk = 0; bulk < 2; bulk++) {
		SSL_CTX *cctx = pv_tls_client_ctx();
		tctx t;

		tctx_init(&t, bulk ? M_TLS_BULK : M_TLS_ECHO, g_sctx, cctx);
		t.release_tls = true;
		tctx_run(&t, "127.0.0.1");
		assert_true(t.srv.own_records);
		assert_true(t.released);
		assert_string_equal(t.version_after, "TLSv1.3");
		if (bulk) {
			check_bulk(&t);
			assert_true(t.pauses > 1);
			assert_string_equal(t.cli.why, "tls closed by peer");
		} else {
			assert_int_equal(t.cli.rx.len, strlen(PING));
			assert_memory_equal(t.cli.rx.data, PING, strlen(PING));
			assert_string_equal(t.cli.why, "closed");
			assert_string_equal(t.srv.why, "tls closed by peer");
		}
		tctx_fini(&t);
		SSL_CTX_free(cctx);
	}
}

static void test_local_close_once(void **state)
{
	tctx t;

	tctx_init(&t, M_CLOSE_LOCAL, NULL, NULL);
	tctx_run(&t, "127.0.0.1");
	assert_int_equal(t.cli.closes, 1);
	assert_int_equal(t.srv.closes, 1);
	assert_string_equal(t.cli.why, "closed");
	assert_string_equal(t.srv.why, "peer closed");
	assert_int_equal(t.cancelled_cbs, 1);
	assert_int_equal(t.srv.data_calls, 0);
	tctx_fini(&t);
}

static void refused_connected(pv_conn *c, int status)
{
	tctx *t = pv_conn_owner(c);

	/* on_close has not run yet: it follows this callback */
	assert_int_equal(t->cli.closes, 0);
	t->cli.connect_status = status;
}

static void test_connect_refused(void **state)
{
	tctx t;
	uv_tcp_t *l;
	struct sockaddr_in sa;
	int port;

	tctx_init(&t, M_ECHO, NULL, NULL);
	/* a port that was just free: listen, learn it, close */
	assert_int_equal(pv_listen_tcp(&t.loop, "127.0.0.1", 0, on_accept, &t, &l), 0);
	port = pv_listen_port(l);
	pv_listen_close(l);
	uv_run(&t.loop, UV_RUN_DEFAULT);
	uv_ip4_addr("127.0.0.1", port, &sa);
	t.cli.connect_status = 1;
	t.cli.c = pv_conn_connect(&t.loop, (struct sockaddr *)&sa, &cli_cb, &t, refused_connected);
	assert_non_null(t.cli.c);
	/* written while connecting: fails with the connection */
	pv_conn_write(t.cli.c, PING, strlen(PING), on_written, &t);
	uv_run(&t.loop, UV_RUN_DEFAULT);
	assert_int_equal(t.cli.connect_status, UV_ECONNREFUSED);
	assert_int_equal(t.wcb_calls, 1);
	assert_true(t.wcb_status < 0);
	assert_int_equal(t.cli.closes, 1);
	assert_string_equal(t.cli.why, "connect failed");
	assert_int_equal(uv_loop_close(&t.loop), 0);
	tctx_fini(&t);
}

static void test_listen_bad_address(void **state)
{
	static const char *const bad[] = {"not-an-ip", "300.1.1.1", "[::1", "", "::zz"};
	uv_loop_t loop;
	uv_tcp_t *l;

	assert_int_equal(uv_loop_init(&loop), 0);
	for (size_t i = 0; i < PV_ARRAY_LEN(bad); i++) {
		l = (uv_tcp_t *)&loop; /* must be reset to NULL */
		assert_int_equal(pv_listen_tcp(&loop, bad[i], 0, on_accept, NULL, &l), PV_EINVAL);
		assert_null(l);
	}
	assert_int_equal(pv_listen_tcp(&loop, "127.0.0.1", 70000, on_accept, NULL, &l),
		PV_EINVAL);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
}

/* A second listener on a port already in use fails (no silent sharing, listener.c). */
static void test_listen_reuseport(void **state)
{
	uv_loop_t loop;
	uv_tcp_t *a, *b;

	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(pv_listen_tcp(&loop, "127.0.0.1", 0, on_accept, NULL, &a), 0);
	assert_int_equal(pv_listen_tcp(&loop, "127.0.0.1", pv_listen_port(a), on_accept, NULL, &b), PV_EIO);
	assert_null(b);
	pv_listen_close(a);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
}

/* Handshake matrix: the server allows 1.2 and 1.3 only. */
typedef struct tls_case {
	const char *name;
	int client_max;    /* 0 = library default (1.3) */
	bool ok;
	const char *version;
	int exporter_len;  /* expected pv_conn_tls_cb result */
	int unique_len;
} tls_case;

static const tls_case tls_cases[] = {
	{"tls1.3", 0, true, "TLSv1.3", 32, PV_ENOENT},
	/* 12-byte verify_data for every TLS 1.2 suite we allow */
	{"tls1.2", TLS1_2_VERSION, true, "TLSv1.2", PV_ENOENT, 12},
	{"tls1.1", TLS1_1_VERSION, false, NULL, 0, 0},
	{"tls1.0", TLS1_VERSION, false, NULL, 0, 0},
};

static SSL_CTX *client_ctx_max(int max)
{
	SSL_CTX *c;

	if (max == 0 || max == TLS1_2_VERSION) {
		c = pv_tls_client_ctx();
		if (max)
			SSL_CTX_set_max_proto_version(c, max);
		return c;
	}
	/* An old client for real: OpenSSL 3 refuses < 1.2 unless at security level 0,
	 * so without this the client would fail locally and prove nothing about the
	 * server. */
	c = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_security_level(c, 0);
	SSL_CTX_set_min_proto_version(c, TLS1_VERSION);
	SSL_CTX_set_max_proto_version(c, max);
	SSL_CTX_set_cipher_list(c, "DEFAULT:@SECLEVEL=0");
	return c;
}

static void test_tls_versions(void **state)
{
	for (size_t i = 0; i < PV_ARRAY_LEN(tls_cases); i++) {
		const tls_case *tc = &tls_cases[i];
		SSL_CTX *cctx = client_ctx_max(tc->client_max);
		tctx t;

		print_message("case %s\n", tc->name);
		assert_non_null(cctx);
		tctx_init(&t, M_TLS_ECHO, g_sctx, cctx);
		tctx_run(&t, "127.0.0.1");
		assert_int_equal(t.srv.closes, 1);
		assert_int_equal(t.cli.closes, 1);
		if (!tc->ok) {
			assert_int_equal(t.srv.tls, 0);
			assert_int_equal(t.cli.tls, 0);
			assert_int_equal(t.srv.data_calls, 0);
			/* the server itself refused (not merely a client that gave up) */
			assert_string_equal(t.srv.why, "tls handshake failed");
			/* the queued write never went out */
			assert_int_equal(t.wcb_calls, 1);
			assert_int_equal(t.wcb_status, UV_ECANCELED);
		} else {
			assert_int_equal(t.srv.tls, 1);
			assert_int_equal(t.cli.tls, 1);
			assert_string_equal(t.srv.version, tc->version);
			assert_string_equal(t.cli.version, tc->version);
			/* tlsrec.c takes a server's TLS 1.3 records over; a client keeps OpenSSL's */
			assert_int_equal(t.srv.own_records, strcmp(tc->version, "TLSv1.3") == 0);
			assert_false(t.cli.own_records);
			assert_string_equal(t.srv.sni, "localhost");
			assert_int_equal(t.srv.exporter_len, tc->exporter_len);
			assert_int_equal(t.cli.exporter_len, tc->exporter_len);
			assert_int_equal(t.srv.unique_len, tc->unique_len);
			assert_int_equal(t.cli.unique_len, tc->unique_len);
			/* both ends derive the same binding */
			if (tc->exporter_len > 0)
				assert_memory_equal(t.srv.exporter, t.cli.exporter, 32);
			if (tc->unique_len > 0)
				assert_memory_equal(t.srv.unique, t.cli.unique, (size_t)tc->unique_len);
			assert_int_equal(t.cli.rx.len, strlen(PING));
			assert_memory_equal(t.cli.rx.data, PING, strlen(PING));
			assert_int_equal(t.wcb_calls, 1);
			assert_int_equal(t.wcb_status, 0);
			assert_string_equal(t.cli.why, "closed");
			assert_string_equal(t.srv.why, "tls closed by peer");
		}
		tctx_fini(&t);
		SSL_CTX_free(cctx);
	}
}

/* TLS 1.3 suite choice (src/net/tls.c): AES-128-GCM for a client with OpenSSL's
 * default order (AES-256 first), ChaCha20 for a client that lists it first. */
static void test_tls13_suite_choice(void **state)
{
	static const struct {
		const char *client_suites; /* NULL: the client library's default */
		const char *want;
	} cases[] = {
		{NULL, "TLS_AES_128_GCM_SHA256"},
		{"TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256", "TLS_AES_128_GCM_SHA256"},
		{"TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256", "TLS_CHACHA20_POLY1305_SHA256"},
		{"TLS_AES_256_GCM_SHA384", "TLS_AES_256_GCM_SHA384"},
	};
	(void)state;
	for (size_t i = 0; i < PV_ARRAY_LEN(cases); i++) {
		SSL_CTX *cctx = pv_tls_client_ctx();
		tctx t;

		if (cases[i].client_suites)
			assert_int_equal(SSL_CTX_set_ciphersuites(cctx, cases[i].client_suites), 1);
		tctx_init(&t, M_TLS_ECHO, g_sctx, cctx);
		tctx_run(&t, "127.0.0.1");
		assert_int_equal(t.srv.tls, 1);
		assert_string_equal(t.srv.version, "TLSv1.3");
		assert_string_equal(t.srv.cipher, cases[i].want);
		assert_string_equal(t.cli.cipher, cases[i].want);
		assert_true(t.srv.own_records);
		tctx_fini(&t);
		SSL_CTX_free(cctx);
	}
}

static void test_starttls(void **state)
{
	SSL_CTX *cctx = pv_tls_client_ctx();
	tctx t;

	tctx_init(&t, M_STARTTLS, g_sctx, cctx);
	tctx_run(&t, "127.0.0.1");
	assert_int_equal(t.dropped, 38 - 9);
	assert_int_equal(t.srv.tls, 1);
	assert_int_equal(t.cli.tls, 1);
	assert_string_equal(t.srv.version, "TLSv1.3");
	assert_true(t.srv.own_records);
	/* only the TLS-phase echo arrived at the server after the switch */
	assert_int_equal(t.srv.rx.len, strlen(PING));
	assert_memory_equal(t.srv.rx.data, PING, strlen(PING));
	assert_int_equal(t.cli.rx.len, strlen(PING));
	assert_memory_equal(t.cli.rx.data, PING, strlen(PING));
	assert_int_equal(t.srv.exporter_len, 32);
	assert_memory_equal(t.srv.exporter, t.cli.exporter, 32);
	assert_int_equal(t.srv.closes, 1);
	assert_int_equal(t.cli.closes, 1);
	tctx_fini(&t);
	SSL_CTX_free(cctx);
}

/* Two connections with the same certificate get different bindings. */
static void test_channel_binding_unique_per_conn(void **state)
{
	SSL_CTX *cctx = pv_tls_client_ctx();
	unsigned char first[32];
	tctx t;

	tctx_init(&t, M_TLS_ECHO, g_sctx, cctx);
	tctx_run(&t, "127.0.0.1");
	assert_int_equal(t.srv.exporter_len, 32);
	memcpy(first, t.srv.exporter, 32);
	tctx_fini(&t);
	tctx_init(&t, M_TLS_ECHO, g_sctx, cctx);
	tctx_run(&t, "127.0.0.1");
	assert_int_equal(t.srv.exporter_len, 32);
	assert_memory_not_equal(first, t.srv.exporter, 32);
	tctx_fini(&t);
	SSL_CTX_free(cctx);
}

/* Direct TLS started before the TCP connect completes (s2s on port 5270). */
static void test_tls_at_connect(void **state)
{
	SSL_CTX *cctx = pv_tls_client_ctx();
	tctx t;

	tctx_init(&t, M_TLS_ECHO, g_sctx, cctx);
	t.tls_at_connect = true;
	tctx_run(&t, "127.0.0.1");
	assert_int_equal(t.cli.connect_status, 0);
	assert_int_equal(t.srv.tls, 1);
	assert_int_equal(t.cli.tls, 1);
	assert_int_equal(t.cli.rx.len, strlen(PING));
	assert_memory_equal(t.cli.rx.data, PING, strlen(PING));
	assert_int_equal(t.wcb_calls, 1);
	assert_int_equal(t.wcb_status, 0);
	tctx_fini(&t);
	SSL_CTX_free(cctx);
}

static void test_sni_switch(void **state)
{
	SSL_CTX *cctx = pv_tls_client_ctx();
	tctx t;

	tctx_init(&t, M_TLS_ECHO, g_sctx, cctx);
	t.sni = "other.test";
	g_sni_seen = NULL;
	tctx_run(&t, "127.0.0.1");
	assert_non_null(g_sni_seen);
	assert_string_equal(t.srv.sni, "other.test");
	assert_int_equal(t.cli.tls, 1);
	/* the lookup's context (and so its certificate) was used */
	assert_string_equal(t.cli.peer_cn, "other.test");
	assert_int_equal(t.cli.rx.len, strlen(PING));
	tctx_fini(&t);

	/* an unknown name keeps the default certificate */
	tctx_init(&t, M_TLS_ECHO, g_sctx, cctx);
	t.sni = "unknown.test";
	tctx_run(&t, "127.0.0.1");
	assert_string_equal(t.cli.peer_cn, "localhost");
	/* the client checks chain and name: self-signed, so not verified */
	assert_int_equal(t.cli.tls, 1);
	tctx_fini(&t);
	SSL_CTX_free(cctx);
}

static void test_selfsigned_contents(void **state)
{
	FILE *f = fopen(g_cert, "r");
	X509 *x;
	GENERAL_NAMES *san;
	BASIC_CONSTRAINTS *bc;
	int found = 0;
	const ASN1_TIME *na;
	int days = 0, secs = 0;

	assert_non_null(f);
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	assert_non_null(x);
	assert_int_equal(X509_get_version(x), 2);
	san = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	assert_non_null(san);
	for (int i = 0; i < sk_GENERAL_NAME_num(san); i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(san, i);
		const char *s;

		assert_int_equal(g->type, GEN_DNS);
		s = (const char *)ASN1_STRING_get0_data(g->d.dNSName);
		if (strcmp(s, "localhost") == 0)
			found |= 1;
		if (strcmp(s, "*.localhost") == 0)
			found |= 2;
	}
	assert_int_equal(found, 3);
	GENERAL_NAMES_free(san);
	bc = X509_get_ext_d2i(x, NID_basic_constraints, NULL, NULL);
	assert_non_null(bc);
	assert_false(bc->ca);
	BASIC_CONSTRAINTS_free(bc);
	na = X509_get0_notAfter(x);
	assert_int_equal(ASN1_TIME_diff(&days, &secs, NULL, na), 1);
	assert_true(days >= 3649 && days <= 3650);
	assert_int_equal(EVP_PKEY_get_base_id(X509_get0_pubkey(x)), EVP_PKEY_EC);
	assert_int_equal(X509_check_host(x, "localhost", 0, 0, NULL), 1);
	X509_free(x);
	/* a server context refuses a key that does not match the certificate */
	assert_null(pv_tls_server_ctx(g_cert, g_key2));
	assert_null(pv_tls_server_ctx("/nonexistent/cert.pem", g_key));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_echo),
		cmocka_unit_test(test_writes_batched_per_turn),
		cmocka_unit_test(test_write_callback_writes_and_closes),
		cmocka_unit_test(test_plain_echo_ipv6),
		cmocka_unit_test(test_plain_bulk),
		cmocka_unit_test(test_local_close_once),
		cmocka_unit_test(test_connect_refused),
		cmocka_unit_test(test_listen_bad_address),
		cmocka_unit_test(test_listen_reuseport),
		cmocka_unit_test(test_selfsigned_contents),
		cmocka_unit_test(test_tls_versions),
		cmocka_unit_test(test_tls13_suite_choice),
		cmocka_unit_test(test_starttls),
		cmocka_unit_test(test_tls_bulk_pause),
		cmocka_unit_test(test_tls_after_release),
		cmocka_unit_test(test_channel_binding_unique_per_conn),
		cmocka_unit_test(test_tls_at_connect),
		cmocka_unit_test(test_sni_switch),
	};

	pv_log_set_level(PV_LOG_WARN);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
