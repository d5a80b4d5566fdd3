/* tls.c -- OpenSSL contexts: server (per virtual host, chosen by SNI), client (s2s),
 * and self-signed certificates for first start and tests.
 *
 * Policy (Mozilla "intermediate"): TLS 1.2 minimum; on 1.2 only ECDHE with AES-GCM
 * or ChaCha20-Poly1305 (forward secret AEAD); TLS 1.3 suites are OpenSSL's defaults.
 * No compression (CRIME), no renegotiation (and so tls-unique / tls-exporter stay
 * well defined, RFC 9266 section 2), server cipher preference, session tickets on.
 * Certificates: RFC 6125 names go in subjectAltName dNSName (the CN is only a label).
 *
 * Threading: contexts are built at start/reload on any thread, then shared read-only
 * by the worker loops (SSL_CTX is reference counted and thread-safe for SSL_new). */
#include "net/conn.h"

#include "peyvand/pv_log.h"
#include "peyvand/pv_util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TLS12_CIPHERS \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:" \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:" \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
/* TLS 1.3: AES-128-GCM first (OpenSSL's own default puts AES-256 first), with the
 * server's order deciding except for clients that put ChaCha20 first (phones without
 * AES instructions), which get it (SSL_OP_PRIORITIZE_CHACHA).  Both AES suites are
 * sound; AES-128 has 10 rounds instead of 14 and a SHA-256 transcript. */
#define TLS13_SUITES "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384"
#define SESSION_ID_CTX "peyvand"
#define SELFSIGNED_DAYS 3650

static void log_ssl_error(const char *what, const char *arg)
{
	unsigned long e = ERR_peek_last_error();
	char msg[256] = "unknown";

	if (e)
		ERR_error_string_n(e, msg, sizeof msg);
	pv_error("net", "tls: %s failed file=%s err=\"%s\"", what, arg ? arg : "-", msg);
	ERR_clear_error();
}

/* Settings both ends share. */
static int ctx_common(SSL_CTX *ctx)
{
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION))
		return PV_EIO;
	if (!SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) ||
	    !SSL_CTX_set_ciphersuites(ctx, TLS13_SUITES))
		return PV_EIO;
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
		SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_PRIORITIZE_CHACHA);
	/* Idle connections give their record buffers back. */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	return 0;
}

SSL_CTX *pv_tls_server_ctx(const char *cert_file, const char *key_file)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (!ctx) {
		log_ssl_error("SSL_CTX_new", NULL);
		return NULL;
	}
	if (ctx_common(ctx) < 0) {
		log_ssl_error("server settings", NULL);
		goto fail;
	}
	SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
	/* Tickets are on by default in OpenSSL; say so, since resumption matters for
	 * mobile clients that reconnect often. */
	SSL_CTX_clear_options(ctx, SSL_OP_NO_TICKET);
	/* One TLS 1.3 ticket per handshake, not OpenSSL's two: a client resumes with one,
	 * and each ticket costs an encryption and a record in every login. */
	SSL_CTX_set_num_tickets(ctx, 1);
	/* Without an id context, resumption fails as soon as a client certificate is
	 * requested (s2s with SASL EXTERNAL). */
	SSL_CTX_set_session_id_context(ctx, (const unsigned char *)SESSION_ID_CTX,
		sizeof SESSION_ID_CTX - 1);
	/* ECDH curve selection is automatic in OpenSSL >= 1.1.0. */
	if (!cert_file || !key_file) {
		pv_error("net", "tls: server context needs a certificate and a key");
		goto fail;
	}
	if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
		log_ssl_error("loading certificate", cert_file);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
		log_ssl_error("loading key", key_file);
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		log_ssl_error("key does not match certificate", key_file);
		goto fail;
	}
	pv_conn_tls_ctx_init(ctx);
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

SSL_CTX *pv_tls_client_ctx(void)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (!ctx) {
		log_ssl_error("SSL_CTX_new", NULL);
		return NULL;
	}
	if (ctx_common(ctx) < 0) {
		log_ssl_error("client settings", NULL);
		SSL_CTX_free(ctx);
		return NULL;
	}
	/* The chain is verified against the system store, but the handshake does not
	 * stop on failure: the s2s layer reads SSL_get_verify_result() and decides
	 * (certificate auth, dialback fallback, or refusal) per its policy. */
	if (SSL_CTX_set_default_verify_paths(ctx) != 1)
		ERR_clear_error();
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	return ctx;
}

/* ---- SNI ---- */

typedef struct sni_cfg {
	SSL_CTX *(*lookup)(void *ud, const char *name);
	void *ud;
} sni_cfg;

static CRYPTO_ONCE sni_once = CRYPTO_ONCE_STATIC_INIT;
static int sni_idx = -1;

static void sni_cfg_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
	void *argp)
{
	pv_free(ptr);
}

static void sni_init(void)
{
	sni_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, sni_cfg_free);
}

static int on_servername(SSL *ssl, int *alert, void *arg)
{
	sni_cfg *cfg = arg;
	const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	SSL_CTX *want;

	if (!name || !cfg)
		return SSL_TLSEXT_ERR_OK; /* default certificate */
	want = cfg->lookup(cfg->ud, name);
	if (want && want != SSL_get_SSL_CTX(ssl))
		SSL_set_SSL_CTX(ssl, want);
	/* An unknown name keeps the default context: the XMPP layer answers with
	 * host-unknown, which tells the client more than a TLS alert would. */
	return SSL_TLSEXT_ERR_OK;
}

void pv_tls_set_sni(SSL_CTX *ctx, SSL_CTX *(*lookup)(void *ud, const char *name), void *ud)
{
	sni_cfg *old, *cfg = NULL;

	CRYPTO_THREAD_run_once(&sni_once, sni_init);
	PV_ASSERT(sni_idx >= 0);
	old = SSL_CTX_get_ex_data(ctx, sni_idx);
	if (lookup) {
		cfg = pv_calloc(1, sizeof *cfg);
		cfg->lookup = lookup;
		cfg->ud = ud;
	}
	/* Owned by the context through ex_data and freed with it. */
	SSL_CTX_set_ex_data(ctx, sni_idx, cfg);
	if (cfg)
		SSL_CTX_set_tlsext_servername_callback(ctx, on_servername);
	else
		SSL_CTX_set_tlsext_servername_callback(ctx, NULL);
	SSL_CTX_set_tlsext_servername_arg(ctx, cfg);
	pv_free(old);
}

/* ---- self-signed certificates ---- */

/* mkdir -p of the directory part of path. */
static int make_parent_dirs(const char *path)
{
	char buf[PATH_MAX];
	char *p;
	size_t n = strlen(path);

	if (n >= sizeof buf)
		return PV_EINVAL;
	memcpy(buf, path, n + 1);
	p = strrchr(buf, '/');
	if (!p || p == buf)
		return 0;
	*p = '\0';
	for (p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0755) < 0 && errno != EEXIST)
			return PV_EIO;
		*p = '/';
	}
	if (mkdir(buf, 0755) < 0 && errno != EEXIST)
		return PV_EIO;
	return 0;
}

static int add_ext(X509 *x, int nid, const char *value)
{
	X509V3_CTX v3;
	X509_EXTENSION *ext;
	int ok;

	X509V3_set_ctx_nodb(&v3);
	X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
	if (!ext)
		return PV_EIO;
	ok = X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	return ok ? 0 : PV_EIO;
}

static int write_key(const char *key_file, EVP_PKEY *pkey)
{
	FILE *f;
	int fd, ok;

	/* Create with 0600 so the key is never readable by others, not even briefly;
	 * fchmod covers a pre-existing file with wider bits. */
	fd = open(key_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return PV_EIO;
	if (fchmod(fd, 0600) < 0) {
		close(fd);
		return PV_EIO;
	}
	f = fdopen(fd, "w");
	if (!f) {
		close(fd);
		return PV_EIO;
	}
	ok = PEM_write_PrivateKey(f, pkey, NULL, NULL, 0, NULL, NULL);
	if (fclose(f) != 0)
		ok = 0;
	return ok ? 0 : PV_EIO;
}

static int write_cert(const char *cert_file, X509 *x)
{
	FILE *f = fopen(cert_file, "we");
	int ok;

	if (!f)
		return PV_EIO;
	ok = PEM_write_X509(f, x);
	if (fclose(f) != 0)
		ok = 0;
	return ok ? 0 : PV_EIO;
}

int pv_tls_make_selfsigned(const char *host, const char *cert_file, const char *key_file)
{
	EVP_PKEY *pkey = NULL;
	X509 *x = NULL;
	X509_NAME *name;
	ASN1_INTEGER *serial = NULL;
	BIGNUM *bn = NULL;
	unsigned char sbytes[16];
	char *san = NULL;
	int rc = PV_EIO;

	if (!host || !*host || !cert_file || !key_file)
		return PV_EINVAL;
	if (make_parent_dirs(cert_file) < 0 || make_parent_dirs(key_file) < 0) {
		pv_error("net", "tls: cannot create directory for file=%s err=%s", cert_file,
			strerror(errno));
		return PV_EIO;
	}
	pkey = EVP_EC_gen("P-256");
	if (!pkey)
		goto fail;
	x = X509_new();
	if (!x || !X509_set_version(x, 2)) /* v3 */
		goto fail;
	/* 127-bit random positive serial (CA/B forum asks for >= 64 random bits). */
	pv_random(sbytes, sizeof sbytes);
	sbytes[0] &= 0x7f;
	bn = BN_bin2bn(sbytes, sizeof sbytes, NULL);
	serial = bn ? BN_to_ASN1_INTEGER(bn, NULL) : NULL;
	if (!serial || !X509_set_serialNumber(x, serial))
		goto fail;
	/* Back-date a little for peers with a slow clock. */
	if (!X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
		!X509_time_adj_ex(X509_getm_notAfter(x), SELFSIGNED_DAYS, 0, NULL))
		goto fail;
	if (!X509_set_pubkey(x, pkey))
		goto fail;
	name = X509_get_subject_name(x);
	if (!X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)host,
		    -1, -1, 0))
		goto fail;
	if (!X509_set_issuer_name(x, name))
		goto fail;
	san = pv_sprintf("DNS:%s,DNS:*.%s", host, host);
	if (add_ext(x, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
		add_ext(x, NID_key_usage, "critical,digitalSignature,keyAgreement") < 0 ||
		/* clientAuth too: s2s presents the same certificate when it connects out. */
		add_ext(x, NID_ext_key_usage, "serverAuth,clientAuth") < 0 ||
		add_ext(x, NID_subject_key_identifier, "hash") < 0 ||
		add_ext(x, NID_subject_alt_name, san) < 0)
		goto fail;
	if (!X509_sign(x, pkey, EVP_sha256()))
		goto fail;
	if (write_key(key_file, pkey) < 0) {
		pv_error("net", "tls: cannot write key file=%s err=%s", key_file, strerror(errno));
		goto out;
	}
	if (write_cert(cert_file, x) < 0) {
		pv_error("net", "tls: cannot write certificate file=%s err=%s", cert_file,
			strerror(errno));
		goto out;
	}
	pv_info("net", "created self-signed certificate host=%s file=%s", host, cert_file);
	rc = 0;
	goto out;
fail:
	log_ssl_error("making self-signed certificate", cert_file);
out:
	pv_free(san);
	ASN1_INTEGER_free(serial);
	BN_free(bn);
	X509_free(x);
	EVP_PKEY_free(pkey);
	return rc;
}
