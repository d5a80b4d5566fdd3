/* test_mod_adhoc.c -- unit tests for src/modules/mod_adhoc.c (XEP-0050 ad-hoc commands
 * over the consent operations): discovery of the command list and nodes, every stage of
 * the three commands, and the error cases (forbidden, unknown node, malformed action,
 * wrong / foreign / expired sessionid, bad payloads).  The consent operations of
 * consent.h are replaced by a recording fake, so only the module's own logic runs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "modules/mod_adhoc.c"

#include "fake_core.h"

/* ---- a fake of consent.h ---- */

typedef struct frule {
	char subject[128], value[16];
} frule;

static struct {
	char policy[16];
	frule prov[16], snd[16];
	size_t nprov, nsnd;
	pv_xml *applied;      /* the last element given to pv_consent_apply (a copy) */
	int napplied;
	const char *apply_cond; /* non-NULL: pv_consent_apply fails with it */
	const char *req_from[4];
	size_t nreq;
	char last_call[256];  /* "accept bob@remote.example" ... */
	int action_rc;        /* what accept/decline/report return */
	bool verified;
	int nentries;
} fc;

static void fc_reset(void)
{
	pv_xml_free(fc.applied);
	memset(&fc, 0, sizeof(fc));
	strcpy(fc.policy, "off");
	fc.verified = true;
}

int pv_consent_policy_parse(const char *s, pv_consent_policy *out)
{
	static const char *const names[] = {"off", "contacts", "everyone"};
	for (int i = 0; s && i < 3; i++) {
		if (strcmp(s, names[i]) == 0) {
			*out = (pv_consent_policy)i;
			return 0;
		}
	}
	return PV_EINVAL;
}

pv_xml *pv_consent_settings_xml(pv_host *h, const char *user)
{
	pv_xml *x = pv_xml_new("consent", PV_NS_CONSENT);
	pv_xml_set_attr(x, "policy", fc.policy);
	pv_xml_set_attr(x, "head", "3");
	for (size_t i = 0; i < fc.nprov; i++) {
		pv_xml *p = pv_xml_add_child(x, "provider", PV_NS_CONSENT);
		pv_xml_set_attr(p, "domain", fc.prov[i].subject);
		pv_xml_set_attr(p, "policy", fc.prov[i].value);
	}
	for (size_t i = 0; i < fc.nsnd; i++) {
		pv_xml *s = pv_xml_add_child(x, "sender", PV_NS_CONSENT);
		pv_xml_set_attr(s, "jid", fc.snd[i].subject);
		pv_xml_set_attr(s, "rule", fc.snd[i].value);
	}
	return x;
}

int pv_consent_apply(pv_host *h, const char *user, const pv_xml *consent, const char **cond)
{
	fc.napplied++;
	pv_xml_free(fc.applied);
	fc.applied = pv_xml_dup(consent);
	if (fc.apply_cond) {
		*cond = fc.apply_cond;
		return strcmp(fc.apply_cond, "resource-constraint") == 0 ? PV_ELIMIT : PV_EINVAL;
	}
	return 0;
}

pv_xml *pv_consent_requests_xml(pv_host *h, const char *user)
{
	pv_xml *x = pv_xml_new("requests", PV_NS_CONSENT);
	for (size_t i = 0; i < fc.nreq; i++) {
		pv_xml *r = pv_xml_add_child(x, "request", PV_NS_CONSENT);
		pv_xml_set_attr(r, "from", fc.req_from[i]);
		pv_xml_set_attr(r, "count", "2");
		pv_xml_set_attr(r, "bytes", "200");
		pv_xml_set_attr(r, "first", "2024-05-01T10:00:00Z");
		pv_xml_set_attr(r, "last", "2024-05-01T10:01:00Z");
	}
	return x;
}

pv_xml *pv_consent_request_xml(pv_host *h, const char *user, const char *sender)
{
	bool held = false;
	for (size_t i = 0; i < fc.nreq; i++)
		held |= strcmp(fc.req_from[i], sender) == 0;
	if (!held)
		return NULL;
	pv_xml *x = pv_xml_new("request", PV_NS_CONSENT);
	pv_xml_set_attr(x, "from", sender);
	pv_xml *fw = pv_xml_add_child(x, "forwarded", NS_FORWARD);
	pv_xml_set_attr(pv_xml_add_child(fw, "delay", PV_NS_DELAY), "stamp", "2024-05-01T10:00:00Z");
	pv_xml *m = pv_xml_add_child(fw, "message", PV_NS_CLIENT);
	pv_xml *b = pv_xml_add_child(m, "body", PV_NS_CLIENT);
	pv_xml_add_text(b, "hello\nthere", 11);
	fw = pv_xml_add_child(x, "forwarded", NS_FORWARD);
	pv_xml_set_attr(pv_xml_add_child(fw, "delay", PV_NS_DELAY), "stamp", "2024-05-01T10:01:00Z");
	pv_xml_set_attr(pv_xml_add_child(fw, "presence", PV_NS_CLIENT), "type", "subscribe");
	return x;
}

pv_xml *pv_consent_history_xml(pv_host *h, const char *user, uint64_t after)
{
	pv_xml *x = pv_xml_new("history", PV_NS_CONSENT);
	pv_xml_set_attr(x, "verified", fc.verified ? "true" : "false");
	for (int i = 1; i <= fc.nentries; i++) {
		pv_xml *e = pv_xml_add_child(x, "entry", PV_NS_CONSENT);
		char b[32];
		snprintf(b, sizeof(b), "%d", i);
		pv_xml_set_attr(e, "seq", b);
		pv_xml_set_attr(e, "stamp", "2024-05-01T10:00:00Z");
		pv_xml_set_attr(e, "prev", "00");
		pv_xml_set_attr(e, "hash", "ab");
		snprintf(b, sizeof(b), "policy contacts %d", i);
		pv_xml_add_text(e, b, strlen(b));
	}
	return x;
}

static int record(const char *what, const char *sender, const char *extra)
{
	snprintf(fc.last_call, sizeof(fc.last_call), "%s %s%s%s", what, sender, extra ? " " : "",
		extra ? extra : "");
	return fc.action_rc;
}

int pv_consent_accept(pv_host *h, const char *user, const char *sender)
{
	return record("accept", sender, NULL);
}

int pv_consent_decline(pv_host *h, const char *user, const char *sender)
{
	return record("decline", sender, NULL);
}

int pv_consent_report(pv_host *h, const char *user, const char *sender, const char *reason,
	const char *text)
{
	if (strcmp(reason, "urn:xmpp:reporting:spam") != 0 && strcmp(reason, "urn:xmpp:reporting:abuse") != 0)
		return PV_EINVAL;
	char extra[200];
	snprintf(extra, sizeof(extra), "%s %s", reason, text ? text : "-");
	return record("report", sender, extra);
}

/* ---- helpers ---- */

#define HOST "example.org"
#define SETTINGS PV_NS_CONSENT "#settings"
#define REQUESTS PV_NS_CONSENT "#requests"
#define HISTORY PV_NS_CONSENT "#history"

typedef struct fixture {
	pv_host *h;
	pv_session *alice, *bob;
} fixture;

static int setup(void **state)
{
	fc_reset();
	fixture *f = pv_calloc(1, sizeof(*f));
	f->h = fake_host_new(HOST, NULL, &pv_mod_adhoc);
	f->alice = fake_session(f->h, "alice@" HOST "/phone", true, NULL);
	f->bob = fake_session(f->h, "bob@" HOST "/desk", true, NULL);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;
	fake_host_free(f->h);
	pv_free(f);
	fc_reset();
	return 0;
}

/* Sends <command node action sessionid>payload</command> to the host as `s`; returns
 * the outcome ("result" or the error condition), the reply in *out. */
static const char *run_cmd(pv_host *h, pv_session *s, const char *node, const char *action,
	const char *sid, const char *payload, pv_stanza **out)
{
	pv_buf b;
	pv_buf_init(&b);
	pv_buf_printf(&b, "<iq type='set' id='c1' to='" HOST "'><command "
			  "xmlns='http://jabber.org/protocol/commands' node='%s'", node);
	if (action)
		pv_buf_printf(&b, " action='%s'", action);
	if (sid)
		pv_buf_printf(&b, " sessionid='%s'", sid);
	pv_buf_printf(&b, ">%s</command></iq>", payload ? payload : "");
	const char *o = fake_ask(h, s, pv_buf_str(&b), NULL, out);
	pv_buf_fini(&b);
	return o;
}

static pv_xml *cmd_of(const pv_stanza *r)
{
	pv_xml *c = pv_xml_child(r->xml, "command", NS_COMMANDS);
	assert_non_null(c);
	return c;
}

static pv_xml *form_of(const pv_stanza *r)
{
	pv_xml *x = pv_xml_child(cmd_of(r), "x", NS_DATA);
	assert_non_null(x);
	return x;
}

static const pv_xml *field_of(const pv_xml *x, const char *var)
{
	const pv_xml *f = form_field(x, var);
	assert_non_null(f);
	return f;
}

/* The values of a field, joined with '|'. */
static char *values_of(const pv_xml *f)
{
	pv_buf b;
	pv_buf_init(&b);
	for (pv_xml *v = pv_xml_first_element(f); v; v = pv_xml_next_element(v)) {
		if (!pv_xml_is(v, "value", NS_DATA))
			continue;
		char *t = pv_xml_text(v);
		if (b.len)
			pv_buf_puts(&b, "|");
		pv_buf_puts(&b, t);
		pv_free(t);
	}
	return pv_buf_take(&b);
}

static void assert_values(const pv_xml *x, const char *var, const char *want)
{
	char *v = values_of(field_of(x, var));
	assert_string_equal(v, want ? want : "");
	pv_free(v);
}

static const char *status_of(const pv_stanza *r)
{
	return pv_xml_attr(cmd_of(r), "status");
}

/* The XEP-0050 specific condition of an error reply, or NULL. */
static const char *app_condition(const pv_stanza *r)
{
	pv_xml *e = pv_xml_child(r->xml, "error", NULL);
	for (pv_xml *c = e ? pv_xml_first_element(e) : NULL; c; c = pv_xml_next_element(c))
		if (c->ns && strcmp(c->ns, NS_COMMANDS) == 0)
			return c->name;
	return NULL;
}

static char *note_of(const pv_stanza *r, const char **type)
{
	pv_xml *n = pv_xml_child(cmd_of(r), "note", NS_COMMANDS);
	assert_non_null(n);
	if (type)
		*type = pv_xml_attr(n, "type");
	return pv_xml_text(n);
}

static char *session_of(const pv_stanza *r)
{
	const char *s = pv_xml_attr(cmd_of(r), "sessionid");
	assert_non_null(s);
	assert_true(*s);
	return pv_strdup(s);
}

/* The <consent/> children pv_consent_apply got, as "name subject value" lines. */
static char *applied_lines(void)
{
	pv_buf b;
	pv_buf_init(&b);
	assert_non_null(fc.applied);
	if (pv_xml_attr(fc.applied, "policy"))
		pv_buf_printf(&b, "policy %s;", pv_xml_attr(fc.applied, "policy"));
	for (pv_xml *c = pv_xml_first_element(fc.applied); c; c = pv_xml_next_element(c)) {
		bool p = strcmp(c->name, "provider") == 0;
		pv_buf_printf(&b, "%s %s %s;", c->name, pv_xml_attr(c, p ? "domain" : "jid"),
			pv_xml_attr(c, p ? "policy" : "rule"));
	}
	return pv_buf_take(&b);
}

static void set_rules(void)
{
	strcpy(fc.policy, "contacts");
	fc.prov[fc.nprov++] = (frule){"eitaa.example", "everyone"};
	fc.prov[fc.nprov++] = (frule){"rubika.example", "off"};
	fc.snd[fc.nsnd++] = (frule){"friend@far.example", "allow"};
	fc.snd[fc.nsnd++] = (frule){"spam@far.example", "deny"};
}

/* ---- discovery ---- */

static void test_disco_items_lists_commands(void **state)
{
	fixture *f = *state;
	pv_stanza *r;
	const char *items = "<iq type='get' id='d1' to='" HOST "'><query "
			    "xmlns='http://jabber.org/protocol/disco#items' "
			    "node='http://jabber.org/protocol/commands'/></iq>";
	assert_string_equal(fake_ask(f->h, f->alice, items, NULL, &r), "result");
	pv_xml *q = pv_xml_child(r->xml, "query", PV_NS_DISCO_ITEMS);
	assert_non_null(q);
	assert_string_equal(pv_xml_attr(q, "node"), NS_COMMANDS);
	const char *want[] = {SETTINGS, REQUESTS, HISTORY};
	size_t n = 0;
	for (pv_xml *it = pv_xml_first_element(q); it; it = pv_xml_next_element(it), n++) {
		assert_true(n < 3);
		assert_string_equal(pv_xml_attr(it, "jid"), HOST);
		assert_string_equal(pv_xml_attr(it, "node"), want[n]);
		assert_non_null(pv_xml_attr(it, "name"));
	}
	assert_int_equal(n, 3);
	pv_stanza_unref(r);

	/* A session of another host sees no commands; disco#items without node, or with
	 * another node, is left to mod_disco. */
	pv_host *other = fake_host_new("other.example", NULL, NULL);
	pv_session *eve = fake_session(other, "eve@other.example/x", true, NULL);
	assert_string_equal(fake_ask(f->h, eve, items, NULL, &r), "result");
	assert_null(pv_xml_first_element(pv_xml_child(r->xml, "query", PV_NS_DISCO_ITEMS)));
	pv_stanza_unref(r);
	assert_string_equal(fake_ask(f->h, f->alice, "<iq type='get' id='d2' to='" HOST "'><query "
		"xmlns='http://jabber.org/protocol/disco#items'/></iq>", NULL, NULL), "unhandled");
	assert_string_equal(fake_ask(f->h, f->alice, "<iq type='get' id='d3' to='" HOST "'><query "
		"xmlns='http://jabber.org/protocol/disco#items' node='x'/></iq>", NULL, NULL), "unhandled");
	fake_host_free(other);
}

static void test_disco_info_nodes(void **state)
{
	fixture *f = *state;
	static const struct {
		const char *node;
		bool local;
		const char *outcome, *type;
		bool data;
	} cases[] = {
		{NS_COMMANDS, true, "result", "command-list", false},
		{SETTINGS, true, "result", "command-node", true},
		{HISTORY, true, "result", "command-node", true},
		{SETTINGS, false, "forbidden", NULL, false},
		{"urn:example:other", true, "unhandled", NULL, false},
	};
	pv_host *other = fake_host_new("other.example", NULL, NULL);
	pv_session *eve = fake_session(other, "eve@other.example/x", true, NULL);
	for (size_t i = 0; i < PV_ARRAY_LEN(cases); i++) {
		char *xml = pv_sprintf("<iq type='get' id='i' to='" HOST "'><query "
				       "xmlns='http://jabber.org/protocol/disco#info' node='%s'/></iq>",
			cases[i].node);
		pv_stanza *r = NULL;
		assert_string_equal(fake_ask(f->h, cases[i].local ? f->alice : eve, xml, NULL, &r),
			cases[i].outcome);
		pv_free(xml);
		if (cases[i].type) {
			pv_xml *q = pv_xml_child(r->xml, "query", PV_NS_DISCO_INFO);
			assert_string_equal(pv_xml_attr(q, "node"), cases[i].node);
			pv_xml *id = pv_xml_child(q, "identity", NULL);
			assert_string_equal(pv_xml_attr(id, "category"), "automation");
			assert_string_equal(pv_xml_attr(id, "type"), cases[i].type);
			bool cmds = false, data = false;
			for (pv_xml *c = pv_xml_first_element(q); c; c = pv_xml_next_element(c)) {
				const char *v = pv_xml_attr(c, "var");
				cmds |= v && strcmp(v, NS_COMMANDS) == 0;
				data |= v && strcmp(v, NS_DATA) == 0;
			}
			assert_true(cmds);
			assert_int_equal(data, cases[i].data);
		}
		if (r)
			pv_stanza_unref(r);
	}
	/* The host advertises the feature (XEP-0050 section 2.1). */
	bool found = false;
	for (size_t i = 0; i < f->h->nfeatures; i++)
		found |= strcmp(f->h->features[i], NS_COMMANDS) == 0;
	assert_true(found);
	fake_host_free(other);
}

/* ---- #settings ---- */

static void test_settings_form_shows_current_rules(void **state)
{
	fixture *f = *state;
	set_rules();
	pv_stanza *r;
	assert_string_equal(run_cmd(f->h, f->alice, SETTINGS, "execute", NULL, NULL, &r), "result");
	assert_string_equal(status_of(r), "executing");
	pv_xml *a = pv_xml_child(cmd_of(r), "actions", NS_COMMANDS);
	assert_non_null(a);
	assert_string_equal(pv_xml_attr(a, "execute"), "complete");
	assert_non_null(pv_xml_child(a, "complete", NS_COMMANDS));
	assert_null(pv_xml_child(a, "next", NS_COMMANDS));
	pv_xml *x = form_of(r);
	assert_string_equal(pv_xml_attr(x, "type"), "form");
	assert_values(x, "FORM_TYPE", SETTINGS);
	assert_values(x, "policy", "contacts");
	assert_string_equal(pv_xml_attr(field_of(x, "policy"), "type"), "list-single");
	assert_values(x, "providers", "eitaa.example everyone|rubika.example off");
	assert_string_equal(pv_xml_attr(field_of(x, "providers"), "type"), "text-multi");
	assert_values(x, "allowed", "friend@far.example");
	assert_values(x, "denied", "spam@far.example");
	char *sid = session_of(r);
	pv_stanza_unref(r);
	pv_free(sid);
}

static void test_settings_submit_applies_the_changes_only(void **state)
{
	fixture *f = *state;
	static const struct {
		const char *fields;   /* the submitted fields */
		const char *outcome, *app;
		const char *applied;  /* NULL: pv_consent_apply not called */
		const char *note;
	} cases[] = {
		/* everything as it was: nothing to apply */
		{"<field var='policy'><value>contacts</value></field>"
		 "<field var='providers'><value>eitaa.example everyone</value><value>rubika.example off</value></field>"
		 "<field var='allowed'><value>friend@far.example</value></field>"
		 "<field var='denied'><value>spam@far.example</value></field>",
			"result", NULL, NULL, "Nothing changed."},
		/* new policy, one provider changed, one dropped, one added; a sender moved
		 * from allowed to denied; one value holding two lines; case and spaces */
		{"<field var='policy'><value>everyone</value></field>"
		 "<field var='providers'><value>  EITAA.example contacts \n bale.example everyone</value></field>"
		 "<field var='allowed'/>"
		 "<field var='denied'><value>spam@far.example</value><value>Friend@far.example</value></field>",
			"result", NULL,
			"policy everyone;provider eitaa.example contacts;provider bale.example everyone;"
			"provider rubika.example remove;sender friend@far.example deny;", "Saved 5 changes."},
		/* fields left out are left alone: only the allowed list changes */
		{"<field var='allowed'><value>new@far.example</value></field>", "result", NULL,
			"sender new@far.example allow;sender friend@far.example remove;", "Saved 2 changes."},
		/* bad input: nothing applied, the session stays for a retry */
		{"<field var='policy'><value>sometimes</value></field>", "bad-request", "bad-payload", NULL, NULL},
		{"<field var='providers'><value>eitaa.example</value></field>", "bad-request", "bad-payload", NULL, NULL},
		{"<field var='providers'><value>eitaa.example off extra</value></field>", "bad-request",
			"bad-payload", NULL, NULL},
		{"<field var='providers'><value>a.example off</value><value>a.example everyone</value></field>",
			"bad-request", "bad-payload", NULL, NULL},
		{"<field var='allowed'><value>not a jid@@</value></field>", "bad-request", "bad-payload", NULL, NULL},
		{"<field var='allowed'><value>far.example</value></field>", "bad-request", "bad-payload", NULL, NULL},
		{"<field var='allowed'><value>x@far.example/res</value></field>", "bad-request", "bad-payload",
			NULL, NULL},
		{"<field var='allowed'><value>x@far.example</value></field>"
		 "<field var='denied'><value>X@far.example</value></field>",
			"bad-request", "bad-payload", NULL, NULL},
	};
	for (size_t i = 0; i < PV_ARRAY_LEN(cases); i++) {
		fc_reset();
		set_rules();
		pv_stanza *r;
		assert_string_equal(run_cmd(f->h, f->alice, SETTINGS, NULL, NULL, NULL, &r), "result");
		char *sid = session_of(r);
		pv_stanza_unref(r);
		char *form = pv_sprintf("<x xmlns='jabber:x:data' type='submit'>%s</x>", cases[i].fields);
		const char *o = run_cmd(f->h, f->alice, SETTINGS, "complete", sid, form, &r);
		if (strcmp(o, cases[i].outcome) != 0)
			fail_msg("case %zu: %s, want %s", i, o, cases[i].outcome);
		if (cases[i].app) {
			assert_string_equal(app_condition(r), cases[i].app);
			assert_string_equal(pv_xml_attr(pv_xml_child(r->xml, "error", NULL), "type"), "modify");
		} else {
			assert_string_equal(status_of(r), "completed");
			assert_string_equal(pv_xml_attr(cmd_of(r), "sessionid"), sid);
			const char *type;
			char *note = note_of(r, &type);
			assert_string_equal(type, "info");
			assert_string_equal(note, cases[i].note);
			pv_free(note);
		}
		if (cases[i].applied) {
			char *got = applied_lines();
			assert_string_equal(got, cases[i].applied);
			pv_free(got);
		} else {
			assert_int_equal(fc.napplied, 0);
		}
		pv_stanza_unref(r);
		/* After an error the session is still there; after completion it is gone. */
		const char *again = run_cmd(f->h, f->alice, SETTINGS, "cancel", sid, NULL, &r);
		if (cases[i].app) {
			assert_string_equal(again, "result");
			assert_string_equal(status_of(r), "canceled");
		} else {
			assert_string_equal(again, "bad-request");
			assert_string_equal(app_condition(r), "bad-sessionid");
		}
		pv_stanza_unref(r);
		pv_free(form);
		pv_free(sid);
	}
}

static void test_settings_refused_by_consent(void **state)
{
	fixture *f = *state;
	static const struct {
		const char *cond, *outcome, *etype;
	} cases[] = {
		{"bad-request", "bad-request", "modify"},
		{"resource-constraint", "resource-constraint", "wait"},
	};
	for (size_t i = 0; i < PV_ARRAY_LEN(cases); i++) {
		fc_reset();
		fc.apply_cond = cases[i].cond;
		pv_stanza *r;
		run_cmd(f->h, f->alice, SETTINGS, NULL, NULL, NULL, &r);
		char *sid = session_of(r);
		pv_stanza_unref(r);
		assert_string_equal(run_cmd(f->h, f->alice, SETTINGS, NULL, sid,
			"<x xmlns='jabber:x:data' type='submit'><field var='providers'>"
			"<value>" HOST " everyone</value></field></x>", &r), cases[i].outcome);
		assert_string_equal(fake_error_type(r), cases[i].etype);
		assert_int_equal(fc.napplied, 1);
		pv_stanza_unref(r);
		pv_free(sid);
	}
}

/* ---- #requests ---- */

static void test_requests_none(void **state)
{
	fixture *f = *state;
	pv_stanza *r;
	assert_string_equal(run_cmd(f->h, f->alice, REQUESTS, "execute", NULL, NULL, &r), "result");
	assert_string_equal(status_of(r), "completed");
	char *note = note_of(r, NULL);
	assert_string_equal(note, "No message requests.");
	pv_free(note);
	char *sid = session_of(r);
	pv_stanza_unref(r);
	/* no session was kept */
	assert_string_equal(run_cmd(f->h, f->alice, REQUESTS, "next", sid, NULL, &r), "bad-request");
	assert_string_equal(app_condition(r), "bad-sessionid");
	pv_stanza_unref(r);
	pv_free(sid);
}

/* Starts #requests and picks sender; returns the session id (stage 2). */
static char *pick(fixture *f, const char *sender)
{
	pv_stanza *r;
	assert_string_equal(run_cmd(f->h, f->alice, REQUESTS, NULL, NULL, NULL, &r), "result");
	char *sid = session_of(r);
	pv_stanza_unref(r);
	char *form = pv_sprintf("<x xmlns='jabber:x:data' type='submit'><field var='sender'>"
				"<value>%s</value></field></x>", sender);
	assert_string_equal(run_cmd(f->h, f->alice, REQUESTS, "next", sid, form, &r), "result");
	assert_string_equal(status_of(r), "executing");
	pv_free(form);
	pv_stanza_unref(r);
	return sid;
}

static void test_requests_stages(void **state)
{
	fixture *f = *state;
	fc.req_from[fc.nreq++] = "ali@eitaa.example";
	fc.req_from[fc.nreq++] = "reza@rubika.example";
	pv_stanza *r;
	assert_string_equal(run_cmd(f->h, f->alice, REQUESTS, "execute", NULL, NULL, &r), "result");
	assert_string_equal(status_of(r), "executing");
	pv_xml *a = pv_xml_child(cmd_of(r), "actions", NS_COMMANDS);
	assert_string_equal(pv_xml_attr(a, "execute"), "next");
	assert_non_null(pv_xml_child(a, "next", NS_COMMANDS));
	assert_null(pv_xml_child(a, "complete", NS_COMMANDS));
	const pv_xml *sf = field_of(form_of(r), "sender");
	assert_string_equal(pv_xml_attr(sf, "type"), "list-single");
	size_t nopt = 0;
	for (pv_xml *o = pv_xml_first_element(sf); o; o = pv_xml_next_element(o)) {
		if (!pv_xml_is(o, "option", NS_DATA))
			continue;
		char *v = pv_xml_child_text(o, "value", NS_DATA);
		assert_string_equal(v, fc.req_from[nopt]);
		assert_non_null(strstr(pv_xml_attr(o, "label"), fc.req_from[nopt]));
		nopt++;
		pv_free(v);
	}
	assert_int_equal(nopt, 2);
	char *sid = session_of(r);
	pv_stanza_unref(r);

	/* complete is not offered in stage 1; a sender with nothing held is refused */
	assert_string_equal(run_cmd(f->h, f->alice, REQUESTS, "complete", sid, NULL, &r), "bad-request");
	assert_string_equal(app_condition(r), "bad-action");
	pv_stanza_unref(r);
	assert_string_equal(run_cmd(f->h, f->alice, REQUESTS, "next", sid,
		"<x xmlns='jabber:x:data' type='submit'><field var='sender'><value>nobody@x.example"
		"</value></field></x>", &r), "bad-request");
	assert_string_equal(app_condition(r), "bad-payload");
	pv_stanza_unref(r);

	/* stage 2: the held stanzas, then back, then forward again */
	assert_string_equal(run_cmd(f->h, f->alice, REQUESTS, "next", sid,
		"<x xmlns='jabber:x:data' type='submit'><field var='sender'><value>Ali@eitaa.example"
		"</value></field></x>", &r), "result");
	a = pv_xml_child(cmd_of(r), "actions", NS_COMMANDS);
	assert_string_equal(pv_xml_attr(a, "execute"), "complete");
	assert_non_null(pv_xml_child(a, "prev", NS_COMMANDS));
	assert_non_null(pv_xml_child(a, "complete", NS_COMMANDS));
	pv_xml *x = form_of(r);
	assert_values(x, "held-1", "2024-05-01T10:00:00Z: hello there");
	assert_string_equal(pv_xml_attr(field_of(x, "held-1"), "type"), "fixed");
	assert_values(x, "held-2", "2024-05-01T10:01:00Z: (asks to see when you are online)");
	assert_string_equal(pv_xml_attr(field_of(x, "action"), "type"), "list-single");
	assert_values(x, "reason", "urn:xmpp:reporting:spam");
	pv_stanza_unref(r);

	assert_string_equal(run_cmd(f->h, f->alice, REQUESTS, "prev", sid, NULL, &r), "result");
	assert_values(form_of(r), "sender", "ali@eitaa.example");
	pv_stanza_unref(r);
	assert_string_equal(run_cmd(f->h, f->alice, REQUESTS, "execute", sid,
		"<x xmlns='jabber:x:data' type='submit'><field var='sender'><value>ali@eitaa.example"
		"</value></field></x>", &r), "result");
	pv_stanza_unref(r);

	/* next is not offered in stage 2; an unknown decision is refused */
	assert_string_equal(run_cmd(f->h, f->alice, REQUESTS, "next", sid, NULL, &r), "bad-request");
	assert_string_equal(app_condition(r), "bad-action");
	pv_stanza_unref(r);
	assert_string_equal(run_cmd(f->h, f->alice, REQUESTS, "complete", sid,
		"<x xmlns='jabber:x:data' type='submit'><field var='action'><value>ignore</value></field></x>",
		&r), "bad-request");
	assert_string_equal(app_condition(r), "bad-payload");
	pv_stanza_unref(r);
	assert_string_equal(fc.last_call, "");

	assert_string_equal(run_cmd(f->h, f->alice, REQUESTS, "complete", sid,
		"<x xmlns='jabber:x:data' type='submit'><field var='action'><value>accept</value></field></x>",
		&r), "result");
	assert_string_equal(status_of(r), "completed");
	const char *type;
	char *note = note_of(r, &type);
	assert_string_equal(type, "info");
	assert_non_null(strstr(note, "Accepted"));
	pv_free(note);
	assert_string_equal(fc.last_call, "accept ali@eitaa.example");
	pv_stanza_unref(r);
	pv_free(sid);
}

static void test_requests_decisions(void **state)
{
	fixture *f = *state;
	static const struct {
		const char *fields;
		int rc;
		const char *outcome, *call, *note_type;
	} cases[] = {
		{"<field var='action'><value>decline</value></field>", 0, "result", "decline ali@eitaa.example",
			"info"},
		{"<field var='action'><value>report</value></field>", 0, "result",
			"report ali@eitaa.example urn:xmpp:reporting:spam -", "info"},
		{"<field var='action'><value>report</value></field><field var='reason'>"
		 "<value>urn:xmpp:reporting:abuse</value></field><field var='text'><value>threats</value></field>",
			0, "result", "report ali@eitaa.example urn:xmpp:reporting:abuse threats", "info"},
		{"<field var='action'><value>report</value></field><field var='reason'><value>rude</value></field>",
			0, "bad-request", "", NULL},
		/* answered on another resource in the meantime */
		{"<field var='action'><value>accept</value></field>", PV_ENOENT, "result",
			"accept ali@eitaa.example", "error"},
	};
	fc.req_from[fc.nreq++] = "ali@eitaa.example";
	for (size_t i = 0; i < PV_ARRAY_LEN(cases); i++) {
		fc.last_call[0] = 0;
		fc.action_rc = cases[i].rc;
		char *sid = pick(f, "ali@eitaa.example");
		char *form = pv_sprintf("<x xmlns='jabber:x:data' type='submit'>%s</x>", cases[i].fields);
		pv_stanza *r;
		assert_string_equal(run_cmd(f->h, f->alice, REQUESTS, "complete", sid, form, &r),
			cases[i].outcome);
		assert_string_equal(fc.last_call, cases[i].call);
		if (cases[i].note_type) {
			assert_string_equal(status_of(r), "completed");
			const char *type;
			char *note = note_of(r, &type);
			assert_string_equal(type, cases[i].note_type);
			pv_free(note);
		} else {
			assert_string_equal(app_condition(r), "bad-payload");
			pv_stanza_unref(r);
			run_cmd(f->h, f->alice, REQUESTS, "cancel", sid, NULL, &r);
		}
		pv_stanza_unref(r);
		pv_free(form);
		pv_free(sid);
	}
}

/* ---- #history ---- */

static void test_history(void **state)
{
	fixture *f = *state;
	static const struct {
		int entries;
		bool verified;
		const char *note_type;
		size_t items;
		const char *first_seq;
	} cases[] = {
		{0, true, "info", 0, NULL},
		{3, true, "info", 3, "1"},
		{3, false, "warn", 3, "1"},
		{MAX_HISTORY_SHOWN + 5, true, "info", MAX_HISTORY_SHOWN, "6"},
	};
	for (size_t i = 0; i < PV_ARRAY_LEN(cases); i++) {
		fc.nentries = cases[i].entries;
		fc.verified = cases[i].verified;
		pv_stanza *r;
		assert_string_equal(run_cmd(f->h, f->alice, HISTORY, NULL, NULL, NULL, &r), "result");
		assert_string_equal(status_of(r), "completed");
		assert_null(pv_xml_child(cmd_of(r), "actions", NS_COMMANDS));
		pv_xml *x = form_of(r);
		assert_string_equal(pv_xml_attr(x, "type"), "result");
		assert_values(x, "verified", cases[i].verified ? "1" : "0");
		char num[16];
		snprintf(num, sizeof(num), "%d", cases[i].entries);
		assert_values(x, "count", num);
		assert_non_null(pv_xml_child(x, "reported", NS_DATA));
		size_t items = 0;
		pv_xml *first = NULL;
		for (pv_xml *c = pv_xml_first_element(x); c; c = pv_xml_next_element(c)) {
			if (pv_xml_is(c, "item", NS_DATA)) {
				if (!first)
					first = c;
				items++;
			}
		}
		assert_int_equal(items, cases[i].items);
		if (first) {
			assert_values(first, "seq", cases[i].first_seq);
			char *want = pv_sprintf("policy contacts %s", cases[i].first_seq);
			assert_values(first, "action", want);
			pv_free(want);
			assert_values(first, "hash", "ab");
		}
		const char *type;
		char *note = note_of(r, &type);
		assert_string_equal(type, cases[i].note_type);
		pv_free(note);
		pv_stanza_unref(r);
	}
}

/* ---- errors and session handling ---- */

static void test_errors(void **state)
{
	fixture *f = *state;
	pv_stanza *r;
	/* start a session of alice's to misuse */
	run_cmd(f->h, f->alice, SETTINGS, NULL, NULL, NULL, &r);
	char *sid = session_of(r);
	pv_stanza_unref(r);
	pv_session *alice2 = fake_session(f->h, "alice@" HOST "/laptop", true, NULL);
	static const struct {
		int who; /* 0 alice, 1 bob, 2 alice's other resource */
		const char *node, *action, *sid;
		const char *outcome, *app, *etype;
	} cases[] = {
		{0, "urn:example:nope", NULL, NULL, "item-not-found", NULL, "cancel"},
		{0, SETTINGS, "jump", NULL, "bad-request", "malformed-action", "modify"},
		{0, SETTINGS, "next", NULL, "bad-request", "bad-action", "modify"},
		{0, SETTINGS, NULL, "no-such-session", "bad-request", "bad-sessionid", "modify"},
		{0, HISTORY, NULL, "SID", "bad-request", "bad-sessionid", "modify"},   /* other node */
		{1, SETTINGS, NULL, "SID", "bad-request", "bad-sessionid", "modify"},  /* other user */
		{2, SETTINGS, NULL, "SID", "bad-request", "bad-sessionid", "modify"},  /* other resource */
	};
	for (size_t i = 0; i < PV_ARRAY_LEN(cases); i++) {
		pv_session *who = cases[i].who == 0 ? f->alice : cases[i].who == 1 ? f->bob : alice2;
		const char *s = cases[i].sid && strcmp(cases[i].sid, "SID") == 0 ? sid : cases[i].sid;
		const char *o = run_cmd(f->h, who, cases[i].node, cases[i].action, s, NULL, &r);
		if (strcmp(o, cases[i].outcome) != 0)
			fail_msg("case %zu: %s, want %s", i, o, cases[i].outcome);
		if (cases[i].app)
			assert_string_equal(app_condition(r), cases[i].app);
		else
			assert_null(app_condition(r));
		assert_string_equal(fake_error_type(r), cases[i].etype);
		assert_string_equal(pv_xml_attr(r->xml, "from"), HOST);
		pv_stanza_unref(r);
	}
	/* None of that disturbed the session: alice cancels it, then it is gone. */
	assert_string_equal(run_cmd(f->h, f->alice, SETTINGS, "cancel", sid, NULL, &r), "result");
	assert_string_equal(status_of(r), "canceled");
	assert_string_equal(pv_xml_attr(cmd_of(r), "sessionid"), sid);
	assert_string_equal(pv_xml_attr(cmd_of(r), "node"), SETTINGS);
	assert_null(pv_xml_child(cmd_of(r), "x", NS_DATA));
	pv_stanza_unref(r);
	assert_string_equal(run_cmd(f->h, f->alice, SETTINGS, "cancel", sid, NULL, &r), "bad-request");
	assert_string_equal(app_condition(r), "bad-sessionid");
	pv_stanza_unref(r);
	pv_free(sid);

	/* not a command element; no node */
	assert_string_equal(fake_ask(f->h, f->alice, "<iq type='set' id='x' to='" HOST "'><command "
		"xmlns='http://jabber.org/protocol/commands'/></iq>", NULL, NULL), "bad-request");
}

static void test_forbidden_for_strangers(void **state)
{
	fixture *f = *state;
	pv_host *other = fake_host_new("other.example", NULL, NULL);
	pv_session *eve = fake_session(other, "eve@other.example/x", true, NULL);
	pv_session *unbound = fake_session(f->h, NULL, true, NULL);
	pv_session *who[] = {eve, unbound, NULL};
	for (size_t i = 0; i < PV_ARRAY_LEN(who); i++) {
		pv_stanza *r;
		assert_string_equal(run_cmd(f->h, who[i], SETTINGS, NULL, NULL, NULL, &r), "forbidden");
		pv_stanza_unref(r);
	}
	assert_int_equal(pv_map_count(((ahost *)f->h->mod_state)->sessions), 0);
	fake_host_free(other);
}

static void test_sessions_end_with_the_resource_and_expire(void **state)
{
	fixture *f = *state;
	ahost *ah = f->h->mod_state;
	pv_stanza *r;
	char *sids[MAX_SESSIONS_PER_JID + 2];
	for (size_t i = 0; i < PV_ARRAY_LEN(sids); i++) {
		run_cmd(f->h, f->alice, SETTINGS, NULL, NULL, NULL, &r);
		sids[i] = session_of(r);
		pv_stanza_unref(r);
	}
	/* capped per resource: the two oldest went */
	assert_int_equal(pv_map_count(ah->sessions), MAX_SESSIONS_PER_JID);
	assert_null(pv_map_get(ah->sessions, sids[0]));
	assert_null(pv_map_get(ah->sessions, sids[1]));
	assert_non_null(pv_map_get(ah->sessions, sids[2]));

	/* an expired session answers session-expired once, then is unknown */
	asession *s = pv_map_get(ah->sessions, sids[2]);
	s->used = pv_now_ms() - SESSION_TIMEOUT_MS - 1;
	assert_string_equal(run_cmd(f->h, f->alice, SETTINGS, NULL, sids[2], NULL, &r), "not-allowed");
	assert_string_equal(app_condition(r), "session-expired");
	assert_string_equal(fake_error_type(r), "cancel");
	pv_stanza_unref(r);
	assert_null(pv_map_get(ah->sessions, sids[2]));

	/* bob's session survives alice's resource ending */
	run_cmd(f->h, f->bob, SETTINGS, NULL, NULL, NULL, &r);
	pv_stanza_unref(r);
	pv_event ev = {.name = "resource-unbind", .host = f->h, .origin = f->alice};
	pv_fire(f->h, "resource-unbind", &ev);
	assert_int_equal(pv_map_count(ah->sessions), 1);
	for (size_t i = 0; i < PV_ARRAY_LEN(sids); i++)
		pv_free(sids[i]);
}

static void test_helpers(void **state)
{
	static const struct {
		const char *in;
		size_t max;
		const char *out;
	} cases[] = {
		{"short", 10, "short"},
		{"a\nb\rc", 10, "a b c"},
		{"abcdef", 3, "abc…"},
		{"ab\xc3\xa9z", 3, "ab…"}, /* never half a character */
		{"", 3, ""},
	};
	for (size_t i = 0; i < PV_ARRAY_LEN(cases); i++) {
		pv_buf b;
		pv_buf_init(&b);
		preview(&b, cases[i].in, cases[i].max);
		assert_string_equal(pv_buf_str(&b), cases[i].out);
		pv_buf_fini(&b);
	}
	static const struct {
		const char *in;
		cmd_action act;
		int rc;
	} acts[] = {
		{NULL, ACT_EXECUTE, 0}, {"execute", ACT_EXECUTE, 0}, {"cancel", ACT_CANCEL, 0},
		{"prev", ACT_PREV, 0}, {"next", ACT_NEXT, 0}, {"complete", ACT_COMPLETE, 0},
		{"Execute", 0, PV_EINVAL}, {"", 0, PV_EINVAL},
	};
	for (size_t i = 0; i < PV_ARRAY_LEN(acts); i++) {
		cmd_action a = ACT_EXECUTE;
		assert_int_equal(parse_action(acts[i].in, &a), acts[i].rc);
		if (acts[i].rc == 0)
			assert_int_equal(a, acts[i].act);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_helpers),
		cmocka_unit_test_setup_teardown(test_disco_items_lists_commands, setup, teardown),
		cmocka_unit_test_setup_teardown(test_disco_info_nodes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_settings_form_shows_current_rules, setup, teardown),
		cmocka_unit_test_setup_teardown(test_settings_submit_applies_the_changes_only, setup, teardown),
		cmocka_unit_test_setup_teardown(test_settings_refused_by_consent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_requests_none, setup, teardown),
		cmocka_unit_test_setup_teardown(test_requests_stages, setup, teardown),
		cmocka_unit_test_setup_teardown(test_requests_decisions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_history, setup, teardown),
		cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_forbidden_for_strangers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sessions_end_with_the_resource_and_expire, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
