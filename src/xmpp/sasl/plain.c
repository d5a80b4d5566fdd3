/* plain.c -- SASL PLAIN (RFC 4616), offered only over TLS (RFC 6120 6.4.1 and
 * RFC 4616 section 6).
 *
 * message = [authzid] NUL authcid NUL passwd.  We store no passwords, only SCRAM keys,
 * so the password is checked by deriving the SCRAM-SHA-256 StoredKey with the stored salt
 * and iteration count (SCRAM-SHA-1 if that is all the account has) and comparing in
 * constant time.  Unknown users cost the same PBKDF2 work on a fake credential, so
 * timing does not reveal whether an account exists.
 *
 * Threading: pure computation on the caller's thread (PBKDF2 is slow by design: callers
 * on an event loop should run the step on a worker thread). */
#include "xmpp/sasl/sasl.h"

#include <string.h>

#include <openssl/crypto.h>

#include "peyvand/pv_jid.h"
#include "peyvand/pv_log.h"
#include "peyvand/pv_util.h"

typedef struct plain {
	const pv_sasl_ctx *ctx;
	char *user;
	bool empty_seen;
	bool finished;
} plain;

static pv_sasl_rc plain_step(void *vst, const unsigned char *in, size_t inlen,
	unsigned char **out, size_t *outlen, const char **cond)
{
	plain *st = vst;
	const char *msg = (const char *)in;
	pv_scram_cred cred, mine;
	bool fake = false;
	pv_sasl_rc rc = PV_SASL_FAILURE;

	memset(&cred, 0, sizeof(cred));
	memset(&mine, 0, sizeof(mine));
	if (st->finished) {
		*cond = "malformed-request";
		return PV_SASL_FAILURE;
	}
	if (inlen == 0 && !st->empty_seen) {
		/* No initial response (RFC 6120 6.4.2): send an empty challenge. */
		st->empty_seen = true;
		*out = (unsigned char *)pv_strdup("");
		*outlen = 0;
		return PV_SASL_CONTINUE;
	}
	st->finished = true;

	*cond = "malformed-request";
	const char *nul1 = memchr(msg, '\0', inlen);
	if (!nul1)
		goto fail;
	const char *authcid = nul1 + 1;
	const char *nul2 = memchr(authcid, '\0', (size_t)(msg + inlen - authcid));
	if (!nul2)
		goto fail;
	const char *pw = nul2 + 1;
	size_t authzid_len = (size_t)(nul1 - msg);
	size_t authcid_len = (size_t)(nul2 - authcid);
	size_t pw_len = (size_t)(msg + inlen - pw);
	if (authcid_len == 0 || pw_len == 0 || memchr(pw, '\0', pw_len))
		goto fail;

	*cond = "not-authorized";
	st->user = pv_jid_norm_local(authcid, authcid_len);
	if (!st->user)
		goto fail;
	if (authzid_len > 0 && !pv_sasl_authzid_ok(st->ctx, st->user, msg, authzid_len)) {
		*cond = "invalid-authzid";
		goto fail;
	}

	const char *mech = "SCRAM-SHA-256";
	int r = st->ctx->get_cred(st->ctx->ud, st->user, mech, &cred);
	if (r == PV_ENOENT) {
		mech = "SCRAM-SHA-1";
		r = st->ctx->get_cred(st->ctx->ud, st->user, mech, &cred);
	}
	if (r == PV_ENOENT) {
		fake = true;
		mech = "SCRAM-SHA-256";
		pv_scram_fake_cred(st->ctx, mech, st->user, &cred);
	} else if (r < 0) {
		*cond = "temporary-auth-failure";
		goto fail;
	}
	if (pv_scram_derive(mech, pw, pw_len, cred.salt, cred.salt_len, cred.iterations,
		    &mine) != 0) {
		/* a password that is not a valid OpaqueString cannot match any account */
		goto fail;
	}
	if (mine.key_len != cred.key_len ||
	    !pv_memeq_ct(mine.stored_key, cred.stored_key, mine.key_len) || fake) {
		pv_debug("sasl", "plain: authentication failed user=%s", st->user);
		goto fail;
	}
	*cond = NULL;
	rc = PV_SASL_SUCCESS;
fail:
	OPENSSL_cleanse(&cred, sizeof(cred));
	OPENSSL_cleanse(&mine, sizeof(mine));
	return rc;
}

static void *plain_start(const pv_sasl_mech *m, const pv_sasl_ctx *ctx)
{
	plain *st = pv_calloc(1, sizeof(*st));
	st->ctx = ctx;
	return st;
}

static const char *plain_user(const void *vst)
{
	const plain *st = vst;
	return st->user;
}

static void plain_free(void *vst)
{
	plain *st = vst;
	if (!st)
		return;
	pv_free(st->user);
	pv_free(st);
}

const pv_sasl_mech pv_sasl_plain = {.name = "PLAIN", .plus = false, .needs_tls = true,
	.hash = 0, .start = plain_start, .step = plain_step, .user = plain_user,
	.free = plain_free, .set_nonce = NULL};
