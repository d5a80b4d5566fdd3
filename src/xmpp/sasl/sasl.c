/* sasl.c -- SASL mechanism selection and dispatch (RFC 6120 section 6).
 *
 * Advertises mechanisms strongest first (SCRAM-SHA-256-PLUS, SCRAM-SHA-1-PLUS when the
 * connection has channel binding data; SCRAM-SHA-256, SCRAM-SHA-1; PLAIN only over TLS,
 * RFC 6120 6.4.1 / RFC 4616 section 6) and hands each exchange to the mechanism in
 * scram.c or plain.c.  Also holds the authzid rule shared by both.
 *
 * Threading: pure computation; one pv_sasl per exchange, used by one thread. */
#include "xmpp/sasl/sasl.h"

#include <string.h>

#include "peyvand/pv_jid.h"
#include "peyvand/pv_util.h"

struct pv_sasl {
	const pv_sasl_mech *mech;
	pv_sasl_ctx ctx; /* our copy; the mechanism state points at it */
	void *st;
	bool done;       /* SUCCESS or FAILURE was returned: further steps fail */
};

static const pv_sasl_mech *const all_mechs[] = {
	&pv_sasl_scram_sha256_plus, &pv_sasl_scram_sha1_plus, &pv_sasl_scram_sha256,
	&pv_sasl_scram_sha1, &pv_sasl_plain,
};

const char *const *pv_sasl_mechs(bool tls, bool have_cb)
{
	static const char *const tls_cb[] = {"SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS",
		"SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN", NULL};
	static const char *const tls_only[] = {"SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN", NULL};
	static const char *const cb_only[] = {"SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS",
		"SCRAM-SHA-256", "SCRAM-SHA-1", NULL};
	static const char *const plain_tcp[] = {"SCRAM-SHA-256", "SCRAM-SHA-1", NULL};
	if (tls)
		return have_cb ? tls_cb : tls_only;
	return have_cb ? cb_only : plain_tcp;
}

pv_sasl *pv_sasl_new(const char *mech, const pv_sasl_ctx *ctx)
{
	const pv_sasl_mech *m = NULL;
	if (!mech || !ctx || !ctx->get_cred)
		return NULL;
	for (size_t i = 0; i < PV_ARRAY_LEN(all_mechs); i++)
		if (strcmp(all_mechs[i]->name, mech) == 0)
			m = all_mechs[i];
	if (!m)
		return NULL;
	if (m->needs_tls && !ctx->tls)
		return NULL;
	if (m->plus && (!ctx->cb_type || !ctx->cb_data || ctx->cb_len == 0))
		return NULL;

	pv_sasl *s = pv_calloc(1, sizeof(*s));
	s->mech = m;
	s->ctx = *ctx;
	s->st = m->start(m, &s->ctx);
	return s;
}

void pv_sasl_free(pv_sasl *s)
{
	if (!s)
		return;
	s->mech->free(s->st);
	pv_free(s);
}

pv_sasl_rc pv_sasl_step(pv_sasl *s, const unsigned char *in, size_t inlen,
	unsigned char **out, size_t *outlen, const char **cond)
{
	*out = NULL;
	*outlen = 0;
	*cond = NULL;
	if (s->done) {
		*cond = "malformed-request";
		return PV_SASL_FAILURE;
	}
	pv_sasl_rc rc = s->mech->step(s->st, in ? in : (const unsigned char *)"", in ? inlen : 0,
		out, outlen, cond);
	if (rc != PV_SASL_CONTINUE)
		s->done = true;
	if (rc == PV_SASL_FAILURE && !*cond)
		*cond = "not-authorized";
	return rc;
}

const char *pv_sasl_user(const pv_sasl *s)
{
	return s ? s->mech->user(s->st) : NULL;
}

void pv_scram_set_test_nonce(pv_sasl *s, const char *nonce)
{
	if (s && s->mech->set_nonce)
		s->mech->set_nonce(s->st, nonce);
}

/* RFC 6120 6.3.8: the authzid, if any, is a bare JID.  We do not support acting as
 * someone else, so it must name the authenticated account itself.  A bare user name is
 * tolerated too (some clients send the authcid there). */
bool pv_sasl_authzid_ok(const pv_sasl_ctx *ctx, const char *user, const char *authzid,
	size_t n)
{
	bool ok = false;
	char *local = pv_jid_norm_local(authzid, n);
	if (local) {
		ok = strcmp(local, user) == 0;
		pv_free(local);
		return ok;
	}
	pv_jid j;
	if (pv_jid_parse(&j, authzid, n) != 0)
		return false;
	if (j.local && !j.resource && strcmp(j.local, user) == 0) {
		if (ctx->host) {
			char *host = pv_jid_norm_domain(ctx->host, strlen(ctx->host));
			ok = host && strcmp(host, j.domain) == 0;
			pv_free(host);
		}
	}
	pv_jid_fini(&j);
	return ok;
}
