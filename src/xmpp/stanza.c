/* stanza.c -- refcounted stanzas (pv_stanza.h): parsed addresses, the cached wire form,
 * and the replies every server needs (RFC 6120 8.3 errors, empty iq results).
 *
 * A stanza's tree is kept in the jabber:client content namespace whatever stream it came
 * from: RFC 6120 4.8.3 makes jabber:client and jabber:server the same content namespace
 * seen from two kinds of stream, so pv_stanza_new maps jabber:server to jabber:client and
 * s2s maps it back when writing (pv_xml_serialize_as).  The to/from attributes are
 * rewritten to their normalised form (RFC 7622), so everything downstream compares and
 * forwards one spelling of each address.
 *
 * Memory: the jabber:client/jabber:server swap points ns at interned strings
 * (pv_xml_set_ns), and the wire buffer is sized once from the tree (issue 5).  When
 * the tree's root is a host (a parsed <message>, pv_xml.h "carving"), the pv_stanza
 * record and its addresses are cut from the root's room while it lasts: with the
 * body, a routed chat message is then one allocation and its wire form.  Whatever was
 * carved is recognised by pv_xml_holds and freed with the tree, which goes last.
 *
 * Threading: refcounts are plain ints -- a stanza belongs to one worker; to hand it to
 * another thread, copy it. */
#include "peyvand/pv_stanza.h"
#include "peyvand/pv_log.h"

#include <string.h>

static bool is_content_ns(const char *ns)
{
	return !ns || strcmp(ns, PV_NS_CLIENT) == 0 || strcmp(ns, PV_NS_SERVER) == 0;
}

static pv_stanza_kind kind_of(const pv_xml *x)
{
	/* <message xmlns='urn:something-else'> is some other element, not a stanza. */
	if (!is_content_ns(x->ns))
		return PV_ST_OTHER;
	if (strcmp(x->name, "message") == 0)
		return PV_ST_MESSAGE;
	if (strcmp(x->name, "presence") == 0)
		return PV_ST_PRESENCE;
	if (strcmp(x->name, "iq") == 0)
		return PV_ST_IQ;
	return PV_ST_OTHER;
}

static void map_server_ns(pv_xml *x)
{
	if (x->ns && strcmp(x->ns, PV_NS_SERVER) == 0)
		pv_xml_set_ns(x, PV_NS_CLIENT); /* interned: no allocation */
	for (pv_xml *c = x->first; c; c = c->next)
		if (c->name)
			map_server_ns(c);
}

/* Parse an address attribute: absent -> ok with *has false; invalid -> false. */
static bool parse_addr(const pv_xml *x, const char *attr, pv_jid *out, bool *has)
{
	const char *v = pv_xml_attr(x, attr);
	memset(out, 0, sizeof(*out));
	*has = v != NULL;
	return !v || pv_jid_parse_str(out, v) == 0;
}

/* Copies src into s->xml's room as *dst (one heap block fewer to free in the burst of
 * a loop turn's delivered messages); false, *dst untouched, when there is no room. */
static bool dup_carved(pv_stanza *s, pv_jid *dst, const pv_jid *src)
{
	void *m = src->full ? pv_xml_carve(s->xml, pv_jid_block_size(src)) : NULL;
	if (m)
		pv_jid_dup_in(dst, src, m);
	return m != NULL;
}

/* *j for s: moved into s->xml's room when there is room, else kept as it is. */
static void adopt_jid(pv_stanza *s, pv_jid *j)
{
	pv_jid c;
	if (!dup_carved(s, &c, j))
		return;
	pv_jid_fini(j);
	*j = c;
}

/* Frees *j unless it lives in s's tree (adopt_jid). */
static void drop_jid(pv_stanza *s, pv_jid *j)
{
	if (pv_xml_holds(s->xml, j->full))
		memset(j, 0, sizeof(*j));
	else
		pv_jid_fini(j);
}

/* Point the attribute at the normalised spelling (no-op when already normalised). */
static void normalise_attr(pv_xml *x, const char *attr, const pv_jid *j)
{
	const char *v = pv_xml_attr(x, attr);
	if (v && strcmp(v, j->full) != 0)
		pv_xml_set_attr(x, attr, j->full);
}

pv_stanza *pv_stanza_new(pv_xml *xml, const char **bad_attr)
{
	pv_jid to, from;
	bool has_to, has_from;
	const char *bad = NULL;

	PV_ASSERT(xml && xml->name);
	if (!parse_addr(xml, "to", &to, &has_to))
		bad = "to";
	if (!bad && !parse_addr(xml, "from", &from, &has_from))
		bad = "from";
	if (bad) {
		pv_jid_fini(&to);
		if (bad_attr)
			*bad_attr = bad;
		return NULL; /* xml untouched: the caller still owns it */
	}

	pv_stanza *s = pv_xml_carve(xml, sizeof(*s));
	if (s)
		memset(s, 0, sizeof(*s));
	else
		s = pv_calloc(1, sizeof(*s));
	s->refs = 1;
	s->kind = kind_of(xml);
	s->xml = xml;
	if (!xml->ns)
		pv_xml_set_ns(xml, PV_NS_CLIENT);
	map_server_ns(xml);
	if (has_to)
		normalise_attr(xml, "to", &to);
	if (has_from)
		normalise_attr(xml, "from", &from);
	s->to = to;
	s->from = from;
	adopt_jid(s, &s->to);
	adopt_jid(s, &s->from);
	s->has_to = has_to;
	s->has_from = has_from;
	/* Borrowed after the attribute rewrites: set_attr never moves other values. */
	s->type = pv_xml_attr(xml, "type");
	s->id = pv_xml_attr(xml, "id");
	pv_buf_init(&s->wire);
	return s;
}

pv_stanza *pv_stanza_ref(pv_stanza *s)
{
	PV_ASSERT(s && s->refs > 0);
	s->refs++;
	return s;
}

void pv_stanza_unref(pv_stanza *s)
{
	if (!s)
		return;
	PV_ASSERT(s->refs > 0);
	if (--s->refs > 0)
		return;
	pv_xml *x = s->xml; /* may hold s itself: freed last */
	drop_jid(s, &s->to);
	drop_jid(s, &s->from);
	pv_buf_fini(&s->wire);
	if (!pv_xml_holds(x, s))
		pv_free(s);
	pv_xml_free(x);
}

pv_stanza *pv_stanza_copy(const pv_stanza *s)
{
	pv_stanza *c = pv_calloc(1, sizeof(*c));
	c->refs = 1;
	c->kind = s->kind;
	c->xml = pv_xml_dup(s->xml);
	c->has_to = s->has_to;
	c->has_from = s->has_from;
	if (s->has_to)
		pv_jid_dup(&c->to, &s->to);
	if (s->has_from)
		pv_jid_dup(&c->from, &s->from);
	c->type = pv_xml_attr(c->xml, "type");
	c->id = pv_xml_attr(c->xml, "id");
	pv_buf_init(&c->wire);
	return c;
}

/* Replaces *j with nj (taken; nj.full NULL removes the address) and the attribute. */
static void put_addr(pv_stanza *s, const char *attr, pv_jid *j, bool *has, const pv_jid *nj)
{
	drop_jid(s, j);
	*j = *nj;
	*has = nj->full != NULL;
	pv_xml_set_attr(s->xml, attr, nj->full);
	pv_buf_reset(&s->wire); /* the cached bytes no longer match */
}

static void set_addr(pv_stanza *s, const char *attr, pv_jid *j, bool *has, const char *jid)
{
	pv_jid nj;
	memset(&nj, 0, sizeof(nj));
	/* Callers pass addresses they already hold as valid JIDs; anything else is a
	 * bug in the caller, and silently dropping or keeping the old address would
	 * misroute the stanza. */
	if (jid && pv_jid_parse_str(&nj, jid) != 0) {
		pv_error("stanza", "set %s to an invalid JID", attr);
		PV_ASSERT(!"pv_stanza_set_to/from: invalid JID");
	}
	put_addr(s, attr, j, has, &nj);
}

void pv_stanza_set_to(pv_stanza *s, const char *jid)
{
	set_addr(s, "to", &s->to, &s->has_to, jid);
}

void pv_stanza_set_from(pv_stanza *s, const char *jid)
{
	set_addr(s, "from", &s->from, &s->has_from, jid);
}

void pv_stanza_set_from_jid(pv_stanza *s, const pv_jid *jid)
{
	pv_jid nj;
	if (!dup_carved(s, &nj, jid))
		pv_jid_dup(&nj, jid);
	put_addr(s, "from", &s->from, &s->has_from, &nj);
}

/* Bytes the serialisation of x takes when nothing needs escaping (an xmlns on every
 * element with a namespace): sizing the wire buffer once saves the reallocations of
 * growing it from 64 bytes (issue 5). */
static size_t wire_estimate(const pv_xml *x)
{
	if (!x->name)
		return x->text_len;
	size_t n = 2 * strlen(x->name) + 5; /* <name ...></name> */
	if (x->ns)
		n += strlen(x->ns) + 9; /* xmlns='' */
	for (size_t i = 0; i < x->nattrs; i++)
		n += strlen(x->attrs[2 * i]) + strlen(x->attrs[2 * i + 1]) + 4;
	for (const pv_xml *c = x->first; c; c = c->next)
		n += wire_estimate(c);
	return n;
}

const pv_buf *pv_stanza_wire(pv_stanza *s)
{
	if (s->wire.len == 0) {
		pv_buf_reserve(&s->wire, wire_estimate(s->xml) + 32);
		pv_xml_serialize(s->xml, PV_NS_CLIENT, &s->wire);
	}
	return &s->wire;
}

/* A new top-level element like s's, addressed back to the sender. */
static pv_xml *reply_shell(const pv_stanza *s, const char *type)
{
	pv_xml *x = pv_xml_new(s->xml->name, s->xml->ns);
	if (s->id)
		pv_xml_set_attr(x, "id", s->id);
	if (s->has_from)
		pv_xml_set_attr(x, "to", s->from.full);
	if (s->has_to)
		pv_xml_set_attr(x, "from", s->to.full);
	pv_xml_set_attr(x, "type", type);
	return x;
}

static pv_stanza *wrap(pv_xml *x)
{
	/* The addresses are normalised JIDs from a stanza, so this cannot fail. */
	pv_stanza *r = pv_stanza_new(x, NULL);
	PV_ASSERT(r != NULL);
	return r;
}

pv_stanza *pv_stanza_error(const pv_stanza *s, const char *etype, const char *cond, const char *text)
{
	/* RFC 6120 8.3.1: an error is never answered with an error; an iq result is not
	 * a request, so it gets no reply either. */
	if (s->type && strcmp(s->type, "error") == 0)
		return NULL;
	if (s->kind == PV_ST_IQ && s->type && strcmp(s->type, "result") == 0)
		return NULL;

	pv_xml *x = reply_shell(s, "error");
	/* Other attributes (xml:lang, extensions) travel back with the payload. */
	for (size_t i = 0; i < s->xml->nattrs; i++) {
		const char *n = s->xml->attrs[2 * i];
		if (strcmp(n, "to") && strcmp(n, "from") && strcmp(n, "type") && strcmp(n, "id"))
			pv_xml_set_attr(x, n, s->xml->attrs[2 * i + 1]);
	}
	/* 8.3.1 lets the error include the original XML, so the sender can tell which
	 * request failed: all of it for message/presence; for an iq only the request
	 * element (its first child). */
	if (s->kind == PV_ST_IQ) {
		pv_xml *q = pv_xml_first_element(s->xml);
		if (q)
			pv_xml_add(x, pv_xml_dup(q));
	} else {
		for (const pv_xml *c = s->xml->first; c; c = c->next)
			pv_xml_add(x, pv_xml_dup(c));
	}

	pv_xml *err = pv_xml_add_child(x, "error", s->xml->ns);
	pv_xml_set_attr(err, "type", etype ? etype : "cancel");
	pv_xml_add_child(err, cond ? cond : "undefined-condition", PV_NS_STANZAS);
	if (text && *text) {
		pv_xml *t = pv_xml_add_child(err, "text", PV_NS_STANZAS);
		pv_xml_add_text(t, text, strlen(text));
	}
	return wrap(x);
}

pv_stanza *pv_stanza_iq_result(const pv_stanza *s)
{
	if (s->kind != PV_ST_IQ || !s->type ||
	    (strcmp(s->type, "get") != 0 && strcmp(s->type, "set") != 0))
		return NULL;
	return wrap(reply_shell(s, "result"));
}

pv_stanza *pv_stanza_parse(const char *xml, size_t len)
{
	pv_xml *x = pv_xml_parse(xml, len);
	const char *bad = NULL;
	pv_stanza *st = x ? pv_stanza_new(x, &bad) : NULL;
	if (!st)
		pv_xml_free(x);
	return st;
}

pv_stanza *pv_stanza_presence(const char *type, const char *from, const char *to)
{
	pv_xml *x = pv_xml_new("presence", PV_NS_CLIENT);
	if (type)
		pv_xml_set_attr(x, "type", type);
	if (from)
		pv_xml_set_attr(x, "from", from);
	if (to)
		pv_xml_set_attr(x, "to", to);
	const char *bad = NULL;
	pv_stanza *st = pv_stanza_new(x, &bad);
	if (!st) {
		pv_warn("stanza", "cannot build presence from=%s to=%s (bad %s)", from ? from : "-",
			to ? to : "-", bad ? bad : "?");
		pv_xml_free(x);
	}
	return st;
}
