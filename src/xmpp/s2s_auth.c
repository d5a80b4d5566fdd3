/* s2s_auth.c -- authenticating peer servers: does a certificate name a domain, does its
 * chain verify, is the peer a member of our interconnect, and the dialback keys.
 *
 *   names     RFC 6125 6.4/6.5 as profiled for XMPP by RFC 6120 13.7.1.2 and RFC 7590:
 *             SRV-ID (otherName id-on-dnsSRV, RFC 4985, IA5 "_xmpp-server.<domain>"),
 *             XmppAddr (otherName id-on-xmppAddr, UTF8, a bare domain for a server),
 *             DNS-ID (dNSName; "*" only as the whole left-most label, matching exactly
 *             one label), CN-ID only when the certificate has no subjectAltName at all.
 *             Compared case-insensitively in A-label form (IDNA2008 via libidn2).
 *   chains    X509_verify_cert over the peer's chain with purpose "any"; the leaf's EKU
 *             is checked here instead, because a server that dials us presents its
 *             server certificate as TLS client: serverAuth, clientAuth, anyEKU or no EKU.
 *   dialback  XEP-0185 section 2 (keyed with the hex of SHA256(secret), per its example).
 *
 * We never rely on the SSL object's own verify result: the TLS layer may request a peer
 * certificate with an accept-all callback, and this file decides afterwards.
 *
 * Threading: no mutable state except the lazily built system trust store (pthread_once,
 * then read-only; X509_STORE locks itself).  Loaders read files; call them at start or
 * reload, not on the event loop's hot path.  Every returned string is a new allocation. */
#include "xmpp/s2s_auth.h"

#include <pthread.h>
#include <string.h>
#include <strings.h>

#include <idn2.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>

#include "core/config.h"
#include "peyvand/pv_jid.h"
#include "peyvand/pv_log.h"
#include "peyvand/pv_util.h"

#define NAME_MAX_LEN 1023     /* same bound as a JID part (RFC 7622 3.2) */
#define SRV_PREFIX "_xmpp-server."

/* ---- names ------------------------------------------------------------------------- */

static void ascii_lower(char *s)
{
	for (; *s; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s - 'A' + 'a');
}

/* s (n bytes) as a lowercase A-label domain without trailing dot, or NULL.  ASCII input
 * is only lowercased: presented names are compared as-is, the reference is checked by
 * ref_ok().  Non-ASCII goes through IDNA2008 with the same UTS #46 non-transitional
 * mapping the JID code uses, so U-labels in an XmppAddr or CN meet A-labels elsewhere. */
static char *to_alabel(const char *s, size_t n)
{
	bool ascii = true;
	char *in, *a = NULL, *out = NULL;

	if (n > 0 && s[n - 1] == '.')
		n--;
	if (n == 0 || n > NAME_MAX_LEN || memchr(s, '\0', n))
		return NULL;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] >= 0x80)
			ascii = false;
	in = pv_strndup(s, n);
	if (ascii) {
		ascii_lower(in);
		return in;
	}
	if (idn2_to_ascii_8z(in, &a, IDN2_NONTRANSITIONAL | IDN2_NFC_INPUT) == IDN2_OK) {
		out = pv_strdup(a);
		ascii_lower(out);
	}
	idn2_free(a);
	pv_free(in);
	return out;
}

/* The reference identifier must be a plain LDH host name, so that nothing presented
 * (a "*" or an empty label) can match it by construction. */
static bool ref_ok(const char *d)
{
	size_t label = 0;
	for (const char *p = d;; p++) {
		if (*p == '.' || *p == '\0') {
			if (label == 0 || label > 63)
				return false;
			if (*p == '\0')
				return true;
			label = 0;
			continue;
		}
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-'))
			return false;
		label++;
	}
}

/* RFC 6125 6.4.3, tightened as the XMPP profile asks: a wildcard is the whole left-most
 * label, matches exactly one non-empty label, and needs at least two labels after it
 * (no "*.com").  Partial-label wildcards ("f*.example.com") never match. */
static bool dns_matches(const char *presented, const char *ref)
{
	if (presented[0] == '*' && presented[1] == '.') {
		const char *rest = presented + 2;
		if (strchr(rest, '*') || !strchr(rest, '.'))
			return false;
		const char *dot = strchr(ref, '.');
		return dot && dot != ref && strcmp(dot + 1, rest) == 0;
	}
	return !strchr(presented, '*') && strcmp(presented, ref) == 0;
}

/* The bytes of an ASN.1 string if it has no embedded NUL (a classic spoofing trick). */
static bool asn1_bytes(const ASN1_STRING *s, const char **p, size_t *n)
{
	if (!s)
		return false;
	*p = (const char *)ASN1_STRING_get0_data(s);
	*n = (size_t)ASN1_STRING_length(s);
	return *p && *n > 0 && !memchr(*p, '\0', *n);
}

static bool all_ascii(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)p[i] >= 0x80)
			return false;
	return true;
}

/* A DNS-ID or CN-ID: "*." stays, the rest is brought to A-labels. */
static bool dns_id_matches(const char *p, size_t n, const char *ref)
{
	char *name;
	bool ok = false;

	if (n >= 2 && p[0] == '*' && p[1] == '.') {
		char *rest = to_alabel(p + 2, n - 2);
		name = rest ? pv_sprintf("*.%s", rest) : NULL;
		pv_free(rest);
	} else {
		name = to_alabel(p, n);
	}
	if (name)
		ok = dns_matches(name, ref);
	pv_free(name);
	return ok;
}

/* RFC 4985: "_Service.Name", IA5String, the name already in A-labels; the service label
 * compares case-insensitively like the rest of a DNS name.  No wildcards. */
static bool srv_id_matches(const ASN1_TYPE *v, const char *ref)
{
	const char *p;
	size_t n, pl = strlen(SRV_PREFIX);
	bool ok = false;

	if (!v || v->type != V_ASN1_IA5STRING || !asn1_bytes(v->value.ia5string, &p, &n))
		return false;
	if (!all_ascii(p, n) || n <= pl || strncasecmp(p, SRV_PREFIX, pl) != 0)
		return false;
	char *name = to_alabel(p + pl, n - pl);
	ok = name && !strchr(name, '*') && strcmp(name, ref) == 0;
	pv_free(name);
	return ok;
}

/* RFC 6120 13.7.1.4: XmppAddr is a UTF8String JID; a server's is a bare domain, which may
 * be in U-labels.  Anything with a localpart or resource names no server. */
static bool xmpp_addr_matches(const ASN1_TYPE *v, const char *ref)
{
	const char *p;
	size_t n;
	bool ok = false;

	if (!v || v->type != V_ASN1_UTF8STRING || !asn1_bytes(v->value.utf8string, &p, &n))
		return false;
	if (memchr(p, '@', n) || memchr(p, '/', n))
		return false;
	char *name = to_alabel(p, n);
	ok = name && !strchr(name, '*') && strcmp(name, ref) == 0;
	pv_free(name);
	return ok;
}

static bool san_matches(GENERAL_NAMES *sans, const char *ref)
{
	int count = sk_GENERAL_NAME_num(sans);
	for (int i = 0; i < count; i++) {
		const GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, i);
		const char *p;
		size_t n;

		if (gn->type == GEN_DNS) {
			/* dNSName is IA5String: anything non-ASCII is malformed, not an IDN. */
			if (asn1_bytes(gn->d.dNSName, &p, &n) && all_ascii(p, n) &&
			    dns_id_matches(p, n, ref))
				return true;
		} else if (gn->type == GEN_OTHERNAME) {
			int nid = OBJ_obj2nid(gn->d.otherName->type_id);
			if (nid == NID_SRVName && srv_id_matches(gn->d.otherName->value, ref))
				return true;
			if (nid == NID_XmppAddr && xmpp_addr_matches(gn->d.otherName->value, ref))
				return true;
		}
	}
	return false;
}

/* RFC 6125 6.4.4: CN-IDs are a fallback for certificates without subjectAltName.  Every
 * CN is tried (as OpenSSL's host check does); each must be a complete DNS name. */
static bool cn_matches(X509 *cert, const char *ref)
{
	const X509_NAME *subj = X509_get_subject_name(cert);
	int i = -1;

	while ((i = X509_NAME_get_index_by_NID(subj, NID_commonName, i)) >= 0) {
		const ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, i));
		unsigned char *utf8 = NULL;
		int len = ASN1_STRING_to_UTF8(&utf8, s);
		bool ok = len > 0 && !memchr(utf8, '\0', (size_t)len) &&
			  dns_id_matches((const char *)utf8, (size_t)len, ref);
		OPENSSL_free(utf8);
		if (ok)
			return true;
	}
	return false;
}

bool pv_cert_names_domain(X509 *cert, const char *domain)
{
	char *ref = NULL;
	bool ok = false;

	if (!cert || !domain)
		return false;
	ref = to_alabel(domain, strlen(domain));
	if (!ref || !ref_ok(ref))
		goto out;
	if (X509_get_ext_by_NID(cert, NID_subject_alt_name, -1) >= 0) {
		GENERAL_NAMES *sans = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
		/* An unparsable SAN still counts as present: no CN fallback for it. */
		if (sans)
			ok = san_matches(sans, ref);
		GENERAL_NAMES_free(sans);
	} else {
		ok = cn_matches(cert, ref);
	}
out:
	pv_free(ref);
	return ok;
}

/* ---- chains ------------------------------------------------------------------------ */

static X509_STORE *default_store;
static pthread_once_t default_once = PTHREAD_ONCE_INIT;

static void default_store_init(void)
{
	default_store = X509_STORE_new();
	if (default_store && X509_STORE_set_default_paths(default_store) != 1)
		pv_warn("s2s", "cannot load the system trust store; only configured CAs will verify");
	ERR_clear_error();
}

static const char *verify_reason(int err)
{
	switch (err) {
	case X509_V_ERR_CERT_HAS_EXPIRED:
		return "expired";
	case X509_V_ERR_CERT_NOT_YET_VALID:
		return "not yet valid";
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
	case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
	case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
	case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
	case X509_V_ERR_CERT_UNTRUSTED:
		return "untrusted";
	case X509_V_ERR_CERT_SIGNATURE_FAILURE:
	case X509_V_ERR_CRL_SIGNATURE_FAILURE:
		return "bad signature";
	case X509_V_ERR_CERT_REVOKED:
		return "revoked";
	case X509_V_ERR_INVALID_CA:
	case X509_V_ERR_PATH_LENGTH_EXCEEDED:
		return "invalid CA";
	default:
		return "invalid chain";
	}
}

/* serverAuth, clientAuth, anyExtendedKeyUsage, or no EKU at all (RFC 5280 4.2.1.12). */
static bool eku_ok(X509 *leaf)
{
	uint32_t xku = X509_get_extended_key_usage(leaf);
	return xku == UINT32_MAX || (xku & (XKU_SSL_SERVER | XKU_SSL_CLIENT | XKU_ANYEKU)) != 0;
}

bool pv_cert_verify_peer(SSL *ssl, X509_STORE *trust, const char *domain, const char **why)
{
	X509 *leaf = ssl ? SSL_get0_peer_certificate(ssl) : NULL;
	if (!leaf)
		return pv_cert_verify_chain(NULL, NULL, trust, domain, why);
	/* The chain as sent: a client's leaf is not in it on the server side, a server's leaf
	 * is on the client side.  Borrowed pointers, valid while ssl lives. */
	STACK_OF(X509) *untrusted = sk_X509_new_null();
	STACK_OF(X509) *chain = SSL_get_peer_cert_chain(ssl);
	for (int i = 0; untrusted && i < sk_X509_num(chain); i++) {
		X509 *c = sk_X509_value(chain, i);
		if (X509_cmp(c, leaf) != 0 && !sk_X509_push(untrusted, c)) {
			sk_X509_free(untrusted);
			untrusted = NULL;
		}
	}
	if (!untrusted) {
		if (why)
			*why = "verifier setup failed";
		return false;
	}
	bool ok = pv_cert_verify_chain(leaf, untrusted, trust, domain, why);
	sk_X509_free(untrusted);
	return ok;
}

/* ---- a certificate with its chain: a TLS peer's (above) or one outside a connection
 * (issue 6: origin proofs, s2s_origin.c) ---- */

bool pv_cert_verify_chain(X509 *leaf, STACK_OF(X509) *untrusted, X509_STORE *trust, const char *domain,
	const char **why)
{
	const char *w = NULL;
	X509_STORE_CTX *ctx = NULL;
	if (!leaf) {
		w = "no certificate";
		goto fail;
	}
	if (!trust) {
		pthread_once(&default_once, default_store_init);
		trust = default_store;
	}
	if (!trust) {
		w = "no trust store";
		goto fail;
	}
	ctx = X509_STORE_CTX_new();
	if (!ctx || X509_STORE_CTX_init(ctx, trust, leaf, untrusted) != 1 ||
	    X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_ANY) != 1) {
		w = "verifier setup failed";
		goto fail;
	}
	if (X509_verify_cert(ctx) != 1) {
		int err = X509_STORE_CTX_get_error(ctx);
		w = verify_reason(err);
		pv_debug("s2s", "peer chain rejected domain=%s reason=\"%s\" depth=%d",
			 domain ? domain : "-", X509_verify_cert_error_string(err),
			 X509_STORE_CTX_get_error_depth(ctx));
		goto fail;
	}
	if (!eku_ok(leaf)) {
		w = "not for TLS use";
		goto fail;
	}
	if (!pv_cert_names_domain(leaf, domain)) {
		w = "name mismatch";
		goto fail;
	}
	X509_STORE_CTX_free(ctx);
	if (why)
		*why = NULL;
	return true;
fail:
	ERR_clear_error();
	X509_STORE_CTX_free(ctx);
	if (why)
		*why = w;
	return false;
}

/* ---- fingerprints and trust -------------------------------------------------------- */

static bool cert_fingerprint(X509 *cert, char *out, size_t cap)
{
	static const char hex[] = "0123456789ABCDEF";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;

	if (!cert || !out || cap < PV_CERT_FINGERPRINT_MAX)
		return false;
	if (X509_digest(cert, EVP_sha256(), md, &len) != 1 || len != 32) {
		ERR_clear_error();
		return false;
	}
	char *p = out + sprintf(out, "sha256:");
	for (unsigned int i = 0; i < len; i++) {
		if (i)
			*p++ = ':';
		*p++ = hex[md[i] >> 4];
		*p++ = hex[md[i] & 15];
	}
	*p = '\0';
	return true;
}

bool pv_cert_fingerprint(SSL *ssl, char *out, size_t cap)
{
	return ssl && cert_fingerprint(SSL_get0_peer_certificate(ssl), out, cap);
}

bool pv_cert_file_fingerprint(const char *pem_file, char *out, size_t cap)
{
	BIO *bio = pem_file ? BIO_new_file(pem_file, "r") : NULL;
	X509 *cert = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
	bool ok = cert_fingerprint(cert, out, cap);
	X509_free(cert);
	BIO_free(bio);
	ERR_clear_error();
	return ok;
}

X509_STORE *pv_trust_load(const char *ca_file)
{
	X509_STORE *st = NULL;
	const char *reason;

	if (!ca_file)
		return NULL;
	st = X509_STORE_new();
	if (!st)
		goto fail;
	/* Fails too for a file that holds no certificate at all. */
	if (X509_STORE_load_file(st, ca_file) != 1)
		goto fail;
	return st;
fail:
	reason = ERR_reason_error_string(ERR_peek_last_error());
	pv_error("s2s", "cannot load CA file=%s reason=\"%s\"", ca_file, reason ? reason : "unknown");
	ERR_clear_error();
	X509_STORE_free(st);
	return NULL;
}

/* A pin as written by an operator, in canonical form: "sha256:" (any case) then 64 hex
 * digits, either bare or as 32 colon-separated pairs.  False when malformed. */
static bool fp_canonical(const char *in, char out[PV_CERT_FINGERPRINT_MAX])
{
	static const char hex[] = "0123456789ABCDEF";
	unsigned char md[32];
	const char *p;
	size_t len;
	bool colons;

	if (!in || strncasecmp(in, "sha256:", 7) != 0)
		return false;
	p = in + 7;
	len = strlen(p);
	if (len == 64)
		colons = false;
	else if (len == 95)
		colons = true;
	else
		return false;
	for (int i = 0; i < 32; i++) {
		int v = 0;
		for (int k = 0; k < 2; k++, p++) {
			char c = *p;
			int d = c >= '0' && c <= '9' ? c - '0'
				: c >= 'a' && c <= 'f' ? c - 'a' + 10
				: c >= 'A' && c <= 'F' ? c - 'A' + 10
						       : -1;
			if (d < 0)
				return false;
			v = v * 16 + d;
		}
		md[i] = (unsigned char)v;
		if (colons && i < 31 && *p++ != ':')
			return false;
	}
	char *o = out + sprintf(out, "sha256:");
	for (int i = 0; i < 32; i++) {
		if (i)
			*o++ = ':';
		*o++ = hex[md[i] >> 4];
		*o++ = hex[md[i] & 15];
	}
	*o = '\0';
	return true;
}

/* ---- membership -------------------------------------------------------------------- */

const pv_member *pv_membership_find(const pv_membership *m, const char *peer_domain)
{
	const pv_member *found = NULL;
	char *d;

	if (!m || !peer_domain || m->n == 0)
		return NULL;
	/* Members were normalised at load; the peer's name may come straight off the wire. */
	d = pv_jid_norm_domain(peer_domain, strlen(peer_domain));
	for (size_t i = 0; d && i < m->n; i++) {
		if (strcmp(m->members[i].domain, d) == 0) {
			found = &m->members[i];
			break;
		}
	}
	pv_free(d);
	return found;
}

bool pv_membership_allows(const pv_membership *m, const char *peer_domain, SSL *ssl,
	bool cert_ok, bool via_dialback, const char **why)
{
	const char *w = NULL;
	bool pinned = false;
	const pv_member *mem;

	if (!peer_domain) {
		w = "no domain";
		goto refuse;
	}
	mem = pv_membership_find(m, peer_domain);
	if (m && m->members_only && !mem) {
		w = "not a member";
		goto refuse;
	}
	if (mem && mem->fingerprint) {
		char fp[PV_CERT_FINGERPRINT_MAX], pin[PV_CERT_FINGERPRINT_MAX];
		if (!fp_canonical(mem->fingerprint, pin)) {
			w = "configured pin is malformed";
			goto refuse;
		}
		if (!pv_cert_fingerprint(ssl, fp, sizeof(fp))) {
			w = via_dialback ? "pinned certificate required (dialback without certificate)"
					 : "pinned certificate required (no certificate)";
			goto refuse;
		}
		/* Fingerprints are public; the constant-time compare is only for hygiene. */
		if (!pv_memeq_ct(fp, pin, sizeof(fp))) {
			w = "certificate does not match the pin";
			goto refuse;
		}
		pinned = true;
	}
	if (mem && mem->ca) {
		const char *cw = NULL;
		if (!pv_cert_verify_peer(ssl, mem->ca, peer_domain, &cw)) {
			pv_debug("s2s", "member CA check failed domain=%s reason=\"%s\"", peer_domain, cw);
			w = "not verified by the member's CA";
			goto refuse;
		}
		goto accept;
	}
	if (pinned || cert_ok || via_dialback)
		goto accept;
	w = "not authenticated";
refuse:
	if (why)
		*why = w;
	return false;
accept:
	if (why)
		*why = NULL;
	return true;
}

static void member_fini(pv_member *mb)
{
	pv_free(mb->domain);
	pv_free(mb->fingerprint);
	X509_STORE_free(mb->ca);
	memset(mb, 0, sizeof(*mb));
}

void pv_membership_fini(pv_membership *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->n; i++)
		member_fini(&m->members[i]);
	pv_free(m->members);
	memset(m, 0, sizeof(*m));
}

/* A node that is missing or written as "", "~" or "null" (the config's "not set"). */
static bool conf_unset(const pv_conf *n)
{
	return !n || (pv_conf_type_of(n) == PV_CONF_SCALAR && !pv_conf_str(n, "", NULL));
}

/* One member's settings: nothing, or a map of fingerprint / ca_file.  Unknown keys are
 * errors: a misspelt "fingerprint" silently ignored would drop a pin. */
static char *member_load(pv_member *mb, const char *key, const pv_conf *v, const char *data_dir)
{
	char fp[PV_CERT_FINGERPRINT_MAX];
	int line = pv_conf_line(v);

	if (conf_unset(v))
		return NULL;
	if (pv_conf_type_of(v) != PV_CONF_MAP)
		return pv_sprintf("interconnect.members.%s (line %d): expected a map with fingerprint "
				  "and/or ca_file, or nothing",
				  key, line);
	for (size_t i = 0; i < pv_conf_len(v); i++) {
		const char *k = pv_conf_key_at(v, i);
		const pv_conf *val = pv_conf_at(v, i);
		if (strcmp(k, "fingerprint") != 0 && strcmp(k, "ca_file") != 0)
			return pv_sprintf("interconnect.members.%s.%s (line %d): unknown key "
					  "(expected fingerprint or ca_file)",
					  key, k, pv_conf_line(val));
		if (conf_unset(val))
			continue;
		if (pv_conf_type_of(val) != PV_CONF_SCALAR)
			return pv_sprintf("interconnect.members.%s.%s (line %d): expected a string", key,
					  k, pv_conf_line(val));
		const char *s = pv_conf_scalar(val);
		if (strcmp(k, "fingerprint") == 0) {
			if (!fp_canonical(s, fp))
				return pv_sprintf("interconnect.members.%s.fingerprint (line %d): expected "
						  "\"sha256:\" and 64 hex digits (pairs may be colon-separated)",
						  key, pv_conf_line(val));
			mb->fingerprint = pv_strdup(fp);
		} else {
			char *path = pv_path_under(data_dir, s);
			mb->ca = pv_trust_load(path);
			char *e = mb->ca ? NULL
					 : pv_sprintf("interconnect.members.%s.ca_file (line %d): cannot load "
						      "CA certificates from %s",
						      key, pv_conf_line(val), path);
			pv_free(path);
			if (e)
				return e;
		}
	}
	return NULL;
}

int pv_membership_load(pv_membership *m, const pv_conf *ic, const char *data_dir, char **err)
{
	char *e = NULL;
	const pv_conf *mode, *members;

	memset(m, 0, sizeof(*m));
	if (err)
		*err = NULL;
	if (conf_unset(ic))
		return 0;
	if (pv_conf_type_of(ic) != PV_CONF_MAP) {
		e = pv_sprintf("interconnect (line %d): expected a map", pv_conf_line(ic));
		goto fail;
	}

	mode = pv_conf_get(ic, "mode");
	if (!conf_unset(mode)) {
		const char *s = pv_conf_scalar(mode);
		if (s && strcmp(s, "members") == 0) {
			m->members_only = true;
		} else if (!s || strcmp(s, "open") != 0) {
			e = pv_sprintf("interconnect.mode (line %d): expected open or members",
				       pv_conf_line(mode));
			goto fail;
		}
	}

	members = pv_conf_get(ic, "members");
	if (conf_unset(members))
		goto done;
	if (pv_conf_type_of(members) != PV_CONF_MAP) {
		e = pv_sprintf("interconnect.members (line %d): expected a map of domain -> "
			       "{fingerprint, ca_file}",
			       pv_conf_line(members));
		goto fail;
	}
	m->members = pv_calloc(pv_conf_len(members) ? pv_conf_len(members) : 1, sizeof(pv_member));
	for (size_t i = 0; i < pv_conf_len(members); i++) {
		const char *key = pv_conf_key_at(members, i);
		const pv_conf *v = pv_conf_at(members, i);
		char *d = pv_jid_norm_domain(key, strlen(key));
		if (!d) {
			e = pv_sprintf("interconnect.members.%s (line %d): not a valid domain", key,
				       pv_conf_line(v));
			goto fail;
		}
		/* Two spellings of one domain would make the pin depend on map order. */
		for (size_t j = 0; j < m->n; j++) {
			if (strcmp(m->members[j].domain, d) == 0) {
				e = pv_sprintf("interconnect.members.%s (line %d): duplicate of %s", key,
					       pv_conf_line(v), d);
				pv_free(d);
				goto fail;
			}
		}
		pv_member *mb = &m->members[m->n++];
		mb->domain = d;
		if ((e = member_load(mb, key, v, data_dir)))
			goto fail;
	}
done:
	if (m->members_only && m->n == 0)
		pv_warn("s2s", "interconnect mode is members but no members are listed: every peer is refused");
	return 0;
fail:
	pv_membership_fini(m);
	if (err)
		*err = e;
	else
		pv_free(e);
	return PV_EINVAL;
}

/* ---- dialback (XEP-0185) ----------------------------------------------------------- */

static void hex_lower(const unsigned char *p, size_t n, char *out)
{
	static const char hex[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hex[p[i] >> 4];
		out[2 * i + 1] = hex[p[i] & 15];
	}
	out[2 * n] = '\0';
}

void pv_dialback_key(const unsigned char *secret, size_t secret_len, const char *receiving,
	const char *originating, const char *stream_id, char out[65])
{
	unsigned char digest[32], mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	char hkey[65];
	pv_buf msg;

	/* XEP-0185 section 2 notes 2 and 4: the secret is hashed first and the hash used
	 * in hexadecimal; its worked example keys the HMAC with those 64 characters. */
	SHA256(secret, secret_len, digest);
	hex_lower(digest, sizeof(digest), hkey);

	pv_buf_init(&msg);
	pv_buf_printf(&msg, "%s %s %s", receiving ? receiving : "", originating ? originating : "",
		      stream_id ? stream_id : "");
	if (!HMAC(EVP_sha256(), hkey, 64, (const unsigned char *)msg.data, msg.len, mac, &maclen) ||
	    maclen != 32)
		pv_assert_fail("HMAC-SHA256 failed", __FILE__, __LINE__);
	hex_lower(mac, 32, out);
	OPENSSL_cleanse(hkey, sizeof(hkey));
	OPENSSL_cleanse(digest, sizeof(digest));
	pv_buf_fini(&msg);
}

static bool xml_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

bool pv_dialback_key_ok(const unsigned char *secret, size_t secret_len, const char *receiving,
	const char *originating, const char *stream_id, const char *key)
{
	char want[65];
	size_t n;

	if (!key)
		return false;
	/* The key is element text; peers (and the XEP's own examples) indent it. */
	while (xml_space(*key))
		key++;
	n = strlen(key);
	while (n > 0 && xml_space(key[n - 1]))
		n--;
	if (n != 64)
		return false;
	pv_dialback_key(secret, secret_len, receiving, originating, stream_id, want);
	bool ok = pv_memeq_ct(want, key, 64);
	OPENSSL_cleanse(want, sizeof(want));
	return ok;
}
