/* s2s_auth.h -- authenticating peer servers: certificate identity (RFC 6125 as profiled
 * by RFC 6120 13.7.1.2 / RFC 7590), interconnect membership policy, and the Server
 * Dialback keys of XEP-0185/XEP-0220.  Pure computation over OpenSSL objects; no I/O.
 * Thread-safe. */
#ifndef PV_XMPP_S2S_AUTH_H
#define PV_XMPP_S2S_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

/* Does the certificate name `domain`?  Checks, in order: SRV-ID (id-on-dnsSRV
 * "_xmpp-server.domain"), XmppAddr (id-on-xmppAddr == domain), DNS-ID (SAN dNSName, with
 * a wildcard only as the whole left-most label), and the subject CN only when the
 * certificate has no SAN at all.  Domains compared case-insensitively in A-label form. */
bool pv_cert_names_domain(X509 *cert, const char *domain);

/* Verify the peer chain of an established TLS connection against `trust` (a store of CA
 * certificates; NULL = the system default store) and the name `domain`.  Returns true
 * when the chain is valid (time, signatures, purpose) and names the domain.  On false,
 * *why says why ("no certificate", "untrusted", "expired", "name mismatch", ...). */
bool pv_cert_verify_peer(SSL *ssl, X509_STORE *trust, const char *domain, const char **why);

/* SHA-256 fingerprint of the peer's leaf certificate as "sha256:AB:CD:..." (uppercase
 * hex, colon-separated); false if there is no certificate. */
bool pv_cert_fingerprint(SSL *ssl, char *out, size_t cap);
/* Fingerprint of a PEM file's first certificate, same format (for config and tests). */
bool pv_cert_file_fingerprint(const char *pem_file, char *out, size_t cap);

/* Load a PEM bundle of CA certificates into a new store; NULL on error (logged). */
X509_STORE *pv_trust_load(const char *ca_file);

/* Interconnect membership of one local host (config hosts.<d>.interconnect). */
typedef struct pv_member {
	char *domain;
	char *fingerprint;   /* "sha256:..." pin, or NULL */
	X509_STORE *ca;      /* member-specific CA, or NULL (use the host's/global trust) */
} pv_member;

typedef struct pv_membership {
	bool members_only;   /* mode: members */
	pv_member *members;
	size_t n;
} pv_membership;

/* Decision for a peer domain that authenticated with a certificate (cert_ok: chain and
 * name verified against the applicable trust) or with dialback (ssl may still carry a
 * certificate for pinning).  Returns true to accept; *why explains a refusal. */
bool pv_membership_allows(const pv_membership *m, const char *peer_domain, SSL *ssl,
	bool cert_ok, bool via_dialback, const char **why);
const pv_member *pv_membership_find(const pv_membership *m, const char *peer_domain);

/* XEP-0185 dialback key: hex(HMAC-SHA256(SHA256(secret), receiving + " " + originating +
 * " " + stream_id)).  out needs 65 bytes. */
void pv_dialback_key(const unsigned char *secret, size_t secret_len, const char *receiving,
	const char *originating, const char *stream_id, char out[65]);
bool pv_dialback_key_ok(const unsigned char *secret, size_t secret_len, const char *receiving,
	const char *originating, const char *stream_id, const char *key);

#endif
