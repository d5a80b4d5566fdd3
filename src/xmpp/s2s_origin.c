/* s2s_origin.c -- origin proofs for stanzas relayed through an exchange
 * (urn:peyvand:relay:0; docs/protocol/exchange.md).  See s2s_origin.h for the format.
 *
 * Why a signature and not the s2s link's authentication: a relayed stanza reaches the
 * recipient's provider over the exchange's link, so TLS only proves the exchange.  The
 * origin provider's s2s key (the one its certificate from the interconnect CA certifies
 * for its domain) signs what the exchange must not change; the exchange has no such key
 * for another domain, so it can drop or delay a stanza but not invent or alter one.
 * The payload is hashed in its canonical jabber:client serialisation, which every
 * peyvand writes identically after parsing (attribute order kept, one escaping rule), so
 * the exchange's re-serialisation does not break the proof.
 * Threading: none; the signer is read-only once made. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/sha.h>

#include "peyvand/pv_jid.h"
#include "peyvand/pv_log.h"
#include "peyvand/pv_stanza.h"
#include "xmpp/s2s.h"
#include "xmpp/s2s_origin.h"

struct pv_origin_signer {
	EVP_PKEY *key;
	X509 *cert;
	char *cert_b64;            /* DER, base64: sent with every proof */
};

static pv_origin_signer *signer_make(EVP_PKEY *key, X509 *cert)
{
	unsigned char *der = NULL;
	int n = i2d_X509(cert, &der);
	if (n <= 0)
		return NULL;
	pv_origin_signer *s = pv_calloc(1, sizeof(*s));
	s->key = key;
	s->cert = cert;
	s->cert_b64 = pv_base64_encode(der, (size_t)n);
	OPENSSL_free(der);
	return s;
}

pv_origin_signer *pv_origin_signer_new(EVP_PKEY *key, X509 *cert)
{
	if (!key || !cert)
		return NULL;
	EVP_PKEY_up_ref(key);
	X509_up_ref(cert);
	pv_origin_signer *s = signer_make(key, cert);
	if (!s) {
		EVP_PKEY_free(key);
		X509_free(cert);
	}
	return s;
}

pv_origin_signer *pv_origin_signer_load(const char *cert_file, const char *key_file)
{
	X509 *cert = NULL;
	EVP_PKEY *key = NULL;
	pv_origin_signer *s = NULL;
	FILE *f = cert_file ? fopen(cert_file, "r") : NULL;
	if (f) {
		cert = PEM_read_X509(f, NULL, NULL, NULL);
		fclose(f);
	}
	f = key_file ? fopen(key_file, "r") : NULL;
	if (f) {
		key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
		fclose(f);
	}
	if (!cert || !key || X509_check_private_key(cert, key) != 1)
		goto fail;
	s = signer_make(key, cert);
	if (!s)
		goto fail;
	return s;
fail:
	ERR_clear_error();
	pv_warn("s2s", "origin proofs: cannot load certificate and key cert=%s", cert_file ? cert_file : "-");
	X509_free(cert);
	EVP_PKEY_free(key);
	return NULL;
}

void pv_origin_signer_free(pv_origin_signer *s)
{
	if (!s)
		return;
	EVP_PKEY_free(s->key);
	X509_free(s->cert);
	pv_free(s->cert_b64);
	pv_free(s);
}

/* ---- the canonical bytes ---- */

static bool excluded(const pv_xml *c)
{
	return pv_xml_is(c, "origin", PV_NS_RELAY) || pv_xml_is(c, "stanza-id", PV_NS_SID);
}

static void line(pv_buf *out, const char *s)
{
	if (s)
		pv_buf_puts(out, s);
	pv_buf_puts(out, "\n");
}

void pv_origin_canon(const pv_xml *st, const char *to, const char *ts, pv_buf *out)
{
	pv_buf payload;
	pv_buf_init(&payload);
	for (const pv_xml *c = pv_xml_first_element(st); c; c = pv_xml_next_element(c))
		if (!excluded(c))
			pv_xml_serialize_as(c, PV_NS_CLIENT, PV_NS_SERVER, PV_NS_CLIENT, &payload);
	unsigned char md[SHA256_DIGEST_LENGTH];
	SHA256((const unsigned char *)(payload.data ? payload.data : ""), payload.len, md);
	pv_buf_fini(&payload);
	line(out, PV_NS_RELAY);
	line(out, st->name);
	line(out, pv_xml_attr(st, "from"));
	line(out, to);
	line(out, pv_xml_attr(st, "type"));
	line(out, pv_xml_attr(st, "id"));
	line(out, ts);
	for (size_t i = 0; i < sizeof(md); i++)
		pv_buf_printf(out, "%02x", md[i]);
}

/* Ed25519/Ed448 sign the message itself; every other key type signs its SHA-256. */
static const EVP_MD *md_for(EVP_PKEY *k)
{
	int id = EVP_PKEY_get_id(k);
	return id == EVP_PKEY_ED25519 || id == EVP_PKEY_ED448 ? NULL : EVP_sha256();
}

static void drop_origins(pv_xml *st)
{
	for (pv_xml *c = pv_xml_first_element(st), *nx; c; c = nx) {
		nx = pv_xml_next_element(c);
		if (pv_xml_is(c, "origin", PV_NS_RELAY))
			pv_xml_free(c);
	}
}

int pv_origin_sign(const pv_origin_signer *s, pv_xml *st, int64_t now_ms)
{
	int rc = PV_EINVAL;
	EVP_MD_CTX *md = NULL;
	unsigned char *sig = NULL;
	size_t siglen = 0;
	char ts[24];
	pv_buf canon;
	pv_buf_init(&canon);
	const char *to = pv_xml_attr(st, "to");
	if (!s || !to || !pv_xml_attr(st, "from"))
		goto done;
	drop_origins(st);
	snprintf(ts, sizeof(ts), "%lld", (long long)now_ms);
	pv_origin_canon(st, to, ts, &canon);
	md = EVP_MD_CTX_new();
	if (!md || EVP_DigestSignInit(md, NULL, md_for(s->key), NULL, s->key) != 1 ||
	    EVP_DigestSign(md, NULL, &siglen, (const unsigned char *)canon.data, canon.len) != 1)
		goto done;
	sig = pv_malloc(siglen);
	if (EVP_DigestSign(md, sig, &siglen, (const unsigned char *)canon.data, canon.len) != 1)
		goto done;
	char *b64 = pv_base64_encode(sig, siglen);
	pv_xml *o = pv_xml_add_child(st, "origin", PV_NS_RELAY);
	pv_xml_set_attr(o, "to", to);
	pv_xml_set_attr(o, "ts", ts);
	pv_xml_set_attr(o, "sig", b64);
	pv_free(b64);
	pv_xml *c = pv_xml_add_child(o, "cert", PV_NS_RELAY);
	pv_xml_add_text(c, s->cert_b64, strlen(s->cert_b64));
	rc = 0;
done:
	if (rc != 0)
		ERR_clear_error();
	EVP_MD_CTX_free(md);
	pv_free(sig);
	pv_buf_fini(&canon);
	return rc;
}

/* ---- verification ---- */

static bool pin_matches(X509 *cert, const char *pin)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	char fp[PV_CERT_FINGERPRINT_MAX];
	if (!pin || X509_digest(cert, EVP_sha256(), md, &n) != 1)
		return false;
	size_t at = (size_t)snprintf(fp, sizeof(fp), "sha256:");
	for (unsigned i = 0; i < n && at + 3 < sizeof(fp); i++)
		at += (size_t)snprintf(fp + at, sizeof(fp) - at, i ? ":%02X" : "%02X", md[i]);
	return strcasecmp(fp, pin) == 0;
}

bool pv_origin_verify(const pv_xml *st, X509_STORE *trust, const char *pin, const char **addressed,
	const char **why)
{
	const char *w = NULL;
	bool ok = false;
	pv_jid from = {0};
	X509 *cert = NULL;
	EVP_MD_CTX *md = NULL;
	unsigned char *der = NULL, *sig = NULL;
	size_t derlen = 0, siglen = 0;
	char *certtxt = NULL;
	pv_buf canon;
	pv_buf_init(&canon);
	pv_xml *o = pv_xml_child(st, "origin", PV_NS_RELAY);
	const char *to = o ? pv_xml_attr(o, "to") : NULL;
	const char *ts = o ? pv_xml_attr(o, "ts") : NULL;
	const char *sig64 = o ? pv_xml_attr(o, "sig") : NULL;
	const char *fromattr = pv_xml_attr(st, "from");
	if (!o) {
		w = "no origin proof";
		goto done;
	}
	certtxt = pv_xml_child_text(o, "cert", PV_NS_RELAY);
	if (!to || !ts || !sig64 || !certtxt || !fromattr) {
		w = "incomplete origin proof";
		goto done;
	}
	if (pv_jid_parse_str(&from, fromattr) != 0) {
		w = "bad from";
		goto done;
	}
	const unsigned char *p;
	if (pv_base64_decode(certtxt, strlen(certtxt), &der, &derlen) < 0 ||
	    pv_base64_decode(sig64, strlen(sig64), &sig, &siglen) < 0 || !(p = der) ||
	    !(cert = d2i_X509(NULL, &p, (long)derlen))) {
		w = "undecodable origin proof";
		goto done;
	}
	if (!pin_matches(cert, pin) && !pv_cert_verify_chain(cert, NULL, trust, from.domain, &w)) {
		if (!w)
			w = "certificate not accepted";
		goto done;
	}
	pv_origin_canon(st, to, ts, &canon);
	EVP_PKEY *pub = X509_get0_pubkey(cert);
	md = EVP_MD_CTX_new();
	if (!pub || !md || EVP_DigestVerifyInit(md, NULL, md_for(pub), NULL, pub) != 1 ||
	    EVP_DigestVerify(md, sig, siglen, (const unsigned char *)canon.data, canon.len) != 1) {
		w = "bad signature";
		goto done;
	}
	ok = true;
	if (addressed)
		*addressed = to;
done:
	ERR_clear_error();
	if (why)
		*why = ok ? NULL : w;
	EVP_MD_CTX_free(md);
	X509_free(cert);
	pv_free(der);
	pv_free(sig);
	pv_free(certtxt);
	pv_buf_fini(&canon);
	pv_jid_fini(&from);
	return ok;
}
