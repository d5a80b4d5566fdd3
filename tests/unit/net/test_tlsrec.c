/* test_tlsrec.c -- src/net/tlsrec.c against a real OpenSSL client over memory BIOs.
 *
 * The server's handshake is OpenSSL's (pv_tls_server_ctx), then tlsrec takes the
 * records over, as conn.c does.  Covers: every TLS 1.3 suite both ways (large writes
 * split into records, the session ticket's sequence number), KeyUpdate from the client
 * (requested and not) and our own after the record limit, a record arriving a byte at a
 * time, close_notify both ways, and each bad record getting its RFC 8446 alert, which
 * the OpenSSL client then reports.  Bad records come from a second pv_tlsrec keyed with
 * the client's secrets (the client context's key log). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net/conn.h"
#include "net/tlsrec.h"
#include "peyvand/pv_log.h"
#include "peyvand/pv_util.h"

static char g_dir[64], g_cert[128], g_key[128];
static SSL_CTX *g_sctx, *g_cctx;

typedef struct pair {
	SSL *s, *c;
	BIO *s_in, *s_out, *c_in, *c_out;
	pv_tlsrec *rec;  /* the server's */
	pv_tlsrec *peer; /* the client's side, for records OpenSSL would never send */
	uint8_t csec[48], ssec[48];
	size_t seclen;
	pv_buf in, got, out; /* the tests' scratch: to the server, its data, its answers */
} pair;

static pair *g_cur;

static pv_tlsrec **slot(const SSL *ssl)
{
	return g_cur && ssl == g_cur->s ? &g_cur->rec : NULL;
}

/* The client's key log: the same secrets, seen from the other end. */
static void client_keylog(const SSL *ssl, const char *line)
{
	(void)ssl;
	uint8_t *dst = NULL;
	if (strncmp(line, "CLIENT_TRAFFIC_SECRET_0 ", 24) == 0)
		dst = g_cur->csec;
	else if (strncmp(line, "SERVER_TRAFFIC_SECRET_0 ", 24) == 0)
		dst = g_cur->ssec;
	if (!dst)
		return;
	const char *hex = strrchr(line, ' ') + 1;
	size_t n = strlen(hex) / 2;
	for (size_t i = 0; i < n; i++) {
		unsigned v;
		sscanf(hex + 2 * i, "%2x", &v);
		dst[i] = (uint8_t)v;
	}
	g_cur->seclen = n;
}

static void move(BIO *from, BIO *to)
{
	char buf[4096];
	int n;
	while ((n = BIO_read(from, buf, sizeof buf)) > 0)
		assert_int_equal(BIO_write(to, buf, n), n);
}

static void drain(BIO *from, pv_buf *out)
{
	char buf[4096];
	int n;
	while ((n = BIO_read(from, buf, sizeof buf)) > 0)
		pv_buf_append(out, buf, (size_t)n);
}

static void pair_open(pair *p, const char *suite)
{
	memset(p, 0, sizeof(*p));
	g_cur = p;
	assert_int_equal(SSL_CTX_set_ciphersuites(g_cctx, suite), 1);
	p->s = SSL_new(g_sctx);
	p->c = SSL_new(g_cctx);
	p->s_in = BIO_new(BIO_s_mem());
	p->s_out = BIO_new(BIO_s_mem());
	p->c_in = BIO_new(BIO_s_mem());
	p->c_out = BIO_new(BIO_s_mem());
	SSL_set_bio(p->s, p->s_in, p->s_out);
	SSL_set_bio(p->c, p->c_in, p->c_out);
	SSL_set_accept_state(p->s);
	SSL_set_connect_state(p->c);
	for (int i = 0; i < 10; i++) {
		SSL_do_handshake(p->c);
		move(p->c_out, p->s_in);
		if (SSL_do_handshake(p->s) == 1) {
			/* What the finishing call wrote: the ticket, under the new key. */
			pv_buf w;
			pv_buf_init(&w);
			drain(p->s_out, &w);
			assert_true(w.len > 0);
			assert_int_equal(pv_tlsrec_start(p->rec, p->s, w.data, w.len), 0);
			assert_true(pv_tlsrec_started(p->rec));
			assert_int_equal(BIO_write(p->c_in, w.data, (int)w.len), (int)w.len);
			pv_buf_fini(&w);
			break;
		}
		move(p->s_out, p->c_in);
	}
	assert_true(pv_tlsrec_started(p->rec));
	assert_int_equal(SSL_is_init_finished(p->c), 1);
	/* The client has sent no application record yet: its write sequence is 0. */
	p->peer = pv_tlsrec_new(SSL_CIPHER_get_protocol_id(SSL_get_current_cipher(p->c)), p->ssec,
		p->csec, p->seclen, 0);
	assert_non_null(p->peer);
	pv_buf_init(&p->in);
	pv_buf_init(&p->got);
	pv_buf_init(&p->out);
}

static void pair_close(pair *p)
{
	SSL_free(p->s);
	SSL_free(p->c);
	pv_tlsrec_free(p->rec);
	pv_tlsrec_free(p->peer);
	pv_buf_fini(&p->in);
	pv_buf_fini(&p->got);
	pv_buf_fini(&p->out);
	g_cur = NULL;
}

/* Opens every whole record of in; application data is appended to got.  Returns the
 * last event; out gets what the server answers. */
static pv_tlsrec_ev server_open(pair *p, pv_buf *in, pv_buf *got, pv_buf *out, int *nrec)
{
	size_t off = 0;
	pv_tlsrec_ev ev = PV_TLSREC_MORE;
	int k = 0;
	while (off < in->len) {
		size_t used, ptlen;
		uint8_t *pt;
		ev = pv_tlsrec_open(p->rec, (uint8_t *)in->data + off, in->len - off, &used, &pt, &ptlen,
			out);
		if (ev == PV_TLSREC_MORE)
			break;
		k++;
		off += used;
		if (ev == PV_TLSREC_DATA)
			pv_buf_append(got, pt, ptlen);
		else if (ev != PV_TLSREC_NONE)
			break;
	}
	pv_buf_consume(in, off);
	if (nrec)
		*nrec = k;
	return ev;
}

/* Client writes msg; the server must read it back exactly. */
static void client_to_server(pair *p, const char *msg, size_t n)
{
	pv_buf in, got, out;
	pv_buf_init(&in);
	pv_buf_init(&got);
	pv_buf_init(&out);
	assert_int_equal(SSL_write(p->c, msg, (int)n), (int)n);
	drain(p->c_out, &in);
	assert_int_equal(server_open(p, &in, &got, &out, NULL), PV_TLSREC_DATA);
	assert_int_equal(in.len, 0);
	assert_int_equal(got.len, n);
	assert_memory_equal(got.data, msg, n);
	assert_int_equal(out.len, 0);
	pv_buf_fini(&in);
	pv_buf_fini(&got);
	pv_buf_fini(&out);
}

/* Server seals msg; the client must read it back exactly. */
static void server_to_client(pair *p, const char *msg, size_t n)
{
	pv_buf out;
	char buf[16384];
	size_t got = 0;
	pv_buf_init(&out);
	pv_tlsrec_seal(p->rec, &out, msg, n);
	assert_int_equal(BIO_write(p->c_in, out.data, (int)out.len), (int)out.len);
	while (got < n) {
		int r = SSL_read(p->c, buf, sizeof buf);
		assert_true(r > 0);
		assert_memory_equal(buf, msg + got, (size_t)r);
		got += (size_t)r;
	}
	assert_int_equal(got, n);
	pv_buf_fini(&out);
}

static char *pattern(size_t n)
{
	char *m = pv_malloc(n);
	for (size_t i = 0; i < n; i++)
		m[i] = (char)('a' + i % 26);
	return m;
}

static void test_every_suite_both_ways(void **state)
{
	(void)state;
	const char *suites[] = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
		"TLS_CHACHA20_POLY1305_SHA256"};
	char *big = pattern(40000); /* three records */
	for (size_t i = 0; i < PV_ARRAY_LEN(suites); i++) {
		pair p;
		pair_open(&p, suites[i]);
		assert_string_equal(SSL_CIPHER_get_name(SSL_get_current_cipher(p.s)), suites[i]);
		/* The client reads the ticket first: the server's sequence must count it. */
		server_to_client(&p, "<stream:stream>", 15);
		client_to_server(&p, "<message/>", 10);
		client_to_server(&p, big, 40000);
		server_to_client(&p, big, 40000);
		server_to_client(&p, "x", 1);
		pair_close(&p);
	}
	pv_free(big);
}

static void test_key_update_from_client(void **state)
{
	(void)state;
	pair p;
	pair_open(&p, "TLS_AES_128_GCM_SHA256");
	server_to_client(&p, "hello", 5);

	/* update_requested: we answer with our own KeyUpdate before our next data. */
	assert_int_equal(SSL_key_update(p.c, SSL_KEY_UPDATE_REQUESTED), 1);
	assert_int_equal(SSL_write(p.c, "after", 5), 5);
	drain(p.c_out, &p.in);
	int nrec;
	assert_int_equal(server_open(&p, &p.in, &p.got, &p.out, &nrec), PV_TLSREC_DATA);
	assert_int_equal(nrec, 2);
	assert_int_equal(p.got.len, 5);
	assert_memory_equal(p.got.data, "after", 5);
	assert_true(p.out.len > 0); /* our KeyUpdate */
	assert_int_equal(BIO_write(p.c_in, p.out.data, (int)p.out.len), (int)p.out.len);
	pv_buf_reset(&p.out);
	server_to_client(&p, "reply under the new key", 23);
	client_to_server(&p, "and the client's new key", 24);

	/* update_not_requested: only the read key moves, nothing is sent. */
	pv_buf_reset(&p.got);
	assert_int_equal(SSL_key_update(p.c, SSL_KEY_UPDATE_NOT_REQUESTED), 1);
	assert_int_equal(SSL_write(p.c, "again", 5), 5);
	drain(p.c_out, &p.in);
	assert_int_equal(server_open(&p, &p.in, &p.got, &p.out, &nrec), PV_TLSREC_DATA);
	assert_int_equal(nrec, 2);
	assert_int_equal(p.out.len, 0);
	server_to_client(&p, "still fine", 10);
	pair_close(&p);
}

static void test_our_key_update_after_the_limit(void **state)
{
	(void)state;
	pair p;
	pair_open(&p, "TLS_AES_256_GCM_SHA384");
	pv_tlsrec_set_rekey_after(p.rec, 3); /* the ticket was record 0 */
	char *big = pattern(16384 * 6 + 5);  /* seven records: two key updates */
	server_to_client(&p, big, 16384 * 6 + 5);
	server_to_client(&p, "tail", 4);
	client_to_server(&p, "ok", 2); /* our read key did not move */
	pv_free(big);
	pair_close(&p);
}

static void test_record_a_byte_at_a_time(void **state)
{
	(void)state;
	pair p;
	pair_open(&p, "TLS_CHACHA20_POLY1305_SHA256");
	assert_int_equal(SSL_write(p.c, "<presence/>", 11), 11);
	drain(p.c_out, &p.in);
	for (size_t k = 0; k < p.in.len; k++) {
		size_t used, ptlen;
		uint8_t *pt;
		pv_tlsrec_ev ev = pv_tlsrec_open(p.rec, (uint8_t *)p.in.data, k, &used, &pt, &ptlen, &p.out);
		assert_int_equal(ev, PV_TLSREC_MORE);
		assert_int_equal(used, 0);
	}
	size_t used, ptlen;
	uint8_t *pt;
	assert_int_equal(pv_tlsrec_open(p.rec, (uint8_t *)p.in.data, p.in.len, &used, &pt, &ptlen, &p.out),
		PV_TLSREC_DATA);
	assert_int_equal(used, p.in.len);
	assert_int_equal(ptlen, 11);
	assert_memory_equal(pt, "<presence/>", 11);
	assert_int_equal(p.out.len, 0);
	pair_close(&p);
}

static void test_close_notify_both_ways(void **state)
{
	(void)state;
	pair p;
	pair_open(&p, "TLS_AES_128_GCM_SHA256");
	server_to_client(&p, "hi", 2);
	SSL_shutdown(p.c);
	drain(p.c_out, &p.in);
	assert_int_equal(server_open(&p, &p.in, &p.got, &p.out, NULL), PV_TLSREC_CLOSED);
	assert_int_equal(p.out.len, 0);
	pv_tlsrec_alert(p.rec, &p.out, PV_TLSALERT_CLOSE_NOTIFY);
	assert_int_equal(BIO_write(p.c_in, p.out.data, (int)p.out.len), (int)p.out.len);
	char buf[64];
	int r = SSL_read(p.c, buf, sizeof buf);
	assert_int_equal(r, 0);
	assert_int_equal(SSL_get_error(p.c, r), SSL_ERROR_ZERO_RETURN);
	pair_close(&p);
}

/* The server refuses in, and the OpenSSL client reads the alert `desc` from it. */
static void expect_alert(pair *p, pv_buf *in, uint8_t desc)
{
	pv_buf got, out;
	pv_buf_init(&got);
	pv_buf_init(&out);
	assert_int_equal(server_open(p, in, &got, &out, NULL), PV_TLSREC_FAILED);
	assert_int_equal(pv_tlsrec_last_alert(p->rec), desc);
	assert_int_equal(got.len, 0);
	assert_true(out.len > 0);
	assert_int_equal(BIO_write(p->c_in, out.data, (int)out.len), (int)out.len);
	char buf[64];
	ERR_clear_error();
	int r = SSL_read(p->c, buf, sizeof buf);
	assert_true(r <= 0);
	assert_int_equal(SSL_get_error(p->c, r), SSL_ERROR_SSL);
	/* OpenSSL reports a received alert as SSL_AD_REASON_OFFSET + its number. */
	assert_int_equal(ERR_GET_REASON(ERR_peek_last_error()), SSL_AD_REASON_OFFSET + desc);
	ERR_clear_error();
	pv_buf_fini(&got);
	pv_buf_fini(&out);
}

/* A record the client never would send, sealed with its keys. */
static void bad_record(uint8_t type, const void *body, size_t n, uint8_t desc)
{
	pair p;
	pv_buf in;
	pv_buf_init(&in);
	pair_open(&p, "TLS_AES_128_GCM_SHA256");
	server_to_client(&p, "hi", 2);
	pv_tlsrec_seal_record(p.peer, &in, type, body, n);
	expect_alert(&p, &in, desc);
	pair_close(&p);
	pv_buf_fini(&in);
}

static void test_bad_records_get_their_alerts(void **state)
{
	(void)state;
	const uint8_t ku_bad_value[] = {24, 0, 0, 1, 2};
	const uint8_t ku_trailing[] = {24, 0, 0, 1, 0, 24};
	const uint8_t ku_long[] = {24, 0, 0, 2, 0, 0};
	const uint8_t ku_split[] = {24, 0, 0};
	const uint8_t ticket[] = {4, 0, 0, 1, 0};
	const uint8_t alert_long[] = {1, 0, 0};
	const uint8_t ccs[] = {1};

	bad_record(PV_TLSREC_HANDSHAKE, ku_bad_value, sizeof ku_bad_value,
		PV_TLSALERT_ILLEGAL_PARAMETER);
	bad_record(PV_TLSREC_HANDSHAKE, ku_trailing, sizeof ku_trailing,
		PV_TLSALERT_UNEXPECTED_MESSAGE);
	bad_record(PV_TLSREC_HANDSHAKE, ku_long, sizeof ku_long, PV_TLSALERT_DECODE_ERROR);
	bad_record(PV_TLSREC_HANDSHAKE, ku_split, sizeof ku_split, PV_TLSALERT_UNEXPECTED_MESSAGE);
	bad_record(PV_TLSREC_HANDSHAKE, ticket, sizeof ticket, PV_TLSALERT_UNEXPECTED_MESSAGE);
	bad_record(PV_TLSREC_ALERT, alert_long, sizeof alert_long, PV_TLSALERT_DECODE_ERROR);
	bad_record(20, ccs, sizeof ccs, PV_TLSALERT_UNEXPECTED_MESSAGE); /* protected CCS */
	bad_record(99, "x", 1, PV_TLSALERT_UNEXPECTED_MESSAGE);
	bad_record(0, "", 0, PV_TLSALERT_UNEXPECTED_MESSAGE); /* all padding, no type */

	/* A tampered record, an unprotected one, and one longer than the limit. */
	pair p;
	pv_buf in;
	pv_buf_init(&in);
	pair_open(&p, "TLS_AES_128_GCM_SHA256");
	assert_int_equal(SSL_write(p.c, "tampered", 8), 8);
	drain(p.c_out, &in);
	in.data[8] ^= 1;
	expect_alert(&p, &in, PV_TLSALERT_BAD_RECORD_MAC);
	pair_close(&p);

	const uint8_t plain_alert[] = {21, 3, 3, 0, 2, 2, 40};
	pv_buf_reset(&in);
	pair_open(&p, "TLS_AES_128_GCM_SHA256");
	pv_buf_append(&in, plain_alert, sizeof plain_alert);
	expect_alert(&p, &in, PV_TLSALERT_UNEXPECTED_MESSAGE);
	pair_close(&p);

	const uint8_t huge[] = {23, 3, 3, 0x41, 0x01};
	pv_buf_reset(&in);
	pair_open(&p, "TLS_AES_128_GCM_SHA256");
	pv_buf_append(&in, huge, sizeof huge);
	expect_alert(&p, &in, PV_TLSALERT_RECORD_OVERFLOW);
	pair_close(&p);
	pv_buf_fini(&in);
}

static void test_peer_alerts(void **state)
{
	(void)state;
	pair p;
	pair_open(&p, "TLS_AES_128_GCM_SHA256");
	const uint8_t canceled[] = {1, PV_TLSALERT_USER_CANCELED};
	const uint8_t fatal[] = {2, 40};
	pv_tlsrec_seal_record(p.peer, &p.in, PV_TLSREC_ALERT, canceled, 2);
	pv_tlsrec_seal_record(p.peer, &p.in, PV_TLSREC_APPDATA, "x", 1);
	assert_int_equal(server_open(&p, &p.in, &p.got, &p.out, NULL), PV_TLSREC_DATA);
	assert_int_equal(p.got.len, 1);
	/* A fatal alert from the peer ends it; we answer nothing. */
	pv_tlsrec_seal_record(p.peer, &p.in, PV_TLSREC_ALERT, fatal, 2);
	assert_int_equal(server_open(&p, &p.in, &p.got, &p.out, NULL), PV_TLSREC_FAILED);
	assert_int_equal(p.out.len, 0);
	assert_int_equal(pv_tlsrec_last_alert(p.rec), 0);
	pair_close(&p);
}

static void test_stays_with_openssl_on_tls12(void **state)
{
	(void)state;
	pair p;
	memset(&p, 0, sizeof p);
	g_cur = &p;
	SSL_CTX *c12 = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_max_proto_version(c12, TLS1_2_VERSION);
	p.s = SSL_new(g_sctx);
	p.c = SSL_new(c12);
	p.s_in = BIO_new(BIO_s_mem());
	p.s_out = BIO_new(BIO_s_mem());
	p.c_in = BIO_new(BIO_s_mem());
	p.c_out = BIO_new(BIO_s_mem());
	SSL_set_bio(p.s, p.s_in, p.s_out);
	SSL_set_bio(p.c, p.c_in, p.c_out);
	SSL_set_accept_state(p.s);
	SSL_set_connect_state(p.c);
	int done = 0;
	for (int i = 0; i < 10 && !done; i++) {
		SSL_do_handshake(p.c);
		move(p.c_out, p.s_in);
		done = SSL_do_handshake(p.s) == 1;
		move(p.s_out, p.c_in);
	}
	assert_true(done);
	assert_null(p.rec); /* no TLS 1.3 secrets were logged */
	assert_int_equal(pv_tlsrec_start(p.rec, p.s, "", 0), PV_EINVAL);
	SSL_free(p.s);
	SSL_free(p.c);
	SSL_CTX_free(c12);
	g_cur = NULL;
}

static int group_setup(void **state)
{
	(void)state;
	snprintf(g_dir, sizeof g_dir, "/tmp/pv_test_tlsrec_XXXXXX");
	if (!mkdtemp(g_dir))
		return -1;
	snprintf(g_cert, sizeof g_cert, "%s/localhost.crt", g_dir);
	snprintf(g_key, sizeof g_key, "%s/localhost.key", g_dir);
	if (pv_tls_make_selfsigned("localhost", g_cert, g_key) != 0)
		return -1;
	g_sctx = pv_tls_server_ctx(g_cert, g_key);
	if (!g_sctx)
		return -1;
	pv_tlsrec_ctx_init(g_sctx, slot); /* this test's SSLs keep theirs in the pair */
	g_cctx = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_min_proto_version(g_cctx, TLS1_3_VERSION);
	SSL_CTX_set_keylog_callback(g_cctx, client_keylog);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	SSL_CTX_free(g_sctx);
	SSL_CTX_free(g_cctx);
	unlink(g_cert);
	unlink(g_key);
	rmdir(g_dir);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_suite_both_ways),
		cmocka_unit_test(test_key_update_from_client),
		cmocka_unit_test(test_our_key_update_after_the_limit),
		cmocka_unit_test(test_record_a_byte_at_a_time),
		cmocka_unit_test(test_close_notify_both_ways),
		cmocka_unit_test(test_bad_records_get_their_alerts),
		cmocka_unit_test(test_peer_alerts),
		cmocka_unit_test(test_stays_with_openssl_on_tls12),
	};
	pv_log_set_level(PV_LOG_WARN);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
