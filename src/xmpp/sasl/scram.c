/* scram.c -- server side of SCRAM-SHA-1 and SCRAM-SHA-256, with and without channel
 * binding (RFC 5802, RFC 7677; cb types tls-exporter RFC 9266, tls-unique RFC 5929),
 * and SCRAM credential derivation for account creation and PLAIN.
 *
 * The exchange (RFC 5802 section 5):
 *   C: gs2-header client-first-bare        "n,,n=user,r=<cnonce>"
 *   S: server-first                        "r=<cnonce><snonce>,s=<salt>,i=<iter>"
 *   C: client-final                        "c=<b64 gs2-header+cb>,r=<nonce>,p=<proof>"
 *   S: server-final                        "v=<server signature>"
 * Unknown users get the same exchange with a salt derived from a server secret, so
 * the answers never reveal whether an account exists; the proof then always fails.
 * User names are SASLprep'd as XMPP localparts (UsernameCaseMapped), passwords with
 * OpaqueString (RFC 8265), as RFC 7622 / RFC 6120 intend.
 *
 * Threading: pure computation on the caller's thread; the only shared state is the
 * per-process fallback secret and the HMAC templates, each created once under
 * pthread_once and only read afterwards. */
#include "xmpp/sasl/sasl.h"

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "peyvand/pv_jid.h"
#include "peyvand/pv_log.h"
#include "peyvand/pv_util.h"

#define MAX_HASH 64
#define SNONCE_RAW 18        /* 24 base64 characters */
#define DEFAULT_FAKE_ITER 4096
#define MAX_ITER 100000000u  /* PBKDF2 takes an int; refuse absurd stored values */

typedef struct scram {
	const pv_sasl_mech *m;
	const pv_sasl_ctx *ctx;
	const EVP_MD *md;
	size_t hlen;
	const char *cred_mech; /* "SCRAM-SHA-1" / "SCRAM-SHA-256" (store key) */
	int stage;             /* 0: want client-first, 1: want client-final, 2: finished */
	bool empty_seen;       /* we already answered an empty initial response */
	char cbflag;           /* 'n', 'y' or 'p' */
	char *user;
	char *gs2;             /* gs2-header, verbatim, for the c= check */
	char *client_first_bare;
	char *server_first;
	char *nonce;           /* client nonce + server nonce */
	char *test_snonce;
	pv_scram_cred cred;
	bool fake;
} scram;

/* ---- primitives ------------------------------------------------------------------ */

static const EVP_MD *md_for(const char *mech, size_t *hlen)
{
	if (strcmp(mech, "SCRAM-SHA-1") == 0) {
		*hlen = 20;
		return EVP_sha1();
	}
	if (strcmp(mech, "SCRAM-SHA-256") == 0) {
		*hlen = 32;
		return EVP_sha256();
	}
	return NULL;
}

/* HMAC from a context made once per digest and copied for each use.  OpenSSL 3.0's
 * HMAC() looks the MAC and the digest up by name on every call: 2.75 % of a reconnect
 * storm's CPU for the two HMACs of a login (perf), 1,170 against 750 ns even hot. */
static EVP_MAC_CTX *hmac_sha1, *hmac_sha256;
static pthread_once_t hmac_once = PTHREAD_ONCE_INIT;

static EVP_MAC_CTX *hmac_template(EVP_MAC *mac, const char *digest)
{
	EVP_MAC_CTX *c = mac ? EVP_MAC_CTX_new(mac) : NULL;
	OSSL_PARAM p[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)digest, 0),
		OSSL_PARAM_construct_end(),
	};
	if (c && EVP_MAC_CTX_set_params(c, p) != 1) {
		EVP_MAC_CTX_free(c);
		c = NULL;
	}
	return c;
}

static void hmac_load(void)
{
	EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	hmac_sha1 = hmac_template(mac, "SHA1");
	hmac_sha256 = hmac_template(mac, "SHA256");
	EVP_MAC_free(mac); /* the contexts keep their own references */
}

static void hmac(const EVP_MD *md, const void *key, size_t klen, const void *d, size_t n,
	unsigned char *out)
{
	pthread_once(&hmac_once, hmac_load);
	EVP_MAC_CTX *t = md == EVP_sha1() ? hmac_sha1 : md == EVP_sha256() ? hmac_sha256 : NULL;
	EVP_MAC_CTX *c = t ? EVP_MAC_CTX_dup(t) : NULL;
	size_t olen = 0;

	PV_ASSERT(klen <= INT_MAX);
	if (!c) { /* a digest without a template, or a library that failed to make one */
		unsigned int ol = 0;
		PV_ASSERT(HMAC(md, key, (int)klen, d, n, out, &ol) != NULL);
		return;
	}
	PV_ASSERT(EVP_MAC_init(c, key, klen, NULL) == 1 && EVP_MAC_update(c, d, n) == 1 &&
		  EVP_MAC_final(c, out, &olen, EVP_MAX_MD_SIZE) == 1);
	EVP_MAC_CTX_free(c);
}

static void digest(const EVP_MD *md, const void *d, size_t n, unsigned char *out)
{
	unsigned int olen = 0;
	PV_ASSERT(EVP_Digest(d, n, out, &olen, md, NULL) == 1);
}

int pv_scram_derive(const char *mech, const char *password, size_t pwlen,
	const unsigned char *salt, size_t salt_len, unsigned iterations, pv_scram_cred *out)
{
	size_t hlen;
	const EVP_MD *md = md_for(mech, &hlen);
	unsigned char salted[MAX_HASH], ckey[MAX_HASH];
	char *pw = NULL;
	int rc = PV_EINVAL;

	memset(out, 0, sizeof(*out));
	if (!md || salt_len == 0 || salt_len > sizeof(out->salt) || iterations == 0 ||
	    iterations > MAX_ITER)
		return PV_EINVAL;
	/* Normalize(password) of RFC 5802 2.2, with OpaqueString replacing SASLprep. */
	pw = pv_precis_opaque(password, pwlen);
	if (!pw)
		goto fail;
	size_t plen = strlen(pw);
	if (plen > INT_MAX)
		goto fail;
	/* SaltedPassword = Hi(password, salt, i), Hi being PBKDF2 with HMAC */
	if (PKCS5_PBKDF2_HMAC(pw, (int)plen, salt, (int)salt_len, (int)iterations, md,
		    (int)hlen, salted) != 1)
		goto fail;
	hmac(md, salted, hlen, "Client Key", 10, ckey);
	digest(md, ckey, hlen, out->stored_key);
	hmac(md, salted, hlen, "Server Key", 10, out->server_key);
	snprintf(out->mech, sizeof(out->mech), "%s", mech);
	memcpy(out->salt, salt, salt_len);
	out->salt_len = salt_len;
	out->iterations = iterations;
	out->key_len = hlen;
	rc = 0;
fail:
	OPENSSL_cleanse(salted, sizeof(salted));
	OPENSSL_cleanse(ckey, sizeof(ckey));
	if (pw) {
		OPENSSL_cleanse(pw, strlen(pw));
		pv_free(pw);
	}
	return rc;
}

int pv_scram_make_cred(const char *mech, const char *password, unsigned iterations,
	pv_scram_cred *out)
{
	unsigned char salt[16];
	if (!password)
		return PV_EINVAL;
	pv_random(salt, sizeof(salt));
	return pv_scram_derive(mech, password, strlen(password), salt, sizeof(salt), iterations,
		out);
}

int pv_scram_make_creds(const char *password, unsigned iterations, pv_scram_cred out[2])
{
	int rc = pv_scram_make_cred("SCRAM-SHA-256", password, iterations, &out[0]);
	if (rc == 0)
		rc = pv_scram_make_cred("SCRAM-SHA-1", password, iterations, &out[1]);
	if (rc < 0) {
		OPENSSL_cleanse(out, 2 * sizeof(*out));
		return rc;
	}
	return 2;
}

/* ---- unknown users ---------------------------------------------------------------- */

static unsigned char process_secret[32];
static pthread_once_t secret_once = PTHREAD_ONCE_INIT;

static void make_process_secret(void)
{
	pv_random(process_secret, sizeof(process_secret));
}

void pv_scram_fake_cred(const pv_sasl_ctx *ctx, const char *mech, const char *user,
	pv_scram_cred *out)
{
	const unsigned char *key = ctx->secret;
	size_t klen = ctx->secret_len;
	unsigned char mac[32];
	pv_buf msg;
	size_t hlen;

	if (!key || klen == 0) {
		pthread_once(&secret_once, make_process_secret);
		key = process_secret;
		klen = sizeof(process_secret);
	}
	memset(out, 0, sizeof(*out));
	if (!md_for(mech, &hlen))
		hlen = 32;
	/* Same user, same salt: repeated probes see a stable salt, as for a real account.
	 * The labels keep the salt and the (never matching) keys independent. */
	pv_buf_init(&msg);
	pv_buf_puts(&msg, "peyvand scram fake salt");
	pv_buf_append(&msg, "", 1);
	pv_buf_puts(&msg, mech);
	pv_buf_append(&msg, "", 1);
	pv_buf_puts(&msg, user);
	hmac(EVP_sha256(), key, klen, msg.data, msg.len, mac);
	memcpy(out->salt, mac, 16);
	out->salt_len = 16;
	msg.data[0] = 'P'; /* a different message for the key material */
	hmac(EVP_sha256(), key, klen, msg.data, msg.len, mac);
	memcpy(out->stored_key, mac, hlen < 32 ? hlen : 32);
	memcpy(out->server_key, mac, hlen < 32 ? hlen : 32);
	pv_buf_fini(&msg);
	snprintf(out->mech, sizeof(out->mech), "%s", mech);
	out->iterations = ctx->fake_iterations ? ctx->fake_iterations : DEFAULT_FAKE_ITER;
	out->key_len = hlen;
}

/* ---- message parsing ------------------------------------------------------------------ */

/* RFC 5802 7: saslname uses "=2C" for ',' and "=3D" for '='; any other '=' is an
 * error.  Returns a new string (decoded length in *n) or NULL. */
static char *decode_saslname(const char *s, size_t len, size_t *n)
{
	char *out = pv_malloc(len + 1);
	size_t o = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '=') {
			if (len - i >= 3 && s[i + 1] == '2' && s[i + 2] == 'C')
				out[o++] = ',';
			else if (len - i >= 3 && s[i + 1] == '3' && s[i + 2] == 'D')
				out[o++] = '=';
			else
				goto fail;
			i += 2;
		} else {
			out[o++] = s[i];
		}
	}
	if (o == 0)
		goto fail;
	out[o] = '\0';
	*n = o;
	return out;
fail:
	pv_free(out);
	return NULL;
}

/* printable = %x21-2B / %x2D-7E (RFC 5802 7), i.e. visible ASCII except ',' */
static bool nonce_ok(const char *s, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] < 0x21 || s[i] > 0x7E || s[i] == ',')
			return false;
	return true;
}

/* Length of the attribute starting at p (up to ',' or end). */
static size_t attr_len(const char *p, const char *end)
{
	const char *c = memchr(p, ',', (size_t)(end - p));
	return c ? (size_t)(c - p) : (size_t)(end - p);
}

static bool cbname_ok(const char *s, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			    c == '.' || c == '-'))
			return false;
	}
	return true;
}

static unsigned char *dup_out(const char *s, size_t *outlen)
{
	*outlen = strlen(s);
	return (unsigned char *)pv_strdup(s);
}

/* ---- the exchange ------------------------------------------------------------------- */

static pv_sasl_rc client_first(scram *st, const char *msg, size_t len, unsigned char **out,
	size_t *outlen, const char **cond)
{
	const char *p = msg, *end = msg + len;
	char *authzid = NULL, *rawuser = NULL;
	size_t authzid_len = 0, rawuser_len = 0;
	pv_sasl_rc rc = PV_SASL_FAILURE;

	*cond = "malformed-request";
	/* gs2-header = gs2-cbind-flag "," [ authzid ] "," */
	size_t fl = attr_len(p, end);
	if (p + fl == end)
		goto fail;
	if (fl == 1 && (*p == 'n' || *p == 'y')) {
		st->cbflag = *p;
	} else if (fl > 2 && p[0] == 'p' && p[1] == '=' && cbname_ok(p + 2, fl - 2)) {
		st->cbflag = 'p';
	} else {
		goto fail;
	}
	const char *cbname = p + 2;
	size_t cbname_len = st->cbflag == 'p' ? fl - 2 : 0;
	p += fl + 1;
	size_t al = attr_len(p, end);
	if (p + al == end)
		goto fail;
	if (al > 0) {
		if (al < 3 || p[0] != 'a' || p[1] != '=')
			goto fail;
		authzid = decode_saslname(p + 2, al - 2, &authzid_len);
		if (!authzid)
			goto fail;
	}
	p += al + 1;
	st->gs2 = pv_strndup(msg, (size_t)(p - msg));

	/* client-first-message-bare = [reserved-mext ","] username "," nonce ["," ext] */
	st->client_first_bare = pv_strndup(p, (size_t)(end - p));
	size_t ul = attr_len(p, end);
	if (ul < 3 || p[0] != 'n' || p[1] != '=' || p + ul == end)
		goto fail; /* also rejects "m=" (RFC 5802 5.1: mandatory extension unsupported) */
	rawuser = decode_saslname(p + 2, ul - 2, &rawuser_len);
	if (!rawuser)
		goto fail;
	p += ul + 1;
	size_t nl = attr_len(p, end);
	if (nl < 3 || p[0] != 'r' || p[1] != '=' || !nonce_ok(p + 2, nl - 2))
		goto fail;
	const char *cnonce = p + 2;
	size_t cnonce_len = nl - 2;
	/* Optional extensions after the nonce are ignored (RFC 5802 5.1), but must be
	 * attr=value; an "m=" can only appear first and was rejected above. */
	for (p += nl; p < end;) {
		p++;
		size_t xl = attr_len(p, end);
		if (xl < 2 || p[1] != '=' || !((p[0] >= 'a' && p[0] <= 'z') || (p[0] >= 'A' && p[0] <= 'Z')))
			goto fail;
		p += xl;
	}

	/* Channel binding negotiation (RFC 5802 section 6). */
	*cond = "not-authorized";
	if (st->m->plus) {
		/* -PLUS means binding: the client must send p= with the type we have. */
		if (st->cbflag != 'p' || strlen(st->ctx->cb_type) != cbname_len ||
		    memcmp(st->ctx->cb_type, cbname, cbname_len) != 0) {
			pv_debug("sasl", "scram: channel binding type mismatch");
			goto fail;
		}
	} else if (st->cbflag == 'p') {
		/* binding requested with a mechanism that does not carry it */
		goto fail;
	} else if (st->cbflag == 'y' && st->ctx->offer_plus) {
		/* The client supports binding and believes we do not, yet we advertised -PLUS:
		 * someone stripped the -PLUS mechanisms in transit. */
		pv_info("sasl", "scram: channel binding downgrade detected");
		goto fail;
	}

	/* SASLprep of the user name: the XMPP localpart profile. An invalid name cannot be
	 * an account, so failing here reveals nothing. */
	st->user = pv_jid_norm_local(rawuser, rawuser_len);
	if (!st->user)
		goto fail;
	if (authzid && !pv_sasl_authzid_ok(st->ctx, st->user, authzid, authzid_len)) {
		*cond = "invalid-authzid";
		goto fail;
	}

	int r = st->ctx->get_cred(st->ctx->ud, st->user, st->cred_mech, &st->cred);
	if (r == PV_ENOENT) {
		st->fake = true;
		pv_scram_fake_cred(st->ctx, st->cred_mech, st->user, &st->cred);
	} else if (r < 0 || st->cred.key_len != st->hlen || st->cred.salt_len == 0 ||
		   st->cred.salt_len > sizeof(st->cred.salt) || st->cred.iterations == 0) {
		*cond = "temporary-auth-failure";
		goto fail;
	}

	char *snonce;
	if (st->test_snonce) {
		snonce = pv_strdup(st->test_snonce);
	} else {
		unsigned char raw[SNONCE_RAW];
		pv_random(raw, sizeof(raw));
		snonce = pv_base64_encode(raw, sizeof(raw));
	}
	st->nonce = pv_sprintf("%.*s%s", (int)cnonce_len, cnonce, snonce);
	pv_free(snonce);
	char *salt = pv_base64_encode(st->cred.salt, st->cred.salt_len);
	st->server_first = pv_sprintf("r=%s,s=%s,i=%u", st->nonce, salt,
		(unsigned)st->cred.iterations);
	pv_free(salt);
	*out = dup_out(st->server_first, outlen);
	*cond = NULL;
	st->stage = 1;
	rc = PV_SASL_CONTINUE;
fail:
	pv_free(authzid);
	pv_free(rawuser);
	return rc;
}

static pv_sasl_rc client_final(scram *st, const char *msg, size_t len, unsigned char **out,
	size_t *outlen, const char **cond)
{
	const char *p = msg, *end = msg + len;
	unsigned char *cb = NULL, *proof = NULL, *expect = NULL;
	size_t cb_len = 0, proof_len = 0, expect_len = 0;
	unsigned char csig[MAX_HASH], ckey[MAX_HASH], skey_h[MAX_HASH], ssig[MAX_HASH];
	pv_buf auth;
	pv_sasl_rc rc = PV_SASL_FAILURE;

	pv_buf_init(&auth);
	*cond = "malformed-request";
	/* client-final = "c=" b64 "," "r=" nonce ["," extensions] "," "p=" b64 */
	size_t cl = attr_len(p, end);
	if (cl < 2 || p[0] != 'c' || p[1] != '=' || p + cl == end)
		goto fail;
	if (pv_base64_decode(p + 2, cl - 2, &cb, &cb_len) < 0)
		goto fail;
	p += cl + 1;
	size_t rl = attr_len(p, end);
	if (rl < 3 || p[0] != 'r' || p[1] != '=' || p + rl == end)
		goto fail;
	const char *rnonce = p + 2;
	size_t rnonce_len = rl - 2;
	p += rl;
	/* skip extensions up to the last attribute, which must be the proof */
	const char *pattr = NULL;
	while (p < end) {
		p++; /* the ',' */
		size_t xl = attr_len(p, end);
		if (xl < 2 || p[1] != '=')
			goto fail;
		if (p + xl == end) {
			pattr = p;
			break;
		}
		p += xl;
	}
	if (!pattr || pattr[0] != 'p')
		goto fail;
	if (pv_base64_decode(pattr + 2, (size_t)(end - pattr - 2), &proof, &proof_len) < 0 ||
	    proof_len != st->hlen)
		goto fail;
	size_t without_proof = (size_t)(pattr - 1 - msg);

	*cond = "not-authorized";
	/* The nonce must be exactly the one we issued. */
	if (rnonce_len != strlen(st->nonce) || memcmp(rnonce, st->nonce, rnonce_len) != 0)
		goto fail;
	/* c= is base64(gs2-header [+ channel binding data]) and binds this exchange to the
	 * TLS channel when the client chose 'p'. */
	expect_len = strlen(st->gs2) + (st->cbflag == 'p' ? st->ctx->cb_len : 0);
	expect = pv_malloc(expect_len + 1);
	memcpy(expect, st->gs2, strlen(st->gs2));
	if (st->cbflag == 'p')
		memcpy(expect + strlen(st->gs2), st->ctx->cb_data, st->ctx->cb_len);
	if (cb_len != expect_len || !pv_memeq_ct(cb, expect, expect_len)) {
		pv_debug("sasl", "scram: channel binding data mismatch user=%s", st->user);
		goto fail;
	}

	/* AuthMessage = client-first-bare "," server-first "," client-final-without-proof */
	pv_buf_puts(&auth, st->client_first_bare);
	pv_buf_append(&auth, ",", 1);
	pv_buf_puts(&auth, st->server_first);
	pv_buf_append(&auth, ",", 1);
	pv_buf_append(&auth, msg, without_proof);

	/* ClientKey = proof XOR HMAC(StoredKey, AuthMessage); H(ClientKey) == StoredKey */
	hmac(st->md, st->cred.stored_key, st->hlen, auth.data, auth.len, csig);
	for (size_t i = 0; i < st->hlen; i++)
		ckey[i] = proof[i] ^ csig[i];
	digest(st->md, ckey, st->hlen, skey_h);
	bool match = pv_memeq_ct(skey_h, st->cred.stored_key, st->hlen);
	if (!match || st->fake) {
		pv_debug("sasl", "scram: authentication failed user=%s", st->user);
		goto fail;
	}

	hmac(st->md, st->cred.server_key, st->hlen, auth.data, auth.len, ssig);
	char *v = pv_base64_encode(ssig, st->hlen);
	char *final = pv_sprintf("v=%s", v);
	pv_free(v);
	*outlen = strlen(final);
	*out = (unsigned char *)final;
	*cond = NULL;
	rc = PV_SASL_SUCCESS;
fail:
	OPENSSL_cleanse(ckey, sizeof(ckey));
	OPENSSL_cleanse(csig, sizeof(csig));
	pv_buf_fini(&auth);
	pv_free(cb);
	pv_free(proof);
	pv_free(expect);
	st->stage = 2;
	return rc;
}

static pv_sasl_rc scram_step(void *vst, const unsigned char *in, size_t inlen,
	unsigned char **out, size_t *outlen, const char **cond)
{
	scram *st = vst;
	const char *msg = (const char *)in;

	if (st->stage == 0 && inlen == 0 && !st->empty_seen) {
		/* No initial response (RFC 6120 6.4.2): send an empty challenge. */
		st->empty_seen = true;
		*out = (unsigned char *)pv_strdup("");
		*outlen = 0;
		return PV_SASL_CONTINUE;
	}
	/* SCRAM messages are text; a NUL can only be an attack on our string handling. */
	if (memchr(in, '\0', inlen)) {
		*cond = "malformed-request";
		st->stage = 2;
		return PV_SASL_FAILURE;
	}
	switch (st->stage) {
	case 0: {
		pv_sasl_rc rc = client_first(st, msg, inlen, out, outlen, cond);
		if (rc == PV_SASL_FAILURE)
			st->stage = 2;
		return rc;
	}
	case 1:
		return client_final(st, msg, inlen, out, outlen, cond);
	default:
		*cond = "malformed-request";
		return PV_SASL_FAILURE;
	}
}

static void *scram_start(const pv_sasl_mech *m, const pv_sasl_ctx *ctx)
{
	scram *st = pv_calloc(1, sizeof(*st));
	st->m = m;
	st->ctx = ctx;
	st->cred_mech = m->hash == 1 ? "SCRAM-SHA-1" : "SCRAM-SHA-256";
	st->md = md_for(st->cred_mech, &st->hlen);
	return st;
}

static const char *scram_user(const void *vst)
{
	const scram *st = vst;
	return st->user;
}

static void scram_free(void *vst)
{
	scram *st = vst;
	if (!st)
		return;
	pv_free(st->user);
	pv_free(st->gs2);
	pv_free(st->client_first_bare);
	pv_free(st->server_first);
	pv_free(st->nonce);
	pv_free(st->test_snonce);
	OPENSSL_cleanse(&st->cred, sizeof(st->cred));
	pv_free(st);
}

static void scram_set_nonce(void *vst, const char *nonce)
{
	scram *st = vst;
	pv_free(st->test_snonce);
	st->test_snonce = pv_strdup(nonce);
}

#define SCRAM_MECH(var, nm, h, pl)                                                       \
	const pv_sasl_mech var = {.name = nm, .plus = pl, .needs_tls = false, .hash = h,   \
		.start = scram_start, .step = scram_step, .user = scram_user,             \
		.free = scram_free, .set_nonce = scram_set_nonce}

SCRAM_MECH(pv_sasl_scram_sha256_plus, "SCRAM-SHA-256-PLUS", 256, true);
SCRAM_MECH(pv_sasl_scram_sha1_plus, "SCRAM-SHA-1-PLUS", 1, true);
SCRAM_MECH(pv_sasl_scram_sha256, "SCRAM-SHA-256", 256, false);
SCRAM_MECH(pv_sasl_scram_sha1, "SCRAM-SHA-1", 1, false);
