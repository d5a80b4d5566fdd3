/* sasl.h -- SASL mechanisms for XMPP (RFC 6120 section 6): SCRAM-SHA-256(-PLUS),
 * SCRAM-SHA-1(-PLUS) (RFC 5802, RFC 7677; channel binding tls-exporter RFC 9266 and
 * tls-unique RFC 5929) and PLAIN (RFC 4616, offered only over TLS).
 *
 * Credentials are SCRAM salted keys only (never passwords): PLAIN verifies a password by
 * deriving the SCRAM keys with the stored salt and iteration count.
 * Pure computation; one pv_sasl per authentication exchange; not thread-safe. */
#ifndef PV_XMPP_SASL_H
#define PV_XMPP_SASL_H

#include <stdbool.h>
#include <stddef.h>

#include "peyvand/pv_store.h"

typedef struct pv_sasl pv_sasl;

typedef struct pv_sasl_ctx {
	/* Look up the credential of (normalised) user for mech; 0, PV_ENOENT or <0. */
	int (*get_cred)(void *ud, const char *user, const char *mech, pv_scram_cred *out);
	void *ud;
	bool tls;                      /* connection is encrypted */
	const char *cb_type;           /* "tls-exporter", "tls-unique" or NULL */
	const unsigned char *cb_data;  /* channel binding data for cb_type */
	size_t cb_len;
	bool offer_plus;               /* the server advertised -PLUS variants */
	/* Optional.  Unknown users get a fake SCRAM exchange that must look like a real one:
	 * the fake salt is an HMAC of the user name keyed with `secret` (NULL: a random
	 * per-process secret, so fake salts change across restarts), and the fake iteration
	 * count is `fake_iterations` (0: 4096) -- set it to what real credentials use. */
	const unsigned char *secret;
	size_t secret_len;
	unsigned fake_iterations;
	/* Optional: the virtual host; an authzid must then be the user's own bare JID
	 * (user@host).  NULL: an authzid is accepted only if it equals the user name. */
	const char *host;
} pv_sasl_ctx;

typedef enum { PV_SASL_CONTINUE, PV_SASL_SUCCESS, PV_SASL_FAILURE } pv_sasl_rc;

/* Mechanism names to advertise, NULL-terminated, strongest first. */
const char *const *pv_sasl_mechs(bool tls, bool have_cb);
/* NULL if mech is unknown or not allowed in ctx (e.g. PLAIN without TLS).  ctx is
 * copied (cb_data must outlive the exchange). */
pv_sasl *pv_sasl_new(const char *mech, const pv_sasl_ctx *ctx);
void pv_sasl_free(pv_sasl *s);
/* One step.  `in` is the decoded client message (may be empty).  On CONTINUE, *out is a
 * challenge; on SUCCESS, *out is additional data (SCRAM server-final) or NULL.  *out is
 * owned by the caller.  On FAILURE *cond is an RFC 6120 6.5 condition name
 * ("not-authorized", "malformed-request", "invalid-mechanism", "encryption-required",
 * "temporary-auth-failure", "credentials-expired", "account-disabled", "invalid-authzid"). */
pv_sasl_rc pv_sasl_step(pv_sasl *s, const unsigned char *in, size_t inlen,
	unsigned char **out, size_t *outlen, const char **cond);
/* The authenticated localpart (normalised), valid after SUCCESS until pv_sasl_free;
 * also set after a FAILURE once the user name was known (for throttling), else NULL. */
const char *pv_sasl_user(const pv_sasl *s);

/* Derive stored credentials for a password (SASLprep/OpaqueString applied). mech is
 * "SCRAM-SHA-1" or "SCRAM-SHA-256"; a fresh random 16-byte salt. */
int pv_scram_make_cred(const char *mech, const char *password, unsigned iterations,
	pv_scram_cred *out);
/* Both mechanisms at once (out[0] SHA-256, out[1] SHA-1); returns 2 or <0. */
int pv_scram_make_creds(const char *password, unsigned iterations, pv_scram_cred out[2]);

/* For tests: use `nonce` (printable, no ',') as the server nonce part instead of a
 * random one.  Call before the first pv_sasl_step; ignored by non-SCRAM mechanisms. */
void pv_scram_set_test_nonce(pv_sasl *s, const char *nonce);

/* ---- internal to src/xmpp/sasl/: sasl.c dispatches to scram.c and plain.c ---- */
typedef struct pv_sasl_mech {
	const char *name;
	bool plus;       /* needs channel binding data in the ctx */
	bool needs_tls;
	int hash;        /* SCRAM: 1 or 256 */
	/* ctx is borrowed and outlives the state. */
	void *(*start)(const struct pv_sasl_mech *m, const pv_sasl_ctx *ctx);
	pv_sasl_rc (*step)(void *st, const unsigned char *in, size_t inlen, unsigned char **out,
		size_t *outlen, const char **cond);
	const char *(*user)(const void *st);
	void (*free)(void *st);
	void (*set_nonce)(void *st, const char *nonce); /* NULL if not applicable */
} pv_sasl_mech;

extern const pv_sasl_mech pv_sasl_scram_sha256_plus, pv_sasl_scram_sha1_plus,
	pv_sasl_scram_sha256, pv_sasl_scram_sha1, pv_sasl_plain;

/* Derive a credential from a password (OpaqueString applied here) with the given salt
 * and iteration count; mech "SCRAM-SHA-1" or "SCRAM-SHA-256".  0 or PV_EINVAL. */
int pv_scram_derive(const char *mech, const char *password, size_t pwlen,
	const unsigned char *salt, size_t salt_len, unsigned iterations, pv_scram_cred *out);
/* The deterministic stand-in credential for an unknown user (see pv_sasl_ctx.secret). */
void pv_scram_fake_cred(const pv_sasl_ctx *ctx, const char *mech, const char *user,
	pv_scram_cred *out);
/* Whether authzid (n bytes, decoded) names the authenticated user (normalised local). */
bool pv_sasl_authzid_ok(const pv_sasl_ctx *ctx, const char *user, const char *authzid,
	size_t n);

#endif
