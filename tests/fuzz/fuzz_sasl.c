/* fuzz_sasl.c -- libFuzzer target for the server side of SASL (src/xmpp/sasl/): the
 * SCRAM-SHA-1/256(-PLUS) (RFC 5802, RFC 7677, RFC 9266) and PLAIN (RFC 4616) steps,
 * which parse whatever an unauthenticated client sends.
 *
 * Built and run by tests/fuzz/run.sh (clang -fsanitize=fuzzer,address,undefined).
 *
 * Input layout:
 *   byte 0   mechanism: SCRAM-SHA-256, SCRAM-SHA-1-PLUS, PLAIN, SCRAM-SHA-1,
 *            SCRAM-SHA-256-PLUS (value mod 5)
 *   byte 1   flags: bits 0-1 the credential store (0, 3: normal; 1: store error;
 *            2: corrupt credential), bit 2 "computed client-final" (below), bit 3
 *            cb type tls-unique instead of tls-exporter, bit 4 ctx.host set, bit 5
 *            offer_plus, bit 6 fixed test server nonce
 *   rest     up to 4 client messages separated by 0xFF (never valid in UTF-8 text)
 * With "computed client-final", message 0 is the client-first message, message 1 a
 * password and message 2 an optional extension ("x=value"): the harness builds a
 * correct client-final from the server-first it got (its own PBKDF2/HMAC code, not the
 * server's), so the fuzzer reaches the proof check and the success path.
 *
 * Credentials come from a fixed in-memory store: juliet/pencil (SHA-1 and SHA-256),
 * romeo/r0meo (SHA-1 only, for PLAIN's fallback).  Low iteration counts keep runs fast.
 * Checked: no crash or leak (ASan/LSan); a FAILURE always has a known condition; after
 * SUCCESS or FAILURE every further step fails; SUCCESS only for a real account with the
 * store working; a correct computed proof for a real account must succeed and the
 * server signature must verify; PLAIN with exactly an account's name and password must
 * succeed. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "peyvand/pv_log.h"
#include "peyvand/pv_util.h"
#include "xmpp/sasl/sasl.h"

#define ITER 3
#define MAXMSG 4

static const char *const mechs[] = {"SCRAM-SHA-256", "SCRAM-SHA-1-PLUS", "PLAIN",
	"SCRAM-SHA-1", "SCRAM-SHA-256-PLUS"};

static const unsigned char cb_bytes[32] = {
	0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10,
	0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe, 0xff, 0x00};

typedef struct account {
	const char *user, *password;
	pv_scram_cred sha256, sha1;
	bool has_sha256;
} account;

static account accounts[] = {
	{.user = "juliet", .password = "pencil", .has_sha256 = true},
	{.user = "romeo", .password = "r0meo", .has_sha256 = false},
};

typedef struct store {
	int mode;              /* flags & 3 */
	const account *served; /* the real account whose credential was handed out */
} store;

static int get_cred(void *ud, const char *user, const char *mech, pv_scram_cred *out)
{
	store *st = ud;
	if (st->mode == 1)
		return PV_EIO;
	for (size_t i = 0; i < PV_ARRAY_LEN(accounts); i++) {
		const account *a = &accounts[i];
		if (strcmp(a->user, user) != 0)
			continue;
		if (strcmp(mech, "SCRAM-SHA-256") == 0 && !a->has_sha256)
			return PV_ENOENT;
		*out = strcmp(mech, "SCRAM-SHA-1") == 0 ? a->sha1 : a->sha256;
		if (st->mode == 2) {
			out->key_len = 7; /* a damaged row */
			out->iterations = 0;
		} else {
			st->served = a;
		}
		return 0;
	}
	return PV_ENOENT;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const unsigned char salt[] = "fuzz-salt-16byte";
	pv_log_set_level(PV_LOG_ERROR);
	for (size_t i = 0; i < PV_ARRAY_LEN(accounts); i++) {
		account *a = &accounts[i];
		if (pv_scram_derive("SCRAM-SHA-256", a->password, strlen(a->password), salt, 16, ITER,
			    &a->sha256) != 0 ||
		    pv_scram_derive("SCRAM-SHA-1", a->password, strlen(a->password), salt, 16, ITER,
			    &a->sha1) != 0)
			abort();
	}
	return 0;
}

static bool cond_known(const char *c)
{
	static const char *const known[] = {"not-authorized", "malformed-request",
		"invalid-mechanism", "encryption-required", "temporary-auth-failure",
		"credentials-expired", "account-disabled", "invalid-authzid"};
	if (!c)
		return false;
	for (size_t i = 0; i < PV_ARRAY_LEN(known); i++)
		if (strcmp(c, known[i]) == 0)
			return true;
	return false;
}

/* ---- the client side, written independently of scram.c ---------------------------- */

/* Value of attribute `a` ("r", "s", "i") in a server-first message, or NULL. */
static char *attr_of(const char *msg, char a)
{
	const char *p = msg;
	while (p && *p) {
		const char *comma = strchr(p, ',');
		size_t l = comma ? (size_t)(comma - p) : strlen(p);
		if (l >= 2 && p[0] == a && p[1] == '=')
			return pv_strndup(p + 2, l - 2);
		p = comma ? comma + 1 : NULL;
	}
	return NULL;
}

/* "x=value" with a letter and no ',' : a well-formed extension attribute. */
static bool ext_ok(const char *e, size_t n)
{
	if (n < 2 || e[1] != '=' || !((e[0] >= 'a' && e[0] <= 'z') || (e[0] >= 'A' && e[0] <= 'Z')) ||
	    e[0] == 'p')
		return false;
	for (size_t i = 2; i < n; i++)
		if (e[i] == ',' || e[i] == '\0')
			return false;
	return true;
}

typedef struct client_final {
	char *msg;
	unsigned char stored_key[64]; /* H(ClientKey) from the given password */
	unsigned char server_sig[64];
	size_t hlen;
} client_final;

/* Build client-final for client_first (whose gs2 header ends at its second ','), the
 * server's server_first, the password and an optional extension.  false if the
 * server-first cannot be read (then the server sent something broken). */
static bool make_final(const char *mech, const char *cfirst, size_t cfirst_len,
	const char *sfirst, const char *pw, size_t pwlen, const char *ext, size_t extlen,
	client_final *cf)
{
	bool sha1 = strncmp(mech, "SCRAM-SHA-1", 11) == 0;
	const EVP_MD *md = sha1 ? EVP_sha1() : EVP_sha256();
	size_t hlen = sha1 ? 20 : 32;
	bool ok = false;
	char *r = attr_of(sfirst, 'r'), *s = attr_of(sfirst, 's'), *i = attr_of(sfirst, 'i');
	unsigned char *salt = NULL;
	size_t salt_len = 0;
	pv_buf gs2cb, auth, msg;
	pv_buf_init(&gs2cb);
	pv_buf_init(&auth);
	pv_buf_init(&msg);

	if (!r || !s || !i || pv_base64_decode(s, strlen(s), &salt, &salt_len) < 0)
		goto out;
	long iter = strtol(i, NULL, 10);
	if (iter <= 0 || iter > 100000)
		goto out;
	const char *c1 = memchr(cfirst, ',', cfirst_len);
	const char *c2 = c1 ? memchr(c1 + 1, ',', cfirst_len - (size_t)(c1 + 1 - cfirst)) : NULL;
	if (!c2)
		goto out;
	size_t gs2_len = (size_t)(c2 + 1 - cfirst);
	pv_buf_append(&gs2cb, cfirst, gs2_len);
	if (cfirst[0] == 'p')
		pv_buf_append(&gs2cb, cb_bytes, sizeof(cb_bytes));
	char *c = pv_base64_encode(gs2cb.data, gs2cb.len);
	pv_buf_printf(&msg, "c=%s,r=%s", c, r);
	pv_free(c);
	if (extlen && ext_ok(ext, extlen)) {
		pv_buf_puts(&msg, ",");
		pv_buf_append(&msg, ext, extlen);
	}

	pv_buf_append(&auth, cfirst + gs2_len, cfirst_len - gs2_len);
	pv_buf_printf(&auth, ",%s,", sfirst);
	pv_buf_append(&auth, msg.data, msg.len);

	unsigned char salted[64], ckey[64], csig[64], skey[64], proof[64];
	unsigned int olen;
	if (PKCS5_PBKDF2_HMAC(pw, (int)pwlen, salt, (int)salt_len, (int)iter, md, (int)hlen,
		    salted) != 1)
		goto out;
	HMAC(md, salted, (int)hlen, (const unsigned char *)"Client Key", 10, ckey, &olen);
	EVP_Digest(ckey, hlen, cf->stored_key, &olen, md, NULL);
	HMAC(md, cf->stored_key, (int)hlen, (const unsigned char *)auth.data, auth.len, csig, &olen);
	for (size_t k = 0; k < hlen; k++)
		proof[k] = ckey[k] ^ csig[k];
	HMAC(md, salted, (int)hlen, (const unsigned char *)"Server Key", 10, skey, &olen);
	HMAC(md, skey, (int)hlen, (const unsigned char *)auth.data, auth.len, cf->server_sig, &olen);
	char *p = pv_base64_encode(proof, hlen);
	pv_buf_printf(&msg, ",p=%s", p);
	pv_free(p);
	cf->msg = pv_buf_take(&msg);
	cf->hlen = hlen;
	ok = true;
out:
	pv_free(r);
	pv_free(s);
	pv_free(i);
	pv_free(salt);
	pv_buf_fini(&gs2cb);
	pv_buf_fini(&auth);
	pv_buf_fini(&msg);
	return ok;
}

/* ---- one exchange ------------------------------------------------------------------- */

typedef struct piece {
	const char *p;
	size_t n;
} piece;

static void check_step(pv_sasl_rc rc, unsigned char *out, const char *cond, const pv_sasl *s,
	const store *st)
{
	if (rc == PV_SASL_FAILURE && !cond_known(cond))
		abort();
	if (rc != PV_SASL_FAILURE && cond)
		abort();
	if (rc == PV_SASL_CONTINUE && !out)
		abort();
	if (rc == PV_SASL_SUCCESS) {
		/* Only a real account, served by a working store, can log in. */
		const char *u = pv_sasl_user(s);
		if (!u || !st->served || strcmp(u, st->served->user) != 0 || st->mode == 1 ||
		    st->mode == 2)
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	const char *mech = mechs[data[0] % PV_ARRAY_LEN(mechs)];
	unsigned flags = data[1];
	bool plain = strcmp(mech, "PLAIN") == 0;
	bool computed = (flags & 4) && !plain;
	store st = {.mode = (int)(flags & 3), .served = NULL};

	piece msgs[MAXMSG];
	size_t nmsg = 0;
	const char *p = (const char *)data + 2, *end = (const char *)data + size;
	while (nmsg < MAXMSG) {
		const char *sep = memchr(p, 0xFF, (size_t)(end - p));
		msgs[nmsg].p = p;
		msgs[nmsg].n = sep ? (size_t)(sep - p) : (size_t)(end - p);
		nmsg++;
		if (!sep)
			break;
		p = sep + 1;
	}

	pv_sasl_ctx ctx = {
		.get_cred = get_cred,
		.ud = &st,
		.tls = true,
		.cb_type = (flags & 8) ? "tls-unique" : "tls-exporter",
		.cb_data = cb_bytes,
		.cb_len = sizeof(cb_bytes),
		.offer_plus = (flags & 32) != 0,
		.secret = (const unsigned char *)"fuzz secret",
		.secret_len = 11,
		.fake_iterations = ITER,
		.host = (flags & 16) ? "example.com" : NULL,
	};
	pv_sasl *s = pv_sasl_new(mech, &ctx);
	if (!s)
		abort(); /* every mechanism is allowed with TLS and channel binding data */
	if (flags & 64)
		pv_scram_set_test_nonce(s, "fuzznonce");

	unsigned char *out = NULL;
	size_t outlen = 0;
	const char *cond = NULL;
	pv_sasl_rc rc = PV_SASL_CONTINUE;

	if (computed) {
		rc = pv_sasl_step(s, (const unsigned char *)msgs[0].p, msgs[0].n, &out, &outlen, &cond);
		check_step(rc, out, cond, s, &st);
		if (rc == PV_SASL_CONTINUE && outlen > 0) {
			const char *pw = nmsg > 1 ? msgs[1].p : "";
			size_t pwlen = nmsg > 1 ? msgs[1].n : 0;
			client_final cf = {0};
			char *sfirst = pv_strndup((const char *)out, outlen);
			if (!make_final(mech, msgs[0].p, msgs[0].n, sfirst, pw, pwlen,
				    nmsg > 2 ? msgs[2].p : "", nmsg > 2 ? msgs[2].n : 0, &cf))
				abort(); /* the server-first we got must be readable */
			pv_free(out);
			const account *real = st.served;
			rc = pv_sasl_step(s, (const unsigned char *)cf.msg, strlen(cf.msg), &out, &outlen,
				&cond);
			check_step(rc, out, cond, s, &st);
			if (real) {
				const pv_scram_cred *cred =
					cf.hlen == 20 ? &real->sha1 : &real->sha256;
				bool right_pw = memcmp(cf.stored_key, cred->stored_key, cf.hlen) == 0;
				if (right_pw != (rc == PV_SASL_SUCCESS))
					abort(); /* the right proof succeeds, any other fails */
				if (rc == PV_SASL_SUCCESS) {
					char *v = pv_base64_encode(cf.server_sig, cf.hlen);
					if (!out || outlen != strlen(v) + 2 ||
					    memcmp(out, "v=", 2) != 0 || memcmp(out + 2, v, strlen(v)) != 0)
						abort();
					pv_free(v);
				}
			} else if (rc == PV_SASL_SUCCESS) {
				abort();
			}
			pv_free(sfirst);
			pv_free(cf.msg);
		}
		pv_free(out);
		out = NULL;
	} else {
		for (size_t i = 0; i < nmsg; i++) {
			bool was_done = rc != PV_SASL_CONTINUE;
			rc = pv_sasl_step(s, (const unsigned char *)msgs[i].p, msgs[i].n, &out, &outlen,
				&cond);
			if (was_done && (rc != PV_SASL_FAILURE || !cond ||
					    strcmp(cond, "malformed-request") != 0))
				abort(); /* nothing after the outcome */
			if (!was_done)
				check_step(rc, out, cond, s, &st);
			if (plain && !was_done && rc != PV_SASL_CONTINUE && st.mode != 1 &&
			    st.mode != 2) {
				/* "\0user\0password" with an account's exact name and password. */
				for (size_t a = 0; a < PV_ARRAY_LEN(accounts); a++) {
					pv_buf want;
					pv_buf_init(&want);
					pv_buf_append(&want, "", 1);
					pv_buf_puts(&want, accounts[a].user);
					pv_buf_append(&want, "", 1);
					pv_buf_puts(&want, accounts[a].password);
					bool exact = msgs[i].n == want.len &&
						     memcmp(msgs[i].p, want.data, want.len) == 0;
					pv_buf_fini(&want);
					if (exact && rc != PV_SASL_SUCCESS)
						abort();
				}
			}
			pv_free(out);
			out = NULL;
		}
	}
	pv_sasl_user(s);
	pv_sasl_free(s);
	return 0;
}
