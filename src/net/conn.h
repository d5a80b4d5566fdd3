/* conn.h -- a byte stream connection (TCP, optionally TLS via OpenSSL memory BIOs)
 * driven by a libuv loop.  Knows nothing of XMPP.
 *
 * Threading: a conn belongs to the loop it was accepted on; every call and every
 * callback happens on that loop's thread.
 * Lifetime: the owner calls pv_conn_close(); the conn flushes what it can, closes the
 * socket, calls on_close exactly once, and frees itself after on_close returns.  A conn
 * is never freed inside one of its own callbacks.  on_close is also called when the
 * peer closes or an error occurs.
 * TLS: SSL_MODE_RELEASE_BUFFERS is set so idle connections hold no record buffers.  On a
 * server's TLS 1.3 connection tlsrec.c does the records once the handshake is done.
 * Output: writes are queued; pv_conn_out_pending() tells the queued byte count so the
 * owner can enforce an output bound (slow reader).  Writes made during one turn of
 * the loop leave together at its end (one TLS record run, one write(2) per conn);
 * pv_conn_close, pv_conn_starttls and pv_conn_client_tls send them first. */
#ifndef PV_NET_CONN_H
#define PV_NET_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <uv.h>

typedef struct pv_conn pv_conn;

typedef struct pv_conn_cb {
	/* Plaintext bytes received (after TLS decryption); `data` is valid only during
	 * the call (a shared read buffer), so copy what you keep.  The owner may call
	 * pv_conn_starttls() from here; bytes of the same read after that point must be
	 * discarded by the owner (the conn hands over only what it already decrypted). */
	void (*on_data)(pv_conn *c, const char *data, size_t n);
	/* TLS handshake finished (STARTTLS or direct TLS). */
	void (*on_tls)(pv_conn *c);
	/* The connection is gone.  `why` is a short static string for logs: "closed"
	 * (pv_conn_close), "aborted", "peer closed" (FIN), "tls closed by peer"
	 * (close_notify), "tls handshake failed", "tls error", "read error",
	 * "write error", "connect failed".  Write callbacks still pending have been told
	 * UV_ECANCELED just before this; the conn is freed when this returns. */
	void (*on_close)(pv_conn *c, const char *why);
} pv_conn_cb;

/* Callback when a write has been accepted by the kernel (not "delivered"). */
typedef void (*pv_conn_write_fn)(void *ud, int status);

/* Accept a connection from a listening stream; NULL on failure.  With tls_ctx non-NULL
 * the TLS handshake starts at once (direct TLS, XEP-0368). */
pv_conn *pv_conn_accept(uv_stream_t *server, const pv_conn_cb *cb, void *owner, SSL_CTX *tls_ctx);
/* Outbound connection (used by s2s and tests): connect to addr; on_tls/on_data as above;
 * `connected` is called with 0 or a libuv error; after an error on_close follows.  NULL
 * if the connect could not even start (nothing is called then).  Writes made while
 * connecting are sent once connected. */
pv_conn *pv_conn_connect(uv_loop_t *loop, const struct sockaddr *addr, const pv_conn_cb *cb,
	void *owner, void (*connected)(pv_conn *c, int status));

void *pv_conn_owner(pv_conn *c);
void pv_conn_set_owner(pv_conn *c, void *owner);
uv_loop_t *pv_conn_loop(pv_conn *c);

/* Queue bytes for sending (copied).  cb (may be NULL) runs once they reach the kernel. */
void pv_conn_write(pv_conn *c, const void *data, size_t n, pv_conn_write_fn cb, void *ud);
/* Bytes not yet accepted by the kernel: plaintext held until the TLS handshake is
 * done, plus bytes (ciphertext with TLS) of writes still in flight. */
/* An idle connection gives back the buffers its TLS memory BIOs kept. */
void pv_conn_trim(pv_conn *c);
size_t pv_conn_out_pending(const pv_conn *c);

/* Begin server-side TLS on an established plaintext connection (STARTTLS).  Write
 * <proceed/> BEFORE calling this: writes made after it are held until the handshake
 * is done.  Every byte read after this call goes to TLS. 0 or PV_EINVAL/PV_EIO. */
int pv_conn_starttls(pv_conn *c, SSL_CTX *ctx);
/* Begin client-side TLS (outbound STARTTLS after <proceed/>, or direct TLS right
 * after pv_conn_connect).  sni (may be NULL) is sent as server_name and set as the
 * expected host name, so SSL_get_verify_result() covers chain and name; the owner
 * decides what to do with that result.  0 or PV_EINVAL/PV_EIO. */
int pv_conn_client_tls(pv_conn *c, SSL_CTX *ctx, const char *sni);
/* The TLS object (peer certificate, verify result), or NULL; borrowed. */
SSL *pv_conn_ssl(const pv_conn *c);
bool pv_conn_is_tls(const pv_conn *c);
bool pv_conn_tls_done(const pv_conn *c);
/* True once tlsrec.c, not OpenSSL, does the conn's records (TLS 1.3, server side). */
bool pv_conn_tls_own_records(const pv_conn *c);
/* The owner needs nothing more of the TLS object (peer certificate, channel bindings,
 * SNI): a conn whose records tlsrec.c does frees it, most of an idle session's memory.
 * pv_conn_ssl and pv_conn_tls_sni return NULL afterwards, pv_conn_tls_cb PV_ENOENT;
 * pv_conn_tls_version still answers.  Harmless on any other conn. */
void pv_conn_tls_release(pv_conn *c);
const char *pv_conn_tls_version(const pv_conn *c);  /* "TLSv1.3" or NULL */
const char *pv_conn_tls_sni(const pv_conn *c);      /* server name the client asked for */
/* Channel binding data for SCRAM-*-PLUS: type "tls-exporter" (RFC 9266, TLS 1.3) or
 * "tls-unique" (RFC 5929, TLS <= 1.2).  Returns the length written (32 for
 * tls-exporter), PV_ENOENT if the type is unavailable on this connection (wrong TLS
 * version, handshake not done) or PV_EINVAL if cap is too small. */
int pv_conn_tls_cb(const pv_conn *c, const char *type, unsigned char *out, size_t cap);

/* Stop / restart on_data (backpressure).  Pausing inside on_data takes effect at
 * once; TLS records already received are delivered after resume, from the loop. */
void pv_conn_read_pause(pv_conn *c);
void pv_conn_read_resume(pv_conn *c);

/* Flush queued output (TLS: after close_notify), send FIN, wait briefly for the peer's
 * FIN, then close.  Gives up and aborts after 10 s (a peer that does not read).  Writes
 * after this fail with UV_ECANCELED (their callbacks run just before on_close).
 * Idempotent; on_close runs later from the loop, never inside this call. */
void pv_conn_close(pv_conn *c);
/* The loop is being torn down (before closing all its handles with uv_walk): the
 * handles that batch output are closed with their own callbacks, so their memory is
 * freed once the last conn of the loop is gone.  Writes after this go out unbatched. */
void pv_conn_loop_closing(uv_loop_t *loop);
/* Close now, dropping queued output. */
void pv_conn_abort(pv_conn *c);
bool pv_conn_is_closing(const pv_conn *c);

/* Peer address as text ("127.0.0.1", "::1"); valid for the conn's lifetime. */
const char *pv_conn_peer_ip(const pv_conn *c);

/* Listening sockets. on_conn is libuv's connection callback (call pv_conn_accept in it).
 * ip is an IPv4 or IPv6 literal ("::" is dual-stack); port 0 picks a free port.  The
 * socket has SO_REUSEPORT, so each worker loop can listen on the same address.  *out
 * (its ->data is `data`) is freed by pv_listen_close.  0 or PV_EINVAL/PV_EIO. */
int pv_listen_tcp(uv_loop_t *loop, const char *ip, int port, uv_connection_cb on_conn,
	void *data, uv_tcp_t **out);
/* Stop listening and free the handle (asynchronously, from the loop). */
void pv_listen_close(uv_tcp_t *l);
/* Bound port of a listener (useful after port 0), or <0. */
int pv_listen_port(const uv_tcp_t *l);

/* ---- TLS contexts ---- */
/* Server context: TLS 1.2+, modern AEAD ciphers only, no compression, no renegotiation,
 * SSL_MODE_RELEASE_BUFFERS.  Loads cert chain + key (PEM).  NULL on error (logged). */
SSL_CTX *pv_tls_server_ctx(const char *cert_file, const char *key_file);
/* Lets conns of a server context do their TLS 1.3 records themselves (tlsrec.c) once
 * the handshake is done; pv_tls_server_ctx calls it. */
void pv_conn_tls_ctx_init(SSL_CTX *ctx);
/* Client context (s2s): same protocol policy; verifies against the system CA store
 * but does not abort the handshake on failure: the caller checks
 * SSL_get_verify_result(pv_conn_ssl(c)) and applies its own policy. */
SSL_CTX *pv_tls_client_ctx(void);
/* SNI: pick the context whose host matches the requested name.  `lookup` returns the
 * SSL_CTX for a server name (or NULL to keep the default). */
void pv_tls_set_sni(SSL_CTX *ctx, SSL_CTX *(*lookup)(void *ud, const char *name), void *ud);
/* Create a self-signed certificate (EC P-256, SAN dNSName=host and *.host, 10 years)
 * and key at the given paths (mode 0600 for the key; missing parent directories are
 * created).  0, PV_EINVAL or PV_EIO (logged). */
int pv_tls_make_selfsigned(const char *host, const char *cert_file, const char *key_file);

#endif
