/* mod_register.c -- In-Band Registration (XEP-0077) for a server's own accounts.
 *
 * Before authentication (ev->origin is the pre-auth session, pv_session_user() NULL):
 *   get -> the form: <instructions/><username/><password/> (section 3.1)
 *   set <username/><password/> -> creates the account (section 3.1.1)
 *   Offered only when register.allow is true and the stream is TLS-protected ("Security
 *   Considerations": "SHOULD NOT be used unless the channel ... has been secured"); otherwise
 *   service-unavailable, as for a host without in-band registration (section 3.1).
 *   The stream feature <register xmlns='http://jabber.org/features/iq-register'/>
 *   (section 8) is advertised under the same conditions.
 * After authentication (the account's own session, to = the host or its bare JID):
 *   get -> <registered/> and the username on file (section 3.1)
 *   set <username/><password/> -> password change (section 3.3); needs TLS
 *   set <remove/> -> deletes the account and all its data (section 3.2)
 *   These work whatever register.allow says: it governs account creation only.
 * Errors (sections 3.1-3.3):
 *   missing or empty username/password on creation    -> not-acceptable (modify)
 *   username not a valid localpart (RFC 7622)           -> jid-malformed (modify)
 *   username taken                                      -> conflict (cancel)
 *   a second account from the same stream (3.1.1 MAY)   -> not-acceptable (modify)
 *   too many creations from one IP (local policy)       -> resource-constraint (wait)
 *   <remove/> not alone                                 -> bad-request (modify)
 *   <remove/> before authentication                     -> unexpected-request (modify)
 *   password change without <password/> or empty        -> bad-request (modify)
 *   password change over an unencrypted stream          -> not-authorized (modify)
 *   password change naming another account              -> forbidden (auth)
 * Error replies never echo the request (section 3.3: SHOULD NOT return the original
 * XML; it holds a password).
 *
 * Config (section "register"):
 *   allow (bool, default false)           account creation in-band
 *   allow_insecure (bool, default false)  also without TLS (development only)
 *   rate_per_ip (default "5/1m")          creation attempts per IP address per window:
 *                                         "<count>/<window>", window like 30s, 1m, 1h
 * Global: scram_iterations (PBKDF2 rounds for the stored SCRAM keys).
 *
 * Threading: hooks run on the host's worker loop, which owns the rate table in the
 * per-host state.  TODO: PBKDF2 (pv_scram_make_creds) and the account calls block the
 * loop for a few milliseconds; move them to the thread pool with the reply posted back. */
#include <stdlib.h>
#include <string.h>

#include "peyvand/pv_module.h"
/* Password -> SCRAM credentials.  COMPAT: the one non-public header a module uses; it
 * goes away when the core grows an async "set password" call (see the TODO above). */
#include "xmpp/sasl/sasl.h"

#define NS_REGISTER "jabber:iq:register"
#define NS_FEATURE_REGISTER "http://jabber.org/features/iq-register"
#define DEFAULT_RATE "5/1m"
#define MAX_PASSWORD 1023   /* bytes; bounds SASLprep work, no real password is longer */
#define RL_MAX_ENTRIES 4096 /* distinct IPs remembered per host */

/* ---- rate limit: fixed window per IP ---- */

typedef struct rl_ent {
	char *ip;
	uint64_t start_ms; /* window start */
	unsigned count;    /* attempts in this window */
} rl_ent;

typedef struct rl_table {
	rl_ent *ents;
	size_t n;
	unsigned limit;
	uint64_t window_ms;
} rl_table;

/* Parses "<count>/<window>": count 1..1000000; window a number with unit ms, s, m,
 * min, h or d (a bare number is seconds, as in the core's durations) or a unit alone
 * ("5/m" = 5 per minute).  Returns 0 or PV_EINVAL. */
static int rl_parse(const char *s, unsigned *count, uint64_t *window_ms)
{
	static const struct {
		const char *name;
		uint64_t ms;
	} units[] = {
		{"ms", 1}, {"s", 1000}, {"m", 60000}, {"min", 60000}, {"h", 3600000}, {"d", 86400000},
	};
	if (!s || *s < '0' || *s > '9')
		return PV_EINVAL;
	char *end;
	unsigned long c = strtoul(s, &end, 10);
	if (*end != '/' || c < 1 || c > 1000000)
		return PV_EINVAL;
	s = end + 1;
	unsigned long long num = 1;
	if (*s >= '0' && *s <= '9') {
		num = strtoull(s, &end, 10);
		s = end;
	}
	uint64_t unit = 0;
	if (*s == '\0') {
		unit = 1000;
	} else {
		for (size_t i = 0; i < PV_ARRAY_LEN(units); i++)
			if (strcmp(s, units[i].name) == 0)
				unit = units[i].ms;
	}
	/* Zero-length or absurd (> 1 year) windows are typos, not policies. */
	if (unit == 0 || num == 0 || num > 366ULL * 86400000 / unit)
		return PV_EINVAL;
	*count = (unsigned)c;
	*window_ms = num * unit;
	return 0;
}

/* Counts one attempt from ip at time now; false when ip is over the limit (the
 * attempt is then not counted). */
static bool rl_allow(rl_table *t, const char *ip, uint64_t now)
{
	for (size_t i = 0; i < t->n; i++) {
		rl_ent *e = &t->ents[i];
		if (strcmp(e->ip, ip) != 0)
			continue;
		if (now - e->start_ms >= t->window_ms) {
			e->start_ms = now;
			e->count = 0;
		}
		if (e->count >= t->limit)
			return false;
		e->count++;
		return true;
	}
	if (t->n == RL_MAX_ENTRIES) {
		/* Full: forget expired windows; if none, the oldest one. */
		size_t keep = 0, oldest = 0;
		for (size_t i = 0; i < t->n; i++) {
			if (now - t->ents[i].start_ms >= t->window_ms)
				pv_free(t->ents[i].ip);
			else
				t->ents[keep++] = t->ents[i];
		}
		t->n = keep;
		if (t->n == RL_MAX_ENTRIES) {
			for (size_t i = 1; i < t->n; i++)
				if (t->ents[i].start_ms < t->ents[oldest].start_ms)
					oldest = i;
			pv_free(t->ents[oldest].ip);
			t->ents[oldest] = t->ents[--t->n];
		}
	}
	if (!t->ents)
		t->ents = pv_calloc(RL_MAX_ENTRIES, sizeof(*t->ents));
	t->ents[t->n++] = (rl_ent){.ip = pv_strdup(ip), .start_ms = now, .count = 1};
	return true;
}

static void rl_fini(rl_table *t)
{
	for (size_t i = 0; i < t->n; i++)
		pv_free(t->ents[i].ip);
	pv_free(t->ents);
	t->ents = NULL;
	t->n = 0;
}

/* ---- module state and helpers ---- */

typedef struct reg_state {
	bool allow;          /* account creation in-band */
	bool allow_insecure; /* ... and password changes without TLS */
	rl_table rl;
} reg_state;

/* Address used as the pv_session_set_data key: "this stream created an account". */
static char registered_key;

/* An error reply without the request's payload (it may hold a password). */
static void reply_error(pv_event *ev, const char *etype, const char *cond, const char *text)
{
	pv_stanza *bare = pv_stanza_copy(ev->stanza);
	pv_xml *c;
	while ((c = bare->xml->first))
		pv_xml_free(c);
	pv_stanza *e = pv_stanza_error(bare, etype, cond, text);
	pv_stanza_unref(bare);
	if (e)
		pv_reply(ev, e);
}

static void add_text_child(pv_xml *parent, const char *name, const char *text)
{
	pv_xml *c = pv_xml_add_child(parent, name, NULL);
	if (text)
		pv_xml_add_text(c, text, strlen(text));
}

/* Text of a child element of the query (caller frees with free_secret), or NULL.
 * Children are looked up by name only: a parsed child may carry its inherited
 * namespace as NULL (pv_xml.h). */
static char *child_text(const pv_xml *q, const char *name)
{
	return pv_xml_child_text(q, name, NULL);
}

static void free_secret(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		pv_free(s);
	}
}

static bool stream_secure_enough(const reg_state *rs, const pv_session *s)
{
	return rs->allow_insecure || pv_session_is_secure(s);
}

/* Account creation is on offer to this (unauthenticated) session. */
static bool may_create(const reg_state *rs, const pv_session *s)
{
	return rs->allow && stream_secure_enough(rs, s);
}

/* Derives the SCRAM credentials for password.  0 or <0 (not a valid password). */
static int make_creds(pv_host *h, const char *password, pv_scram_cred creds[2])
{
	if (strlen(password) > MAX_PASSWORD)
		return PV_EINVAL;
	/* TODO: thread pool (see the file comment). */
	int rc = pv_scram_make_creds(password, pv_host_scram_iterations(h), creds);
	return rc < 0 ? rc : 0;
}

/* ---- before authentication ---- */

static int create_account(pv_event *ev, reg_state *rs, const pv_xml *q)
{
	pv_session *s = ev->origin;
	if (!may_create(rs, s)) {
		reply_error(ev, "cancel", "service-unavailable", NULL);
		return PV_HANDLED;
	}
	if (pv_xml_child(q, "remove", NULL)) {
		/* Nothing to cancel: the stream has no account yet (section 3.2). */
		reply_error(ev, "modify", "unexpected-request", NULL);
		return PV_HANDLED;
	}
	if (pv_session_get_data(s, &registered_key)) {
		reply_error(ev, "modify", "not-acceptable", "one account per connection");
		return PV_HANDLED;
	}

	char *username = child_text(q, "username");
	char *password = child_text(q, "password");
	char *user = NULL;
	pv_scram_cred creds[2];
	memset(creds, 0, sizeof(creds));
	if (!username || !*username || !password || !*password) {
		reply_error(ev, "modify", "not-acceptable", "username and password are required");
		goto done;
	}
	user = pv_jid_norm_local(username, strlen(username));
	if (!user) {
		reply_error(ev, "modify", "jid-malformed", "invalid username");
		goto done;
	}
	const char *ip = pv_session_peer_ip(s);
	if (!rl_allow(&rs->rl, ip ? ip : "", pv_now_ms())) {
		pv_info("register", "rate limited host=%s ip=%s", pv_host_name(ev->host), ip ? ip : "-");
		reply_error(ev, "wait", "resource-constraint", "too many registrations, try later");
		goto done;
	}
	if (make_creds(ev->host, password, creds) < 0) {
		reply_error(ev, "modify", "not-acceptable", "invalid password");
		goto done;
	}
	int rc = pv_store_user_create(pv_host_store(ev->host), pv_host_name(ev->host), user, creds, 2);
	if (rc == PV_EEXIST) {
		reply_error(ev, "cancel", "conflict", NULL);
		goto done;
	}
	if (rc < 0) {
		pv_warn("register", "account creation failed host=%s user=%s rc=%d",
			pv_host_name(ev->host), user, rc);
		reply_error(ev, "wait", "internal-server-error", NULL);
		goto done;
	}
	pv_session_set_data(s, &registered_key, &registered_key, NULL);
	pv_info("register", "account created host=%s user=%s ip=%s", pv_host_name(ev->host), user,
		ip ? ip : "-");
	pv_reply_result(ev, NULL);
done:
	explicit_bzero(creds, sizeof(creds));
	pv_free(user);
	free_secret(username);
	free_secret(password);
	return PV_HANDLED;
}

/* ---- after authentication ---- */

static int remove_account(pv_event *ev, const pv_xml *q, const char *user)
{
	for (pv_xml *c = pv_xml_first_element(q); c; c = pv_xml_next_element(c)) {
		if (strcmp(c->name, "remove") != 0) {
			reply_error(ev, "modify", "bad-request", NULL);
			return PV_HANDLED;
		}
	}
	int rc = pv_store_user_delete(pv_host_store(ev->host), pv_host_name(ev->host), user);
	if (rc < 0) {
		pv_warn("register", "account deletion failed host=%s user=%s rc=%d",
			pv_host_name(ev->host), user, rc);
		reply_error(ev, "wait", "internal-server-error", NULL);
		return PV_HANDLED;
	}
	pv_info("register", "account deleted in-band host=%s user=%s", pv_host_name(ev->host), user);
	pv_event del = {
		.name = "user-deleted",
		.host = ev->host,
		.origin = ev->origin,
		.user = user,
	};
	pv_fire(ev->host, del.name, &del);
	/* TODO (core): section 3.2 -- after this result, close every session of the account
	 * with a <not-authorized/> stream error; cancel its presence subscriptions. */
	pv_reply_result(ev, NULL);
	return PV_HANDLED;
}

/* Whether a <username/> names the account `user` of this host ("user" or
 * "user@host": clients send either). */
static bool names_account(const pv_event *ev, const char *given, const char *user)
{
	pv_jid j;
	const char *at = strchr(given, '@');
	bool same;
	if (at) {
		if (pv_jid_parse_str(&j, given) < 0)
			return false;
		same = j.local && !j.resource && strcmp(j.local, user) == 0 &&
			strcmp(j.domain, pv_host_name(ev->host)) == 0;
		pv_jid_fini(&j);
		return same;
	}
	char *norm = pv_jid_norm_local(given, strlen(given));
	same = norm && strcmp(norm, user) == 0;
	pv_free(norm);
	return same;
}

static int change_password(pv_event *ev, reg_state *rs, const pv_xml *q, const char *user)
{
	char *username = child_text(q, "username");
	char *password = child_text(q, "password");
	pv_scram_cred creds[2];
	memset(creds, 0, sizeof(creds));
	/* "MUST NOT change the password to a null value" (section 3.3). */
	if (!password || !*password) {
		reply_error(ev, "modify", "bad-request", NULL);
		goto done;
	}
	if (username && !names_account(ev, username, user)) {
		reply_error(ev, "auth", "forbidden", NULL);
		goto done;
	}
	if (!stream_secure_enough(rs, ev->origin)) {
		reply_error(ev, "modify", "not-authorized", NULL);
		goto done;
	}
	if (make_creds(ev->host, password, creds) < 0) {
		reply_error(ev, "modify", "not-acceptable", "invalid password");
		goto done;
	}
	int rc = pv_store_user_set_creds(pv_host_store(ev->host), pv_host_name(ev->host), user, creds, 2);
	if (rc < 0) {
		pv_warn("register", "password change failed host=%s user=%s rc=%d",
			pv_host_name(ev->host), user, rc);
		reply_error(ev, "wait", "internal-server-error", NULL);
		goto done;
	}
	pv_info("register", "password changed host=%s user=%s", pv_host_name(ev->host), user);
	pv_reply_result(ev, NULL);
done:
	explicit_bzero(creds, sizeof(creds));
	free_secret(username);
	free_secret(password);
	return PV_HANDLED;
}

/* ---- hooks ---- */

/* The <query/> of a request, or NULL after replying with an error. */
static const pv_xml *request_query(pv_event *ev)
{
	const pv_xml *q = pv_xml_first_element(ev->stanza->xml);
	if (!q || !pv_xml_is(q, "query", NS_REGISTER)) {
		reply_error(ev, "cancel", "feature-not-implemented", NULL);
		return NULL;
	}
	return q;
}

/* Requests we answer come from a local session of this host; a remote entity or
 * another host's user gets the default (service-unavailable): we register accounts of
 * this server only. */
static bool ours(const pv_event *ev)
{
	return ev->origin && pv_session_host(ev->origin) == ev->host;
}

static int on_get(pv_event *ev, void *ud)
{
	reg_state *rs = ud;
	if (!ours(ev))
		return PV_PASS;
	if (!request_query(ev))
		return PV_HANDLED;
	const char *user = pv_session_user(ev->origin);
	pv_xml *rq = pv_xml_new("query", NS_REGISTER);
	if (user) {
		/* Section 3.1: <registered/>, the data on file (password MAY be empty). */
		pv_xml_add_child(rq, "registered", NULL);
		add_text_child(rq, "instructions",
			"You are registered. Send a new password to change it, or <remove/> to "
			"delete the account.");
		add_text_child(rq, "username", user);
		add_text_child(rq, "password", NULL);
	} else if (may_create(rs, ev->origin)) {
		add_text_child(rq, "instructions",
			"Choose a username and password to register with this server.");
		add_text_child(rq, "username", NULL);
		add_text_child(rq, "password", NULL);
	} else {
		pv_xml_free(rq);
		reply_error(ev, "cancel", "service-unavailable", NULL);
		return PV_HANDLED;
	}
	pv_reply_result(ev, rq);
	return PV_HANDLED;
}

static int on_set(pv_event *ev, void *ud)
{
	reg_state *rs = ud;
	if (!ours(ev))
		return PV_PASS;
	const pv_xml *q = request_query(ev);
	if (!q)
		return PV_HANDLED;
	const char *user = pv_session_user(ev->origin);
	if (!user)
		return create_account(ev, rs, q);
	if (pv_xml_child(q, "remove", NULL))
		return remove_account(ev, q, user);
	return change_password(ev, rs, q, user);
}

/* Without `to` the core may treat the namespace as account-scoped and address the iq
 * to the sender's bare JID; XEP-0077's cancel example has no `to`.  Only the account's
 * own sessions are answered here. */
static bool to_own_account(const pv_event *ev)
{
	const pv_jid *me = ev->origin ? pv_session_jid(ev->origin) : NULL;
	return me && ev->stanza->has_to && pv_jid_bare_eq(me, &ev->stanza->to);
}

static int on_get_bare(pv_event *ev, void *ud)
{
	return to_own_account(ev) ? on_get(ev, ud) : PV_PASS;
}

static int on_set_bare(pv_event *ev, void *ud)
{
	return to_own_account(ev) ? on_set(ev, ud) : PV_PASS;
}

static int on_features(pv_event *ev, void *ud)
{
	reg_state *rs = ud;
	/* Section 8: offered to clients before authentication only (the core fires this
	 * hook for c2s streams). */
	if (ev->origin && ev->payload && !pv_session_user(ev->origin) && may_create(rs, ev->origin) &&
		!pv_session_get_data(ev->origin, &registered_key))
		pv_xml_add_child(ev->payload, "register", NS_FEATURE_REGISTER);
	return PV_PASS;
}

static const struct {
	const char *event;
	pv_hook_fn fn;
} reg_hooks[] = {
	{"iq-get/host/" NS_REGISTER, on_get},
	{"iq-set/host/" NS_REGISTER, on_set},
	{"iq-get/bare/" NS_REGISTER, on_get_bare},
	{"iq-set/bare/" NS_REGISTER, on_set_bare},
	{"stream-features", on_features},
};

static int register_load(pv_host *h, const pv_conf *conf, void **state)
{
	reg_state *rs = pv_calloc(1, sizeof(*rs));
	/* issue 6: an exchange hosts no people, whatever register.allow says. */
	rs->allow = pv_cfg_bool(conf, "allow", false) && !pv_host_is_exchange(h);
	rs->allow_insecure = pv_cfg_bool(conf, "allow_insecure", false);
	const char *rate = pv_cfg_str(conf, "rate_per_ip", DEFAULT_RATE);
	if (rl_parse(rate, &rs->rl.limit, &rs->rl.window_ms) < 0) {
		pv_warn("register", "bad register.rate_per_ip \"%s\"; using %s host=%s", rate,
			DEFAULT_RATE, pv_host_name(h));
		rl_parse(DEFAULT_RATE, &rs->rl.limit, &rs->rl.window_ms);
	}
	/* "Determining Support": password change and cancellation are in-band
	 * whenever the module is loaded, so the feature is always there. */
	pv_host_add_feature(h, NS_REGISTER);
	for (size_t i = 0; i < PV_ARRAY_LEN(reg_hooks); i++)
		pv_hook(h, reg_hooks[i].event, 0, reg_hooks[i].fn, rs);
	*state = rs;
	return 0;
}

static void register_unload(pv_host *h, void *state)
{
	reg_state *rs = state;
	for (size_t i = 0; i < PV_ARRAY_LEN(reg_hooks); i++)
		pv_unhook(h, reg_hooks[i].event, reg_hooks[i].fn, rs);
	rl_fini(&rs->rl);
	pv_free(rs);
}

const pv_module pv_mod_register = {
	.name = "register",
	.load = register_load,
	.unload = register_unload,
};
