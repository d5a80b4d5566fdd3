/* mod_adhoc.c -- XEP-0050 Ad-Hoc Commands with XEP-0004 data forms: an account owner
 * manages their consent (issue 4, docs/protocol/consent.md) from any XMPP client,
 * through the operations of mod_consent (consent.h).
 *
 * Commands (addressed to the host, run for the requesting account):
 *   urn:peyvand:consent:0#settings  one stage: policy, per-provider policies, allowed
 *                                   and denied senders; the submission is turned into
 *                                   a <consent/> element of the changes only and
 *                                   applied with pv_consent_apply
 *   urn:peyvand:consent:0#requests  stage 1 picks a sender with held messages, stage 2
 *                                   shows them and accepts, declines or reports
 *   urn:peyvand:consent:0#history   completes at once with the log and whether its
 *                                   hash chain verifies
 * Discovery (XEP-0050 section 2): the host advertises the commands feature; disco#items
 * and disco#info on the node http://jabber.org/protocol/commands and on each command
 * node are answered here, before mod_disco (priority 10), which keeps every other node.
 * Execution (section 3.3, 4.3, 5): a request without sessionid starts a command; the
 * responder's sessionid must come back on every later stage; action cancel ends it.
 * Only a bound session of a local account of this host may list or run the commands:
 * anyone else gets forbidden (an empty list for disco#items).
 *
 * Sessions live in memory, keyed by a random sessionid and bound to the requester's
 * full JID (section 4.3: one requester/responder pair).  They end on completion, on
 * cancel, when the resource unbinds, or after SESSION_TIMEOUT_MS unused; a resource
 * keeps at most MAX_SESSIONS_PER_JID (the least recently used one is dropped: clients
 * often close a dialog without cancelling).  A stage whose submission is invalid is
 * answered with an error and the session stays at that stage, so the user can retry.
 * Threading: the host's worker loop; state per host. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "modules/consent.h"
#include "peyvand/pv_map.h"

#define NS_COMMANDS "http://jabber.org/protocol/commands"
#define NS_DATA "jabber:x:data"
#define NS_FORWARD "urn:xmpp:forward:0"
#define SESSION_TIMEOUT_MS (10 * 60 * 1000)
#define MAX_SESSIONS_PER_JID 8
#define MAX_FORM_LINES 1000   /* lines of all text-multi fields of one submission */
#define MAX_HISTORY_SHOWN 200 /* newest log entries in the history form */
#define MAX_PREVIEW 300       /* bytes of a held message body shown in a form */

typedef enum { ACT_EXECUTE, ACT_CANCEL, ACT_PREV, ACT_NEXT, ACT_COMPLETE } cmd_action;

static const char *const action_names[] = {"execute", "cancel", "prev", "next", "complete"};

struct adhoc_cmd;

typedef struct asession {
	char *id;
	char *owner;                /* the requester's full JID */
	const struct adhoc_cmd *cmd;
	int stage;
	char *sender;               /* #requests: the sender picked in stage 1 */
	uint64_t used;              /* pv_now_ms of the last request */
	uint64_t turn;              /* ahost.turns at the last request: orders the uses */
} asession;

typedef struct ahost {
	pv_host *h;
	pv_map *sessions; /* sessionid -> asession */
	uint64_t turns;   /* requests to sessions so far (milliseconds tie) */
} ahost;

/* One request to a command: what the command's function reads and fills in. */
typedef struct step {
	ahost *ah;
	const struct adhoc_cmd *cmd;
	const pv_jid *me;        /* the requester (full JID, local account of the host) */
	asession *s;             /* the session, or NULL before the command created one */
	cmd_action act;
	const pv_xml *form;      /* the submitted jabber:x:data form, or NULL */
	pv_xml *out;             /* the <command/> of the result */
	bool done;               /* status completed: the session ends */
	const char *etype, *econd, *eapp; /* set: answer with this error instead */
	const char *etext;
} step;

typedef struct adhoc_cmd {
	const char *node;
	const char *name;
	void (*run)(step *st);
} adhoc_cmd;

/* ---- sessions ---- */

static void session_free(void *p)
{
	asession *s = p;
	pv_free(s->id);
	pv_free(s->owner);
	pv_free(s->sender);
	pv_free(s);
}

static bool expired(const asession *s, uint64_t now)
{
	return now - s->used > SESSION_TIMEOUT_MS;
}

static int drop_expired(void *ud, const char *key, void *val)
{
	if (!expired(val, *(uint64_t *)ud))
		return 0;
	session_free(val);
	return 1;
}

static int drop_owned(void *ud, const char *key, void *val)
{
	asession *s = val;
	if (strcmp(s->owner, ud) != 0)
		return 0;
	session_free(s);
	return 1;
}

typedef struct lru_ctx {
	const char *owner;
	size_t count;
	asession *oldest;
} lru_ctx;

static int find_lru(void *ud, const char *key, void *val)
{
	lru_ctx *c = ud;
	asession *s = val;
	if (strcmp(s->owner, c->owner) == 0) {
		c->count++;
		if (!c->oldest || s->turn < c->oldest->turn)
			c->oldest = s;
	}
	return 0;
}

static asession *session_new(step *st)
{
	ahost *ah = st->ah;
	uint64_t now = pv_now_ms();
	pv_map_each(ah->sessions, drop_expired, &now);
	lru_ctx c = {.owner = st->me->full};
	pv_map_each(ah->sessions, find_lru, &c);
	if (c.count >= MAX_SESSIONS_PER_JID && c.oldest)
		session_free(pv_map_del(ah->sessions, c.oldest->id));
	asession *s = pv_calloc(1, sizeof(*s));
	s->id = pv_random_hex(12);
	s->owner = pv_strdup(st->me->full);
	s->cmd = st->cmd;
	s->used = now;
	s->turn = ++ah->turns;
	pv_map_put(ah->sessions, s->id, s);
	st->s = s;
	return s;
}

/* ---- data forms (XEP-0004) ---- */

static pv_xml *form_new(pv_xml *parent, const char *type, const char *title, const char *instructions)
{
	pv_xml *x = pv_xml_add_child(parent, "x", NS_DATA);
	pv_xml_set_attr(x, "type", type);
	if (title) {
		pv_xml *t = pv_xml_add_child(x, "title", NS_DATA);
		pv_xml_add_text(t, title, strlen(title));
	}
	if (instructions) {
		pv_xml *i = pv_xml_add_child(x, "instructions", NS_DATA);
		pv_xml_add_text(i, instructions, strlen(instructions));
	}
	return x;
}

static pv_xml *field_add(pv_xml *x, const char *type, const char *var, const char *label)
{
	pv_xml *f = pv_xml_add_child(x, "field", NS_DATA);
	if (type)
		pv_xml_set_attr(f, "type", type);
	if (var)
		pv_xml_set_attr(f, "var", var);
	if (label)
		pv_xml_set_attr(f, "label", label);
	return f;
}

static void field_value(pv_xml *f, const char *v)
{
	pv_xml *val = pv_xml_add_child(f, "value", NS_DATA);
	pv_xml_add_text(val, v, strlen(v));
}

static void field_option(pv_xml *f, const char *label, const char *value)
{
	pv_xml *o = pv_xml_add_child(f, "option", NS_DATA);
	if (label)
		pv_xml_set_attr(o, "label", label);
	field_value(o, value);
}

static void field_required(pv_xml *f)
{
	pv_xml_add_child(f, "required", NS_DATA);
}

/* The submitted field named var, or NULL when the form does not have it. */
static const pv_xml *form_field(const pv_xml *form, const char *var)
{
	if (!form)
		return NULL;
	for (pv_xml *f = pv_xml_first_element(form); f; f = pv_xml_next_element(f)) {
		const char *v = pv_xml_attr(f, "var");
		if (pv_xml_is(f, "field", NS_DATA) && v && strcmp(v, var) == 0)
			return f;
	}
	return NULL;
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* s[0..n) without leading and trailing white space, as a new string. */
static char *trimmed(const char *s, size_t n)
{
	while (n && is_space(*s)) {
		s++;
		n--;
	}
	while (n && is_space(s[n - 1]))
		n--;
	return pv_strndup(s, n);
}

/* The first <value/> of a submitted field, trimmed; NULL when absent or empty.  Caller
 * frees. */
static char *field_single(const pv_xml *form, const char *var)
{
	const pv_xml *f = form_field(form, var);
	char *v = f ? pv_xml_child_text(f, "value", NS_DATA) : NULL;
	if (!v)
		return NULL;
	char *t = trimmed(v, strlen(v));
	pv_free(v);
	if (!*t) {
		pv_free(t);
		return NULL;
	}
	return t;
}

typedef struct strv {
	char **v;
	size_t n, cap;
} strv;

static void strv_push(strv *a, char *s)
{
	if (a->n == a->cap) {
		a->cap = a->cap ? 2 * a->cap : 8;
		a->v = pv_realloc(a->v, a->cap * sizeof(*a->v));
	}
	a->v[a->n++] = s;
}

static void strv_fini(strv *a)
{
	for (size_t i = 0; i < a->n; i++)
		pv_free(a->v[i]);
	pv_free(a->v);
	memset(a, 0, sizeof(*a));
}

/* The lines of a text-multi field: every <value/>, split at line breaks as well
 * (XEP-0004 3.3 asks for one value per line, some clients send one value with
 * newlines), trimmed, empty lines skipped.  Returns false when the field is absent;
 * *total counts lines across calls for the MAX_FORM_LINES bound. */
static bool field_lines(const pv_xml *form, const char *var, strv *out, size_t *total)
{
	const pv_xml *f = form_field(form, var);
	if (!f)
		return false;
	for (pv_xml *v = pv_xml_first_element(f); v; v = pv_xml_next_element(v)) {
		if (!pv_xml_is(v, "value", NS_DATA))
			continue;
		char *text = pv_xml_text(v);
		const char *p = text;
		while (*p) {
			size_t n = strcspn(p, "\r\n");
			char *line = trimmed(p, n);
			if (*line) {
				strv_push(out, line);
				++*total;
			} else {
				pv_free(line);
			}
			p += n;
			p += strspn(p, "\r\n");
		}
		pv_free(text);
	}
	return true;
}

/* Copies at most max bytes of s, cut at a UTF-8 character boundary, with line breaks
 * turned into spaces (fixed fields SHOULD NOT contain newlines, XEP-0004 3.3). */
static void preview(pv_buf *b, const char *s, size_t max)
{
	size_t n = strlen(s);
	bool cut = n > max;
	if (cut) {
		n = max;
		while (n && ((unsigned char)s[n] & 0xC0) == 0x80)
			n--;
	}
	for (size_t i = 0; i < n; i++)
		pv_buf_append(b, s[i] == '\n' || s[i] == '\r' ? " " : &s[i], 1);
	if (cut)
		pv_buf_puts(b, "…");
}

/* ---- replies ---- */

static void add_note(pv_xml *cmd, const char *type, const char *text)
{
	pv_xml *n = pv_xml_add_child(cmd, "note", NS_COMMANDS);
	pv_xml_set_attr(n, "type", type);
	pv_xml_add_text(n, text, strlen(text));
}

/* <actions execute=def> with the allowed children (section 4.4: cancel is implied). */
static void add_actions(pv_xml *cmd, const char *def, bool prev, bool next, bool complete)
{
	pv_xml *a = pv_xml_add_child(cmd, "actions", NS_COMMANDS);
	pv_xml_set_attr(a, "execute", def);
	if (prev)
		pv_xml_add_child(a, "prev", NS_COMMANDS);
	if (next)
		pv_xml_add_child(a, "next", NS_COMMANDS);
	if (complete)
		pv_xml_add_child(a, "complete", NS_COMMANDS);
}

/* A stanza error, with an XEP-0050 specific condition (section 5) when app is set. */
static void reply_error(pv_event *ev, const char *etype, const char *cond, const char *app,
	const char *text)
{
	pv_stanza *e = pv_stanza_error(ev->stanza, etype, cond, text);
	if (!e)
		return;
	pv_xml *err = pv_xml_child(e->xml, "error", NULL);
	if (err && app)
		pv_xml_add_child(err, app, NS_COMMANDS);
	pv_stanza_set_from(e, ev->stanza->has_to ? ev->stanza->to.full : NULL);
	pv_reply(ev, e);
}

static void step_fail(step *st, const char *etype, const char *cond, const char *app, const char *text)
{
	st->etype = etype;
	st->econd = cond;
	st->eapp = app;
	st->etext = text;
}

static void bad_payload(step *st, const char *text)
{
	step_fail(st, "modify", "bad-request", "bad-payload", text);
}

static void bad_action(step *st)
{
	step_fail(st, "modify", "bad-request", "bad-action", NULL);
}

/* ---- #settings ---- */

static void settings_form(step *st, const pv_xml *cur)
{
	pv_xml *x = form_new(st->out, "form", "Messages from other messengers",
		"Choose who may reach you from other providers. Provider rules: one per line, "
		"\"domain policy\". Senders: one address per line. Blocking still wins.");
	field_value(field_add(x, "hidden", "FORM_TYPE", NULL), PV_NS_CONSENT "#settings");
	pv_xml *f = field_add(x, "list-single", "policy", "Default for other providers");
	const char *p = pv_xml_attr(cur, "policy");
	field_value(f, p ? p : "off");
	field_option(f, "Nobody (off)", "off");
	field_option(f, "My contacts and accepted senders; others become requests", "contacts");
	field_option(f, "Everyone", "everyone");
	field_required(f);

	pv_xml *prov = field_add(x, "text-multi", "providers", "Per-provider policy (domain policy)");
	pv_xml *allow = field_add(x, "text-multi", "allowed", "Always allowed senders");
	pv_xml *deny = field_add(x, "text-multi", "denied", "Never allowed senders");
	for (pv_xml *c = pv_xml_first_element(cur); c; c = pv_xml_next_element(c)) {
		if (pv_xml_is(c, "provider", PV_NS_CONSENT)) {
			char *line = pv_sprintf("%s %s", pv_xml_attr(c, "domain"), pv_xml_attr(c, "policy"));
			field_value(prov, line);
			pv_free(line);
		} else if (pv_xml_is(c, "sender", PV_NS_CONSENT)) {
			const char *rule = pv_xml_attr(c, "rule");
			field_value(rule && strcmp(rule, "allow") == 0 ? allow : deny, pv_xml_attr(c, "jid"));
		}
	}
}

/* The current rule element for subject (attribute key) among cur's children named el. */
static const pv_xml *current_rule(const pv_xml *cur, const char *el, const char *key, const char *subject)
{
	for (pv_xml *c = pv_xml_first_element(cur); c; c = pv_xml_next_element(c)) {
		const char *v = pv_xml_attr(c, key);
		if (pv_xml_is(c, el, PV_NS_CONSENT) && v && strcmp(v, subject) == 0)
			return c;
	}
	return NULL;
}

static const char *strv_find_pair(const strv *keys, const strv *vals, const char *key)
{
	for (size_t i = 0; i < keys->n; i++)
		if (strcmp(keys->v[i], key) == 0)
			return vals->v[i];
	return NULL;
}

/* Adds one submitted rule to keys/vals; false when the same subject already has a
 * different value (a contradiction the user must resolve). */
static bool put_rule(strv *keys, strv *vals, char *key, const char *val)
{
	const char *had = strv_find_pair(keys, vals, key);
	if (had) {
		bool same = strcmp(had, val) == 0;
		pv_free(key);
		return same;
	}
	strv_push(keys, key);
	strv_push(vals, pv_strdup(val));
	return true;
}

/* Builds in `el` the <consent/> changes that turn `cur` into the submitted form; fields
 * left out of the submission are left as they are.  Returns NULL or what is wrong. */
static const char *settings_diff(step *st, const pv_xml *cur, pv_xml *el)
{
	const char *why = NULL;
	size_t total = 0;
	strv pl = {0}, al = {0}, dl = {0};
	strv pkeys = {0}, pvals = {0}, skeys = {0}, svals = {0};
	char *pol = field_single(st->form, "policy");
	bool has_prov = field_lines(st->form, "providers", &pl, &total);
	bool has_allow = field_lines(st->form, "allowed", &al, &total);
	bool has_deny = field_lines(st->form, "denied", &dl, &total);
	if (total > MAX_FORM_LINES) {
		why = "too many lines";
		goto out;
	}
	pv_consent_policy p;
	if (pol && pv_consent_policy_parse(pol, &p) != 0) {
		why = "policy must be off, contacts or everyone";
		goto out;
	}
	const char *curpol = pv_xml_attr(cur, "policy");
	if (pol && (!curpol || strcmp(curpol, pol) != 0))
		pv_xml_set_attr(el, "policy", pol);

	for (size_t i = 0; i < pl.n; i++) {
		char dom[1024], pname[32], extra[2];
		pv_consent_policy pp;
		if (sscanf(pl.v[i], "%1023s %31s %1s", dom, pname, extra) != 2 ||
		    pv_consent_policy_parse(pname, &pp) != 0) {
			why = "a provider line is not \"domain off|contacts|everyone\"";
			goto out;
		}
		char *d = pv_jid_norm_domain(dom, strlen(dom));
		if (!d) {
			why = "a provider line has an invalid domain";
			goto out;
		}
		if (!put_rule(&pkeys, &pvals, d, pname)) {
			why = "a provider is listed twice with different policies";
			goto out;
		}
	}
	for (int list = 0; list < 2; list++) {
		const strv *src = list == 0 ? &al : &dl;
		for (size_t i = 0; i < src->n; i++) {
			pv_jid j;
			if (pv_jid_parse_str(&j, src->v[i]) != 0) {
				why = "a sender is not a valid address";
				goto out;
			}
			bool ok = j.local && !j.resource;
			char *bare = pv_strdup(j.bare);
			pv_jid_fini(&j);
			if (!ok) {
				pv_free(bare);
				why = "a sender must be a bare address (user@domain)";
				goto out;
			}
			if (!put_rule(&skeys, &svals, bare, list == 0 ? "allow" : "deny")) {
				why = "a sender is both allowed and denied";
				goto out;
			}
		}
	}

	if (has_prov) {
		for (size_t i = 0; i < pkeys.n; i++) {
			const pv_xml *c = current_rule(cur, "provider", "domain", pkeys.v[i]);
			const char *had = c ? pv_xml_attr(c, "policy") : NULL;
			if (had && strcmp(had, pvals.v[i]) == 0)
				continue;
			pv_xml *x = pv_xml_add_child(el, "provider", PV_NS_CONSENT);
			pv_xml_set_attr(x, "domain", pkeys.v[i]);
			pv_xml_set_attr(x, "policy", pvals.v[i]);
		}
		for (pv_xml *c = pv_xml_first_element(cur); c; c = pv_xml_next_element(c)) {
			const char *d = pv_xml_attr(c, "domain");
			if (!pv_xml_is(c, "provider", PV_NS_CONSENT) || !d || strv_find_pair(&pkeys, &pvals, d))
				continue;
			pv_xml *x = pv_xml_add_child(el, "provider", PV_NS_CONSENT);
			pv_xml_set_attr(x, "domain", d);
			pv_xml_set_attr(x, "policy", "remove");
		}
	}
	for (size_t i = 0; i < skeys.n; i++) {
		const pv_xml *c = current_rule(cur, "sender", "jid", skeys.v[i]);
		const char *had = c ? pv_xml_attr(c, "rule") : NULL;
		if (had && strcmp(had, svals.v[i]) == 0)
			continue;
		pv_xml *x = pv_xml_add_child(el, "sender", PV_NS_CONSENT);
		pv_xml_set_attr(x, "jid", skeys.v[i]);
		pv_xml_set_attr(x, "rule", svals.v[i]);
	}
	for (pv_xml *c = pv_xml_first_element(cur); c; c = pv_xml_next_element(c)) {
		const char *jid = pv_xml_attr(c, "jid");
		const char *rule = pv_xml_attr(c, "rule");
		if (!pv_xml_is(c, "sender", PV_NS_CONSENT) || !jid || !rule ||
		    strv_find_pair(&skeys, &svals, jid))
			continue;
		/* Only the list the rule belongs to can remove it: a form that omits
		 * "denied" keeps the deny rules. */
		bool allow = strcmp(rule, "allow") == 0;
		if ((allow && !has_allow) || (!allow && !has_deny))
			continue;
		pv_xml *x = pv_xml_add_child(el, "sender", PV_NS_CONSENT);
		pv_xml_set_attr(x, "jid", jid);
		pv_xml_set_attr(x, "rule", "remove");
	}
out:
	pv_free(pol);
	strv_fini(&pl);
	strv_fini(&al);
	strv_fini(&dl);
	strv_fini(&pkeys);
	strv_fini(&pvals);
	strv_fini(&skeys);
	strv_fini(&svals);
	return why;
}

static size_t count_elements(const pv_xml *x)
{
	size_t n = 0;
	for (pv_xml *c = pv_xml_first_element(x); c; c = pv_xml_next_element(c))
		n++;
	return n;
}

static void run_settings(step *st)
{
	pv_host *h = st->ah->h;
	const char *user = st->me->local;
	pv_xml *cur = pv_consent_settings_xml(h, user);
	if (!st->s) {
		session_new(st);
		add_actions(st->out, "complete", false, false, true);
		settings_form(st, cur);
		goto out;
	}
	if (st->act == ACT_PREV || st->act == ACT_NEXT) {
		bad_action(st);
		goto out;
	}
	if (!st->form) {
		bad_payload(st, "the settings form is missing");
		goto out;
	}
	pv_xml *el = pv_xml_new("consent", PV_NS_CONSENT);
	const char *why = settings_diff(st, cur, el);
	size_t changes = count_elements(el) + (pv_xml_attr(el, "policy") ? 1 : 0);
	if (why) {
		bad_payload(st, why);
	} else if (changes == 0) {
		st->done = true;
		add_note(st->out, "info", "Nothing changed.");
	} else {
		const char *cond = "bad-request";
		if (pv_consent_apply(h, user, el, &cond) != 0) {
			if (strcmp(cond, "resource-constraint") == 0)
				step_fail(st, "wait", cond, NULL, "too many changes at once");
			else
				bad_payload(st, "a rule was refused (a domain of this server, or an invalid address)");
		} else {
			char note[96];
			snprintf(note, sizeof(note), "Saved %zu change%s.", changes, changes == 1 ? "" : "s");
			st->done = true;
			add_note(st->out, "info", note);
		}
	}
	pv_xml_free(el);
out:
	pv_xml_free(cur);
}

/* ---- #requests ---- */

/* Stage 1: the senders with held stanzas; false when there are none. */
static bool requests_form(step *st, const char *selected)
{
	pv_xml *list = pv_consent_requests_xml(st->ah->h, st->me->local);
	bool any = pv_xml_first_element(list) != NULL;
	if (any) {
		add_actions(st->out, "next", false, true, false);
		pv_xml *x = form_new(st->out, "form", "Message requests",
			"People on other messengers who wrote to you. Pick one to see what they sent.");
		field_value(field_add(x, "hidden", "FORM_TYPE", NULL), PV_NS_CONSENT "#requests");
		pv_xml *f = field_add(x, "list-single", "sender", "From");
		if (selected)
			field_value(f, selected);
		for (pv_xml *r = pv_xml_first_element(list); r; r = pv_xml_next_element(r)) {
			const char *from = pv_xml_attr(r, "from");
			const char *count = pv_xml_attr(r, "count");
			if (!from)
				continue;
			char *label = pv_sprintf("%s (%s held, since %s)", from, count ? count : "?",
				pv_xml_attr(r, "first") ? pv_xml_attr(r, "first") : "?");
			field_option(f, label, from);
			pv_free(label);
		}
		field_required(f);
	}
	pv_xml_free(list);
	return any;
}

/* Stage 2: what the sender sent, and the decision. */
static void decision_form(step *st, const pv_xml *req)
{
	char *title = pv_sprintf("Message request from %s", st->s->sender);
	pv_xml *x = form_new(st->out, "form", title,
		"Accept: they may write to you and these messages are delivered. Decline: the "
		"messages are deleted. Report: they are blocked and reported to your provider.");
	pv_free(title);
	field_value(field_add(x, "hidden", "FORM_TYPE", NULL), PV_NS_CONSENT "#requests");
	int k = 0;
	for (pv_xml *fw = pv_xml_first_element(req); fw; fw = pv_xml_next_element(fw)) {
		if (!pv_xml_is(fw, "forwarded", NS_FORWARD))
			continue;
		pv_xml *d = pv_xml_child(fw, "delay", PV_NS_DELAY);
		pv_buf b;
		pv_buf_init(&b);
		pv_buf_printf(&b, "%s: ", d && pv_xml_attr(d, "stamp") ? pv_xml_attr(d, "stamp") : "?");
		pv_xml *m = pv_xml_child(fw, "message", NULL);
		pv_xml *p = pv_xml_child(fw, "presence", NULL);
		char *body = m ? pv_xml_child_text(m, "body", NULL) : NULL;
		if (body)
			preview(&b, body, MAX_PREVIEW);
		else if (p)
			pv_buf_puts(&b, "(asks to see when you are online)");
		else
			pv_buf_puts(&b, "(no text)");
		pv_free(body);
		char var[32];
		snprintf(var, sizeof(var), "held-%d", ++k);
		field_value(field_add(x, "fixed", var, NULL), pv_buf_str(&b));
		pv_buf_fini(&b);
	}
	pv_xml *f = field_add(x, "list-single", "action", "Decision");
	field_option(f, "Accept", "accept");
	field_option(f, "Decline", "decline");
	field_option(f, "Block and report", "report");
	field_required(f);
	f = field_add(x, "list-single", "reason", "Report reason");
	field_value(f, "urn:xmpp:reporting:spam");
	field_option(f, "Spam", "urn:xmpp:reporting:spam");
	field_option(f, "Abuse", "urn:xmpp:reporting:abuse");
	field_add(x, "text-single", "text", "Report comment (optional)");
}

static void requests_start(step *st)
{
	session_new(st);
	st->s->stage = 1;
	if (!requests_form(st, NULL)) {
		st->done = true;
		add_note(st->out, "info", "No message requests.");
	}
}

static void requests_pick(step *st)
{
	if (st->act == ACT_PREV || st->act == ACT_COMPLETE) {
		bad_action(st);
		return;
	}
	char *v = field_single(st->form, "sender");
	pv_jid j;
	if (!v || pv_jid_parse_str(&j, v) != 0) {
		pv_free(v);
		bad_payload(st, "pick a sender");
		return;
	}
	pv_free(v);
	pv_xml *req = pv_consent_request_xml(st->ah->h, st->me->local, j.bare);
	if (!req) {
		pv_jid_fini(&j);
		bad_payload(st, "nothing is held from that sender");
		return;
	}
	pv_free(st->s->sender);
	st->s->sender = pv_strdup(j.bare);
	pv_jid_fini(&j);
	st->s->stage = 2;
	add_actions(st->out, "complete", true, false, true);
	decision_form(st, req);
	pv_xml_free(req);
}

static void requests_decide(step *st)
{
	pv_host *h = st->ah->h;
	const char *user = st->me->local;
	const char *sender = st->s->sender;
	if (st->act == ACT_NEXT) {
		bad_action(st);
		return;
	}
	if (st->act == ACT_PREV) {
		st->s->stage = 1;
		if (!requests_form(st, sender)) {
			st->done = true;
			add_note(st->out, "info", "No message requests.");
		}
		return;
	}
	char *act = field_single(st->form, "action");
	char *reason = field_single(st->form, "reason");
	char *text = field_single(st->form, "text");
	int rc = PV_EINVAL;
	const char *done_note = NULL;
	if (!act) {
		bad_payload(st, "choose accept, decline or report");
	} else if (strcmp(act, "accept") == 0) {
		rc = pv_consent_accept(h, user, sender);
		done_note = "Accepted: they may write to you now, and their messages were delivered.";
	} else if (strcmp(act, "decline") == 0) {
		rc = pv_consent_decline(h, user, sender);
		done_note = "Declined: their messages were deleted.";
	} else if (strcmp(act, "report") == 0) {
		rc = pv_consent_report(h, user, sender, reason ? reason : "urn:xmpp:reporting:spam", text);
		done_note = "Blocked and reported to your provider; their messages were deleted.";
		if (rc == PV_EINVAL)
			bad_payload(st, "the report reason must be spam or abuse");
	} else {
		bad_payload(st, "choose accept, decline or report");
	}
	if (done_note && rc == 0) {
		st->done = true;
		add_note(st->out, "info", done_note);
	} else if (done_note && rc == PV_ENOENT) {
		/* Answered meanwhile (another resource): the command ran, but did nothing. */
		st->done = true;
		add_note(st->out, "error", "Nothing is held from this sender any more.");
	} else if (done_note && !st->econd) {
		bad_payload(st, "the request could not be answered");
	}
	pv_free(act);
	pv_free(reason);
	pv_free(text);
}

static void run_requests(step *st)
{
	if (!st->s)
		requests_start(st);
	else if (st->s->stage == 1)
		requests_pick(st);
	else
		requests_decide(st);
}

/* ---- #history ---- */

static void run_history(step *st)
{
	pv_xml *hx = pv_consent_history_xml(st->ah->h, st->me->local, 0);
	const char *v = pv_xml_attr(hx, "verified");
	bool ok = v && strcmp(v, "true") == 0;
	size_t n = 0;
	for (pv_xml *e = pv_xml_first_element(hx); e; e = pv_xml_next_element(e))
		n += pv_xml_is(e, "entry", PV_NS_CONSENT) != 0;
	size_t skip = n > MAX_HISTORY_SHOWN ? n - MAX_HISTORY_SHOWN : 0;

	st->done = true;
	pv_xml *x = form_new(st->out, "result", "Consent history", NULL);
	field_value(field_add(x, "hidden", "FORM_TYPE", NULL), PV_NS_CONSENT "#history");
	field_value(field_add(x, "boolean", "verified", "Hash chain verifies"), ok ? "1" : "0");
	char num[32];
	snprintf(num, sizeof(num), "%zu", n);
	field_value(field_add(x, "text-single", "count", "Entries"), num);
	static const char *const cols[][2] = {
		{"seq", "#"}, {"stamp", "When"}, {"action", "Change"}, {"hash", "SHA-256"}};
	pv_xml *rep = pv_xml_add_child(x, "reported", NS_DATA);
	for (size_t i = 0; i < PV_ARRAY_LEN(cols); i++)
		field_add(rep, "text-single", cols[i][0], cols[i][1]);
	size_t i = 0;
	for (pv_xml *e = pv_xml_first_element(hx); e; e = pv_xml_next_element(e)) {
		if (!pv_xml_is(e, "entry", PV_NS_CONSENT) || i++ < skip)
			continue;
		pv_xml *item = pv_xml_add_child(x, "item", NS_DATA);
		char *action = pv_xml_text(e);
		const char *vals[] = {pv_xml_attr(e, "seq"), pv_xml_attr(e, "stamp"), action,
			pv_xml_attr(e, "hash")};
		for (size_t c = 0; c < PV_ARRAY_LEN(cols); c++)
			field_value(field_add(item, NULL, cols[c][0], NULL), vals[c] ? vals[c] : "");
		pv_free(action);
	}
	pv_xml_free(hx);
	if (ok) {
		add_note(st->out, "info", n ? "The history verifies: no entry was changed or removed."
					    : "No changes recorded yet.");
	} else {
		add_note(st->out, "warn",
			"The history does not verify: an entry was changed or removed. Tell your provider.");
	}
	if (skip) {
		char note[160];
		snprintf(note, sizeof(note), "Showing the newest %d of %zu entries; the protocol "
			 "urn:peyvand:consent:0 exports them all.", MAX_HISTORY_SHOWN, n);
		add_note(st->out, "info", note);
	}
}

/* ---- the command table ---- */

static const adhoc_cmd commands[] = {
	{PV_NS_CONSENT "#settings", "Who may reach me from other messengers", run_settings},
	{PV_NS_CONSENT "#requests", "Message requests", run_requests},
	{PV_NS_CONSENT "#history", "Consent history", run_history},
};

static const adhoc_cmd *find_command(const char *node)
{
	for (size_t i = 0; node && i < PV_ARRAY_LEN(commands); i++)
		if (strcmp(commands[i].node, node) == 0)
			return &commands[i];
	return NULL;
}

/* The requester, when it is a bound session of a local account of this host. */
static const pv_jid *requester(const pv_event *ev)
{
	if (!ev->origin || pv_session_host(ev->origin) != ev->host)
		return NULL;
	const pv_jid *me = pv_session_jid(ev->origin);
	return me && me->local ? me : NULL;
}

static int parse_action(const char *s, cmd_action *out)
{
	if (!s) {
		*out = ACT_EXECUTE;
		return 0;
	}
	for (size_t i = 0; i < PV_ARRAY_LEN(action_names); i++) {
		if (strcmp(s, action_names[i]) == 0) {
			*out = (cmd_action)i;
			return 0;
		}
	}
	return PV_EINVAL;
}

static pv_xml *submitted_form(const pv_xml *cmd)
{
	return pv_xml_child(cmd, "x", NS_DATA);
}

static int on_command(pv_event *ev, void *ud)
{
	ahost *ah = ud;
	const pv_jid *me = requester(ev);
	pv_xml *q = pv_xml_first_element(ev->stanza->xml);
	if (!me) {
		reply_error(ev, "cancel", "forbidden", NULL, NULL);
		return PV_HANDLED;
	}
	const char *node = pv_xml_attr(q, "node");
	if (!pv_xml_is(q, "command", NS_COMMANDS) || !node) {
		reply_error(ev, "modify", "bad-request", NULL, NULL);
		return PV_HANDLED;
	}
	const adhoc_cmd *cmd = find_command(node);
	if (!cmd) {
		reply_error(ev, "cancel", "item-not-found", NULL, NULL);
		return PV_HANDLED;
	}
	cmd_action act;
	if (parse_action(pv_xml_attr(q, "action"), &act) != 0) {
		reply_error(ev, "modify", "bad-request", "malformed-action", NULL);
		return PV_HANDLED;
	}
	const char *sid = pv_xml_attr(q, "sessionid");
	asession *s = NULL;
	if (sid) {
		s = pv_map_get(ah->sessions, sid);
		if (!s || strcmp(s->owner, me->full) != 0 || s->cmd != cmd) {
			reply_error(ev, "modify", "bad-request", "bad-sessionid", NULL);
			return PV_HANDLED;
		}
		if (expired(s, pv_now_ms())) {
			session_free(pv_map_del(ah->sessions, sid));
			reply_error(ev, "cancel", "not-allowed", "session-expired", NULL);
			return PV_HANDLED;
		}
		s->used = pv_now_ms();
		s->turn = ++ah->turns;
	} else if (act != ACT_EXECUTE) {
		/* Only "execute" starts a command (section 4.3). */
		reply_error(ev, "modify", "bad-request", "bad-action", NULL);
		return PV_HANDLED;
	}

	pv_stanza *r = pv_stanza_iq_result(ev->stanza);
	if (!r)
		return PV_HANDLED;
	step st = {.ah = ah, .cmd = cmd, .me = me, .s = s, .act = act, .form = submitted_form(q)};
	st.out = pv_xml_add_child(r->xml, "command", NS_COMMANDS);
	pv_xml_set_attr(st.out, "node", cmd->node);
	if (act == ACT_CANCEL) {
		st.done = true; /* status canceled, below */
	} else {
		cmd->run(&st);
	}
	if (st.econd) {
		pv_stanza_unref(r);
		/* A session created by this very request is of no use to the requester. */
		if (st.s && !s)
			session_free(pv_map_del(ah->sessions, st.s->id));
		reply_error(ev, st.etype, st.econd, st.eapp, st.etext);
		return PV_HANDLED;
	}
	char *once = NULL;
	if (st.s) {
		pv_xml_set_attr(st.out, "sessionid", st.s->id);
	} else {
		once = pv_random_hex(12); /* a command that completes at once still has one */
		pv_xml_set_attr(st.out, "sessionid", once);
	}
	pv_xml_set_attr(st.out, "status", act == ACT_CANCEL ? "canceled" : st.done ? "completed" : "executing");
	if (st.done && st.s)
		session_free(pv_map_del(ah->sessions, st.s->id));
	pv_free(once);
	pv_reply(ev, r);
	return PV_HANDLED;
}

/* ---- discovery (XEP-0030 nodes, XEP-0050 section 2) ---- */

static pv_xml *disco_reply(pv_event *ev, const char *ns, const char *node, pv_stanza **r)
{
	*r = pv_stanza_iq_result(ev->stanza);
	if (!*r)
		return NULL;
	pv_xml *q = pv_xml_add_child((*r)->xml, "query", ns);
	pv_xml_set_attr(q, "node", node);
	return q;
}

static int on_disco_items(pv_event *ev, void *ud)
{
	pv_xml *q = pv_xml_first_element(ev->stanza->xml);
	const char *node = pv_xml_is(q, "query", PV_NS_DISCO_ITEMS) ? pv_xml_attr(q, "node") : NULL;
	if (!node || strcmp(node, NS_COMMANDS) != 0)
		return PV_PASS;
	pv_stanza *r;
	pv_xml *rq = disco_reply(ev, PV_NS_DISCO_ITEMS, node, &r);
	if (!rq)
		return PV_HANDLED;
	/* Others may ask, but see no commands (section 2.2: the list may differ by requester). */
	if (requester(ev)) {
		for (size_t i = 0; i < PV_ARRAY_LEN(commands); i++) {
			pv_xml *it = pv_xml_add_child(rq, "item", PV_NS_DISCO_ITEMS);
			pv_xml_set_attr(it, "jid", pv_host_name(ev->host));
			pv_xml_set_attr(it, "node", commands[i].node);
			pv_xml_set_attr(it, "name", commands[i].name);
		}
	}
	pv_reply(ev, r);
	return PV_HANDLED;
}

static void add_identity(pv_xml *q, const char *type, const char *name)
{
	pv_xml *id = pv_xml_add_child(q, "identity", PV_NS_DISCO_INFO);
	pv_xml_set_attr(id, "category", "automation");
	pv_xml_set_attr(id, "type", type);
	pv_xml_set_attr(id, "name", name);
}

static void add_feature(pv_xml *q, const char *var)
{
	pv_xml_set_attr(pv_xml_add_child(q, "feature", PV_NS_DISCO_INFO), "var", var);
}

static int on_disco_info(pv_event *ev, void *ud)
{
	pv_xml *q = pv_xml_first_element(ev->stanza->xml);
	const char *node = pv_xml_is(q, "query", PV_NS_DISCO_INFO) ? pv_xml_attr(q, "node") : NULL;
	if (!node)
		return PV_PASS;
	const adhoc_cmd *cmd = find_command(node);
	bool list = strcmp(node, NS_COMMANDS) == 0;
	if (!cmd && !list)
		return PV_PASS; /* not ours: mod_disco answers item-not-found */
	if (cmd && !requester(ev)) {
		reply_error(ev, "auth", "forbidden", NULL, NULL); /* section 2.2 */
		return PV_HANDLED;
	}
	pv_stanza *r;
	pv_xml *rq = disco_reply(ev, PV_NS_DISCO_INFO, node, &r);
	if (!rq)
		return PV_HANDLED;
	if (list) {
		add_identity(rq, "command-list", "Commands");
		add_feature(rq, NS_COMMANDS);
	} else {
		add_identity(rq, "command-node", cmd->name);
		add_feature(rq, NS_COMMANDS);
		add_feature(rq, NS_DATA);
	}
	pv_reply(ev, r);
	return PV_HANDLED;
}

static int on_unbind(pv_event *ev, void *ud)
{
	ahost *ah = ud;
	const pv_jid *j = ev->origin ? pv_session_jid(ev->origin) : NULL;
	if (j)
		pv_map_each(ah->sessions, drop_owned, (void *)j->full);
	return PV_PASS;
}

static const struct {
	const char *event;
	int priority;
	pv_hook_fn fn;
} adhoc_hooks[] = {
	{"iq-set/host/" NS_COMMANDS, 0, on_command},
	/* Before mod_disco (priority 0), which answers item-not-found for nodes. */
	{"iq-get/host/" PV_NS_DISCO_ITEMS, 10, on_disco_items},
	{"iq-get/host/" PV_NS_DISCO_INFO, 10, on_disco_info},
	{"resource-unbind", 0, on_unbind},
};

static int adhoc_load(pv_host *h, const pv_conf *conf, void **state)
{
	ahost *ah = pv_calloc(1, sizeof(*ah));
	ah->h = h;
	ah->sessions = pv_map_new();
	for (size_t i = 0; i < PV_ARRAY_LEN(adhoc_hooks); i++)
		pv_hook(h, adhoc_hooks[i].event, adhoc_hooks[i].priority, adhoc_hooks[i].fn, ah);
	pv_host_add_feature(h, NS_COMMANDS);
	*state = ah;
	return 0;
}

static void adhoc_unload(pv_host *h, void *state)
{
	ahost *ah = state;
	for (size_t i = 0; i < PV_ARRAY_LEN(adhoc_hooks); i++)
		pv_unhook(h, adhoc_hooks[i].event, adhoc_hooks[i].fn, ah);
	pv_map_free(ah->sessions, session_free);
	pv_free(ah);
}

const pv_module pv_mod_adhoc = {
	.name = "adhoc",
	.load = adhoc_load,
	.unload = adhoc_unload,
};
