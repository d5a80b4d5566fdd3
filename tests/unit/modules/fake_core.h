/* fake_core.h -- an in-memory stand-in for the core behind pv_module.h (hooks, hosts,
 * sessions, replies, holds), the account/kv part of pv_store.h and SCRAM credential
 * derivation, so a module's handlers run in a unit test without a server.
 *
 * Include it in exactly one test file per executable, after the module's .c file: it
 * defines those functions, so the linker takes nothing from src/storage or
 * src/xmpp/sasl and nothing from src/core but config.c (which needs only src/util) out
 * of libpvcore.  The XML, stanza, JID and config code are the real ones.
 *
 * Writes complete inline (like pv_store with loop == NULL): `done` runs before
 * pv_store_kv_put returns. */
#ifndef PV_TEST_FAKE_CORE_H
#define PV_TEST_FAKE_CORE_H

#include <stdio.h>
#include <string.h>

#include "core/config.h"
#include "peyvand/pv_module.h"
#include "xmpp/sasl/sasl.h"

#define FAKE_MAX 64
/* Helpers a given test may not use. */
#define FAKE_FN static __attribute__((unused))

typedef struct fake_hook {
	char *event;
	int prio;
	pv_hook_fn fn;
	void *ud;
} fake_hook;

struct pv_host {
	char *name;
	pv_conf *conf;
	fake_hook hooks[FAKE_MAX];
	size_t nhooks;
	const char *features[FAKE_MAX];
	size_t nfeatures;
	const char *identities[3 * FAKE_MAX];
	size_t nidentities;
	pv_session *sessions[FAKE_MAX];
	size_t nsessions;
	pv_store *store;
	const pv_module *mod;
	void *mod_state;
};

typedef struct fake_data {
	const void *key;
	void *data;
	void (*free_fn)(void *);
} fake_data;

struct pv_session {
	pv_host *host;
	pv_jid jid; /* domain NULL until bound */
	char *user; /* after "auth" */
	bool secure, available;
	char *ip;
	fake_data data[8];
	size_t ndata;
};

typedef struct fake_kv {
	char *host, *user, *kind, *key, *val;
	size_t len;
} fake_kv;

typedef struct fake_user {
	char *host, *user;
	pv_scram_cred creds[2];
} fake_user;

struct pv_store {
	fake_kv kv[FAKE_MAX];
	size_t nkv;
	fake_user users[FAKE_MAX];
	size_t nusers;
	int fail_next; /* non-zero: the next account call returns it */
};

/* What the module did, for the test to inspect. */
static struct {
	pv_stanza *replies[FAKE_MAX];
	size_t nreplies;
	int holds_taken, holds_released;
	int fired_user_deleted;
	char last_deleted[64];
} fake;

static pv_store fake_store;
static int fake_hold_token;

/* ---- pv_module.h ---- */

void pv_hook(pv_host *h, const char *event, int priority, pv_hook_fn fn, void *ud)
{
	PV_ASSERT(h->nhooks < FAKE_MAX);
	h->hooks[h->nhooks++] = (fake_hook){pv_strdup(event), priority, fn, ud};
}

void pv_unhook(pv_host *h, const char *event, pv_hook_fn fn, void *ud)
{
	for (size_t i = 0; i < h->nhooks; i++) {
		if (strcmp(h->hooks[i].event, event) == 0 && h->hooks[i].fn == fn && h->hooks[i].ud == ud) {
			pv_free(h->hooks[i].event);
			h->hooks[i] = h->hooks[--h->nhooks];
			return;
		}
	}
	PV_ASSERT(!"unhook of a hook that was not registered");
}

int pv_fire(pv_host *h, const char *event, pv_event *ev)
{
	if (strcmp(event, "user-deleted") == 0) {
		fake.fired_user_deleted++;
		snprintf(fake.last_deleted, sizeof(fake.last_deleted), "%s", ev->user);
	}
	/* Highest priority first; equal priorities in registration order. */
	bool done[FAKE_MAX] = {false};
	for (;;) {
		size_t best = h->nhooks;
		for (size_t i = 0; i < h->nhooks; i++)
			if (!done[i] && strcmp(h->hooks[i].event, event) == 0 &&
				(best == h->nhooks || h->hooks[i].prio > h->hooks[best].prio))
				best = i;
		if (best == h->nhooks)
			return PV_PASS;
		done[best] = true;
		if (h->hooks[best].fn(ev, h->hooks[best].ud) == PV_HANDLED)
			return PV_HANDLED;
	}
}

const char *pv_host_name(const pv_host *h) { return h->name; }
pv_store *pv_host_store(pv_host *h) { return h->store; }
const pv_conf *pv_host_conf(const pv_host *h) { return h->conf; }
unsigned pv_host_scram_iterations(const pv_host *h) { return 4096; }
/* issue 6: the host role, read from the host's config like the real one (host.c). */
bool pv_host_is_exchange(const pv_host *h)
{
	const char *r = pv_cfg_str(h->conf, "role", "provider");
	return r && strcmp(r, "exchange") == 0;
}

void pv_host_add_feature(pv_host *h, const char *var)
{
	PV_ASSERT(h->nfeatures < FAKE_MAX);
	h->features[h->nfeatures++] = pv_strdup(var);
}

void pv_host_add_identity(pv_host *h, const char *category, const char *type, const char *name)
{
	PV_ASSERT(h->nidentities < FAKE_MAX);
	const char **t = &h->identities[3 * h->nidentities++];
	t[0] = pv_strdup(category);
	t[1] = pv_strdup(type);
	t[2] = pv_strdup(name);
}

size_t pv_host_features(const pv_host *h, const char *const **vars)
{
	*vars = h->features;
	return h->nfeatures;
}

size_t pv_host_identities(const pv_host *h, const char *const **triples)
{
	*triples = h->identities;
	return h->nidentities;
}

size_t pv_host_user_sessions(pv_host *h, const char *user, pv_session **out, size_t cap)
{
	size_t n = 0;
	for (size_t i = h->nsessions; i-- > 0;) {
		pv_session *s = h->sessions[i];
		if (s->jid.domain && s->jid.local && strcmp(s->jid.local, user) == 0) {
			if (n < cap)
				out[n] = s;
			n++;
		}
	}
	return n;
}

const pv_jid *pv_session_jid(const pv_session *s) { return s->jid.domain ? &s->jid : NULL; }
const char *pv_session_user(const pv_session *s) { return s->user; }
bool pv_session_is_secure(const pv_session *s) { return s->secure; }
const char *pv_session_peer_ip(const pv_session *s) { return s->ip; }
pv_host *pv_session_host(const pv_session *s) { return s->host; }
bool pv_session_is_available(const pv_session *s) { return s->available; }

void *pv_session_get_data(const pv_session *s, const void *key)
{
	for (size_t i = 0; i < s->ndata; i++)
		if (s->data[i].key == key)
			return s->data[i].data;
	return NULL;
}

void pv_session_set_data(pv_session *s, const void *key, void *data, void (*free_fn)(void *))
{
	PV_ASSERT(s->ndata < PV_ARRAY_LEN(s->data));
	s->data[s->ndata++] = (fake_data){key, data, free_fn};
}

void pv_reply(pv_event *ev, pv_stanza *reply)
{
	PV_ASSERT(fake.nreplies < FAKE_MAX);
	fake.replies[fake.nreplies++] = reply;
}

void pv_reply_error(pv_event *ev, const char *etype, const char *cond)
{
	pv_stanza *e = pv_stanza_error(ev->stanza, etype, cond, NULL);
	if (e)
		pv_reply(ev, e);
}

pv_hold *pv_hold_take(void)
{
	fake.holds_taken++;
	return (pv_hold *)&fake_hold_token;
}

void pv_hold_release(pv_hold *h)
{
	if (h)
		fake.holds_released++;
}

void pv_hold_store_done(void *ud, int rc)
{
	PV_ASSERT(rc == 0);
	pv_hold_release(ud);
}

/* ---- pv_store.h (accounts and kv only) ---- */

static fake_user *find_user(pv_store *st, const char *host, const char *user)
{
	for (size_t i = 0; i < st->nusers; i++)
		if (strcmp(st->users[i].host, host) == 0 && strcmp(st->users[i].user, user) == 0)
			return &st->users[i];
	return NULL;
}

static int take_failure(pv_store *st)
{
	int rc = st->fail_next;
	st->fail_next = 0;
	return rc;
}

int pv_store_user_create(pv_store *st, const char *host, const char *user,
	const pv_scram_cred *creds, size_t ncreds)
{
	int rc = take_failure(st);
	if (rc)
		return rc;
	if (find_user(st, host, user))
		return PV_EEXIST;
	PV_ASSERT(st->nusers < FAKE_MAX && ncreds == 2);
	fake_user *u = &st->users[st->nusers++];
	u->host = pv_strdup(host);
	u->user = pv_strdup(user);
	memcpy(u->creds, creds, sizeof(u->creds));
	return 0;
}

int pv_store_user_set_creds(pv_store *st, const char *host, const char *user,
	const pv_scram_cred *creds, size_t ncreds)
{
	int rc = take_failure(st);
	if (rc)
		return rc;
	fake_user *u = find_user(st, host, user);
	if (!u)
		return PV_ENOENT;
	memcpy(u->creds, creds, sizeof(u->creds));
	return 0;
}

int pv_store_user_exists(pv_store *st, const char *host, const char *user)
{
	return find_user(st, host, user) != NULL;
}

static void kv_free(fake_kv *e)
{
	pv_free(e->host);
	pv_free(e->user);
	pv_free(e->kind);
	pv_free(e->key);
	pv_free(e->val);
}

int pv_store_user_delete(pv_store *st, const char *host, const char *user)
{
	int rc = take_failure(st);
	if (rc)
		return rc;
	fake_user *u = find_user(st, host, user);
	if (!u)
		return PV_ENOENT;
	pv_free(u->host);
	pv_free(u->user);
	*u = st->users[--st->nusers];
	for (size_t i = st->nkv; i-- > 0;) {
		if (strcmp(st->kv[i].host, host) == 0 && strcmp(st->kv[i].user, user) == 0) {
			kv_free(&st->kv[i]);
			st->kv[i] = st->kv[--st->nkv];
		}
	}
	return 0;
}

static fake_kv *find_kv(pv_store *st, const char *host, const char *user, const char *kind,
	const char *key)
{
	for (size_t i = 0; i < st->nkv; i++) {
		fake_kv *e = &st->kv[i];
		if (!strcmp(e->host, host) && !strcmp(e->user, user) && !strcmp(e->kind, kind) &&
			!strcmp(e->key, key))
			return e;
	}
	return NULL;
}

int pv_store_kv_get(pv_store *st, const char *host, const char *user, const char *kind,
	const char *key, char **val, size_t *len)
{
	fake_kv *e = find_kv(st, host, user, kind, key);
	if (!e)
		return PV_ENOENT;
	*val = pv_strndup(e->val, e->len);
	*len = e->len;
	return 0;
}

void pv_store_kv_put(pv_store *st, const char *host, const char *user, const char *kind,
	const char *key, const char *val, size_t len, pv_store_done_fn done, void *ud)
{
	fake_kv *e = find_kv(st, host, user, kind, key);
	if (e) {
		kv_free(e);
		*e = st->kv[--st->nkv];
	}
	if (val) {
		PV_ASSERT(st->nkv < FAKE_MAX);
		st->kv[st->nkv++] = (fake_kv){pv_strdup(host), pv_strdup(user), pv_strdup(kind),
			pv_strdup(key), pv_strndup(val, len), len};
	}
	if (done)
		done(ud, 0);
}

/* ---- sasl.h: credentials that let a test see which password they came from ---- */

int pv_scram_make_creds(const char *password, unsigned iterations, pv_scram_cred out[2])
{
	/* Like SASLprep, refuse control characters. */
	for (const char *p = password; *p; p++)
		if ((unsigned char)*p < 0x20)
			return PV_EINVAL;
	memset(out, 0, 2 * sizeof(*out));
	snprintf(out[0].mech, sizeof(out[0].mech), "SCRAM-SHA-256");
	snprintf(out[1].mech, sizeof(out[1].mech), "SCRAM-SHA-1");
	for (int i = 0; i < 2; i++) {
		out[i].iterations = iterations;
		out[i].salt_len = strlen(password) < sizeof(out[i].salt) ? strlen(password) : sizeof(out[i].salt);
		memcpy(out[i].salt, password, out[i].salt_len);
	}
	return 2;
}

/* The password a fake credential was made from (truncated to 32 bytes). */
FAKE_FN const char *fake_password_of(const char *host, const char *user)
{
	static char buf[33];
	fake_user *u = find_user(&fake_store, host, user);
	if (!u)
		return NULL;
	memcpy(buf, u->creds[0].salt, u->creds[0].salt_len);
	buf[u->creds[0].salt_len] = 0;
	return buf;
}

/* ---- test helpers ---- */

/* A host named `name` with config `yaml` (may be NULL), with `mod` loaded. */
FAKE_FN pv_host *fake_host_new(const char *name, const char *yaml, const pv_module *mod)
{
	pv_host *h = pv_calloc(1, sizeof(*h));
	h->name = pv_strdup(name);
	h->store = &fake_store;
	if (yaml) {
		char *err = NULL;
		h->conf = pv_conf_parse(yaml, strlen(yaml), &err);
		PV_ASSERT(h->conf && !err);
	}
	h->mod = mod;
	if (mod)
		PV_ASSERT(mod->load(h, pv_conf_get(h->conf, mod->name), &h->mod_state) == 0);
	return h;
}

static void fake_session_free(pv_session *s)
{
	for (size_t i = 0; i < s->ndata; i++)
		if (s->data[i].free_fn)
			s->data[i].free_fn(s->data[i].data);
	pv_jid_fini(&s->jid);
	pv_free(s->user);
	pv_free(s->ip);
	pv_free(s);
}

FAKE_FN void fake_reset(void)
{
	for (size_t i = 0; i < fake.nreplies; i++)
		pv_stanza_unref(fake.replies[i]);
	memset(&fake, 0, sizeof(fake));
}

FAKE_FN void fake_host_free(pv_host *h)
{
	if (h->mod)
		h->mod->unload(h, h->mod_state);
	PV_ASSERT(h->nhooks == 0); /* unload removed every hook */
	for (size_t i = 0; i < h->nfeatures; i++)
		pv_free((char *)h->features[i]);
	for (size_t i = 0; i < 3 * h->nidentities; i++)
		pv_free((char *)h->identities[i]);
	for (size_t i = 0; i < h->nsessions; i++)
		fake_session_free(h->sessions[i]);
	pv_conf_free(h->conf);
	pv_free(h->name);
	pv_free(h);
	fake_reset();
	for (size_t i = 0; i < fake_store.nkv; i++)
		kv_free(&fake_store.kv[i]);
	for (size_t i = 0; i < fake_store.nusers; i++) {
		pv_free(fake_store.users[i].host);
		pv_free(fake_store.users[i].user);
	}
	memset(&fake_store, 0, sizeof(fake_store));
}

/* A session on h: full_jid non-NULL -> authenticated and bound; NULL -> pre-auth. */
FAKE_FN pv_session *fake_session(pv_host *h, const char *full_jid, bool secure, const char *ip)
{
	pv_session *s = pv_calloc(1, sizeof(*s));
	s->host = h;
	s->secure = secure;
	s->ip = pv_strdup(ip);
	if (full_jid) {
		PV_ASSERT(pv_jid_parse_str(&s->jid, full_jid) == 0);
		s->user = pv_strdup(s->jid.local);
		s->available = true;
	}
	PV_ASSERT(h->nsessions < FAKE_MAX);
	h->sessions[h->nsessions++] = s;
	return s;
}

typedef struct parsed {
	pv_xml *el;
} parsed;
static void p_open(void *ud, const pv_xml *hdr, const char *ns) {}
static void p_close(void *ud) {}
static void p_element(void *ud, pv_xml *el)
{
	parsed *p = ud;
	PV_ASSERT(!p->el);
	p->el = el;
}

/* Parses one element written as it would appear in a jabber:client stream. */
FAKE_FN pv_xml *fake_parse(const char *xml)
{
	static const char head[] = "<stream:stream xmlns='jabber:client' "
				   "xmlns:stream='http://etherx.jabber.org/streams'>";
	parsed p = {0};
	const pv_xmlstream_cb cb = {p_open, p_element, p_close};
	pv_xmlstream *xs = pv_xmlstream_new(&cb, &p, NULL);
	PV_ASSERT(pv_xmlstream_feed(xs, head, strlen(head)) == PV_XS_OK);
	PV_ASSERT(pv_xmlstream_feed(xs, xml, strlen(xml)) == PV_XS_OK);
	pv_xmlstream_free(xs);
	PV_ASSERT(p.el);
	return p.el;
}

/* Dispatches an iq as the core would: stamps `from` with the origin's full JID, fills
 * in a missing `to` with `default_to` (the sender's bare JID for account-scoped
 * namespaces, else NULL for "the host"), and fires "iq-<type>/<host|bare>/<ns>".
 * Returns what pv_fire returned. */
FAKE_FN int fake_iq(pv_host *h, pv_session *origin, const char *xml, const char *default_to)
{
	pv_xml *x = fake_parse(xml);
	pv_stanza *st = pv_stanza_new(x, NULL);
	PV_ASSERT(st);
	const pv_jid *me = origin ? pv_session_jid(origin) : NULL;
	if (me)
		pv_stanza_set_from(st, me->full);
	if (!st->has_to && default_to)
		pv_stanza_set_to(st, default_to);
	const pv_xml *q = pv_xml_first_element(st->xml);
	const char *scope = st->has_to && st->to.local ? "bare" : "host";
	char *name = pv_sprintf("iq-%s/%s/%s", st->type, scope, q && q->ns ? q->ns : "");
	pv_event ev = {.name = name, .host = h, .origin = origin, .stanza = st};
	int rc = pv_fire(h, name, &ev);
	pv_free(name);
	pv_stanza_unref(st);
	return rc;
}

/* The single reply since the last call (asserts there was exactly one). */
FAKE_FN pv_stanza *fake_reply(void)
{
	PV_ASSERT(fake.nreplies == 1);
	pv_stanza *r = fake.replies[0];
	fake.nreplies = 0;
	return r; /* the test unrefs it */
}

/* "result", or the error condition's element name, of an iq reply. */
FAKE_FN const char *fake_outcome(const pv_stanza *r)
{
	if (strcmp(r->type, "error") != 0)
		return r->type;
	pv_xml *e = pv_xml_child(r->xml, "error", NULL);
	pv_xml *c = e ? pv_xml_first_element(e) : NULL;
	return c ? c->name : "?";
}

/* Type attribute of the <error/> of an iq error. */
FAKE_FN const char *fake_error_type(const pv_stanza *r)
{
	pv_xml *e = pv_xml_child(r->xml, "error", NULL);
	return e ? pv_xml_attr(e, "type") : NULL;
}

/* Fires an iq and returns the outcome of its single reply ("result" or a condition);
 * the reply itself goes to *out when out is non-NULL (caller unrefs). */
FAKE_FN const char *fake_ask(pv_host *h, pv_session *origin, const char *xml, const char *default_to,
	pv_stanza **out)
{
	static char buf[64];
	int rc = fake_iq(h, origin, xml, default_to);
	if (rc != PV_HANDLED) {
		PV_ASSERT(fake.nreplies == 0);
		return "unhandled";
	}
	pv_stanza *r = fake_reply();
	snprintf(buf, sizeof(buf), "%s", fake_outcome(r));
	if (out)
		*out = r;
	else
		pv_stanza_unref(r);
	return buf;
}

#endif
