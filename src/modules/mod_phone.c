/* mod_phone.c -- phone numbers on a provider (issue 6): registration by phone number,
 * attaching, changing and releasing an account's number, and the person's phone
 * settings (findable by other providers, preferred messenger).  Protocol
 * urn:peyvand:phone:0, specified in docs/protocol/phone.md (elements, errors, security
 * and privacy considerations); config keys in docs/config.md (`phone.*`).
 *
 * Before authentication (like XEP-0077 in-band registration; c2s lets this namespace
 * through pre-auth, over TLS only, to the host):
 *   set <request-code number/>          -> a one-time code goes to the number by SMS
 *   set <register number code><password/></register>  -> account created, number attached
 * After authentication (the account's own session; to = host, own bare JID or none):
 *   set <request-code number/>, set <verify number code/>  -> attach or change the number
 *   set <release/>                      -> release the number
 *   get <phone/>, set <settings findable? preferred?/>
 * Every committed change fires "phone-changed" on the host (payload <phone/>, see
 * pv_module.h users: mod_directory), also when an account with a number is deleted.
 *
 * Codes: digits from OpenSSL's RAND (rejection sampling, no modulo bias); stored only as
 * HMAC-SHA256 under a key that lives in this module's memory (so pending codes do not
 * survive a restart: they live minutes anyway), bound to the number and the purpose
 * (registration, or attaching to one account); checked in one storage transaction
 * (constant-time compare, attempts counted, deleted when used or expired).
 *
 * SMS gateways: `log` (development: the code goes to the server log, the only place a
 * code is ever written) and `webhook` (HTTP POST of JSON with libcurl, run in the libuv
 * thread pool so the loop never waits on the network).
 *
 * Threading and ownership: hooks and completions run on the host's loop thread; the
 * webhook's work function runs on a pool thread and touches only its own job (copies of
 * URL, token and body).  A reply that comes after the event (webhook, storage done)
 * finds its session through a per-session `sess_ref` that the session clears when it
 * ends; the module state is refcounted so jobs in flight outlive an unload (reload). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <uv.h>

#include "peyvand/pv_map.h"
#include "peyvand/pv_module.h"
#include "peyvand/pv_phone.h"
/* Password -> SCRAM credentials.  COMPAT: the non-public header mod_register uses too;
 * it goes when the core grows an async "set password" call. */
#include "xmpp/sasl/sasl.h"

#define SUB "phone"
#define NS_PHONE "urn:peyvand:phone:0"
#define HOUR_MS 3600000LL
#define MAX_PASSWORD 1023      /* as mod_register */
#define MAX_CODE_INPUT 16      /* digits a client may send as a code */
#define MAX_INFLIGHT 32        /* gateway sends in progress per host */
#define RL_MAX 10000           /* clients remembered by the per-client limit */
#define WEBHOOK_MAX_BODY 65536 /* response bytes read from the gateway (then ignored) */

enum { GW_LOG, GW_WEBHOOK };

/* ---- state ---- */

typedef struct rl_ent {
	int64_t start_ms;
	unsigned count;
} rl_ent;

typedef struct phone_state {
	unsigned refs;          /* the host (until unload) + jobs in flight */
	bool unloaded;
	pv_host *host;
	char *host_name;
	bool allow_register;
	int gateway;
	char *webhook_url;
	char *webhook_token;    /* NULL: no Authorization header */
	long webhook_timeout_ms;
	unsigned code_length;
	int64_t code_ttl_ms;
	unsigned max_attempts;
	unsigned sends_per_number;
	unsigned sends_per_client;
	char *localpart;        /* template with "{digits}" */
	pv_map *rl;             /* "ip:..." / "acct:..." -> rl_ent (sends per hour) */
	unsigned inflight;
} phone_state;

static void ps_unref(phone_state *ps)
{
	if (--ps->refs)
		return;
	if (ps->webhook_token) {
		OPENSSL_cleanse(ps->webhook_token, strlen(ps->webhook_token));
		pv_free(ps->webhook_token);
	}
	pv_free(ps->webhook_url);
	pv_free(ps->localpart);
	pv_free(ps->host_name);
	pv_map_free(ps->rl, pv_free);
	pv_free(ps);
}

/* A session as seen by a reply that comes later: s is cleared when the session ends. */
typedef struct sess_ref {
	pv_session *s;
	unsigned refs;
} sess_ref;

static char sess_key; /* its address keys the sess_ref in the session's data */

static void sr_unref(sess_ref *r)
{
	if (r && --r->refs == 0)
		pv_free(r);
}

static void sr_session_gone(void *p)
{
	sess_ref *r = p;
	r->s = NULL;
	sr_unref(r);
}

static sess_ref *sr_get(pv_session *s)
{
	sess_ref *r = pv_session_get_data(s, &sess_key);
	if (!r) {
		r = pv_calloc(1, sizeof *r);
		r->s = s;
		r->refs = 1; /* the session's */
		pv_session_set_data(s, &sess_key, r, sr_session_gone);
	}
	r->refs++;
	return r;
}

/* HMAC key of the stored code hashes: made once per process (the first load, on the
 * loop thread) and kept in memory only, so pending codes survive a reload (SIGHUP
 * unloads and loads modules) but not a restart. */
static unsigned char code_key[32];
static bool code_key_ready;

/* "This stream created an account" (one per stream, as mod_register). */
static char registered_key;

/* ---- small helpers ---- */

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void free_secret(char *s)
{
	if (s) {
		OPENSSL_cleanse(s, strlen(s));
		pv_free(s);
	}
}

/* An error reply to req without its payload (it may hold a password or a code), with
 * an application-specific condition of our namespace after <text/> (RFC 6120 8.3.2). */
static pv_stanza *make_error(const pv_stanza *req, const char *etype, const char *cond,
	const char *app, const char *text)
{
	pv_stanza *bare = pv_stanza_copy(req);
	pv_xml *c;
	while ((c = bare->xml->first))
		pv_xml_free(c);
	pv_stanza *e = pv_stanza_error(bare, etype, cond, text);
	pv_stanza_unref(bare);
	if (e && app) {
		pv_xml *err = pv_xml_child(e->xml, "error", NULL);
		if (err)
			pv_xml_add_child(err, app, NS_PHONE);
	}
	return e;
}

static void reply_error(pv_event *ev, const char *etype, const char *cond, const char *app,
	const char *text)
{
	pv_stanza *e = make_error(ev->stanza, etype, cond, app, text);
	if (e)
		pv_reply(ev, e);
}

/* Later replies: to the session if it is still there (takes ownership of st). */
static void sr_send(sess_ref *r, pv_stanza *st)
{
	if (st && r && r->s)
		pv_session_send(r->s, st);
	if (st)
		pv_stanza_unref(st);
}

static void sr_result(sess_ref *r, const pv_stanza *req, pv_xml *payload)
{
	pv_stanza *res = pv_stanza_iq_result(req);
	if (res && payload)
		pv_xml_add(res->xml, payload);
	else
		pv_xml_free(payload);
	sr_send(r, res);
}

static void sr_error(sess_ref *r, const pv_stanza *req, const char *etype, const char *cond,
	const char *app, const char *text)
{
	sr_send(r, make_error(req, etype, cond, app, text));
}

/* <phone/> describing an account's number and settings (NULL e164: no number). */
static pv_xml *phone_el(const char *e164, const char *previous, bool findable, bool preferred,
	int64_t updated_ms)
{
	pv_xml *x = pv_xml_new("phone", NS_PHONE);
	if (e164)
		pv_xml_set_attr(x, "number", e164);
	if (previous)
		pv_xml_set_attr(x, "previous", previous);
	pv_xml_set_attr(x, "findable", findable ? "true" : "false");
	pv_xml_set_attr(x, "preferred", preferred ? "true" : "false");
	if (updated_ms > 0) {
		char b[24];
		snprintf(b, sizeof b, "%lld", (long long)updated_ms);
		pv_xml_set_attr(x, "updated", b);
	}
	return x;
}

/* "phone-changed" (docs/protocol/phone.md, the issue 6 contract): after the change is
 * committed.  previous only when the number changed or was released. */
static void fire_changed(pv_host *h, const char *user, const char *e164, const char *previous,
	bool findable, bool preferred, int64_t updated_ms)
{
	char m1[PV_PHONE_MAX], m2[PV_PHONE_MAX];
	pv_phone_mask(e164, m1);
	pv_phone_mask(previous, m2);
	pv_info(SUB, "phone-changed host=%s user=%s number=%s previous=%s findable=%d preferred=%d",
		pv_host_name(h), user, e164 ? m1 : "-", previous ? m2 : "-", findable, preferred);
	pv_xml *x = phone_el(e164, previous, findable, preferred, updated_ms);
	pv_event ev = {.name = "phone-changed", .host = h, .user = user, .payload = x};
	pv_fire(h, ev.name, &ev);
	pv_xml_free(x);
}

/* XML Schema boolean: 1 true, 0 false, -1 invalid. */
static int parse_bool(const char *v)
{
	if (strcmp(v, "true") == 0 || strcmp(v, "1") == 0)
		return 1;
	if (strcmp(v, "false") == 0 || strcmp(v, "0") == 0)
		return 0;
	return -1;
}

/* The code a client sent: 1..MAX_CODE_INPUT ASCII digits. */
static bool code_syntax_ok(const char *c)
{
	size_t n = c ? strlen(c) : 0;
	if (n == 0 || n > MAX_CODE_INPUT)
		return false;
	for (size_t i = 0; i < n; i++)
		if (c[i] < '0' || c[i] > '9')
			return false;
	return true;
}

/* HMAC-SHA256(key, host NUL e164 NUL scope NUL code): what the store keeps. */
static int code_hash(const phone_state *ps, const char *e164, const char *scope,
	const char *code, unsigned char out[PV_PHONE_HASH_LEN])
{
	pv_buf b;
	pv_buf_init(&b);
	pv_buf_append(&b, ps->host_name, strlen(ps->host_name) + 1);
	pv_buf_append(&b, e164, strlen(e164) + 1);
	pv_buf_append(&b, scope, strlen(scope) + 1);
	pv_buf_append(&b, code, strlen(code));
	unsigned int len = 0;
	bool ok = HMAC(EVP_sha256(), code_key, sizeof code_key, (const unsigned char *)b.data, b.len,
		out, &len) != NULL && len == PV_PHONE_HASH_LEN;
	OPENSSL_cleanse(b.data, b.len);
	pv_buf_fini(&b);
	return ok ? 0 : PV_EIO;
}

/* n random decimal digits (rejection sampling: bytes >= 250 would bias toward 0-5). */
static void make_code(char *out, unsigned n)
{
	unsigned char r[32];
	unsigned got = 0;
	while (got < n) {
		pv_random(r, sizeof r);
		for (size_t i = 0; i < sizeof r && got < n; i++)
			if (r[i] < 250)
				out[got++] = (char)('0' + r[i] % 10);
	}
	out[n] = '\0';
	OPENSSL_cleanse(r, sizeof r);
}

/* The purpose a code is bound to: registration, or attaching to this account. */
static char *scope_of(const char *user)
{
	return user ? pv_sprintf("attach:%s", user) : pv_strdup("register");
}

/* Fixed one-hour window per client (IP before login, account after).  false when the
 * client used its sends; with count, one send is counted when allowed. */
static bool client_allow(phone_state *ps, const char *key, int64_t now, bool count)
{
	rl_ent *e = pv_map_get(ps->rl, key);
	if (e && now - e->start_ms >= HOUR_MS) {
		e->start_ms = now;
		e->count = 0;
	}
	if (!e) {
		if (pv_map_count(ps->rl) >= RL_MAX)
			return false; /* fail closed: an attacker with that many addresses waits */
		e = pv_calloc(1, sizeof *e);
		e->start_ms = now;
		pv_map_put(ps->rl, key, e);
	}
	if (e->count >= ps->sends_per_client)
		return false;
	if (count)
		e->count++;
	return true;
}

static int prune_rl(void *ud, const char *key, void *val)
{
	int64_t now = *(const int64_t *)ud;
	rl_ent *e = val;
	if (now - e->start_ms >= HOUR_MS) {
		pv_free(e);
		return 1;
	}
	return 0;
}

/* ---- SMS gateways ---- */

typedef struct job {
	phone_state *ps;          /* ref */
	sess_ref *sr;             /* ref */
	pv_stanza *req;           /* ref: the request, for the reply */
	char e164[PV_PHONE_MAX];
	unsigned char hash[PV_PHONE_HASH_LEN];
	int64_t expires_ms;
	/* webhook: input copies and output, touched by the pool thread only while queued */
	uv_work_t work;
	char *url, *token, *body;
	long timeout_ms;
	bool ok;
	long status;              /* HTTP status, 0 if none */
	char err[CURL_ERROR_SIZE];
} job;

static void job_free(job *j)
{
	if (j->body) {
		OPENSSL_cleanse(j->body, strlen(j->body)); /* holds the code */
		pv_free(j->body);
	}
	if (j->token) {
		OPENSSL_cleanse(j->token, strlen(j->token));
		pv_free(j->token);
	}
	pv_free(j->url);
	OPENSSL_cleanse(j->hash, sizeof j->hash);
	pv_stanza_unref(j->req);
	sr_unref(j->sr);
	j->ps->inflight--;
	ps_unref(j->ps);
	pv_free(j);
}

static void code_stored(void *ud, int rc)
{
	job *j = ud;
	phone_state *ps = j->ps;
	if (rc < 0) {
		pv_warn(SUB, "storing a code failed host=%s rc=%d", ps->host_name, rc);
		sr_error(j->sr, j->req, "wait", "internal-server-error", NULL, NULL);
	} else {
		pv_xml *x = pv_xml_new("code-sent", NS_PHONE);
		char b[24];
		pv_xml_set_attr(x, "number", j->e164);
		snprintf(b, sizeof b, "%u", ps->code_length);
		pv_xml_set_attr(x, "length", b);
		snprintf(b, sizeof b, "%lld", (long long)(ps->code_ttl_ms / 1000));
		pv_xml_set_attr(x, "ttl", b);
		sr_result(j->sr, j->req, x);
	}
	job_free(j);
}

/* The gateway finished (loop thread): store the code's hash, or tell the client the
 * send failed.  A failed send changes nothing (an older pending code stays valid). */
static void gateway_done(job *j, bool ok, const char *why)
{
	phone_state *ps = j->ps;
	char masked[PV_PHONE_MAX];
	pv_phone_mask(j->e164, masked);
	if (!ok) {
		pv_warn(SUB, "sms gateway failed host=%s to=%s err=\"%s\"", ps->host_name, masked, why);
		sr_error(j->sr, j->req, "wait", "service-unavailable", "sms-failed",
			"the code could not be sent, try again later");
		job_free(j);
		return;
	}
	if (ps->unloaded) {
		/* Unloaded meanwhile (reload or shutdown): the host's store may be closing, so
		 * nothing is stored.  Say so rather than claim a code that cannot work. */
		sr_error(j->sr, j->req, "wait", "service-unavailable", "sms-failed",
			"the server was reconfigured, request a new code");
		job_free(j);
		return;
	}
	pv_store_phone_code_put(pv_host_store(ps->host), ps->host_name, j->e164, j->hash,
		j->expires_ms, code_stored, j);
}

/* JSON string with RFC 8259 escaping (quotes, backslash, control characters); the
 * input is valid UTF-8, which passes through. */
static void json_str(pv_buf *b, const char *s)
{
	pv_buf_puts(b, "\"");
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\')
			pv_buf_printf(b, "\\%c", *p);
		else if (*p < 0x20 || *p == 0x7f)
			pv_buf_printf(b, "\\u%04x", *p);
		else
			pv_buf_append(b, p, 1);
	}
	pv_buf_puts(b, "\"");
}

static size_t webhook_discard(char *p, size_t size, size_t n, void *ud)
{
	size_t *total = ud;
	*total += size * n;
	return *total > WEBHOOK_MAX_BODY ? 0 : size * n; /* 0 aborts the transfer */
}

/* Pool thread: one POST, bounded by the timeout; no redirects, http(s) only. */
static void webhook_work(uv_work_t *w)
{
	job *j = w->data;
	size_t total = 0;
	struct curl_slist *hdrs = NULL;
	char *auth = NULL;
	CURL *c = curl_easy_init();
	if (!c) {
		snprintf(j->err, sizeof j->err, "curl_easy_init failed");
		return;
	}
	hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
	if (j->token) {
		auth = pv_sprintf("Authorization: Bearer %s", j->token);
		hdrs = curl_slist_append(hdrs, auth);
	}
	curl_easy_setopt(c, CURLOPT_URL, j->url);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L); /* threads: no SIGALRM for DNS timeouts */
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, j->timeout_ms);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, j->timeout_ms);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, j->body);
	curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(j->body));
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, webhook_discard);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &total);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, j->err);
	j->err[0] = '\0';
	CURLcode rc = curl_easy_perform(c);
	if (rc == CURLE_OK) {
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &j->status);
		j->ok = j->status >= 200 && j->status < 300;
		if (!j->ok)
			snprintf(j->err, sizeof j->err, "HTTP status %ld", j->status);
	} else if (!j->err[0]) {
		snprintf(j->err, sizeof j->err, "%s", curl_easy_strerror(rc));
	}
	curl_easy_cleanup(c);
	curl_slist_free_all(hdrs);
	if (auth) {
		OPENSSL_cleanse(auth, strlen(auth));
		pv_free(auth);
	}
}

static void webhook_after(uv_work_t *w, int status)
{
	job *j = w->data;
	if (status == UV_ECANCELED)
		snprintf(j->err, sizeof j->err, "cancelled");
	gateway_done(j, status == 0 && j->ok, j->err);
}

/* Sends the code through the configured gateway; gateway_done follows (at once for
 * `log`, from the pool for `webhook`).  Takes ownership of j. */
static void gateway_send(job *j, const char *code)
{
	phone_state *ps = j->ps;
	char masked[PV_PHONE_MAX];
	pv_phone_mask(j->e164, masked);
	if (ps->gateway == GW_LOG) {
		/* Development only: this log line stands in for the SMS and is the one place
		 * a code is ever written (docs/config.md). */
		pv_info(SUB, "sms (log gateway) host=%s to=%s code=%s", ps->host_name, masked, code);
		gateway_done(j, true, NULL);
		return;
	}
	char *text = pv_sprintf("Your %s code: %s", ps->host_name, code);
	pv_buf b;
	pv_buf_init(&b);
	pv_buf_puts(&b, "{\"to\": ");
	json_str(&b, j->e164);
	pv_buf_puts(&b, ", \"code\": ");
	json_str(&b, code);
	pv_buf_puts(&b, ", \"text\": ");
	json_str(&b, text);
	pv_buf_puts(&b, "}");
	OPENSSL_cleanse(text, strlen(text));
	pv_free(text);
	j->body = pv_buf_take(&b);
	j->url = pv_strdup(ps->webhook_url);
	j->token = pv_strdup(ps->webhook_token);
	j->timeout_ms = ps->webhook_timeout_ms;
	j->work.data = j;
	pv_debug(SUB, "sms via webhook host=%s to=%s", ps->host_name, masked);
	int rc = uv_queue_work(pv_host_loop(ps->host), &j->work, webhook_work, webhook_after);
	if (rc != 0)
		gateway_done(j, false, uv_strerror(rc));
}

/* ---- request-code (before and after authentication) ---- */

static int do_request_code(pv_event *ev, phone_state *ps, const pv_xml *el, const char *user)
{
	char e164[PV_PHONE_MAX];
	if (pv_phone_normalize(pv_xml_attr(el, "number"), e164) != 0) {
		reply_error(ev, "modify", "bad-request", "invalid-number",
			"the number must be in E.164 form, like +989121234567");
		return PV_HANDLED;
	}
	int64_t now = now_ms();
	const char *ip = pv_session_peer_ip(ev->origin);
	char *rlkey = user ? pv_sprintf("acct:%s", user) : pv_sprintf("ip:%s", ip ? ip : "-");
	if (pv_map_count(ps->rl) >= RL_MAX / 2)
		pv_map_each(ps->rl, prune_rl, &now);
	/* Counted only once the number's own limit let the send through too. */
	bool allowed = client_allow(ps, rlkey, now, false);
	char masked[PV_PHONE_MAX];
	pv_phone_mask(e164, masked);
	if (!allowed) {
		pv_info(SUB, "code requests rate limited host=%s ip=%s user=%s", ps->host_name,
			ip ? ip : "-", user ? user : "-");
		reply_error(ev, "wait", "resource-constraint", "too-many-codes",
			"too many codes requested, try again later");
		pv_free(rlkey);
		return PV_HANDLED;
	}
	if (ps->inflight >= MAX_INFLIGHT) {
		reply_error(ev, "wait", "resource-constraint", "too-many-codes",
			"too many codes being sent, try again later");
		pv_free(rlkey);
		return PV_HANDLED;
	}
	int rc = pv_store_phone_send_count(pv_host_store(ev->host), ps->host_name, e164, now,
		HOUR_MS, ps->sends_per_number);
	if (rc == PV_ELIMIT) {
		pv_info(SUB, "codes per number exhausted host=%s to=%s", ps->host_name, masked);
		reply_error(ev, "wait", "resource-constraint", "too-many-codes",
			"too many codes sent to this number, try again later");
		pv_free(rlkey);
		return PV_HANDLED;
	}
	if (rc < 0) {
		reply_error(ev, "wait", "internal-server-error", NULL, NULL);
		pv_free(rlkey);
		return PV_HANDLED;
	}
	client_allow(ps, rlkey, now, true);
	pv_free(rlkey);
	job *j = pv_calloc(1, sizeof *j);
	j->ps = ps;
	ps->refs++;
	ps->inflight++;
	j->sr = sr_get(ev->origin);
	j->req = pv_stanza_ref(ev->stanza);
	memcpy(j->e164, e164, sizeof e164);
	j->expires_ms = now + ps->code_ttl_ms;
	char code[16];
	char *scope = scope_of(user);
	make_code(code, ps->code_length);
	rc = code_hash(ps, e164, scope, code, j->hash);
	pv_free(scope);
	if (rc < 0) {
		OPENSSL_cleanse(code, sizeof code);
		reply_error(ev, "wait", "internal-server-error", NULL, NULL);
		job_free(j);
		return PV_HANDLED;
	}
	pv_info(SUB, "code requested host=%s to=%s for=%s", ps->host_name, masked,
		user ? "attach" : "registration");
	gateway_send(j, code);
	OPENSSL_cleanse(code, sizeof code);
	return PV_HANDLED;
}

/* Checks a code for e164 bound to scope (the account, or registration).  true on a
 * match (the code is then used up); otherwise the error was sent. */
static bool check_code(pv_event *ev, phone_state *ps, const char *e164, const char *code,
	const char *user)
{
	unsigned char h[PV_PHONE_HASH_LEN];
	char *scope = scope_of(user);
	int rc = code_hash(ps, e164, scope, code, h);
	pv_free(scope);
	pv_code_result res = PV_CODE_NONE;
	if (rc == 0)
		rc = pv_store_phone_code_check(pv_host_store(ev->host), ps->host_name, e164, h, now_ms(),
			ps->max_attempts, &res);
	OPENSSL_cleanse(h, sizeof h);
	if (rc < 0) {
		reply_error(ev, "wait", "internal-server-error", NULL, NULL);
		return false;
	}
	char masked[PV_PHONE_MAX];
	pv_phone_mask(e164, masked);
	switch (res) {
	case PV_CODE_OK:
		return true;
	case PV_CODE_NONE:
		reply_error(ev, "cancel", "item-not-found", "no-code",
			"no pending code for this number: request one");
		break;
	case PV_CODE_EXPIRED:
		reply_error(ev, "cancel", "item-not-found", "code-expired",
			"the code expired: request a new one");
		break;
	case PV_CODE_WRONG:
		pv_info(SUB, "wrong code host=%s to=%s", ps->host_name, masked);
		reply_error(ev, "auth", "not-authorized", "wrong-code", "wrong code");
		break;
	case PV_CODE_EXHAUSTED:
		pv_info(SUB, "code attempts exhausted host=%s to=%s", ps->host_name, masked);
		reply_error(ev, "cancel", "policy-violation", "too-many-attempts",
			"too many wrong codes: request a new one");
		break;
	}
	return false;
}

/* Number and code attributes of <register/> and <verify/>; false after replying. */
static bool number_and_code(pv_event *ev, const pv_xml *el, char e164[PV_PHONE_MAX],
	const char **code)
{
	if (pv_phone_normalize(pv_xml_attr(el, "number"), e164) != 0) {
		reply_error(ev, "modify", "bad-request", "invalid-number",
			"the number must be in E.164 form, like +989121234567");
		return false;
	}
	*code = pv_xml_attr(el, "code");
	if (!code_syntax_ok(*code)) {
		reply_error(ev, "modify", "bad-request", NULL, "the code must be digits");
		return false;
	}
	return true;
}

/* ---- registration (before authentication) ---- */

/* The localpart for a number from the template ("{digits}" -> the digits). */
static char *derive_localpart(const phone_state *ps, const char *e164)
{
	const char *t = ps->localpart, *at = strstr(t, "{digits}");
	char *raw = pv_sprintf("%.*s%s%s", (int)(at - t), t, pv_phone_digits(e164), at + 8);
	char *norm = pv_jid_norm_local(raw, strlen(raw));
	pv_free(raw);
	return norm;
}

static int do_register(pv_event *ev, phone_state *ps, const pv_xml *el)
{
	pv_session *s = ev->origin;
	if (pv_session_get_data(s, &registered_key)) {
		reply_error(ev, "modify", "not-acceptable", NULL, "one account per connection");
		return PV_HANDLED;
	}
	char e164[PV_PHONE_MAX];
	const char *code;
	if (!number_and_code(ev, el, e164, &code))
		return PV_HANDLED;
	char *password = pv_xml_child_text(el, "password", NULL);
	char *user = NULL;
	pv_scram_cred creds[2];
	memset(creds, 0, sizeof creds);
	if (!password || !*password || strlen(password) > MAX_PASSWORD) {
		reply_error(ev, "modify", "not-acceptable", NULL, "a password is required");
		goto done;
	}
	user = derive_localpart(ps, e164);
	if (!user) {
		/* Only a template that makes invalid localparts gets here (checked at load). */
		reply_error(ev, "cancel", "internal-server-error", NULL, NULL);
		goto done;
	}
	if (!check_code(ev, ps, e164, code, NULL))
		goto done;
	if (pv_scram_make_creds(password, pv_host_scram_iterations(ev->host), creds) < 0) {
		reply_error(ev, "modify", "not-acceptable", NULL, "invalid password");
		goto done;
	}
	int64_t now = now_ms();
	bool number_taken = false;
	int rc = pv_store_user_create_phone(pv_host_store(ev->host), ps->host_name, user, creds, 2,
		e164, now, &number_taken);
	if (rc == PV_EEXIST) {
		reply_error(ev, "cancel", "conflict", number_taken ? "number-taken" : "username-taken",
			number_taken ? "this number belongs to another account"
				     : "the username for this number is taken");
		goto done;
	}
	if (rc < 0) {
		pv_warn(SUB, "account creation failed host=%s user=%s rc=%d", ps->host_name, user, rc);
		reply_error(ev, "wait", "internal-server-error", NULL, NULL);
		goto done;
	}
	pv_session_set_data(s, &registered_key, &registered_key, NULL);
	const char *ip = pv_session_peer_ip(s);
	pv_info(SUB, "account created by phone host=%s user=%s ip=%s", ps->host_name, user,
		ip ? ip : "-");
	/* pv_store_user_create_phone returned after the commit. */
	fire_changed(ev->host, user, e164, NULL, false, false, now);
	pv_xml *x = pv_xml_new("registered", NS_PHONE);
	char *jid = pv_sprintf("%s@%s", user, ps->host_name);
	pv_xml_set_attr(x, "jid", jid);
	pv_free(jid);
	pv_reply_result(ev, x);
done:
	OPENSSL_cleanse(creds, sizeof creds);
	pv_free(user);
	free_secret(password);
	return PV_HANDLED;
}

/* ---- the account's number and settings (after authentication) ---- */

/* A write whose reply and event wait for its commit. */
typedef struct pend {
	phone_state *ps;     /* ref */
	sess_ref *sr;        /* ref */
	pv_stanza *req;      /* ref */
	char *user;
	char e164[PV_PHONE_MAX];     /* the number after the change ("" none) */
	char previous[PV_PHONE_MAX]; /* "" when the number did not change */
	bool findable, preferred;
	int64_t updated_ms;
} pend;

static pend *pend_new(pv_event *ev, phone_state *ps, const char *user)
{
	pend *p = pv_calloc(1, sizeof *p);
	p->ps = ps;
	ps->refs++;
	p->sr = sr_get(ev->origin);
	p->req = pv_stanza_ref(ev->stanza);
	p->user = pv_strdup(user);
	return p;
}

static void pend_free(pend *p)
{
	pv_stanza_unref(p->req);
	sr_unref(p->sr);
	ps_unref(p->ps);
	pv_free(p->user);
	pv_free(p);
}

static void pend_done(pend *p, int rc)
{
	if (rc == 0) {
		fire_changed(p->ps->host, p->user, p->e164[0] ? p->e164 : NULL,
			p->previous[0] ? p->previous : NULL, p->findable, p->preferred, p->updated_ms);
		sr_result(p->sr, p->req, phone_el(p->e164[0] ? p->e164 : NULL, NULL, p->findable,
			p->preferred, p->updated_ms));
	} else if (rc == PV_EEXIST) {
		sr_error(p->sr, p->req, "cancel", "conflict", "number-taken",
			"this number belongs to another account");
	} else if (rc == PV_ENOENT) {
		sr_error(p->sr, p->req, "cancel", "item-not-found", "no-number",
			"this account has no number");
	} else {
		pv_warn(SUB, "phone write failed host=%s user=%s rc=%d", p->ps->host_name, p->user, rc);
		sr_error(p->sr, p->req, "wait", "internal-server-error", NULL, NULL);
	}
	pend_free(p);
}

static void on_pend_done(void *ud, int rc)
{
	pend_done(ud, rc);
}

/* The account's record: 1 with a number, 0 without (r zeroed), <0 after replying. */
static int load_rec(pv_event *ev, const char *user, pv_phone_rec *r)
{
	int rc = pv_store_phone_of_user(pv_host_store(ev->host), pv_host_name(ev->host), user, r);
	if (rc == 0)
		return 1;
	if (rc == PV_ENOENT)
		return 0;
	reply_error(ev, "wait", "internal-server-error", NULL, NULL);
	return rc;
}

static int do_verify(pv_event *ev, phone_state *ps, const pv_xml *el, const char *user)
{
	char e164[PV_PHONE_MAX];
	const char *code;
	if (!number_and_code(ev, el, e164, &code))
		return PV_HANDLED;
	if (!check_code(ev, ps, e164, code, user))
		return PV_HANDLED;
	pv_phone_rec cur;
	int have = load_rec(ev, user, &cur);
	if (have < 0)
		return PV_HANDLED;
	pend *p = pend_new(ev, ps, user);
	memcpy(p->e164, e164, sizeof e164);
	if (have) {
		p->findable = cur.findable;
		p->preferred = cur.preferred;
		if (strcmp(cur.e164, e164) != 0)
			snprintf(p->previous, sizeof p->previous, "%s", cur.e164);
	}
	p->updated_ms = cur.updated_ms;
	pv_phone_rec_fini(&cur);
	if (have && !p->previous[0]) {
		/* Verified the number it has already: nothing changes. */
		sr_result(p->sr, p->req, phone_el(p->e164, NULL, p->findable, p->preferred, p->updated_ms));
		pend_free(p);
		return PV_HANDLED;
	}
	p->updated_ms = now_ms();
	char masked[PV_PHONE_MAX];
	pv_phone_mask(e164, masked);
	pv_info(SUB, "%s host=%s user=%s to=%s", have ? "number change" : "number attach",
		ps->host_name, user, masked);
	pv_store_phone_set(pv_host_store(ev->host), ps->host_name, user, e164, p->updated_ms,
		on_pend_done, p);
	return PV_HANDLED;
}

static int do_release(pv_event *ev, phone_state *ps, const char *user)
{
	pv_phone_rec cur;
	int have = load_rec(ev, user, &cur);
	if (have < 0)
		return PV_HANDLED;
	if (!have) {
		reply_error(ev, "cancel", "item-not-found", "no-number", "this account has no number");
		return PV_HANDLED;
	}
	pend *p = pend_new(ev, ps, user);
	snprintf(p->previous, sizeof p->previous, "%s", cur.e164);
	pv_phone_rec_fini(&cur);
	p->updated_ms = now_ms();
	pv_info(SUB, "number release host=%s user=%s", ps->host_name, user);
	pv_store_phone_release(pv_host_store(ev->host), ps->host_name, user, on_pend_done, p);
	return PV_HANDLED;
}

static int do_settings(pv_event *ev, phone_state *ps, const pv_xml *el, const char *user)
{
	const char *f = pv_xml_attr(el, "findable"), *pr = pv_xml_attr(el, "preferred");
	int fv = f ? parse_bool(f) : 0, pv = pr ? parse_bool(pr) : 0;
	if (fv < 0 || pv < 0 || pv_xml_first_element(el)) {
		reply_error(ev, "modify", "bad-request", NULL,
			"findable and preferred are booleans (true or false)");
		return PV_HANDLED;
	}
	pv_phone_rec cur;
	int have = load_rec(ev, user, &cur);
	if (have < 0)
		return PV_HANDLED;
	if (!have) {
		reply_error(ev, "cancel", "item-not-found", "no-number",
			"attach a number before choosing its settings");
		return PV_HANDLED;
	}
	pend *p = pend_new(ev, ps, user);
	snprintf(p->e164, sizeof p->e164, "%s", cur.e164);
	p->findable = f ? fv == 1 : cur.findable;
	p->preferred = pr ? pv == 1 : cur.preferred;
	pv_phone_rec_fini(&cur);
	p->updated_ms = now_ms();
	pv_info(SUB, "settings host=%s user=%s findable=%d preferred=%d", ps->host_name, user,
		p->findable, p->preferred);
	pv_store_phone_set_flags(pv_host_store(ev->host), ps->host_name, user, p->findable,
		p->preferred, p->updated_ms, on_pend_done, p);
	return PV_HANDLED;
}

static int do_get(pv_event *ev, const char *user)
{
	pv_phone_rec cur;
	int have = load_rec(ev, user, &cur);
	if (have < 0)
		return PV_HANDLED;
	pv_reply_result(ev, have ? phone_el(cur.e164, NULL, cur.findable, cur.preferred, cur.updated_ms)
			      : phone_el(NULL, NULL, false, false, 0));
	pv_phone_rec_fini(&cur);
	return PV_HANDLED;
}

/* ---- hooks ---- */

static bool is_type(const pv_event *ev, const char *t)
{
	return ev->stanza->type && strcmp(ev->stanza->type, t) == 0;
}

static int handle(pv_event *ev, phone_state *ps)
{
	const pv_xml *el = pv_xml_first_element(ev->stanza->xml);
	if (!el || !el->ns || strcmp(el->ns, NS_PHONE) != 0)
		return PV_PASS;
	const char *user = pv_session_user(ev->origin);
	bool set = is_type(ev, "set");
	const char *name = el->name;
	if (!user) {
		/* Before authentication: registration only, when offered, over TLS (c2s lets
		 * this namespace through only on a TLS-protected stream). */
		/* An exchange hosts no people (issue 6): never registration there. */
		if (!ps->allow_register || !pv_session_is_secure(ev->origin) ||
		    pv_host_is_exchange(ev->host)) {
			reply_error(ev, "cancel", "service-unavailable", NULL, NULL);
			return PV_HANDLED;
		}
		if (set && strcmp(name, "request-code") == 0)
			return do_request_code(ev, ps, el, NULL);
		if (set && strcmp(name, "register") == 0)
			return do_register(ev, ps, el);
		if (strcmp(name, "phone") == 0 || strcmp(name, "verify") == 0 ||
		    strcmp(name, "release") == 0 || strcmp(name, "settings") == 0) {
			reply_error(ev, "auth", "not-authorized", NULL, "log in first");
			return PV_HANDLED;
		}
		reply_error(ev, "modify", "bad-request", NULL, NULL);
		return PV_HANDLED;
	}
	if (!set && strcmp(name, "phone") == 0)
		return do_get(ev, user);
	if (set && strcmp(name, "request-code") == 0)
		return do_request_code(ev, ps, el, user);
	if (set && strcmp(name, "verify") == 0)
		return do_verify(ev, ps, el, user);
	if (set && strcmp(name, "release") == 0)
		return do_release(ev, ps, user);
	if (set && strcmp(name, "settings") == 0)
		return do_settings(ev, ps, el, user);
	if (set && strcmp(name, "register") == 0) {
		reply_error(ev, "modify", "unexpected-request", NULL, "already logged in");
		return PV_HANDLED;
	}
	reply_error(ev, "modify", "bad-request", NULL, NULL);
	return PV_HANDLED;
}

/* To the host: a local session of this host (pre-auth, or logged in).  Anyone else
 * (another host's users, remote servers) gets the default service-unavailable. */
static int on_host_iq(pv_event *ev, void *ud)
{
	if (!ev->origin || pv_session_host(ev->origin) != ev->host)
		return PV_PASS;
	return handle(ev, ud);
}

/* To a bare JID (or no `to`): only the account's own sessions. */
static int on_bare_iq(pv_event *ev, void *ud)
{
	if (!pv_event_from_owner(ev))
		return PV_PASS;
	return handle(ev, ud);
}

static int on_features(pv_event *ev, void *ud)
{
	phone_state *ps = ud;
	/* Offered before authentication, when registration by phone is (the core fires
	 * this for c2s streams). */
	if (ev->origin && ev->payload && !pv_session_user(ev->origin) && ps->allow_register &&
	    pv_session_is_secure(ev->origin) && !pv_host_is_exchange(ev->host) &&
	    !pv_session_get_data(ev->origin, &registered_key))
		pv_xml_add_child(ev->payload, "register", NS_PHONE);
	return PV_PASS;
}

static int on_user_deleted(pv_event *ev, void *ud)
{
	phone_state *ps = ud;
	if (!ev->user)
		return PV_PASS;
	char *e164 = NULL;
	int rc = pv_store_phone_gone_take(pv_host_store(ev->host), ps->host_name, ev->user, &e164);
	if (rc == 0 && e164) {
		pv_info(SUB, "number released with the account host=%s user=%s", ps->host_name,
			ev->user);
		fire_changed(ev->host, ev->user, NULL, e164, false, false, now_ms());
	}
	pv_free(e164);
	return PV_PASS;
}

static const struct {
	const char *event;
	pv_hook_fn fn;
} phone_hooks[] = {
	{"iq-get/host/" NS_PHONE, on_host_iq},
	{"iq-set/host/" NS_PHONE, on_host_iq},
	{"iq-get/bare/" NS_PHONE, on_bare_iq},
	{"iq-set/bare/" NS_PHONE, on_bare_iq},
	{"stream-features", on_features},
	{"user-deleted", on_user_deleted},
};

/* ---- config ---- */

/* A duration like the core's: a number with ms, s, m, min, h or d (bare = seconds). */
static int parse_ms(const char *s, int64_t *out)
{
	static const struct {
		const char *u;
		int64_t ms;
	} units[] = {{"", 1000}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"min", 60000},
		{"h", 3600000}, {"d", 86400000}};
	if (!s || *s < '0' || *s > '9')
		return PV_EINVAL;
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	for (size_t i = 0; i < PV_ARRAY_LEN(units); i++) {
		if (strcmp(end, units[i].u) == 0 && v <= 366ULL * 86400000 / (unsigned long long)units[i].ms) {
			*out = (int64_t)v * units[i].ms;
			return 0;
		}
	}
	return PV_EINVAL;
}

/* Reads the bearer token: the first line, without trailing whitespace; no control
 * characters (it goes into an HTTP header). */
static char *read_token(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	char buf[4096];
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *nl = strpbrk(buf, "\r\n");
	if (nl)
		*nl = '\0';
	n = strlen(buf);
	while (n && (buf[n - 1] == ' ' || buf[n - 1] == '\t'))
		buf[--n] = '\0';
	bool ok = n > 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f)
			ok = false;
	char *t = ok ? pv_strdup(buf) : NULL;
	OPENSSL_cleanse(buf, sizeof buf);
	return t;
}

static bool get_uint(const pv_conf *conf, const char *key, long long def, long long lo,
	long long hi, unsigned *out, const char *host)
{
	long long v = pv_cfg_int(conf, key, def);
	if (v < lo || v > hi) {
		pv_error(SUB, "phone.%s must be %lld..%lld host=%s", key, lo, hi, host);
		return false;
	}
	*out = (unsigned)v;
	return true;
}

static int phone_load(pv_host *h, const pv_conf *conf, void **state)
{
	const char *hn = pv_host_name(h);
	phone_state *ps = pv_calloc(1, sizeof *ps);
	ps->refs = 1;
	ps->host = h;
	ps->host_name = pv_strdup(hn);
	ps->rl = pv_map_new();
	if (!code_key_ready) {
		pv_random(code_key, sizeof code_key);
		code_key_ready = true;
	}
	ps->allow_register = pv_cfg_bool(conf, "register", false);
	const char *gw = pv_cfg_str(conf, "gateway", "log");
	const char *ttl = pv_cfg_str(conf, "code_ttl", "5m");
	const char *wto = pv_cfg_str(conf, "webhook_timeout", "10s");
	const char *lp = pv_cfg_str(conf, "localpart", "digits");
	int64_t ms = 0;
	if (!get_uint(conf, "code_length", 6, 4, 10, &ps->code_length, hn) ||
	    !get_uint(conf, "max_attempts", 5, 1, 100, &ps->max_attempts, hn) ||
	    !get_uint(conf, "sends_per_number_per_hour", 5, 1, 1000, &ps->sends_per_number, hn) ||
	    !get_uint(conf, "sends_per_client_per_hour", 10, 1, 100000, &ps->sends_per_client, hn))
		goto fail;
	if (parse_ms(ttl, &ms) < 0 || ms < 1000 || ms > 86400000) {
		pv_error(SUB, "phone.code_ttl must be a duration from 1s to 1d host=%s", hn);
		goto fail;
	}
	ps->code_ttl_ms = ms;
	if (parse_ms(wto, &ms) < 0 || ms < 100 || ms > 120000) {
		pv_error(SUB, "phone.webhook_timeout must be a duration from 100ms to 2m host=%s", hn);
		goto fail;
	}
	ps->webhook_timeout_ms = (long)ms;
	ps->localpart = strcmp(lp, "digits") == 0 ? pv_strdup("{digits}") : pv_strdup(lp);
	{
		const char *at = strstr(ps->localpart, "{digits}");
		char *probe = at && !strstr(at + 1, "{digits}") ? derive_localpart(ps, "+12345678") : NULL;
		if (!probe) {
			pv_error(SUB, "phone.localpart must be \"digits\" or a template with one {digits}"
				" that makes valid localparts host=%s", hn);
			goto fail;
		}
		pv_free(probe);
	}
	if (strcmp(gw, "log") == 0) {
		ps->gateway = GW_LOG;
		pv_warn(SUB, "the log gateway writes verification codes to the log: development only"
			" host=%s", hn);
	} else if (strcmp(gw, "webhook") == 0) {
		ps->gateway = GW_WEBHOOK;
		const char *url = pv_cfg_str(conf, "webhook_url", NULL);
		if (!url || (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)) {
			pv_error(SUB, "phone.webhook_url (http:// or https://) is required with the"
				" webhook gateway host=%s", hn);
			goto fail;
		}
		ps->webhook_url = pv_strdup(url);
		char *tf = pv_host_path(h, pv_cfg_str(conf, "webhook_token_file", NULL));
		if (tf && !(ps->webhook_token = read_token(tf))) {
			pv_error(SUB, "phone.webhook_token_file unreadable, empty or not one line"
				" host=%s path=%s", hn, tf);
			pv_free(tf);
			goto fail;
		}
		pv_free(tf);
		/* Once per process, on the loop thread before any work; never cleaned up (a
		 * job of an unloaded instance may still run in the pool). */
		static bool curl_ready;
		if (!curl_ready && curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
			pv_error(SUB, "curl_global_init failed host=%s", hn);
			goto fail;
		}
		curl_ready = true;
	} else {
		pv_error(SUB, "phone.gateway must be log or webhook host=%s", hn);
		goto fail;
	}
	pv_host_add_feature(h, NS_PHONE);
	for (size_t i = 0; i < PV_ARRAY_LEN(phone_hooks); i++)
		pv_hook(h, phone_hooks[i].event, 0, phone_hooks[i].fn, ps);
	*state = ps;
	return 0;
fail:
	ps_unref(ps);
	return PV_EINVAL;
}

static void phone_unload(pv_host *h, void *state)
{
	phone_state *ps = state;
	for (size_t i = 0; i < PV_ARRAY_LEN(phone_hooks); i++)
		pv_unhook(h, phone_hooks[i].event, phone_hooks[i].fn, ps);
	ps->unloaded = true;
	ps_unref(ps);
}

const pv_module pv_mod_phone = {
	.name = "phone",
	.load = phone_load,
	.unload = phone_unload,
};
