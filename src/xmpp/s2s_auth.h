/* s2s_auth.h -- authenticating peer servers: certificate identity (RFC 6125 as profiled
 * by RFC 6120 13.7.1.2 / RFC 7590), interconnect membership policy, and the Server
 * Dialback keys of XEP-0185/XEP-0220.  Computation over OpenSSL objects; no network
 * I/O (the loaders read files: call them at start or reload).  Thread-safe. */
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

/* The same checks for a certificate that did not come over TLS (issue 6: the origin
 * proofs of relayed stanzas): `untrusted` (may be NULL) helps build the chain. */
bool pv_cert_verify_chain(X509 *leaf, STACK_OF(X509) *untrusted, X509_STORE *trust, const char *domain,
	const char **why);

/* SHA-256 fingerprint of the peer's leaf certificate as "sha256:AB:CD:..." (uppercase
 * hex, colon-separated); false if there is no certificate or cap is too small
 * (PV_CERT_FINGERPRINT_MAX always suffices). */
#define PV_CERT_FINGERPRINT_MAX 103 /* "sha256:" + 32 * "XX:" - 1 + NUL */
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
 * certificate for pinning).  Returns true to accept; *why explains a refusal.
 * Policy: members mode refuses unlisted domains.  A listed domain (either mode) with a
 * pin must present exactly that leaf, dialback or not, and a matching pin authenticates
 * by itself (as DANE-EE does: self-signed member certificates work); one with a CA must
 * present a chain that verifies against that CA and names the domain (checked here,
 * whatever cert_ok says).  Otherwise cert_ok || via_dialback decides.  ssl may be NULL
 * (dialback without TLS).  Domains are compared after RFC 7622 normalisation. */
bool pv_membership_allows(const pv_membership *m, const char *peer_domain, SSL *ssl,
	bool cert_ok, bool via_dialback, const char **why);
const pv_member *pv_membership_find(const pv_membership *m, const char *peer_domain);

/* Fill *m from a host's `interconnect:` config section (NULL or absent = open, no
 * members):  mode: open|members;  members: { domain: { fingerprint: "sha256:...",
 * ca_file: path relative to data_dir } | empty }.  Domains are normalised (RFC 7622).
 * Returns 0, or PV_EINVAL with *err set to a message (caller frees) and *m empty.
 * Free with pv_membership_fini. */
typedef struct pv_conf pv_conf;
int pv_membership_load(pv_membership *m, const pv_conf *interconnect, const char *data_dir,
	char **err);
void pv_membership_fini(pv_membership *m);

/* XEP-0185 section 2 dialback key: lowercase hex of HMAC-SHA256 keyed with the 64-char
 * lowercase hex string of SHA256(secret) (not its 32 raw bytes: see the XEP's example),
 * over receiving + " " + originating + " " + stream_id.  out needs 65 bytes.
 * _ok compares in constant time; surrounding XML whitespace in key is ignored. */
void pv_dialback_key(const unsigned char *secret, size_t secret_len, const char *receiving,
	const char *originating, const char *stream_id, char out[65]);
bool pv_dialback_key_ok(const unsigned char *secret, size_t secret_len, const char *receiving,
	const char *originating, const char *stream_id, const char *key);

#endif
