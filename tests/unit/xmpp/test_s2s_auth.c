/* test_s2s_auth.c -- unit tests for src/xmpp/s2s_auth.c.  Every certificate is made here
 * with the OpenSSL API (EC P-256): a root CA, an intermediate, an unrelated CA, and
 * leaves carrying each kind of identity (dNSName exact and wildcard, SRV-ID, XmppAddr,
 * CN only, IDN).  Covered: the RFC 6125 / RFC 6120 13.7.1.2 name table with wildcard
 * edge cases; chain verification over real TLS 1.2 and 1.3 handshakes run through
 * memory BIO pairs (trusted via an intermediate, untrusted, expired, not yet valid,
 * EKU, missing chain, no certificate); fingerprints against an independent DER hash;
 * CA bundle loading; the membership decision table; interconnect config loading and its
 * errors; XEP-0185 dialback key vectors (computed independently with Python's hmac and
 * hashlib, the first one being the XEP's own example). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "core/config.h"
#include "peyvand/pv_util.h"
#include "xmpp/s2s_auth.h"

#define DAY (24L * 60 * 60)
#define OID_SRV "1.3.6.1.5.5.7.8.7"  /* id-on-dnsSRV, RFC 4985 */
#define OID_XMPP "1.3.6.1.5.5.7.8.5" /* id-on-xmppAddr, RFC 6120 13.7.1.4 */

/* ---- making certificates ------------------------------------------------------------ */

enum san_kind { SAN_DNS = 1, SAN_SRV, SAN_XMPP, SAN_EMAIL, SAN_SRV_UTF8, SAN_XMPP_IA5 };

typedef struct san {
	int kind;
	const char *value;
	size_t len; /* 0: strlen(value); set to smuggle an embedded NUL */
} san;

typedef struct cert_spec {
	const char *cn;  /* subject CN, NULL for none */
	san sans[5];     /* kind 0 ends; none at all: no subjectAltName extension */
	bool ca;
	const char *eku; /* extendedKeyUsage value, NULL for no extension */
	long nb, na;     /* validity, seconds from now; both 0: -1 day .. +30 days */
} cert_spec;

typedef struct key_cert {
	EVP_PKEY *key;
	X509 *cert;
} key_cert;

static void add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
	X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, ctx, nid, value);
	assert_non_null(ext);
	assert_int_equal(X509_add_ext(x, ext, -1), 1);
	X509_EXTENSION_free(ext);
}

static GENERAL_NAME *gn_string(int gen_type, const san *s)
{
	GENERAL_NAME *gn = GENERAL_NAME_new();
	ASN1_IA5STRING *str = ASN1_IA5STRING_new();
	size_t len = s->len ? s->len : strlen(s->value);
	assert_int_equal(ASN1_STRING_set(str, s->value, (int)len), 1);
	GENERAL_NAME_set0_value(gn, gen_type, str);
	return gn;
}

/* otherName built from the dotted OID, independently of the NIDs the code under test
 * looks for. */
static GENERAL_NAME *gn_other(const char *oid, int asn1_type, const char *value)
{
	GENERAL_NAME *gn = GENERAL_NAME_new();
	ASN1_OBJECT *obj = OBJ_txt2obj(oid, 1);
	ASN1_TYPE *val = ASN1_TYPE_new();
	ASN1_STRING *str = ASN1_STRING_type_new(asn1_type);
	assert_non_null(obj);
	assert_int_equal(ASN1_STRING_set(str, value, (int)strlen(value)), 1);
	ASN1_TYPE_set(val, asn1_type, str);
	assert_int_equal(GENERAL_NAME_set0_othername(gn, obj, val), 1);
	return gn;
}

static void add_sans(X509 *x, const san *sans)
{
	GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
	for (const san *s = sans; s->kind; s++) {
		GENERAL_NAME *gn = NULL;
		switch (s->kind) {
		case SAN_DNS: gn = gn_string(GEN_DNS, s); break;
		case SAN_EMAIL: gn = gn_string(GEN_EMAIL, s); break;
		case SAN_SRV: gn = gn_other(OID_SRV, V_ASN1_IA5STRING, s->value); break;
		case SAN_XMPP: gn = gn_other(OID_XMPP, V_ASN1_UTF8STRING, s->value); break;
		case SAN_SRV_UTF8: gn = gn_other(OID_SRV, V_ASN1_UTF8STRING, s->value); break;
		case SAN_XMPP_IA5: gn = gn_other(OID_XMPP, V_ASN1_IA5STRING, s->value); break;
		}
		assert_non_null(gn);
		sk_GENERAL_NAME_push(gens, gn);
	}
	assert_int_equal(X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT), 1);
	GENERAL_NAMES_free(gens);
}

/* A new P-256 key and a certificate for it, signed by issuer (NULL: self-signed). */
static key_cert issue(const cert_spec *sp, const key_cert *issuer)
{
	static long serial = 1;
	key_cert kc = {EVP_EC_gen("P-256"), X509_new()};
	X509 *x = kc.cert;
	X509V3_CTX ctx;
	long nb = sp->nb, na = sp->na;

	assert_non_null(kc.key);
	assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
	ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
	if (nb == 0 && na == 0) {
		nb = -DAY;
		na = 30 * DAY;
	}
	X509_gmtime_adj(X509_getm_notBefore(x), nb);
	X509_gmtime_adj(X509_getm_notAfter(x), na);
	X509_NAME *name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *)"peyvand tests", -1,
				   -1, 0);
	if (sp->cn)
		assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
							    (const unsigned char *)sp->cn, -1, -1, 0),
				 1);
	X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer->cert) : name);
	assert_int_equal(X509_set_pubkey(x, kc.key), 1);

	X509V3_set_ctx(&ctx, issuer ? issuer->cert : x, x, NULL, NULL, 0);
	add_ext(x, &ctx, NID_subject_key_identifier, "hash");
	add_ext(x, &ctx, NID_authority_key_identifier, "keyid:always");
	if (sp->ca) {
		add_ext(x, &ctx, NID_basic_constraints, "critical,CA:TRUE");
		add_ext(x, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign");
	} else {
		add_ext(x, &ctx, NID_basic_constraints, "CA:FALSE");
	}
	if (sp->eku)
		add_ext(x, &ctx, NID_ext_key_usage, sp->eku);
	if (sp->sans[0].kind)
		add_sans(x, sp->sans);
	assert_true(X509_sign(x, issuer ? issuer->key : kc.key, EVP_sha256()) > 0);
	return kc;
}

static void kc_free(key_cert *kc)
{
	EVP_PKEY_free(kc->key);
	X509_free(kc->cert);
	kc->key = NULL;
	kc->cert = NULL;
}

static void write_pem(const char *path, X509 *cert)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(PEM_write_X509(f, cert), 1);
	fclose(f);
}

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* "sha256:AB:..." computed without the code under test: DER bytes, EVP_Digest, printf. */
static void fp_independent(X509 *x, char out[PV_CERT_FINGERPRINT_MAX])
{
	unsigned char *der = NULL, md[EVP_MAX_MD_SIZE];
	unsigned int ml = 0;
	int n = i2d_X509(x, &der);
	assert_true(n > 0);
	assert_int_equal(EVP_Digest(der, (size_t)n, md, &ml, EVP_sha256(), NULL), 1);
	assert_int_equal(ml, 32);
	OPENSSL_free(der);
	strcpy(out, "sha256");
	for (unsigned i = 0; i < ml; i++)
		sprintf(out + strlen(out), ":%02X", md[i]);
}

/* ---- fixture: CAs, a trust store, a data dir ------------------------------------------- */

static key_cert root, inter, other_ca, srv;
static X509_STORE *root_store, *other_store;
static char tmpdir[64];
static char root_pem[128], garbage_pem[128], empty_pem[128];

static int setup(void **state)
{
	static const cert_spec root_spec = {.cn = "peyvand test root", .ca = true};
	static const cert_spec inter_spec = {.cn = "peyvand test intermediate", .ca = true};
	static const cert_spec other_spec = {.cn = "someone else's root", .ca = true};
	static const cert_spec srv_spec = {.cn = "srv.example",
					   .sans = {{SAN_DNS, "srv.example", 0}},
					   .eku = "serverAuth"};

	root = issue(&root_spec, NULL);
	inter = issue(&inter_spec, &root);
	other_ca = issue(&other_spec, NULL);
	srv = issue(&srv_spec, &inter);
	root_store = X509_STORE_new();
	X509_STORE_add_cert(root_store, root.cert);
	other_store = X509_STORE_new();
	X509_STORE_add_cert(other_store, other_ca.cert);

	strcpy(tmpdir, "/tmp/pv_s2s_auth_XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	snprintf(root_pem, sizeof(root_pem), "%s/root.pem", tmpdir);
	snprintf(garbage_pem, sizeof(garbage_pem), "%s/garbage.pem", tmpdir);
	snprintf(empty_pem, sizeof(empty_pem), "%s/empty.pem", tmpdir);
	write_pem(root_pem, root.cert);
	write_text(garbage_pem, "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n"
				"-----END CERTIFICATE-----\n");
	write_text(empty_pem, "");
	return 0;
}

static int teardown(void **state)
{
	unlink(root_pem);
	unlink(garbage_pem);
	unlink(empty_pem);
	rmdir(tmpdir);
	X509_STORE_free(root_store);
	X509_STORE_free(other_store);
	kc_free(&root);
	kc_free(&inter);
	kc_free(&other_ca);
	kc_free(&srv);
	return 0;
}

/* ---- TLS over a memory BIO pair ------------------------------------------------------ */

typedef struct tls_pair {
	SSL_CTX *sctx, *cctx;
	SSL *s, *c; /* s: our side accepting; c: the dialling peer (or us, dialling srv) */
} tls_pair;

/* The TLS layer asks for a peer certificate but accepts anything: the code under test
 * decides afterwards. */
static int accept_any(int ok, X509_STORE_CTX *x)
{
	return 1;
}

static void use_cert(SSL_CTX *ctx, const key_cert *leaf, X509 *chain)
{
	if (!leaf)
		return;
	assert_int_equal(SSL_CTX_use_certificate(ctx, leaf->cert), 1);
	assert_int_equal(SSL_CTX_use_PrivateKey(ctx, leaf->key), 1);
	if (chain)
		assert_int_equal(SSL_CTX_add1_chain_cert(ctx, chain), 1);
}

/* Server presents srv (+ intermediate); the client presents cli (+ cli_chain), or none. */
static void tls_connect(tls_pair *tp, int version, const key_cert *cli, X509 *cli_chain)
{
	BIO *b1 = NULL, *b2 = NULL;
	bool cdone = false, sdone = false;

	memset(tp, 0, sizeof(*tp));
	tp->sctx = SSL_CTX_new(TLS_server_method());
	tp->cctx = SSL_CTX_new(TLS_client_method());
	assert_non_null(tp->sctx);
	assert_non_null(tp->cctx);
	SSL_CTX_set_min_proto_version(tp->sctx, version);
	SSL_CTX_set_max_proto_version(tp->sctx, version);
	SSL_CTX_set_min_proto_version(tp->cctx, version);
	SSL_CTX_set_max_proto_version(tp->cctx, version);
	use_cert(tp->sctx, &srv, inter.cert);
	use_cert(tp->cctx, cli, cli_chain);
	SSL_CTX_set_verify(tp->sctx, SSL_VERIFY_PEER, accept_any);
	SSL_CTX_set_verify(tp->cctx, SSL_VERIFY_PEER, accept_any);
	tp->s = SSL_new(tp->sctx);
	tp->c = SSL_new(tp->cctx);
	assert_int_equal(BIO_new_bio_pair(&b1, 0, &b2, 0), 1);
	SSL_set_bio(tp->c, b1, b1);
	SSL_set_bio(tp->s, b2, b2);
	SSL_set_connect_state(tp->c);
	SSL_set_accept_state(tp->s);
	for (int i = 0; i < 50 && !(cdone && sdone); i++) {
		SSL *sides[2] = {tp->c, tp->s};
		bool *done[2] = {&cdone, &sdone};
		for (int k = 0; k < 2; k++) {
			if (*done[k])
				continue;
			int r = SSL_do_handshake(sides[k]);
			if (r == 1) {
				*done[k] = true;
				continue;
			}
			int e = SSL_get_error(sides[k], r);
			if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
				fail_msg("handshake failed on %s: %d", k ? "server" : "client", e);
		}
	}
	assert_true(cdone && sdone);
	assert_int_equal(SSL_version(tp->s), version);
}

static void tls_close(tls_pair *tp)
{
	SSL_free(tp->s);
	SSL_free(tp->c);
	SSL_CTX_free(tp->sctx);
	SSL_CTX_free(tp->cctx);
	memset(tp, 0, sizeof(*tp));
}

/* ---- names ------------------------------------------------------------------------- */

typedef struct name_check {
	const char *domain;
	bool want;
} name_check;

typedef struct name_case {
	const char *label;
	cert_spec spec;
	name_check checks[10]; /* domain NULL ends */
} name_case;

static const name_case name_cases[] = {
	{"dNSName exact",
	 {.sans = {{SAN_DNS, "example.com", 0}}},
	 {{"example.com", true},
	  {"EXAMPLE.Com", true},
	  {"example.com.", true},
	  {"www.example.com", false},
	  {"example.org", false},
	  {"ample.com", false},
	  {"", false}}},
	{"wildcard: one whole left-most label",
	 {.sans = {{SAN_DNS, "*.example.com", 0}}},
	 {{"a.example.com", true},
	  {"Mail.EXAMPLE.com", true},
	  {"xn--bcher-kva.example.com", true},
	  {"b\xc3\xbc" "cher.example.com", true},
	  {"example.com", false},
	  {"a.b.example.com", false},
	  {"*.example.com", false},
	  {".example.com", false},
	  {"example.com.evil", false}}},
	{"no partial-label or inner wildcards",
	 {.sans = {{SAN_DNS, "f*.example.com", 0}, {SAN_DNS, "*oo.example.org", 0},
		   {SAN_DNS, "a.*.example.net", 0}, {SAN_DNS, "*", 0}}},
	 {{"foo.example.com", false},
	  {"f.example.com", false},
	  {"foo.example.org", false},
	  {"a.b.example.net", false},
	  {"x", false}}},
	{"wildcard needs two labels after it",
	 {.sans = {{SAN_DNS, "*.com", 0}}},
	 {{"example.com", false}, {"com", false}}},
	{"SRV-ID",
	 {.sans = {{SAN_SRV, "_xmpp-server.im.example", 0}, {SAN_SRV, "_XMPP-SERVER.Upper.Example", 0},
		   {SAN_SRV, "_xmpp-client.c2s.example", 0}, {SAN_SRV, "_xmpp-server.*.wild.example", 0}}},
	 {{"im.example", true},
	  {"IM.example", true},
	  {"upper.example", true},
	  {"c2s.example", false},
	  {"a.wild.example", false},
	  {"example", false}}},
	{"XmppAddr",
	 {.sans = {{SAN_XMPP, "chat.example", 0}, {SAN_XMPP, "user@jid.example", 0},
		   {SAN_XMPP, "res.example/resource", 0}}},
	 {{"chat.example", true}, {"CHAT.example", true}, {"jid.example", false}, {"res.example", false}}},
	{"IDN in every kind",
	 {.sans = {{SAN_DNS, "xn--mnchen-3ya.example", 0}, {SAN_SRV, "_xmpp-server.xn--bcher-kva.example", 0},
		   {SAN_XMPP, "b\xc3\xbc" "cher.xmpp.example", 0}}},
	 {{"m\xc3\xbc" "nchen.example", true},
	  {"M\xc3\x9c" "NCHEN.example", true},
	  {"xn--mnchen-3ya.example", true},
	  {"munchen.example", false},
	  {"b\xc3\xbc" "cher.example", true},
	  {"xn--bcher-kva.example", true},
	  {"b\xc3\xbc" "cher.xmpp.example", true},
	  {"xn--bcher-kva.xmpp.example", true},
	  {"bucher.xmpp.example", false}}},
	{"CN only (no subjectAltName)",
	 {.cn = "cn.example"},
	 {{"cn.example", true}, {"CN.EXAMPLE", true}, {"other.example", false}}},
	{"CN wildcard",
	 {.cn = "*.cnwild.example"},
	 {{"x.cnwild.example", true}, {"cnwild.example", false}, {"a.b.cnwild.example", false}}},
	{"CN in U-labels",
	 {.cn = "m\xc3\xbc" "nchen.cn.example"},
	 {{"xn--mnchen-3ya.cn.example", true}, {"m\xc3\xbc" "nchen.cn.example", true}}},
	{"CN ignored when a SAN exists",
	 {.cn = "cn.example", .sans = {{SAN_DNS, "san.example", 0}}},
	 {{"cn.example", false}, {"san.example", true}}},
	{"CN ignored with an email-only SAN",
	 {.cn = "mail.example", .sans = {{SAN_EMAIL, "admin@mail.example", 0}}},
	 {{"mail.example", false}}},
	{"embedded NUL in dNSName",
	 {.cn = "good.example", .sans = {{SAN_DNS, "good.example\0.evil.example", 26}}},
	 {{"good.example", false}, {"evil.example", false}}},
	{"otherNames of the wrong ASN.1 type",
	 {.sans = {{SAN_SRV_UTF8, "_xmpp-server.t1.example", 0}, {SAN_XMPP_IA5, "t2.example", 0}}},
	 {{"t1.example", false}, {"t2.example", false}}},
	{"several SANs",
	 {.sans = {{SAN_DNS, "a.example", 0}, {SAN_SRV, "_xmpp-server.b.example", 0},
		   {SAN_XMPP, "c.example", 0}}},
	 {{"a.example", true}, {"b.example", true}, {"c.example", true}, {"d.example", false}}},
};

static void test_names_table(void **state)
{
	for (size_t i = 0; i < PV_ARRAY_LEN(name_cases); i++) {
		const name_case *nc = &name_cases[i];
		key_cert kc = issue(&nc->spec, &root);
		for (const name_check *ck = nc->checks; ck->domain; ck++) {
			bool got = pv_cert_names_domain(kc.cert, ck->domain);
			if (got != ck->want)
				fail_msg("%s: \"%s\" gave %d, want %d", nc->label, ck->domain, got, ck->want);
		}
		kc_free(&kc);
	}
}

static void test_names_args(void **state)
{
	static const cert_spec spec = {.sans = {{SAN_DNS, "example.com", 0}}};
	key_cert kc = issue(&spec, &root);
	assert_false(pv_cert_names_domain(NULL, "example.com"));
	assert_false(pv_cert_names_domain(kc.cert, NULL));
	/* references that are not host names match nothing */
	assert_false(pv_cert_names_domain(kc.cert, "example..com"));
	assert_false(pv_cert_names_domain(kc.cert, "exa mple.com"));
	kc_free(&kc);
}

/* ---- chains ------------------------------------------------------------------------ */

enum { ISS_ROOT, ISS_INTER, ISS_OTHER, ISS_SELF };
enum { TRUST_ROOT, TRUST_OTHER, TRUST_SYSTEM };

typedef struct verify_case {
	const char *label;
	int issuer;
	bool send_inter; /* the peer sends the intermediate with its leaf */
	const char *eku;
	long nb, na;
	bool no_cert;
	int trust;
	const char *domain;
	const char *why; /* NULL: must verify */
} verify_case;

static const verify_case verify_cases[] = {
	{"via intermediate, serverAuth only (a server dialling us)", ISS_INTER, true, "serverAuth", 0, 0,
	 false, TRUST_ROOT, "peer.example", NULL},
	{"by the root, no EKU", ISS_ROOT, false, NULL, 0, 0, false, TRUST_ROOT, "peer.example", NULL},
	{"clientAuth only", ISS_ROOT, false, "clientAuth", 0, 0, false, TRUST_ROOT, "peer.example", NULL},
	{"both EKUs", ISS_INTER, true, "serverAuth,clientAuth", 0, 0, false, TRUST_ROOT, "PEER.example",
	 NULL},
	{"emailProtection only", ISS_ROOT, false, "emailProtection", 0, 0, false, TRUST_ROOT,
	 "peer.example", "not for TLS use"},
	{"other name", ISS_ROOT, false, NULL, 0, 0, false, TRUST_ROOT, "notpeer.example", "name mismatch"},
	{"unknown CA", ISS_OTHER, false, NULL, 0, 0, false, TRUST_ROOT, "peer.example", "untrusted"},
	{"trusting another CA", ISS_ROOT, false, NULL, 0, 0, false, TRUST_OTHER, "peer.example",
	 "untrusted"},
	{"system store knows not our test root", ISS_ROOT, false, NULL, 0, 0, false, TRUST_SYSTEM,
	 "peer.example", "untrusted"},
	{"self-signed leaf", ISS_SELF, false, NULL, 0, 0, false, TRUST_ROOT, "peer.example", "untrusted"},
	{"intermediate not sent", ISS_INTER, false, NULL, 0, 0, false, TRUST_ROOT, "peer.example",
	 "untrusted"},
	{"expired", ISS_ROOT, false, NULL, -10 * DAY, -DAY, false, TRUST_ROOT, "peer.example", "expired"},
	{"not yet valid", ISS_ROOT, false, NULL, DAY, 10 * DAY, false, TRUST_ROOT, "peer.example",
	 "not yet valid"},
	{"no certificate", ISS_ROOT, false, NULL, 0, 0, true, TRUST_ROOT, "peer.example",
	 "no certificate"},
};

static void run_verify_case(const verify_case *vc, int version)
{
	cert_spec spec = {.cn = "peer.example", .sans = {{SAN_DNS, "peer.example", 0}}, .eku = vc->eku,
			  .nb = vc->nb, .na = vc->na};
	const key_cert *issuer = vc->issuer == ISS_ROOT    ? &root
				 : vc->issuer == ISS_INTER ? &inter
				 : vc->issuer == ISS_OTHER ? &other_ca
							   : NULL;
	key_cert peer = issue(&spec, issuer);
	X509_STORE *trust = vc->trust == TRUST_ROOT ? root_store
			    : vc->trust == TRUST_OTHER ? other_store
						       : NULL;
	tls_pair tp;
	const char *why = "unset";

	tls_connect(&tp, version, vc->no_cert ? NULL : &peer, vc->send_inter ? inter.cert : NULL);
	bool ok = pv_cert_verify_peer(tp.s, trust, vc->domain, &why);
	if (ok != (vc->why == NULL))
		fail_msg("%s (TLS %x): got %d why=%s", vc->label, (unsigned)version, ok, why ? why : "-");
	if (vc->why && strcmp(why, vc->why) != 0)
		fail_msg("%s (TLS %x): why=\"%s\", want \"%s\"", vc->label, (unsigned)version, why, vc->why);
	if (!vc->why)
		assert_null(why);
	tls_close(&tp);
	kc_free(&peer);
}

static void test_verify_table(void **state)
{
	for (size_t i = 0; i < PV_ARRAY_LEN(verify_cases); i++) {
		run_verify_case(&verify_cases[i], TLS1_2_VERSION);
		run_verify_case(&verify_cases[i], TLS1_3_VERSION);
	}
}

/* The other direction: we dialled, and the server's own chain (leaf included in
 * SSL_get_peer_cert_chain on this side) must verify too. */
static void test_verify_server_side_chain(void **state)
{
	static const cert_spec cli_spec = {.sans = {{SAN_SRV, "_xmpp-server.peer.example", 0}}};
	key_cert cli = issue(&cli_spec, &root);
	tls_pair tp;
	const char *why = "unset";

	tls_connect(&tp, TLS1_3_VERSION, &cli, NULL);
	assert_true(pv_cert_verify_peer(tp.c, root_store, "srv.example", &why));
	assert_null(why);
	assert_false(pv_cert_verify_peer(tp.c, root_store, "peer.example", &why));
	assert_string_equal(why, "name mismatch");
	/* the dialling peer named only by SRV-ID */
	assert_true(pv_cert_verify_peer(tp.s, root_store, "peer.example", &why));
	/* why may be NULL */
	assert_false(pv_cert_verify_peer(tp.s, other_store, "peer.example", NULL));
	assert_false(pv_cert_verify_peer(NULL, root_store, "peer.example", &why));
	assert_string_equal(why, "no certificate");
	tls_close(&tp);
	kc_free(&cli);
}

/* ---- fingerprints and trust loading -------------------------------------------------- */

static void test_fingerprints(void **state)
{
	static const cert_spec spec = {.sans = {{SAN_DNS, "peer.example", 0}}};
	key_cert peer = issue(&spec, &root);
	char want[PV_CERT_FINGERPRINT_MAX], got[PV_CERT_FINGERPRINT_MAX], path[160];
	tls_pair tp;

	fp_independent(peer.cert, want);
	assert_int_equal(strlen(want), PV_CERT_FINGERPRINT_MAX - 1);

	tls_connect(&tp, TLS1_3_VERSION, &peer, NULL);
	assert_true(pv_cert_fingerprint(tp.s, got, sizeof(got)));
	assert_string_equal(got, want);
	/* format: prefix, 32 uppercase pairs joined by colons */
	assert_memory_equal(got, "sha256:", 7);
	for (int i = 0; i < 32; i++) {
		const char *p = got + 7 + 3 * i;
		assert_true(strchr("0123456789ABCDEF", p[0]) && strchr("0123456789ABCDEF", p[1]));
		assert_int_equal(p[2], i < 31 ? ':' : '\0');
	}
	/* the server's, from the dialling side */
	fp_independent(srv.cert, want);
	assert_true(pv_cert_fingerprint(tp.c, got, sizeof(got)));
	assert_string_equal(got, want);
	assert_false(pv_cert_fingerprint(tp.s, got, PV_CERT_FINGERPRINT_MAX - 1));
	assert_false(pv_cert_fingerprint(NULL, got, sizeof(got)));
	tls_close(&tp);

	/* no client certificate: nothing to fingerprint */
	tls_connect(&tp, TLS1_2_VERSION, NULL, NULL);
	assert_false(pv_cert_fingerprint(tp.s, got, sizeof(got)));
	tls_close(&tp);

	snprintf(path, sizeof(path), "%s/peer.pem", tmpdir);
	write_pem(path, peer.cert);
	fp_independent(peer.cert, want);
	assert_true(pv_cert_file_fingerprint(path, got, sizeof(got)));
	assert_string_equal(got, want);
	assert_false(pv_cert_file_fingerprint(path, got, 10));
	unlink(path);
	assert_false(pv_cert_file_fingerprint(path, got, sizeof(got)));
	assert_false(pv_cert_file_fingerprint(garbage_pem, got, sizeof(got)));
	assert_false(pv_cert_file_fingerprint(NULL, got, sizeof(got)));
	kc_free(&peer);
}

static void test_trust_load(void **state)
{
	static const cert_spec spec = {.sans = {{SAN_DNS, "peer.example", 0}}, .eku = "serverAuth"};
	key_cert peer = issue(&spec, &inter);
	tls_pair tp;
	char missing[160];
	X509_STORE *st = pv_trust_load(root_pem);

	assert_non_null(st);
	tls_connect(&tp, TLS1_3_VERSION, &peer, inter.cert);
	assert_true(pv_cert_verify_peer(tp.s, st, "peer.example", NULL));
	tls_close(&tp);
	X509_STORE_free(st);

	snprintf(missing, sizeof(missing), "%s/missing.pem", tmpdir);
	assert_null(pv_trust_load(missing));
	assert_null(pv_trust_load(garbage_pem));
	assert_null(pv_trust_load(empty_pem));
	assert_null(pv_trust_load(NULL));
	kc_free(&peer);
}

/* ---- membership decisions ------------------------------------------------------------ */

enum { M_OPEN, M_OPEN_PIN_OK, M_OPEN_PIN_BAD, M_MEM, M_MEM_OTHER, M_MEM_PIN_OK, M_MEM_PIN_BAD,
       M_MEM_CA_OK, M_MEM_CA_BAD, M_MEM_PIN_CA, M_COUNT };
enum { SSL_CERT, SSL_NOCERT, SSL_NONE };

typedef struct member_row {
	int m;
	int ssl;
	bool cert_ok, dialback;
	const char *domain;
	bool want;
	const char *why; /* substring of the refusal */
} member_row;

static const member_row member_rows[] = {
	/* open federation: whoever authenticated */
	{M_OPEN, SSL_CERT, true, false, "peer.example", true, NULL},
	{M_OPEN, SSL_CERT, false, false, "peer.example", false, "not authenticated"},
	{M_OPEN, SSL_CERT, false, true, "peer.example", true, NULL},
	{M_OPEN, SSL_NOCERT, false, true, "peer.example", true, NULL},
	{M_OPEN, SSL_NONE, false, true, "peer.example", true, NULL},
	{M_OPEN, SSL_NONE, false, false, "peer.example", false, "not authenticated"},
	/* open, but this domain is listed with a pin */
	{M_OPEN_PIN_OK, SSL_CERT, true, false, "peer.example", true, NULL},
	{M_OPEN_PIN_OK, SSL_CERT, false, true, "peer.example", true, NULL},
	{M_OPEN_PIN_OK, SSL_CERT, false, false, "peer.example", true, NULL},
	{M_OPEN_PIN_OK, SSL_NOCERT, false, true, "peer.example", false, "dialback without certificate"},
	{M_OPEN_PIN_OK, SSL_CERT, true, false, "stranger.example", true, NULL},
	{M_OPEN_PIN_BAD, SSL_CERT, true, false, "peer.example", false, "pin"},
	{M_OPEN_PIN_BAD, SSL_CERT, false, true, "peer.example", false, "pin"},
	/* members only */
	{M_MEM, SSL_CERT, true, false, "peer.example", true, NULL},
	{M_MEM, SSL_CERT, true, false, "PEER.Example.", true, NULL},
	{M_MEM, SSL_CERT, false, false, "peer.example", false, "not authenticated"},
	{M_MEM, SSL_NOCERT, false, true, "peer.example", true, NULL},
	{M_MEM, SSL_NONE, false, true, "peer.example", true, NULL},
	{M_MEM, SSL_CERT, true, false, "stranger.example", false, "not a member"},
	{M_MEM, SSL_NOCERT, false, true, "stranger.example", false, "not a member"},
	{M_MEM_OTHER, SSL_CERT, true, false, "peer.example", false, "not a member"},
	{M_MEM_OTHER, SSL_CERT, true, false, "friend.example", true, NULL},
	/* members with a pin */
	{M_MEM_PIN_OK, SSL_CERT, true, false, "peer.example", true, NULL},
	{M_MEM_PIN_OK, SSL_CERT, false, true, "peer.example", true, NULL},
	{M_MEM_PIN_OK, SSL_CERT, false, false, "peer.example", true, NULL},
	{M_MEM_PIN_OK, SSL_NOCERT, false, true, "peer.example", false, "dialback without certificate"},
	{M_MEM_PIN_OK, SSL_NONE, false, true, "peer.example", false, "dialback without certificate"},
	{M_MEM_PIN_OK, SSL_NOCERT, false, false, "peer.example", false, "no certificate"},
	{M_MEM_PIN_BAD, SSL_CERT, true, false, "peer.example", false, "pin"},
	{M_MEM_PIN_BAD, SSL_CERT, false, true, "peer.example", false, "pin"},
	/* members with their own CA: checked here, whatever cert_ok says */
	{M_MEM_CA_OK, SSL_CERT, true, false, "peer.example", true, NULL},
	{M_MEM_CA_OK, SSL_CERT, false, true, "peer.example", true, NULL},
	{M_MEM_CA_OK, SSL_NOCERT, false, true, "peer.example", false, "member's CA"},
	{M_MEM_CA_BAD, SSL_CERT, true, false, "peer.example", false, "member's CA"},
	{M_MEM_CA_BAD, SSL_CERT, false, true, "peer.example", false, "member's CA"},
	{M_MEM_PIN_CA, SSL_CERT, true, false, "peer.example", true, NULL},
	{M_MEM_PIN_CA, SSL_CERT, false, false, "peer.example", true, NULL},
};

static void add_member(pv_membership *m, const char *domain, const char *fp, X509_STORE *ca)
{
	m->members = pv_realloc(m->members, (m->n + 1) * sizeof(pv_member));
	pv_member *mb = &m->members[m->n++];
	mb->domain = pv_strdup(domain);
	mb->fingerprint = pv_strdup(fp);
	mb->ca = ca;
	if (ca)
		X509_STORE_up_ref(ca);
}

static void test_membership_table(void **state)
{
	static const cert_spec spec = {.sans = {{SAN_DNS, "peer.example", 0}}, .eku = "serverAuth"};
	key_cert peer = issue(&spec, &root);
	pv_membership ms[M_COUNT];
	char fp_ok[PV_CERT_FINGERPRINT_MAX], fp_bad[PV_CERT_FINGERPRINT_MAX];
	tls_pair with_cert, no_cert;

	fp_independent(peer.cert, fp_ok);
	fp_independent(srv.cert, fp_bad);
	/* pins as an operator might write them: lowercase must still match */
	for (char *p = fp_ok; *p; p++)
		*p = (char)(*p >= 'A' && *p <= 'F' ? *p - 'A' + 'a' : *p);
	memset(ms, 0, sizeof(ms));
	add_member(&ms[M_OPEN_PIN_OK], "peer.example", fp_ok, NULL);
	add_member(&ms[M_OPEN_PIN_BAD], "peer.example", fp_bad, NULL);
	for (int i = M_MEM; i < M_COUNT; i++) {
		ms[i].members_only = true;
		add_member(&ms[i], "friend.example", NULL, NULL);
	}
	add_member(&ms[M_MEM], "peer.example", NULL, NULL);
	add_member(&ms[M_MEM_PIN_OK], "peer.example", fp_ok, NULL);
	add_member(&ms[M_MEM_PIN_BAD], "peer.example", fp_bad, NULL);
	add_member(&ms[M_MEM_CA_OK], "peer.example", NULL, root_store);
	add_member(&ms[M_MEM_CA_BAD], "peer.example", NULL, other_store);
	add_member(&ms[M_MEM_PIN_CA], "peer.example", fp_ok, root_store);

	tls_connect(&with_cert, TLS1_3_VERSION, &peer, NULL);
	tls_connect(&no_cert, TLS1_3_VERSION, NULL, NULL);
	for (size_t i = 0; i < PV_ARRAY_LEN(member_rows); i++) {
		const member_row *r = &member_rows[i];
		SSL *ssl = r->ssl == SSL_CERT ? with_cert.s : r->ssl == SSL_NOCERT ? no_cert.s : NULL;
		const char *why = "unset";
		bool got = pv_membership_allows(&ms[r->m], r->domain, ssl, r->cert_ok, r->dialback, &why);
		if (got != r->want)
			fail_msg("row %zu: got %d why=%s", i, got, why ? why : "-");
		if (r->want)
			assert_null(why);
		else if (!why || !strstr(why, r->why))
			fail_msg("row %zu: why=\"%s\", want it to mention \"%s\"", i, why ? why : "-", r->why);
	}

	/* no membership at all behaves as open; a missing domain is refused */
	assert_true(pv_membership_allows(NULL, "peer.example", NULL, false, true, NULL));
	assert_false(pv_membership_allows(&ms[M_OPEN], NULL, with_cert.s, true, false, NULL));

	/* find normalises the peer's spelling */
	assert_ptr_equal(pv_membership_find(&ms[M_MEM], "Peer.EXAMPLE"), &ms[M_MEM].members[1]);
	assert_null(pv_membership_find(&ms[M_MEM], "stranger.example"));
	assert_null(pv_membership_find(&ms[M_MEM], "not a domain"));
	assert_null(pv_membership_find(&ms[M_OPEN], "peer.example"));
	assert_null(pv_membership_find(NULL, "peer.example"));

	tls_close(&with_cert);
	tls_close(&no_cert);
	for (int i = 0; i < M_COUNT; i++)
		pv_membership_fini(&ms[i]);
	assert_null(ms[M_MEM].members);
	assert_int_equal(ms[M_MEM].n, 0);
	kc_free(&peer);
}

/* ---- membership config --------------------------------------------------------------- */

static pv_conf *parse_ok(const char *text)
{
	char *err = NULL;
	pv_conf *c = pv_conf_parse(text, strlen(text), &err);
	if (!c)
		fail_msg("parse failed: %s", err ? err : "(no message)");
	return c;
}

static void test_membership_load_ok(void **state)
{
	char fp[PV_CERT_FINGERPRINT_MAX], bare[80], *lower, *yaml, *err = NULL;
	pv_membership m;

	fp_independent(root.cert, fp);
	/* the same pin without colons and in lowercase */
	size_t k = 0;
	for (const char *p = fp + 7; *p; p++)
		if (*p != ':')
			bare[k++] = (char)(*p >= 'A' && *p <= 'F' ? *p - 'A' + 'a' : *p);
	bare[k] = '\0';
	lower = pv_sprintf("SHA256:%s", bare);
	yaml = pv_sprintf("interconnect:\n"
			  "  mode: members\n"
			  "  members:\n"
			  "    Example.COM:\n"
			  "    peer.example:\n"
			  "      fingerprint: \"%s\"\n"
			  "    colon.example: {fingerprint: \"%s\"}\n"
			  "    ca.example:\n"
			  "      ca_file: root.pem\n"
			  "    abs.example: {ca_file: \"%s\", fingerprint: ~}\n"
			  "    \"B\xc3\x9c" "CHER.example.\": {}\n",
			  lower, fp, root_pem);
	pv_conf *c = parse_ok(yaml);

	assert_int_equal(pv_membership_load(&m, pv_conf_get(c, "interconnect"), tmpdir, &err), 0);
	assert_null(err);
	assert_true(m.members_only);
	assert_int_equal(m.n, 6);
	static const char *const domains[] = {"example.com", "peer.example", "colon.example",
					      "ca.example", "abs.example", "b\xc3\xbc" "cher.example"};
	for (size_t i = 0; i < 6; i++)
		assert_string_equal(m.members[i].domain, domains[i]);
	assert_null(m.members[0].fingerprint);
	assert_null(m.members[0].ca);
	assert_string_equal(m.members[1].fingerprint, fp); /* canonical form */
	assert_string_equal(m.members[2].fingerprint, fp);
	assert_null(m.members[3].fingerprint);
	assert_non_null(m.members[3].ca);
	assert_non_null(m.members[4].ca);
	assert_null(m.members[4].fingerprint);
	assert_null(m.members[5].ca);
	assert_ptr_equal(pv_membership_find(&m, "xn--bcher-kva.example"), &m.members[5]);
	assert_ptr_equal(pv_membership_find(&m, "EXAMPLE.com"), &m.members[0]);

	/* the CA loaded relative to the data dir really verifies a chain */
	static const cert_spec spec = {.sans = {{SAN_DNS, "ca.example", 0}}};
	key_cert peer = issue(&spec, &root);
	tls_pair tp;
	tls_connect(&tp, TLS1_3_VERSION, &peer, NULL);
	assert_true(pv_membership_allows(&m, "ca.example", tp.s, false, true, NULL));
	assert_false(pv_membership_allows(&m, "stranger.example", tp.s, true, false, NULL));
	tls_close(&tp);
	kc_free(&peer);

	pv_membership_fini(&m);
	pv_conf_free(c);
	pv_free(yaml);
	pv_free(lower);
}

static void test_membership_load_defaults(void **state)
{
	static const char *const texts[] = {
		"other: 1\n",
		"interconnect:\n",
		"interconnect: {}\n",
		"interconnect:\n  mode: open\n  members:\n",
		"interconnect:\n  members: {}\n",
	};
	pv_membership m;
	char *err = NULL;

	assert_int_equal(pv_membership_load(&m, NULL, NULL, &err), 0);
	assert_false(m.members_only);
	assert_int_equal(m.n, 0);
	for (size_t i = 0; i < PV_ARRAY_LEN(texts); i++) {
		pv_conf *c = parse_ok(texts[i]);
		memset(&m, 0x5a, sizeof(m)); /* load must not trust what was there */
		assert_int_equal(pv_membership_load(&m, pv_conf_get(c, "interconnect"), tmpdir, &err), 0);
		assert_null(err);
		assert_false(m.members_only);
		assert_int_equal(m.n, 0);
		pv_membership_fini(&m);
		pv_conf_free(c);
	}
	/* members mode with nobody listed refuses everyone (and says so in the log) */
	pv_conf *c = parse_ok("interconnect:\n  mode: members\n");
	assert_int_equal(pv_membership_load(&m, pv_conf_get(c, "interconnect"), NULL, NULL), 0);
	assert_true(m.members_only);
	assert_false(pv_membership_allows(&m, "peer.example", NULL, true, true, NULL));
	pv_membership_fini(&m);
	pv_conf_free(c);
}

typedef struct load_err {
	const char *yaml;
	const char *msg;  /* substring of the error */
} load_err;

static void test_membership_load_errors(void **state)
{
	char fp[PV_CERT_FINGERPRINT_MAX], bad_colon[PV_CERT_FINGERPRINT_MAX];
	fp_independent(root.cert, fp);
	strcpy(bad_colon, fp);
	bad_colon[8] = ':';
	bad_colon[9] = fp[8];

	char *short_fp = pv_sprintf("%.*s", 40, fp);
	char *sha1_fp = pv_sprintf("sha1:%s", fp + 7);
	char *g_fp = pv_strdup(fp);
	g_fp[10] = 'g';
	const load_err cases[] = {
		{"interconnect: open\n", "interconnect (line 1): expected a map"},
		{"interconnect: [a]\n", "interconnect (line 1): expected a map"},
		{"interconnect:\n  mode: closed\n", "interconnect.mode (line 2)"},
		{"interconnect:\n  mode: [members]\n", "interconnect.mode"},
		{"interconnect:\n  members: [a.example]\n", "interconnect.members (line 2)"},
		{"interconnect:\n  members: a.example\n", "interconnect.members"},
		{"interconnect:\n  members:\n    \"exa mple.com\":\n", "not a valid domain"},
		{"interconnect:\n  members:\n    a..example:\n", "not a valid domain"},
		{"interconnect:\n  members:\n    example.com:\n    EXAMPLE.com.:\n",
		 "EXAMPLE.com. (line 4): duplicate of example.com"},
		{"interconnect:\n  members:\n    a.example: yes\n", "a.example (line 3): expected a map"},
		{"interconnect:\n  members:\n    a.example: [x]\n", "expected a map"},
		{"interconnect:\n  members:\n    a.example: {fingerprnt: x}\n",
		 "a.example.fingerprnt (line 3): unknown key"},
		{"interconnect:\n  members:\n    a.example:\n      fingerprint: {a: b}\n",
		 "fingerprint (line 4): expected a string"},
		{"interconnect:\n  members:\n    a.example:\n      ca_file: missing.pem\n",
		 "ca_file (line 4): cannot load"},
		{"interconnect:\n  members:\n    a.example:\n      ca_file: garbage.pem\n", "cannot load"},
		{"interconnect:\n  members:\n    a.example:\n      ca_file: empty.pem\n", "cannot load"},
		/* an error after a member with a loaded CA: everything is released */
		{"interconnect:\n  members:\n    good.example: {ca_file: root.pem}\n    bad.example: 1\n",
		 "bad.example (line 4)"},
	};
	const char *bad_fps[] = {short_fp, sha1_fp, g_fp, bad_colon, "sha256:", "fingerprint"};

	for (size_t i = 0; i < PV_ARRAY_LEN(cases) + PV_ARRAY_LEN(bad_fps); i++) {
		char *yaml, *err = NULL;
		const char *want;
		pv_membership m;
		if (i < PV_ARRAY_LEN(cases)) {
			yaml = pv_strdup(cases[i].yaml);
			want = cases[i].msg;
		} else {
			yaml = pv_sprintf("interconnect:\n  members:\n    a.example:\n      fingerprint: \"%s\"\n",
					  bad_fps[i - PV_ARRAY_LEN(cases)]);
			want = "a.example.fingerprint (line 4): expected \"sha256:\"";
		}
		pv_conf *c = parse_ok(yaml);
		int rc = pv_membership_load(&m, pv_conf_get(c, "interconnect"), tmpdir, &err);
		if (rc != PV_EINVAL || !err || !strstr(err, want))
			fail_msg("case %zu: rc=%d err=%s, want \"%s\"", i, rc, err ? err : "(null)", want);
		assert_int_equal(m.n, 0);
		assert_null(m.members);
		pv_free(err);
		/* err may be NULL */
		assert_int_equal(pv_membership_load(&m, pv_conf_get(c, "interconnect"), tmpdir, NULL),
				 PV_EINVAL);
		pv_conf_free(c);
		pv_free(yaml);
	}
	pv_free(short_fp);
	pv_free(sha1_fp);
	pv_free(g_fp);
}

/* ---- dialback keys ------------------------------------------------------------------- */

typedef struct db_vector {
	const unsigned char *secret;
	size_t secret_len;
	const char *receiving, *originating, *stream_id;
	const char *key;
} db_vector;

/* Expected keys from Python:
 *   hk = hashlib.sha256(secret).hexdigest().encode()
 *   hmac.new(hk, f"{receiving} {originating} {stream_id}".encode(), hashlib.sha256).hexdigest()
 * The first is XEP-0185 section 3's example. */
static const db_vector db_vectors[] = {
	{(const unsigned char *)"s3cr3tf0rd14lb4ck", 17, "xmpp.example.com", "example.org", "D60000229F",
	 "37c69b1cf07a3f67c04a5ef5902fa5114f2c76fe4a2686482ba5b89323075643"},
	{(const unsigned char *)"s3cr3tf0rd14lb4ck", 17, "example.org", "xmpp.example.com", "D60000229F",
	 "07335aa400436780596e1102ba010c85129ea50e13e58ab8830a523a8706b575"},
	{(const unsigned char *)"peyvand dialback secret", 23, "b.example", "a.example", "3f9a1c07-5d2e",
	 "96b4ed526d7eb5d8d4d09cf0704dcb9848355a52637e072ef4b94f8040570b56"},
	{(const unsigned char *)"\x00\x01\x02\xff\x00secret", 11, "xn--bcher-kva.example", "a.example",
	 "s1", "1221f8828199dcf5bc48abaf1773ecb0c77a4532bac6f693e53519af6ae46e5b"},
	{(const unsigned char *)"\x00\x01\x02\xff\x00secret", 11, "b\xc3\xbc" "cher.example", "a.example",
	 "s1", "a49aada1026510d24c6a0720f4e97414a422fdf4716765053fca546eb4e1e649"},
	{(const unsigned char *)"", 0, "b.example", "a.example", "",
	 "c87c0da36ebe15a6bdf0400f7d4ceaceaad92ed1336d15254248ccdd94243b49"},
};

static void test_dialback_vectors(void **state)
{
	for (size_t i = 0; i < PV_ARRAY_LEN(db_vectors); i++) {
		const db_vector *v = &db_vectors[i];
		char out[65];
		memset(out, 'x', sizeof(out));
		pv_dialback_key(v->secret, v->secret_len, v->receiving, v->originating, v->stream_id, out);
		assert_string_equal(out, v->key);
		assert_true(pv_dialback_key_ok(v->secret, v->secret_len, v->receiving, v->originating,
					       v->stream_id, v->key));
	}
}

static void test_dialback_ok(void **state)
{
	const db_vector *v = &db_vectors[0];
	const unsigned char *s = v->secret;
	size_t n = v->secret_len;
	char padded[100], upper[65], truncated[64];

	/* element text as the XEP prints it, indented */
	snprintf(padded, sizeof(padded), "\n    %s\n  ", v->key);
	assert_true(pv_dialback_key_ok(s, n, v->receiving, v->originating, v->stream_id, padded));

	strcpy(upper, v->key);
	for (char *p = upper; *p; p++)
		if (*p >= 'a' && *p <= 'f')
			*p = (char)(*p - 'a' + 'A');
	assert_false(pv_dialback_key_ok(s, n, v->receiving, v->originating, v->stream_id, upper));
	memcpy(truncated, v->key, 63);
	truncated[63] = '\0';
	assert_false(pv_dialback_key_ok(s, n, v->receiving, v->originating, v->stream_id, truncated));
	assert_false(pv_dialback_key_ok(s, n, v->receiving, v->originating, "D60000229G", v->key));
	assert_false(pv_dialback_key_ok(s, n, v->originating, v->receiving, v->stream_id, v->key));
	assert_false(pv_dialback_key_ok(s, n - 1, v->receiving, v->originating, v->stream_id, v->key));
	assert_false(pv_dialback_key_ok(s, n, v->receiving, v->originating, v->stream_id, ""));
	assert_false(pv_dialback_key_ok(s, n, v->receiving, v->originating, v->stream_id, NULL));
	/* the space separator makes these two inputs differ (XEP-0185 note 5) */
	char k1[65], k2[65];
	pv_dialback_key(s, n, "example.info", "rm.example.org", "1", k1);
	pv_dialback_key(s, n, "example.in", "form.example.org", "1", k2);
	assert_string_not_equal(k1, k2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names_table),
		cmocka_unit_test(test_names_args),
		cmocka_unit_test(test_verify_table),
		cmocka_unit_test(test_verify_server_side_chain),
		cmocka_unit_test(test_fingerprints),
		cmocka_unit_test(test_trust_load),
		cmocka_unit_test(test_membership_table),
		cmocka_unit_test(test_membership_load_ok),
		cmocka_unit_test(test_membership_load_defaults),
		cmocka_unit_test(test_membership_load_errors),
		cmocka_unit_test(test_dialback_vectors),
		cmocka_unit_test(test_dialback_ok),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
