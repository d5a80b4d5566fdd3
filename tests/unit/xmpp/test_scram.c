/* test_scram.c -- unit tests for src/xmpp/sasl/{sasl,scram,plain}.c.
 *
 * The RFC 5802 section 5 (SCRAM-SHA-1) and RFC 7677 section 3 (SCRAM-SHA-256) exchanges
 * are replayed byte for byte (server nonce injected with pv_scram_set_test_nonce,
 * credentials derived from the vectors' salt and iteration count).  A small SCRAM client
 * below computes proofs for the other cases: wrong password, user name folding and
 * =2C/=3D decoding, channel binding (-PLUS) match/mismatch, the 'y' downgrade rule,
 * authzid handling, nonce tampering, unknown users (fake but stable salt), malformed
 * messages; then PLAIN (ok, wrong password, unknown user, not offered without TLS) and
 * the mechanism list. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "peyvand/pv_util.h"
#include "xmpp/sasl/sasl.h"

/* ---- a credential store for the tests ------------------------------------------------- */

typedef struct entry {
	const char *user;
	pv_scram_cred cred;
} entry;

typedef struct store {
	entry e[16];
	size_t n;
	int fail_with; /* if non-zero, get_cred returns this */
	int lookups;
} store;

static int get_cred(void *ud, const char *user, const char *mech, pv_scram_cred *out)
{
	store *st = ud;
	st->lookups++;
	if (st->fail_with)
		return st->fail_with;
	for (size_t i = 0; i < st->n; i++) {
		if (strcmp(st->e[i].user, user) == 0 && strcmp(st->e[i].cred.mech, mech) == 0) {
			*out = st->e[i].cred;
			return 0;
		}
	}
	return PV_ENOENT;
}

static void add_vec(store *st, const char *user, const char *mech, const char *password,
	const char *salt_b64, unsigned iter)
{
	unsigned char *salt;
	size_t salt_len;
	assert_true(pv_base64_decode(salt_b64, strlen(salt_b64), &salt, &salt_len) >= 0);
	st->e[st->n].user = user;
	assert_int_equal(pv_scram_derive(mech, password, strlen(password), salt, salt_len, iter,
				 &st->e[st->n].cred),
		0);
	st->n++;
	pv_free(salt);
}

static void add_user(store *st, const char *user, const char *password)
{
	pv_scram_cred c[2];
	assert_int_equal(pv_scram_make_creds(password, 4096, c), 2);
	st->e[st->n].user = user;
	st->e[st->n++].cred = c[0];
	st->e[st->n].user = user;
	st->e[st->n++].cred = c[1];
}

static const unsigned char cb_bytes[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
	16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

static pv_sasl_ctx make_ctx(store *st)
{
	pv_sasl_ctx c;
	memset(&c, 0, sizeof(c));
	c.get_cred = get_cred;
	c.ud = st;
	c.tls = true;
	c.cb_type = "tls-exporter";
	c.cb_data = cb_bytes;
	c.cb_len = sizeof(cb_bytes);
	c.offer_plus = true;
	return c;
}

/* ---- helpers -------------------------------------------------------------------------- */

static pv_sasl_rc step_str(pv_sasl *s, const char *in, char **out, const char **cond)
{
	unsigned char *o = NULL;
	size_t olen = 0;
	pv_sasl_rc rc = pv_sasl_step(s, (const unsigned char *)in, strlen(in), &o, &olen, cond);
	if (o) {
		assert_int_equal(strlen((char *)o), olen);
		*out = (char *)o;
	} else {
		*out = NULL;
	}
	return rc;
}

/* Value of attribute `a` in a SCRAM message, as a new string. */
static char *attr(const char *msg, char a)
{
	const char *p = msg;
	while (p) {
		if (p[0] == a && p[1] == '=') {
			const char *e = strchr(p, ',');
			return pv_strndup(p + 2, e ? (size_t)(e - p - 2) : strlen(p + 2));
		}
		p = strchr(p, ',');
		if (p)
			p++;
	}
	return NULL;
}

/* A SCRAM client: the client-final message for `password`, given the messages so far. */
static char *client_final(const char *hash, const char *password, const char *cfirst_bare,
	const char *sfirst, const char *cbind_b64)
{
	const EVP_MD *md = strcmp(hash, "SCRAM-SHA-1") == 0 ? EVP_sha1() : EVP_sha256();
	size_t hl = (size_t)EVP_MD_get_size(md);
	char *salt_b64 = attr(sfirst, 's'), *iter = attr(sfirst, 'i'), *nonce = attr(sfirst, 'r');
	unsigned char *salt, sp[64], ck[64], sk[64], sig[64], proof[64];
	size_t salt_len;
	unsigned int l;
	assert_non_null(salt_b64);
	assert_true(pv_base64_decode(salt_b64, strlen(salt_b64), &salt, &salt_len) >= 0);
	assert_int_equal(PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt, (int)salt_len,
				 atoi(iter), md, (int)hl, sp),
		1);
	HMAC(md, sp, (int)hl, (const unsigned char *)"Client Key", 10, ck, &l);
	EVP_Digest(ck, hl, sk, &l, md, NULL);
	char *without = pv_sprintf("c=%s,r=%s", cbind_b64, nonce);
	char *auth = pv_sprintf("%s,%s,%s", cfirst_bare, sfirst, without);
	HMAC(md, sk, (int)hl, (const unsigned char *)auth, strlen(auth), sig, &l);
	for (size_t i = 0; i < hl; i++)
		proof[i] = ck[i] ^ sig[i];
	char *p64 = pv_base64_encode(proof, hl);
	char *final = pv_sprintf("%s,p=%s", without, p64);
	pv_free(p64);
	pv_free(auth);
	pv_free(without);
	pv_free(salt);
	pv_free(salt_b64);
	pv_free(iter);
	pv_free(nonce);
	return final;
}

typedef struct xch {
	const char *mech;
	const char *gs2;      /* "n,,", "y,,", "p=tls-exporter,," ... */
	const char *bare;     /* client-first-message-bare */
	const char *password; /* the client's idea of it */
	const unsigned char *cb; /* client's channel binding data (with 'p') */
	size_t cb_len;
} xch;

/* Runs a whole exchange; returns the final rc, *cond and (optionally) the user. */
static pv_sasl_rc run(const pv_sasl_ctx *ctx, const xch *x, const char **cond, char **user)
{
	pv_sasl *s = pv_sasl_new(x->mech, ctx);
	char *out = NULL, *first = pv_sprintf("%s%s", x->gs2, x->bare);
	assert_non_null(s);
	pv_sasl_rc rc = step_str(s, first, &out, cond);
	if (rc == PV_SASL_CONTINUE) {
		size_t gl = strlen(x->gs2);
		unsigned char *cbin = pv_malloc(gl + x->cb_len + 1);
		memcpy(cbin, x->gs2, gl);
		if (x->cb_len)
			memcpy(cbin + gl, x->cb, x->cb_len);
		char *c64 = pv_base64_encode(cbin, gl + x->cb_len);
		const char *hash = strncmp(x->mech, "SCRAM-SHA-1", 11) == 0 &&
					   (x->mech[11] == '\0' || x->mech[11] == '-')
				   ? "SCRAM-SHA-1"
				   : "SCRAM-SHA-256";
		char *fin = client_final(hash, x->password, x->bare, out, c64);
		pv_free(out);
		rc = step_str(s, fin, &out, cond);
		if (rc == PV_SASL_SUCCESS) {
			assert_non_null(out);
			assert_memory_equal(out, "v=", 2);
		}
		pv_free(fin);
		pv_free(c64);
		pv_free(cbin);
	}
	pv_free(out);
	pv_free(first);
	if (user)
		*user = pv_strdup(pv_sasl_user(s));
	pv_sasl_free(s);
	return rc;
}

/* ---- RFC vectors ---------------------------------------------------------------------- */

static void replay(const char *mech, const char *salt, const char *snonce, const char *c1,
	const char *s1, const char *c2, const char *s2)
{
	store st = {0};
	add_vec(&st, "user", mech, "pencil", salt, 4096);
	pv_sasl_ctx ctx = make_ctx(&st);
	ctx.offer_plus = false;
	pv_sasl *s = pv_sasl_new(mech, &ctx);
	assert_non_null(s);
	pv_scram_set_test_nonce(s, snonce);
	char *out;
	const char *cond;
	assert_int_equal(step_str(s, c1, &out, &cond), PV_SASL_CONTINUE);
	assert_string_equal(out, s1);
	pv_free(out);
	assert_int_equal(step_str(s, c2, &out, &cond), PV_SASL_SUCCESS);
	assert_null(cond);
	assert_string_equal(out, s2);
	pv_free(out);
	assert_string_equal(pv_sasl_user(s), "user");
	/* the exchange is over */
	assert_int_equal(step_str(s, "", &out, &cond), PV_SASL_FAILURE);
	assert_null(out);
	pv_sasl_free(s);
}

static void test_rfc5802_sha1(void **state)
{
	replay("SCRAM-SHA-1", "QSXCR+Q6sek8bf92", "3rfcNHYJY1ZVvWVs7j",
		"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
		"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
		"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
		"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=");
}

static void test_rfc7677_sha256(void **state)
{
	replay("SCRAM-SHA-256", "W22ZaJ0SNY7soEsUEjb6gQ==", "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
		"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
		"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,"
		"i=4096",
		"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
		"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
		"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
}

static void hex(const unsigned char *p, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", p[i]);
}

static void test_derive_vectors(void **state)
{
	/* StoredKey / ServerKey of the RFC 7677 and RFC 5802 vectors */
	store st = {0};
	char h[129];
	add_vec(&st, "user", "SCRAM-SHA-256", "pencil", "W22ZaJ0SNY7soEsUEjb6gQ==", 4096);
	add_vec(&st, "user", "SCRAM-SHA-1", "pencil", "QSXCR+Q6sek8bf92", 4096);
	assert_int_equal(st.e[0].cred.key_len, 32);
	assert_string_equal(st.e[0].cred.mech, "SCRAM-SHA-256");
	hex(st.e[0].cred.stored_key, 32, h);
	assert_string_equal(h, "586e5df283e6dceb5c3e791d8b8528ec191e664045ce971792e2e6b5bb13e2a6");
	hex(st.e[0].cred.server_key, 32, h);
	assert_string_equal(h, "c1f3cbc1c13a9d35a14c0990eed97629ea225863e566a4314ab99f3f00e5d9d5");
	assert_int_equal(st.e[1].cred.key_len, 20);
	hex(st.e[1].cred.stored_key, 20, h);
	assert_string_equal(h, "e9d94660c39d65c38fbad91c358f14da0eef2bd6");
	hex(st.e[1].cred.server_key, 20, h);
	assert_string_equal(h, "0fe09258b3ac852ba502cc62ba903eaacdbf7d31");
	assert_int_equal(st.e[1].cred.iterations, 4096);
	assert_int_equal(st.e[1].cred.salt_len, 12);

	pv_scram_cred c;
	assert_int_equal(pv_scram_derive("SCRAM-MD5", "x", 1, (const unsigned char *)"s", 1, 1, &c),
		PV_EINVAL);
	assert_int_equal(pv_scram_derive("SCRAM-SHA-1", "x", 1, (const unsigned char *)"s", 1, 0, &c),
		PV_EINVAL);
	assert_int_equal(pv_scram_derive("SCRAM-SHA-1", "", 0, (const unsigned char *)"s", 1, 1, &c),
		PV_EINVAL);
}

static void test_make_creds(void **state)
{
	pv_scram_cred c[2], d[2];
	assert_int_equal(pv_scram_make_creds("pencil", 4096, c), 2);
	assert_int_equal(pv_scram_make_creds("pencil", 4096, d), 2);
	assert_string_equal(c[0].mech, "SCRAM-SHA-256");
	assert_string_equal(c[1].mech, "SCRAM-SHA-1");
	assert_int_equal(c[0].key_len, 32);
	assert_int_equal(c[1].key_len, 20);
	assert_int_equal(c[0].salt_len, 16);
	assert_int_equal(c[0].iterations, 4096);
	/* fresh random salts, so different keys for the same password */
	assert_memory_not_equal(c[0].salt, d[0].salt, 16);
	assert_memory_not_equal(c[0].stored_key, d[0].stored_key, 32);
	assert_int_equal(pv_scram_make_cred("SCRAM-SHA-512", "pencil", 4096, c), PV_EINVAL);
	assert_int_equal(pv_scram_make_cred("SCRAM-SHA-1", "bad\x01", 4096, c), PV_EINVAL);
}

/* ---- SCRAM behaviour ---------------------------------------------------------------- */

static void test_scram_roundtrips(void **state)
{
	store st = {0};
	add_user(&st, "user", "pencil");
	add_user(&st, "a=b", "s3cret");
	add_user(&st, "j\xc3\xbcrgen", "p\xc3\xa4ss word"); /* non-ASCII user and password */
	pv_sasl_ctx ctx = make_ctx(&st);
	static const struct {
		xch x;
		pv_sasl_rc want;
		const char *cond;
		const char *user;
	} cases[] = {
		{{"SCRAM-SHA-256", "n,,", "n=user,r=abcdef", "pencil", NULL, 0}, PV_SASL_SUCCESS,
			NULL, "user"},
		{{"SCRAM-SHA-1", "n,,", "n=user,r=abcdef", "pencil", NULL, 0}, PV_SASL_SUCCESS, NULL,
			"user"},
		/* user names are folded like localparts */
		{{"SCRAM-SHA-256", "n,,", "n=USER,r=abcdef", "pencil", NULL, 0}, PV_SASL_SUCCESS,
			NULL, "user"},
		/* =3D decodes to '=' */
		{{"SCRAM-SHA-256", "n,,", "n=a=3Db,r=xyz", "s3cret", NULL, 0}, PV_SASL_SUCCESS, NULL,
			"a=b"},
		{{"SCRAM-SHA-256", "n,,", "n=J\xc3\x9cRGEN,r=xyz", "p\xc3\xa4ss word", NULL, 0},
			PV_SASL_SUCCESS, NULL, "j\xc3\xbcrgen"},
		/* extensions after the nonce are ignored */
		{{"SCRAM-SHA-256", "n,,", "n=user,r=abcdef,x=ext", "pencil", NULL, 0},
			PV_SASL_SUCCESS, NULL, "user"},
		/* wrong password: not-authorized, user known for throttling */
		{{"SCRAM-SHA-256", "n,,", "n=user,r=abcdef", "pencil2", NULL, 0}, PV_SASL_FAILURE,
			"not-authorized", "user"},
		{{"SCRAM-SHA-1", "n,,", "n=user,r=abcdef", "Pencil", NULL, 0}, PV_SASL_FAILURE,
			"not-authorized", "user"},
		/* unknown user: a full fake exchange, then not-authorized */
		{{"SCRAM-SHA-256", "n,,", "n=nobody,r=abcdef", "pencil", NULL, 0}, PV_SASL_FAILURE,
			"not-authorized", "nobody"},
		/* channel binding: -PLUS with the right data */
		{{"SCRAM-SHA-256-PLUS", "p=tls-exporter,,", "n=user,r=abc", "pencil", cb_bytes,
			 sizeof(cb_bytes)},
			PV_SASL_SUCCESS, NULL, "user"},
		{{"SCRAM-SHA-1-PLUS", "p=tls-exporter,,", "n=user,r=abc", "pencil", cb_bytes,
			 sizeof(cb_bytes)},
			PV_SASL_SUCCESS, NULL, "user"},
		/* ... with other data (a different TLS channel: MITM) */
		{{"SCRAM-SHA-256-PLUS", "p=tls-exporter,,", "n=user,r=abc", "pencil", cb_bytes,
			 sizeof(cb_bytes) - 1},
			PV_SASL_FAILURE, "not-authorized", "user"},
		/* ... or without any (c= carries only the gs2 header) */
		{{"SCRAM-SHA-256-PLUS", "p=tls-exporter,,", "n=user,r=abc", "pencil", NULL, 0},
			PV_SASL_FAILURE, "not-authorized", "user"},
		/* ... a type we do not have */
		{{"SCRAM-SHA-256-PLUS", "p=tls-unique,,", "n=user,r=abc", "pencil", cb_bytes,
			 sizeof(cb_bytes)},
			PV_SASL_FAILURE, "not-authorized", NULL},
		/* ... -PLUS without binding */
		{{"SCRAM-SHA-256-PLUS", "n,,", "n=user,r=abc", "pencil", NULL, 0}, PV_SASL_FAILURE,
			"not-authorized", NULL},
		/* binding asked for on a non-PLUS mechanism */
		{{"SCRAM-SHA-256", "p=tls-exporter,,", "n=user,r=abc", "pencil", cb_bytes,
			 sizeof(cb_bytes)},
			PV_SASL_FAILURE, "not-authorized", NULL},
		/* 'y' while we offered -PLUS: downgrade attack (RFC 5802 section 6) */
		{{"SCRAM-SHA-256", "y,,", "n=user,r=abc", "pencil", NULL, 0}, PV_SASL_FAILURE,
			"not-authorized", NULL},
		/* authzid: own bare JID ok, own name ok, anyone else refused */
		{{"SCRAM-SHA-256", "n,a=user@example.com,", "n=user,r=abc", "pencil", NULL, 0},
			PV_SASL_SUCCESS, NULL, "user"},
		{{"SCRAM-SHA-256", "n,a=User,", "n=user,r=abc", "pencil", NULL, 0}, PV_SASL_SUCCESS,
			NULL, "user"},
		{{"SCRAM-SHA-256", "n,a=admin@example.com,", "n=user,r=abc", "pencil", NULL, 0},
			PV_SASL_FAILURE, "invalid-authzid", "user"},
		{{"SCRAM-SHA-256", "n,a=user@example.org,", "n=user,r=abc", "pencil", NULL, 0},
			PV_SASL_FAILURE, "invalid-authzid", "user"},
		{{"SCRAM-SHA-256", "n,a=user@example.com/res,", "n=user,r=abc", "pencil", NULL, 0},
			PV_SASL_FAILURE, "invalid-authzid", "user"},
	};
	ctx.host = "Example.COM";
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *cond = NULL;
		char *user = NULL;
		pv_sasl_rc rc = run(&ctx, &cases[i].x, &cond, &user);
		if (rc != cases[i].want)
			fail_msg("case %zu (%s %s%s): rc %d want %d cond %s", i, cases[i].x.mech,
				cases[i].x.gs2, cases[i].x.bare, rc, cases[i].want,
				cond ? cond : "-");
		if (cases[i].cond)
			assert_string_equal(cond, cases[i].cond);
		else
			assert_null(cond);
		if (cases[i].user)
			assert_string_equal(user, cases[i].user);
		else
			assert_null(user);
		pv_free(user);
	}

	/* 'y' is fine when we did not offer -PLUS (the client just could not bind) */
	ctx.offer_plus = false;
	const xch y = {"SCRAM-SHA-256", "y,,", "n=user,r=abc", "pencil", NULL, 0};
	const char *cond;
	assert_int_equal(run(&ctx, &y, &cond, NULL), PV_SASL_SUCCESS);

	/* without a configured host, a JID authzid cannot be checked and is refused */
	ctx.host = NULL;
	const xch az = {"SCRAM-SHA-256", "n,a=user@example.com,", "n=user,r=abc", "pencil",
		NULL, 0};
	assert_int_equal(run(&ctx, &az, &cond, NULL), PV_SASL_FAILURE);
	assert_string_equal(cond, "invalid-authzid");
}

static char *server_first_for(const pv_sasl_ctx *ctx, const char *mech, const char *user)
{
	pv_sasl *s = pv_sasl_new(mech, ctx);
	char *first = pv_sprintf("n,,n=%s,r=nonce", user), *out;
	const char *cond;
	assert_int_equal(step_str(s, first, &out, &cond), PV_SASL_CONTINUE);
	pv_free(first);
	pv_sasl_free(s);
	return out;
}

static void test_unknown_user_fake(void **state)
{
	store st = {0};
	add_user(&st, "user", "pencil");
	pv_sasl_ctx ctx = make_ctx(&st);
	ctx.fake_iterations = 10000;
	static const unsigned char secret[] = "server secret";
	ctx.secret = secret;
	ctx.secret_len = sizeof(secret) - 1;

	char *a = server_first_for(&ctx, "SCRAM-SHA-256", "nobody");
	char *b = server_first_for(&ctx, "SCRAM-SHA-256", "nobody");
	char *c = server_first_for(&ctx, "SCRAM-SHA-256", "somebody");
	char *sa = attr(a, 's'), *sb = attr(b, 's'), *sc = attr(c, 's'), *ia = attr(a, 'i');
	/* looks like an account: a 16-byte salt, stable per user, the configured count */
	assert_string_equal(sa, sb);
	assert_string_not_equal(sa, sc);
	assert_int_equal(strlen(sa), 24);
	assert_string_equal(ia, "10000");
	pv_free(sa), pv_free(sb), pv_free(sc), pv_free(ia), pv_free(a), pv_free(b), pv_free(c);

	/* another secret, another salt */
	static const unsigned char secret2[] = "other secret";
	char *d = server_first_for(&ctx, "SCRAM-SHA-256", "nobody");
	ctx.secret = secret2;
	ctx.secret_len = sizeof(secret2) - 1;
	char *e = server_first_for(&ctx, "SCRAM-SHA-256", "nobody");
	char *sd = attr(d, 's'), *se = attr(e, 's');
	assert_string_not_equal(sd, se);
	pv_free(sd), pv_free(se), pv_free(d), pv_free(e);

	/* no secret configured: a per-process one, still stable */
	ctx.secret = NULL;
	ctx.secret_len = 0;
	ctx.fake_iterations = 0;
	char *f = server_first_for(&ctx, "SCRAM-SHA-1", "nobody");
	char *g = server_first_for(&ctx, "SCRAM-SHA-1", "nobody");
	char *sf = attr(f, 's'), *sg = attr(g, 's'), *ig = attr(g, 'i');
	assert_string_equal(sf, sg);
	assert_string_equal(ig, "4096");
	pv_free(sf), pv_free(sg), pv_free(ig), pv_free(f), pv_free(g);
}

static void test_nonce_and_tampering(void **state)
{
	store st = {0};
	add_user(&st, "user", "pencil");
	pv_sasl_ctx ctx = make_ctx(&st);
	char *out, *fin;
	const char *cond;

	/* random server nonce: extends the client nonce, 24 printable chars */
	pv_sasl *s = pv_sasl_new("SCRAM-SHA-256", &ctx);
	assert_int_equal(step_str(s, "n,,n=user,r=cnonce", &out, &cond), PV_SASL_CONTINUE);
	char *r = attr(out, 'r');
	assert_int_equal(strlen(r), strlen("cnonce") + 24);
	assert_memory_equal(r, "cnonce", 6);
	/* client-final with a different nonce is refused even with a correct proof */
	r[strlen(r) - 1] ^= 1;
	char *bad_sfirst = pv_sprintf("r=%s,%s", r, strchr(out, ',') + 1);
	fin = client_final("SCRAM-SHA-256", "pencil", "n=user,r=cnonce", bad_sfirst, "biws");
	pv_free(out);
	assert_int_equal(step_str(s, fin, &out, &cond), PV_SASL_FAILURE);
	assert_string_equal(cond, "not-authorized");
	assert_null(out);
	pv_free(fin), pv_free(bad_sfirst), pv_free(r);
	pv_sasl_free(s);

	/* gs2 header tampering: c= must echo the header the client sent first */
	s = pv_sasl_new("SCRAM-SHA-256", &ctx);
	assert_int_equal(step_str(s, "n,,n=user,r=cnonce", &out, &cond), PV_SASL_CONTINUE);
	fin = client_final("SCRAM-SHA-256", "pencil", "n=user,r=cnonce", out, "eSws"); /* "y,," */
	pv_free(out);
	assert_int_equal(step_str(s, fin, &out, &cond), PV_SASL_FAILURE);
	assert_string_equal(cond, "not-authorized");
	pv_free(fin);
	pv_sasl_free(s);

	/* empty initial response: an empty challenge first, then the normal exchange */
	s = pv_sasl_new("SCRAM-SHA-1", &ctx);
	assert_int_equal(step_str(s, "", &out, &cond), PV_SASL_CONTINUE);
	assert_string_equal(out, "");
	pv_free(out);
	assert_int_equal(step_str(s, "n,,n=user,r=cn", &out, &cond), PV_SASL_CONTINUE);
	fin = client_final("SCRAM-SHA-1", "pencil", "n=user,r=cn", out, "biws");
	pv_free(out);
	assert_int_equal(step_str(s, fin, &out, &cond), PV_SASL_SUCCESS);
	pv_free(out);
	pv_free(fin);
	pv_sasl_free(s);

	/* storage trouble is a temporary failure */
	st.fail_with = PV_EIO;
	s = pv_sasl_new("SCRAM-SHA-1", &ctx);
	assert_int_equal(step_str(s, "n,,n=user,r=cn", &out, &cond), PV_SASL_FAILURE);
	assert_string_equal(cond, "temporary-auth-failure");
	pv_sasl_free(s);
}

static void test_scram_malformed(void **state)
{
	store st = {0};
	add_user(&st, "user", "pencil");
	pv_sasl_ctx ctx = make_ctx(&st);
	ctx.offer_plus = false;
	static const char *const first[] = {
		"x,,n=user,r=abc",         /* bad cbind flag */
		"n,n=user,r=abc",          /* missing authzid field */
		"n",                       /* truncated */
		"n,,",                     /* no bare message */
		"p=,,n=user,r=abc",        /* empty cb-name */
		"p=tls exporter,,n=user,r=abc",
		"n,b=x,n=user,r=abc",      /* not an authzid */
		"n,a=,n=user,r=abc",       /* empty authzid */
		"n,,m=ext,n=user,r=abc",   /* mandatory extension */
		"n,,n=,r=abc",             /* empty user */
		"n,,n=us=er,r=abc",        /* bad '=' escape */
		"n,,n=us=2,r=abc",
		"n,,n=user",               /* no nonce */
		"n,,r=abc,n=user",         /* wrong order */
		"n,,n=user,r=",            /* empty nonce */
		"n,,n=user,r=a b",         /* non-printable nonce */
		"n,,n=user,r=abc,",        /* empty extension */
		"n,,n=user,r=abc,1=x",     /* bad extension name */
	};
	for (size_t i = 0; i < sizeof(first) / sizeof(first[0]); i++) {
		pv_sasl *s = pv_sasl_new("SCRAM-SHA-256", &ctx);
		char *out;
		const char *cond;
		if (step_str(s, first[i], &out, &cond) != PV_SASL_FAILURE)
			fail_msg("accepted client-first \"%s\"", first[i]);
		assert_null(out);
		assert_string_equal(cond, "malformed-request");
		/* and it stays failed */
		assert_int_equal(step_str(s, "n,,n=user,r=abc", &out, &cond), PV_SASL_FAILURE);
		pv_sasl_free(s);
	}

	/* user names that cannot be localparts cannot be accounts */
	{
		pv_sasl *s = pv_sasl_new("SCRAM-SHA-256", &ctx);
		char *out;
		const char *cond;
		assert_int_equal(step_str(s, "n,,n=a b,r=abc", &out, &cond), PV_SASL_FAILURE);
		assert_string_equal(cond, "not-authorized");
		pv_sasl_free(s);
	}

	/* embedded NUL */
	{
		pv_sasl *s = pv_sasl_new("SCRAM-SHA-256", &ctx);
		unsigned char *out;
		size_t olen;
		const char *cond;
		static const char m[] = "n,,n=us\0er,r=abc";
		assert_int_equal(pv_sasl_step(s, (const unsigned char *)m, sizeof(m) - 1, &out, &olen,
					 &cond),
			PV_SASL_FAILURE);
		assert_string_equal(cond, "malformed-request");
		pv_sasl_free(s);
	}

	static const char *const final[] = {
		"",
		"r=NONCE,p=AAAA",
		"c=biws",
		"c=biws,r=NONCE",
		"c=biws,r=NONCE,p=",
		"c=biws,r=NONCE,p=AAAA",       /* proof of the wrong size */
		"c=bi!s,r=NONCE,p=AAAA",       /* bad base64 */
		"c=biws,r=NONCE,x=1",          /* no proof */
		"c=biws,r=NONCE,p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=,",
	};
	for (size_t i = 0; i < sizeof(final) / sizeof(final[0]); i++) {
		pv_sasl *s = pv_sasl_new("SCRAM-SHA-256", &ctx);
		char *out;
		const char *cond;
		assert_int_equal(step_str(s, "n,,n=user,r=abc", &out, &cond), PV_SASL_CONTINUE);
		char *nonce = attr(out, 'r');
		pv_free(out);
		/* substitute the real nonce for NONCE */
		pv_buf b;
		pv_buf_init(&b);
		const char *f = final[i], *n = strstr(f, "NONCE");
		if (n) {
			pv_buf_append(&b, f, (size_t)(n - f));
			pv_buf_puts(&b, nonce);
			pv_buf_puts(&b, n + 5);
		} else {
			pv_buf_puts(&b, f);
		}
		pv_sasl_rc rc = step_str(s, b.data, &out, &cond);
		/* an empty client-final is not an "empty initial response" */
		if (rc != PV_SASL_FAILURE)
			fail_msg("accepted client-final \"%s\"", b.data);
		assert_string_equal(cond, "malformed-request");
		pv_buf_fini(&b);
		pv_free(nonce);
		pv_sasl_free(s);
	}
}

/* ---- PLAIN and the mechanism list ---------------------------------------------------------- */

static pv_sasl_rc plain(const pv_sasl_ctx *ctx, const char *msg, size_t len, const char **cond,
	char **user)
{
	pv_sasl *s = pv_sasl_new("PLAIN", ctx);
	unsigned char *out;
	size_t olen;
	assert_non_null(s);
	pv_sasl_rc rc = pv_sasl_step(s, (const unsigned char *)msg, len, &out, &olen, cond);
	assert_null(out);
	if (user)
		*user = pv_strdup(pv_sasl_user(s));
	pv_sasl_free(s);
	return rc;
}

#define PLAIN(ctx, lit, cond, user) plain(ctx, lit, sizeof(lit) - 1, cond, user)

static void test_plain(void **state)
{
	store st = {0};
	add_user(&st, "user", "pencil");
	/* an account with only a SCRAM-SHA-1 credential (from the RFC vector) */
	add_vec(&st, "old", "SCRAM-SHA-1", "pencil", "QSXCR+Q6sek8bf92", 4096);
	pv_sasl_ctx ctx = make_ctx(&st);
	ctx.host = "example.com";
	const char *cond;
	char *user;

	assert_int_equal(PLAIN(&ctx, "\0user\0pencil", &cond, &user), PV_SASL_SUCCESS);
	assert_null(cond);
	assert_string_equal(user, "user");
	pv_free(user);
	assert_int_equal(PLAIN(&ctx, "\0User\0pencil", &cond, NULL), PV_SASL_SUCCESS);
	assert_int_equal(PLAIN(&ctx, "user@example.com\0user\0pencil", &cond, NULL),
		PV_SASL_SUCCESS);
	assert_int_equal(PLAIN(&ctx, "\0old\0pencil", &cond, NULL), PV_SASL_SUCCESS);

	assert_int_equal(PLAIN(&ctx, "\0user\0pencil2", &cond, &user), PV_SASL_FAILURE);
	assert_string_equal(cond, "not-authorized");
	assert_string_equal(user, "user");
	pv_free(user);
	assert_int_equal(PLAIN(&ctx, "\0old\0Pencil", &cond, NULL), PV_SASL_FAILURE);
	assert_int_equal(PLAIN(&ctx, "\0nobody\0pencil", &cond, &user), PV_SASL_FAILURE);
	assert_string_equal(cond, "not-authorized");
	assert_string_equal(user, "nobody");
	pv_free(user);
	assert_int_equal(PLAIN(&ctx, "admin@example.com\0user\0pencil", &cond, NULL),
		PV_SASL_FAILURE);
	assert_string_equal(cond, "invalid-authzid");

	/* malformed */
	assert_int_equal(PLAIN(&ctx, "user\0pencil", &cond, NULL), PV_SASL_FAILURE);
	assert_string_equal(cond, "malformed-request");
	assert_int_equal(PLAIN(&ctx, "\0\0pencil", &cond, NULL), PV_SASL_FAILURE);
	assert_string_equal(cond, "malformed-request");
	assert_int_equal(PLAIN(&ctx, "\0user\0", &cond, NULL), PV_SASL_FAILURE);
	assert_string_equal(cond, "malformed-request");
	assert_int_equal(PLAIN(&ctx, "\0user\0pen\0cil", &cond, NULL), PV_SASL_FAILURE);
	assert_string_equal(cond, "malformed-request");

	/* empty initial response, then the credentials */
	pv_sasl *s = pv_sasl_new("PLAIN", &ctx);
	unsigned char *out;
	size_t olen;
	assert_int_equal(pv_sasl_step(s, NULL, 0, &out, &olen, &cond), PV_SASL_CONTINUE);
	assert_non_null(out);
	assert_int_equal(olen, 0);
	pv_free(out);
	assert_int_equal(pv_sasl_step(s, (const unsigned char *)"\0user\0pencil", 12, &out, &olen,
				 &cond),
		PV_SASL_SUCCESS);
	pv_sasl_free(s);

	/* PLAIN is not available without TLS */
	ctx.tls = false;
	assert_null(pv_sasl_new("PLAIN", &ctx));
}

static void test_mechs(void **state)
{
	const char *const *m = pv_sasl_mechs(true, true);
	static const char *const want_all[] = {"SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS",
		"SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN", NULL};
	for (size_t i = 0; i < sizeof(want_all) / sizeof(want_all[0]); i++) {
		if (want_all[i])
			assert_string_equal(m[i], want_all[i]);
		else
			assert_null(m[i]);
	}
	m = pv_sasl_mechs(true, false);
	assert_string_equal(m[0], "SCRAM-SHA-256");
	assert_string_equal(m[1], "SCRAM-SHA-1");
	assert_string_equal(m[2], "PLAIN");
	assert_null(m[3]);
	m = pv_sasl_mechs(false, false);
	assert_string_equal(m[0], "SCRAM-SHA-256");
	assert_string_equal(m[1], "SCRAM-SHA-1");
	assert_null(m[2]);

	store st = {0};
	pv_sasl_ctx ctx = make_ctx(&st);
	assert_null(pv_sasl_new("DIGEST-MD5", &ctx));
	assert_null(pv_sasl_new("scram-sha-1", &ctx));
	pv_sasl *s = pv_sasl_new("SCRAM-SHA-256-PLUS", &ctx);
	assert_non_null(s);
	assert_null(pv_sasl_user(s));
	pv_sasl_free(s);
	/* -PLUS needs channel binding data */
	ctx.cb_type = NULL;
	assert_null(pv_sasl_new("SCRAM-SHA-256-PLUS", &ctx));
	assert_null(pv_sasl_new("SCRAM-SHA-1-PLUS", &ctx));
	s = pv_sasl_new("SCRAM-SHA-1", &ctx);
	assert_non_null(s);
	pv_sasl_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc5802_sha1),
		cmocka_unit_test(test_rfc7677_sha256),
		cmocka_unit_test(test_derive_vectors),
		cmocka_unit_test(test_make_creds),
		cmocka_unit_test(test_scram_roundtrips),
		cmocka_unit_test(test_unknown_user_fake),
		cmocka_unit_test(test_nonce_and_tampering),
		cmocka_unit_test(test_scram_malformed),
		cmocka_unit_test(test_plain),
		cmocka_unit_test(test_mechs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
