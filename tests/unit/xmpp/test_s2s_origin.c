/* test_s2s_origin.c -- unit tests for src/xmpp/s2s_origin.c (origin proofs on relayed
 * stanzas, urn:peyvand:relay:0).  Certificates are made here with the OpenSSL API (EC
 * P-256 and Ed25519): an interconnect CA, an unrelated CA, and leaves naming the
 * providers.  Covered: a good proof (also after the serialise/parse round trip an
 * exchange performs, and with the `to` readdressed from a number address); a tampered
 * payload, type, id or from; a certificate for another domain; a certificate from
 * another CA (and the same one accepted by its pin); a missing or truncated proof. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "peyvand/pv_stanza.h"
#include "peyvand/pv_util.h"
#include "peyvand/pv_xml.h"
#include "xmpp/s2s_auth.h"
#include "xmpp/s2s_origin.h"

typedef struct key_cert {
	EVP_PKEY *key;
	X509 *cert;
} key_cert;

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
	X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	assert_non_null(e);
	X509_add_ext(x, e, -1);
	X509_EXTENSION_free(e);
}

static EVP_PKEY *make_key(bool ed)
{
	return ed ? EVP_PKEY_Q_keygen(NULL, NULL, "ED25519") : EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
}

/* A CA (issuer NULL) or a leaf naming `domain` signed by issuer. */
static key_cert issue(const char *cn, const char *domain, const key_cert *issuer, bool ed)
{
	static long serial = 1;
	key_cert kc = {make_key(ed), X509_new()};
	assert_non_null(kc.key);
	X509_set_version(kc.cert, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(kc.cert), serial++);
	X509_gmtime_adj(X509_getm_notBefore(kc.cert), -86400);
	X509_gmtime_adj(X509_getm_notAfter(kc.cert), 30L * 86400);
	X509_set_pubkey(kc.cert, kc.key);
	X509_NAME *n = X509_get_subject_name(kc.cert);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(kc.cert, issuer ? X509_get_subject_name(issuer->cert) : n);
	if (!issuer) {
		add_ext(kc.cert, NULL, NID_basic_constraints, "critical,CA:TRUE");
		add_ext(kc.cert, NULL, NID_key_usage, "critical,keyCertSign,cRLSign");
	} else {
		char san[256];
		snprintf(san, sizeof(san), "DNS:%s", domain);
		add_ext(kc.cert, issuer->cert, NID_basic_constraints, "critical,CA:FALSE");
		add_ext(kc.cert, issuer->cert, NID_ext_key_usage, "serverAuth,clientAuth");
		add_ext(kc.cert, issuer->cert, NID_subject_alt_name, san);
	}
	const key_cert *signer = issuer ? issuer : &kc;
	int id = EVP_PKEY_get_id(signer->key);
	assert_true(X509_sign(kc.cert, signer->key, id == EVP_PKEY_ED25519 ? NULL : EVP_sha256()) > 0);
	return kc;
}

static key_cert ca, other_ca, bale, bale_other, eitaa, bale_ed;
static X509_STORE *ca_store, *other_store;

static int setup(void **state)
{
	ca = issue("interconnect CA", NULL, NULL, false);
	other_ca = issue("other CA", NULL, NULL, false);
	bale = issue("bale.localhost", "bale.localhost", &ca, false);
	bale_ed = issue("bale.localhost", "bale.localhost", &ca, true);
	bale_other = issue("bale.localhost", "bale.localhost", &other_ca, false);
	eitaa = issue("eitaa.localhost", "eitaa.localhost", &ca, false);
	ca_store = X509_STORE_new();
	X509_STORE_add_cert(ca_store, ca.cert);
	other_store = X509_STORE_new();
	X509_STORE_add_cert(other_store, other_ca.cert);
	return 0;
}

static int teardown(void **state)
{
	key_cert *all[] = {&ca, &other_ca, &bale, &bale_ed, &bale_other, &eitaa};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		EVP_PKEY_free(all[i]->key);
		X509_free(all[i]->cert);
	}
	X509_STORE_free(ca_store);
	X509_STORE_free(other_store);
	return 0;
}

#define MSG                                                                                             \
	"<message from='alice@bale.localhost/phone' to='bob@rubika.localhost' type='chat' id='m1'>"     \
	"<body>salam &amp; hello</body><active xmlns='http://jabber.org/protocol/chatstates'/>"         \
	"<stanza-id xmlns='urn:xmpp:sid:0' by='bale.localhost' id='e:1'/></message>"

/* Sign MSG (with `to` replaced when given) with kc; the stanza as the exchange would
 * pass it on: serialised and parsed again. */
static pv_xml *signed_msg(const key_cert *kc, const char *to)
{
	pv_xml *x = pv_xml_parse(MSG, strlen(MSG));
	assert_non_null(x);
	if (to)
		pv_xml_set_attr(x, "to", to);
	pv_origin_signer *s = pv_origin_signer_new(kc->key, kc->cert);
	assert_non_null(s);
	assert_int_equal(pv_origin_sign(s, x, 1700000000000LL), 0);
	pv_origin_signer_free(s);
	pv_buf b;
	pv_buf_init(&b);
	pv_xml_serialize(x, PV_NS_CLIENT, &b);
	pv_xml_free(x);
	x = pv_xml_parse(b.data, b.len);
	pv_buf_fini(&b);
	assert_non_null(x);
	return x;
}

static void test_good(void **state)
{
	pv_xml *x = signed_msg(&bale, NULL);
	const char *addressed = NULL, *why = "unset";
	assert_true(pv_origin_verify(x, ca_store, NULL, &addressed, &why));
	assert_null(why);
	assert_string_equal(addressed, "bob@rubika.localhost");
	/* The exchange's stanza-id and its removal are not part of the proof. */
	pv_xml *sid = pv_xml_child(x, "stanza-id", "urn:xmpp:sid:0");
	assert_non_null(sid);
	pv_xml_set_attr(sid, "id", "other:7");
	assert_true(pv_origin_verify(x, ca_store, NULL, NULL, NULL));
	pv_xml_free(sid);
	assert_true(pv_origin_verify(x, ca_store, NULL, NULL, NULL));
	pv_xml_free(x);
}

static void test_good_ed25519(void **state)
{
	pv_xml *x = signed_msg(&bale_ed, NULL);
	const char *why = NULL;
	assert_true(pv_origin_verify(x, ca_store, NULL, NULL, &why));
	pv_xml_free(x);
}

/* A number address: the exchange changes `to`, the proof names what was addressed. */
static void test_number_readdressed(void **state)
{
	const char *num = "abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrst@exchange.localhost";
	pv_xml *x = signed_msg(&bale, num);
	pv_xml_set_attr(x, "to", "bob@rubika.localhost");
	const char *addressed = NULL;
	assert_true(pv_origin_verify(x, ca_store, NULL, &addressed, NULL));
	assert_string_equal(addressed, num);
	/* ...but it cannot change what was addressed. */
	pv_xml_set_attr(pv_xml_child(x, "origin", PV_NS_RELAY), "to", "bob@rubika.localhost");
	const char *why = NULL;
	assert_false(pv_origin_verify(x, ca_store, NULL, NULL, &why));
	assert_string_equal(why, "bad signature");
	pv_xml_free(x);
}

static void test_tampered(void **state)
{
	static const struct {
		const char *attr, *value; /* top-level attribute to change, or NULL: the body */
	} cases[] = {
		{NULL, NULL}, {"type", "normal"}, {"id", "m2"}, {"from", "alice@bale.localhost/laptop"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		pv_xml *x = signed_msg(&bale, NULL);
		if (cases[i].attr) {
			pv_xml_set_attr(x, cases[i].attr, cases[i].value);
		} else {
			pv_xml *body = pv_xml_child(x, "body", NULL);
			if (!body)
				body = pv_xml_child(x, "body", PV_NS_CLIENT);
			assert_non_null(body);
			pv_xml_add_text(body, "!", 1);
		}
		const char *why = NULL;
		assert_false(pv_origin_verify(x, ca_store, NULL, NULL, &why));
		assert_string_equal(why, "bad signature");
		pv_xml_free(x);
	}
	/* An element added by someone on the way is payload too. */
	pv_xml *x = signed_msg(&bale, NULL);
	pv_xml_add_child(x, "subject", PV_NS_CLIENT);
	assert_false(pv_origin_verify(x, ca_store, NULL, NULL, NULL));
	pv_xml_free(x);
}

/* eitaa's (valid) certificate cannot vouch for a stanza from bale. */
static void test_wrong_domain(void **state)
{
	pv_xml *x = signed_msg(&eitaa, NULL);
	const char *why = NULL;
	assert_false(pv_origin_verify(x, ca_store, NULL, NULL, &why));
	assert_string_equal(why, "name mismatch");
	pv_xml_free(x);
}

static void test_wrong_ca(void **state)
{
	pv_xml *x = signed_msg(&bale_other, NULL);
	const char *why = NULL;
	assert_false(pv_origin_verify(x, ca_store, NULL, NULL, &why));
	assert_non_null(why);
	/* Our own CA's leaf against the other CA: refused as well. */
	pv_xml *y = signed_msg(&bale, NULL);
	assert_false(pv_origin_verify(y, other_store, NULL, NULL, NULL));
	/* A member pinned by fingerprint needs no CA. */
	unsigned char md[32];
	unsigned n = 0;
	X509_digest(bale_other.cert, EVP_sha256(), md, &n);
	char pin[PV_CERT_FINGERPRINT_MAX] = "sha256:";
	for (unsigned i = 0; i < n; i++)
		snprintf(pin + strlen(pin), sizeof(pin) - strlen(pin), i ? ":%02x" : "%02x", md[i]);
	assert_true(pv_origin_verify(x, ca_store, pin, NULL, NULL));
	assert_false(pv_origin_verify(y, other_store, pin, NULL, NULL));
	pv_xml_free(x);
	pv_xml_free(y);
}

static void test_missing_or_broken(void **state)
{
	pv_xml *x = pv_xml_parse(MSG, strlen(MSG));
	const char *why = NULL;
	assert_false(pv_origin_verify(x, ca_store, NULL, NULL, &why));
	assert_string_equal(why, "no origin proof");
	pv_xml_free(x);
	x = signed_msg(&bale, NULL);
	pv_xml *o = pv_xml_child(x, "origin", PV_NS_RELAY);
	pv_xml_set_attr(o, "sig", "!!!not base64");
	assert_false(pv_origin_verify(x, ca_store, NULL, NULL, &why));
	pv_xml_free(pv_xml_child(o, "cert", PV_NS_RELAY));
	assert_false(pv_origin_verify(x, ca_store, NULL, NULL, &why));
	assert_string_equal(why, "incomplete origin proof");
	pv_xml_free(x);
	/* Signing needs from and to. */
	x = pv_xml_parse("<message to='a@b'/>", 19);
	pv_origin_signer *s = pv_origin_signer_new(bale.key, bale.cert);
	assert_int_equal(pv_origin_sign(s, x, 1), PV_EINVAL);
	pv_origin_signer_free(s);
	pv_xml_free(x);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good),
		cmocka_unit_test(test_good_ed25519),
		cmocka_unit_test(test_number_readdressed),
		cmocka_unit_test(test_tampered),
		cmocka_unit_test(test_wrong_domain),
		cmocka_unit_test(test_wrong_ca),
		cmocka_unit_test(test_missing_or_broken),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
