/* tlsrec.h -- TLS 1.3 application-data records (RFC 8446 section 5) for a server
 * connection whose handshake OpenSSL did: what kernel TLS does, in user space.
 * Knows nothing of sockets or XMPP; conn.c feeds it bytes.  See tlsrec.c for why.
 *
 * Threading: a pv_tlsrec belongs to one connection, used on its loop's thread. */
#ifndef PV_NET_TLSREC_H
#define PV_NET_TLSREC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "peyvand/pv_util.h"

typedef struct pv_tlsrec pv_tlsrec;

/* TLS 1.3 content types and the alerts this layer sends (RFC 8446 sections 5.1, 6). */
enum {
	PV_TLSREC_ALERT = 21,
	PV_TLSREC_HANDSHAKE = 22,
	PV_TLSREC_APPDATA = 23,
};
enum {
	PV_TLSALERT_CLOSE_NOTIFY = 0,
	PV_TLSALERT_UNEXPECTED_MESSAGE = 10,
	PV_TLSALERT_BAD_RECORD_MAC = 20,
	PV_TLSALERT_RECORD_OVERFLOW = 22,
	PV_TLSALERT_ILLEGAL_PARAMETER = 47,
	PV_TLSALERT_DECODE_ERROR = 50,
	PV_TLSALERT_INTERNAL_ERROR = 80,
	PV_TLSALERT_USER_CANCELED = 90,
};

/* What pv_tlsrec_open found in the record it consumed. */
typedef enum pv_tlsrec_ev {
	PV_TLSREC_MORE,    /* no whole record yet: nothing consumed */
	PV_TLSREC_DATA,    /* application data (may be empty) at *pt */
	PV_TLSREC_NONE,    /* a record for this layer (KeyUpdate, user_canceled) */
	PV_TLSREC_CLOSED,  /* the peer's close_notify */
	PV_TLSREC_FAILED,  /* the peer sent a fatal alert, or its record was bad (our
			    * alert is then in `out`): close the connection */
} pv_tlsrec_ev;

/* Installs the callback that hands a server handshake's traffic secrets to the
 * connection's pv_tlsrec (SSL_CTX_set_keylog_callback; the ctx must have no other).
 * `slot` returns where the SSL's pv_tlsrec pointer lives, created on first use. */
void pv_tlsrec_ctx_init(SSL_CTX *ctx, pv_tlsrec **(*slot)(const SSL *ssl));

/* Takes over from OpenSSL right after SSL_do_handshake() returned 1 on a server:
 * `written`/`wlen` are the bytes OpenSSL wrote during that call (its session tickets,
 * the records already protected with the new write key).  0 when this layer now owns
 * the records; PV_EINVAL when the connection must stay with OpenSSL (TLS 1.2, a
 * client, an unknown suite, secrets missing, input buffered inside OpenSSL). */
int pv_tlsrec_start(pv_tlsrec *r, SSL *ssl, const void *written, size_t wlen);
bool pv_tlsrec_started(const pv_tlsrec *r);
/* A layer keyed from known secrets (hash length `len`) for suite 0x1301..0x1303, or NULL:
 * for tests, which play the client's side with it. */
pv_tlsrec *pv_tlsrec_new(uint16_t suite_id, const uint8_t *read_secret,
	const uint8_t *write_secret, size_t len, uint64_t write_seq);
void pv_tlsrec_free(pv_tlsrec *r);

/* Appends n bytes of application data to out as records of at most 16 KiB. */
void pv_tlsrec_seal(pv_tlsrec *r, pv_buf *out, const void *data, size_t n);
/* Appends one protected record of the given content type (alerts, KeyUpdate, tests). */
void pv_tlsrec_seal_record(pv_tlsrec *r, pv_buf *out, uint8_t type, const void *data, size_t n);
/* Appends an alert (close_notify is a warning, anything else fatal). */
void pv_tlsrec_alert(pv_tlsrec *r, pv_buf *out, uint8_t desc);

/* Opens the first record of in[0..len), decrypting in place.  *used is what it
 * consumed (0 with PV_TLSREC_MORE); for PV_TLSREC_DATA, *pt and *ptlen are the plaintext,
 * inside `in`.  What the record asks of us (a KeyUpdate answer, our fatal alert) is
 * appended to out. */
pv_tlsrec_ev pv_tlsrec_open(pv_tlsrec *r, uint8_t *in, size_t len, size_t *used, uint8_t **pt,
	size_t *ptlen, pv_buf *out);

/* The fatal alert the last PV_TLSREC_FAILED sent (0 if it was the peer's alert). */
uint8_t pv_tlsrec_last_alert(const pv_tlsrec *r);

/* Tests: the write key is renewed after this many records (default 2^24). */
void pv_tlsrec_set_rekey_after(pv_tlsrec *r, uint64_t records);

#endif
