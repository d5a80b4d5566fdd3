/* xml.c -- the XML element tree (pv_xml.h) and its serialiser.
 *
 * The tree is namespace-resolved: an element carries its namespace URI, never a prefix,
 * so the serialiser decides where xmlns='...' is needed (only where the namespace differs
 * from the one in scope) and the output is canonical, prefix-free XML.  Two exceptions
 * need a prefix: xml:lang (attribute name "xml:lang", prefix bound by XML itself) and
 * attributes in any other namespace, which the stream parser stores in Clark notation
 * "{uri}local" (no XML name can start with '{', so these never collide with plain
 * names); the serialiser declares a generated prefix for them on the element.
 *
 * ns on an element: NULL inherits the namespace in scope (convenient for builders);
 * "" means "no namespace" (written as xmlns='' when something else is in scope).
 * An element in the XML namespace itself (<xml:foo/> is well-formed input) is written
 * with the xml: prefix: that namespace must never be declared as the default one
 * (Namespaces in XML 1.0, section 3), so xmlns='...XML/1998/namespace' would make
 * every parser, ours included, reject the output.
 *
 * Escaping follows XML 1.0 sections 2.4 and 3.3.3: text escapes & < > (and CR, which a
 * parser would otherwise turn into LF); attribute values also escape both quotes and
 * TAB/LF, which attribute-value normalisation would otherwise turn into spaces.
 *
 * Memory: one allocation per node, common names interned (see "memory" below).
 *
 * Ownership: a tree is owned by its root.  Not thread-safe, except the intern table,
 * which is built once (pthread_once) and read-only after. */
#include "peyvand/pv_xml.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* ---- memory: interned names, one allocation per node -------------------------------
 *
 * Issue 5: glibc malloc/free was ~13 % of the CPU per message, most of it here (a node,
 * then a copy of every name, namespace and attribute string, each freed again after
 * delivery).  So every string a node points at (name, ns, attribute names and values,
 * text) and its attrs array is exactly one of:
 *   interned  inside the static `pool` below (common XMPP names and namespaces, ""):
 *             shared by every tree, never freed;
 *   inline    inside the node's own allocation [x, x + x->size): freed with the node;
 *   heap      a pv_malloc'ed block of its own: freed when replaced or with the node.
 * The test is exact: pointer ranges of one static array and of one allocation, which no
 * other block can overlap.  release() is the one place that applies it; every free and
 * every replacement goes through it.  A field that some other code set to a pv_malloc'ed
 * string is "heap" under this rule and is freed as before.
 *
 * A node's allocation: the pv_xml, attr_cap attribute pairs, the inline name/ns (or a
 * text node's text), then `room`: bytes for attribute strings, used front to back by
 * pv_xml_add_attr / pv_xml_set_attr while they fit and never reused (a replaced inline
 * value is simply abandoned, so a node grows only by what was set in heap blocks).  A
 * parsed stanza gets room for its attributes plus the `from` the server stamps later.
 *
 * Carving: a host (pv_xml_host) lends its room, past the `keep` bytes it holds back for
 * its own strings, to nodes made for it (pv_xml_new_in, pv_xml_add_text_in), front to
 * back like its strings: each such node is `carved`, its allocation a range inside
 * the host's, and is never freed by itself.  Its own strings follow the rules above
 * within its own range.  The stream parser makes every <message> a host of the nodes
 * under it (xmlstream.c): one allocation per message instead of one per node (issue
 * 5: malloc and free were ~10 % of the CPU per message). */

/* Element names, namespaces and attribute names the server and its clients use on
 * every stanza; "" first (the no-namespace ns of the stream parser). */
#define INTERNED(X)                                                                        \
	X("") X("message") X("presence") X("iq") X("body") X("thread") X("subject")         \
	X("error") X("query") X("x") X("delay") X("request") X("received") X("active")      \
	X("composing") X("paused") X("inactive") X("gone") X("markable") X("displayed")     \
	X("acknowledged") X("stanza-id") X("origin-id") X("show") X("status") X("priority") \
	X("text") X("item") X("bind") X("resource") X("jid") X("session") X("enable")       \
	X("enabled") X("resume") X("resumed") X("r") X("a") X("ping") X("vCard")            \
	X("forwarded") X("result") X("sent") X("private") X("no-store") X("store")          \
	X("no-copy") X("c") X("identity") X("feature") X("blocklist") X("block")            \
	X("unblock") X("command") X("stream") X("features") X("starttls") X("proceed")      \
	X("auth") X("success") X("failure") X("challenge") X("response") X("mechanisms")    \
	X("mechanism") X("required") X("bad-request") X("feature-not-implemented")          \
	X("item-not-found") X("not-authorized") X("forbidden") X("service-unavailable")     \
	X("recipient-unavailable") X("remote-server-not-found") X("jid-malformed")          \
	X("not-acceptable") X("policy-violation") X("resource-constraint")                  \
	X("undefined-condition")                                                            \
	X("jabber:client") X("jabber:server") X("http://etherx.jabber.org/streams")         \
	X("urn:ietf:params:xml:ns:xmpp-stanzas") X("urn:ietf:params:xml:ns:xmpp-streams")   \
	X("urn:ietf:params:xml:ns:xmpp-tls") X("urn:ietf:params:xml:ns:xmpp-sasl")          \
	X("urn:ietf:params:xml:ns:xmpp-bind") X("urn:ietf:params:xml:ns:xmpp-session")      \
	X("urn:xmpp:sm:3") X("urn:xmpp:delay") X("urn:xmpp:receipts")                       \
	X("urn:xmpp:chat-markers:0") X("http://jabber.org/protocol/chatstates")             \
	X("urn:xmpp:sid:0") X("urn:xmpp:ping") X("urn:xmpp:forward:0")                      \
	X("urn:xmpp:carbons:2") X("urn:xmpp:hints") X("urn:xmpp:blocking")                  \
	X("jabber:iq:roster") X("jabber:iq:private") X("jabber:iq:version")                 \
	X("jabber:iq:register") X("jabber:x:data") X("vcard-temp")                          \
	X("http://jabber.org/protocol/disco#info") X("http://jabber.org/protocol/disco#items") \
	X("http://jabber.org/protocol/caps") X("http://jabber.org/protocol/commands")       \
	X("urn:peyvand:consent:0")                                                          \
	X("id") X("to") X("from") X("type") X("xml:lang") X("stamp") X("by") X("name")     \
	X("node") X("var") X("ver") X("hash") X("h") X("previd") X("category")              \
	X("subscription") X("ask") X("version") X("xmlns")

#define POOL_ENTRY(s) s "\0"
/* One array, so "is this pointer interned" is a range check. */
static const char pool[] = INTERNED(POOL_ENTRY);
_Static_assert(sizeof(pool) < UINT16_MAX, "pool offsets are uint16_t");

/* Open-addressing hash of pool entries, built once: offset + 1 (0 = empty) and length,
 * compared before any byte so a lookup never reads past an entry. */
#define TABLE_SIZE 512
static struct {
	uint16_t off1;
	uint8_t len;
} table[TABLE_SIZE];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static uint32_t name_hash(const char *s, size_t n)
{
	uint32_t h = 2166136261u; /* FNV-1a */
	for (size_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)s[i]) * 16777619u;
	return h ^ (uint32_t)n;
}

static void table_build(void)
{
	/* The terminating NUL of the literal is not an entry. */
	for (size_t off = 0; off < sizeof(pool) - 1; off += strlen(pool + off) + 1) {
		size_t n = strlen(pool + off);
		PV_ASSERT(n <= UINT8_MAX);
		uint32_t i = name_hash(pool + off, n) & (TABLE_SIZE - 1);
		while (table[i].off1)
			i = (i + 1) & (TABLE_SIZE - 1);
		table[i].off1 = (uint16_t)(off + 1);
		table[i].len = (uint8_t)n;
	}
}

const char *pv_xml_intern(const char *s, size_t n)
{
	if (n > UINT8_MAX)
		return NULL;
	pthread_once(&table_once, table_build);
	for (uint32_t i = name_hash(s, n) & (TABLE_SIZE - 1); table[i].off1;
		i = (i + 1) & (TABLE_SIZE - 1)) {
		const char *e = pool + table[i].off1 - 1;
		if (table[i].len == n && memcmp(e, s, n) == 0)
			return e;
	}
	return NULL;
}

static bool in_pool(const void *p)
{
	uintptr_t u = (uintptr_t)p;
	return u >= (uintptr_t)pool && u < (uintptr_t)pool + sizeof(pool);
}

/* Free p (a string or the attrs array of x) unless it is interned or inside x. */
static void release(const pv_xml *x, void *p)
{
	if (p && !in_pool(p) && !pv_xml_holds(x, p))
		pv_free(p);
}

/* n bytes at s as a string x may point at: in x's room while it lasts, else a heap copy. */
static char *place(pv_xml *x, const char *s, size_t n)
{
	char *d;
	if (n < x->room) {
		d = (char *)x + x->size - x->room;
		x->room -= (uint32_t)(n + 1);
	} else {
		d = pv_malloc(n + 1);
	}
	memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

/* A name (element, namespace or attribute name): the interned copy, else placed. */
static char *place_name(pv_xml *x, const char *s, size_t n)
{
	const char *i = pv_xml_intern(s, n);
	/* The pool is const; the public fields are not, and xml.c never writes through
	 * an interned pointer (pv_xml.h forbids everyone else to). */
	return i ? (char *)i : place(x, s, n);
}

/* n bytes of host's room past what it keeps, aligned for a pv_xml; NULL when they do
 * not fit, or host is NULL or not a host. */
void *pv_xml_carve(pv_xml *host, size_t n)
{
	if (!host || !host->hosting)
		return NULL;
	char *at = (char *)host + host->size - host->room;
	size_t pad = (size_t)(-(uintptr_t)at & (_Alignof(pv_xml) - 1));
	if (host->room < host->keep || pad + n > host->room - host->keep)
		return NULL;
	host->room -= (uint32_t)(pad + n);
	return at + pad;
}

bool pv_xml_holds(const pv_xml *x, const void *p)
{
	/* Compared as integers: the pointers need not point into one object. */
	uintptr_t a = (uintptr_t)x, q = (uintptr_t)p;
	return x && p && q >= a && q < a + x->size;
}

/* One zeroed node of sizeof(pv_xml) + attr_cap pairs + body + room bytes, carved from
 * host when it has room; returns the first byte of body. */
static char *node_alloc(pv_xml **out, pv_xml *host, size_t attr_cap, size_t body, size_t room)
{
	size_t head = sizeof(pv_xml) + attr_cap * 2 * sizeof(char *);
	/* Sizes are 32-bit in a node: stanzas are limited far below, and so is what the
	 * store hands to pv_xml_parse. */
	PV_ASSERT(attr_cap <= UINT32_MAX && head + body + room <= UINT32_MAX);
	pv_xml *x = pv_xml_carve(host, head + body + room);
	bool carved = x != NULL;
	if (!carved)
		x = pv_malloc(head + body + room);
	memset(x, 0, sizeof(*x));
	x->carved = carved;
	x->size = (uint32_t)(head + body + room);
	x->room = (uint32_t)room;
	x->attr_cap = (uint32_t)attr_cap;
	if (attr_cap)
		x->attrs = (char **)(x + 1); /* sizeof(pv_xml) keeps pointer alignment */
	*out = x;
	return (char *)x + head;
}

/* Attribute pairs and string room of an element built by pv_xml_new: enough for what
 * the server's own replies set (id, to, from, type) without another allocation. */
#define BUILT_ATTRS 4
#define BUILT_ROOM 64

/* ---- building ----------------------------------------------------------------------- */

pv_xml *pv_xml_new_in(pv_xml *host, const char *name, size_t name_len, const char *ns,
	size_t ns_len, size_t attr_cap, size_t room)
{
	PV_ASSERT(name != NULL);
	const char *iname = pv_xml_intern(name, name_len);
	const char *ins = ns ? pv_xml_intern(ns, ns_len) : NULL;
	size_t body = (iname ? 0 : name_len + 1) + (ns && !ins ? ns_len + 1 : 0);
	pv_xml *x;
	char *b = node_alloc(&x, host, attr_cap, body, room);
	if (iname) {
		x->name = (char *)iname;
	} else {
		x->name = memcpy(b, name, name_len);
		b[name_len] = '\0';
		b += name_len + 1;
	}
	if (ins) {
		x->ns = (char *)ins;
	} else if (ns) {
		x->ns = memcpy(b, ns, ns_len);
		b[ns_len] = '\0';
	}
	return x;
}

pv_xml *pv_xml_new_sized(const char *name, size_t name_len, const char *ns, size_t ns_len,
	size_t attr_cap, size_t room)
{
	return pv_xml_new_in(NULL, name, name_len, ns, ns_len, attr_cap, room);
}

void pv_xml_host(pv_xml *x, size_t keep)
{
	PV_ASSERT(x && !x->carved && keep <= UINT32_MAX);
	x->hosting = true;
	x->keep = (uint32_t)keep;
}

pv_xml *pv_xml_new(const char *name, const char *ns)
{
	PV_ASSERT(name != NULL);
	return pv_xml_new_sized(name, strlen(name), ns, ns ? strlen(ns) : 0, BUILT_ATTRS, BUILT_ROOM);
}

static pv_xml *text_new(pv_xml *host, const char *text, size_t len)
{
	pv_xml *t;
	char *b = node_alloc(&t, host, 0, len + 1, 0);
	memcpy(b, text, len);
	b[len] = '\0';
	t->text = b;
	t->text_len = len;
	return t;
}

void pv_xml_detach(pv_xml *x)
{
	pv_xml *p = x->parent;
	if (!p)
		return;
	pv_xml *prev = NULL;
	for (pv_xml *c = p->first; c && c != x; c = c->next)
		prev = c;
	if (prev)
		prev->next = x->next;
	else
		p->first = x->next;
	if (p->last == x)
		p->last = prev;
	x->parent = NULL;
	x->next = NULL;
}

static void free_node(pv_xml *x)
{
	/* Iterative over siblings, recursive over depth: parsed trees are depth-limited. */
	pv_xml *c = x->first;
	while (c) {
		pv_xml *next = c->next;
		free_node(c);
		c = next;
	}
	for (size_t i = 0; i < 2 * x->nattrs; i++)
		release(x, x->attrs[i]);
	release(x, x->attrs);
	release(x, x->name);
	release(x, x->ns);
	release(x, x->text);
	if (!x->carved)
		pv_free(x);
}

void pv_xml_free(pv_xml *x)
{
	if (!x)
		return;
	pv_xml_detach(x);
	free_node(x);
}

pv_xml *pv_xml_add(pv_xml *parent, pv_xml *child)
{
	PV_ASSERT(parent && parent->name && child);
	if (child->parent)
		pv_xml_detach(child);
	child->parent = parent;
	child->next = NULL;
	if (parent->last)
		parent->last->next = child;
	else
		parent->first = child;
	parent->last = child;
	return child;
}

pv_xml *pv_xml_add_child(pv_xml *parent, const char *name, const char *ns)
{
	return pv_xml_add(parent, pv_xml_new(name, ns));
}

void pv_xml_add_text(pv_xml *parent, const char *text, size_t len)
{
	pv_xml_add_text_in(NULL, parent, text, len);
}

void pv_xml_add_text_in(pv_xml *host, pv_xml *parent, const char *text, size_t len)
{
	if (len == 0)
		return;
	pv_xml *last = parent->last;
	if (last && !last->name) {
		/* Merge with a preceding text node: adjacent character data is one text.
		 * Inline text cannot grow in place: it moves to a heap block. */
		char *t;
		if (pv_xml_holds(last, last->text) || in_pool(last->text)) {
			t = pv_malloc(last->text_len + len + 1);
			memcpy(t, last->text, last->text_len);
		} else {
			t = pv_realloc(last->text, last->text_len + len + 1);
		}
		memcpy(t + last->text_len, text, len);
		last->text = t;
		last->text_len += len;
		last->text[last->text_len] = '\0';
		return;
	}
	pv_xml_add(parent, text_new(host, text, len));
}

/* Bytes a node's room needs for x's attributes (names that are not interned, values). */
static size_t attrs_room(const pv_xml *x)
{
	size_t n = 0;
	for (size_t i = 0; i < x->nattrs; i++) {
		const char *name = x->attrs[2 * i];
		if (!in_pool(name))
			n += strlen(name) + 1;
		n += strlen(x->attrs[2 * i + 1]) + 1;
	}
	return n;
}

static pv_xml *dup_node(const pv_xml *x, size_t spare)
{
	if (!x->name)
		return text_new(NULL, x->text, x->text_len);
	/* One allocation for the node and its strings; a copied stanza gets a spare
	 * pair and room, since copies are made to be changed (pv_stanza_copy). */
	pv_xml *d = pv_xml_new_sized(x->name, strlen(x->name), x->ns, x->ns ? strlen(x->ns) : 0,
		x->nattrs + (spare ? 1 : 0), attrs_room(x) + spare);
	for (size_t i = 0; i < x->nattrs; i++) {
		const char *n = x->attrs[2 * i], *v = x->attrs[2 * i + 1];
		pv_xml_add_attr(d, n, strlen(n), v, strlen(v));
	}
	for (const pv_xml *c = x->first; c; c = c->next)
		pv_xml_add(d, dup_node(c, 0));
	return d;
}

pv_xml *pv_xml_dup(const pv_xml *x)
{
	return x ? dup_node(x, BUILT_ROOM) : NULL;
}

/* ---- attributes ----------------------------------------------------------------------- */

static ssize_t attr_index(const pv_xml *x, const char *name)
{
	for (size_t i = 0; i < x->nattrs; i++)
		if (strcmp(x->attrs[2 * i], name) == 0)
			return (ssize_t)i;
	return -1;
}

const char *pv_xml_attr(const pv_xml *x, const char *name)
{
	if (!x || !x->name)
		return NULL;
	ssize_t i = attr_index(x, name);
	return i < 0 ? NULL : x->attrs[2 * i + 1];
}

/* Room for one more attribute pair. */
static void attrs_reserve(pv_xml *x)
{
	if (x->nattrs < x->attr_cap)
		return;
	size_t cap = x->nattrs < 4 ? 8 : 2 * x->nattrs;
	char **a = pv_malloc(cap * 2 * sizeof(char *));
	if (x->nattrs)
		memcpy(a, x->attrs, x->nattrs * 2 * sizeof(char *));
	release(x, x->attrs);
	x->attrs = a;
	PV_ASSERT(cap <= UINT32_MAX);
	x->attr_cap = (uint32_t)cap;
}

void pv_xml_add_attr(pv_xml *x, const char *name, size_t name_len, const char *value,
	size_t value_len)
{
	PV_ASSERT(x && x->name && name && value);
	attrs_reserve(x);
	x->attrs[2 * x->nattrs] = place_name(x, name, name_len);
	x->attrs[2 * x->nattrs + 1] = place(x, value, value_len);
	x->nattrs++;
}

void pv_xml_set_attr(pv_xml *x, const char *name, const char *value)
{
	PV_ASSERT(x && x->name && name);
	ssize_t i = attr_index(x, name);
	if (i >= 0) {
		/* Only this attribute's strings change: pointers to other values that
		 * callers borrowed (pv_stanza keeps type/id) stay valid. */
		char *old = x->attrs[2 * i + 1];
		if (value) {
			x->attrs[2 * i + 1] = place(x, value, strlen(value));
			release(x, old);
			return;
		}
		release(x, old);
		release(x, x->attrs[2 * i]);
		memmove(&x->attrs[2 * i], &x->attrs[2 * i + 2],
			(x->nattrs - (size_t)i - 1) * 2 * sizeof(char *));
		x->nattrs--;
		return;
	}
	if (value)
		pv_xml_add_attr(x, name, strlen(name), value, strlen(value));
}

void pv_xml_set_ns(pv_xml *x, const char *ns)
{
	PV_ASSERT(x && x->name);
	char *old = x->ns;
	if (old == ns)
		return;
	x->ns = ns ? place_name(x, ns, strlen(ns)) : NULL;
	release(x, old);
}

/* ---- lookup ----------------------------------------------------------------------------- */

/* The namespace an element is really in: its own, or the nearest ancestor's when NULL. */
static const char *effective_ns(const pv_xml *x)
{
	for (; x; x = x->parent)
		if (x->name && x->ns)
			return x->ns;
	return NULL;
}

static bool ns_eq(const char *a, const char *b)
{
	/* NULL (nothing in scope) and "" (explicitly no namespace) mean the same here. */
	return strcmp(a ? a : "", b ? b : "") == 0;
}

int pv_xml_is(const pv_xml *x, const char *name, const char *ns)
{
	if (!x || !x->name || strcmp(x->name, name) != 0)
		return 0;
	return !ns || ns_eq(effective_ns(x), ns);
}

pv_xml *pv_xml_child(const pv_xml *x, const char *name, const char *ns)
{
	if (!x)
		return NULL;
	for (pv_xml *c = x->first; c; c = c->next)
		if (pv_xml_is(c, name, ns))
			return c;
	return NULL;
}

pv_xml *pv_xml_first_element(const pv_xml *x)
{
	if (!x)
		return NULL;
	for (pv_xml *c = x->first; c; c = c->next)
		if (c->name)
			return c;
	return NULL;
}

pv_xml *pv_xml_next_element(const pv_xml *x)
{
	if (!x)
		return NULL;
	for (pv_xml *c = x->next; c; c = c->next)
		if (c->name)
			return c;
	return NULL;
}

char *pv_xml_text(const pv_xml *x)
{
	pv_buf b;
	pv_buf_init(&b);
	if (x)
		for (const pv_xml *c = x->first; c; c = c->next)
			if (!c->name)
				pv_buf_append(&b, c->text, c->text_len);
	return pv_buf_take(&b);
}

char *pv_xml_child_text(const pv_xml *x, const char *name, const char *ns)
{
	pv_xml *c = pv_xml_child(x, name, ns);
	return c ? pv_xml_text(c) : NULL;
}

/* ---- serialising ---------------------------------------------------------------------- */

enum { ESC_TEXT, ESC_ATTR, ESC_ALL };

/* Append n bytes: the common case (the buffer was sized beforehand, pv_stanza_wire)
 * without a call; pv_buf_append grows it otherwise.  Same bytes, same NUL. */
static inline void put(pv_buf *out, const char *s, size_t n)
{
	if (out->cap - out->len > n) {
		memcpy(out->data + out->len, s, n);
		out->len += n;
		out->data[out->len] = '\0';
	} else {
		pv_buf_append(out, s, n);
	}
}

#define PUT_LIT(out, lit) put(out, lit, sizeof(lit) - 1)

/* Which bytes each mode escapes (bit 1 << mode), so the scan is one lookup per byte. */
static const unsigned char esc_mask[256] = {
	['&'] = 7, ['<'] = 7, ['>'] = 7, ['\r'] = 7,
	['"'] = 1 << ESC_ATTR | 1 << ESC_ALL, ['\''] = 1 << ESC_ATTR | 1 << ESC_ALL,
	['\n'] = 1 << ESC_ATTR, ['\t'] = 1 << ESC_ATTR,
};

/* The first byte at or after i that some mode escapes (or a control byte below CR, which
 * the table then lets through), else n.  Sixteen bytes a step where SSE2 is there: the
 * byte-by-byte scan was about 1,470 instructions of a routed message's 30,500, nearly
 * all of them skipping bytes that need nothing (chat_ir.sh, issue 5). */
static size_t next_special(const char *s, size_t i, size_t n)
{
#ifdef __SSE2__
	const __m128i ctl = _mm_set1_epi8(0x0d), fe = _mm_set1_epi8((char)0xfe),
		      fd = _mm_set1_epi8((char)0xfd), amp = _mm_set1_epi8('&'),
		      quot = _mm_set1_epi8('"'), lt = _mm_set1_epi8('<');
	for (; n - i >= 16; i += 16) {
		__m128i v = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
		/* <= CR (tab, LF, CR), & or ' (0x26, 0x27), ", < or > (0x3c, 0x3e) */
		__m128i m = _mm_cmpeq_epi8(_mm_min_epu8(v, ctl), v);
		m = _mm_or_si128(m, _mm_cmpeq_epi8(_mm_and_si128(v, fe), amp));
		m = _mm_or_si128(m, _mm_cmpeq_epi8(v, quot));
		m = _mm_or_si128(m, _mm_cmpeq_epi8(_mm_and_si128(v, fd), lt));
		unsigned bits = (unsigned)_mm_movemask_epi8(m);
		if (bits)
			return i + (size_t)__builtin_ctz(bits);
	}
#endif
	for (; i < n; i++)
		if (esc_mask[(unsigned char)s[i]])
			return i;
	return n;
}

static void escape(const char *s, size_t n, int mode, pv_buf *out)
{
	const unsigned char bit = (unsigned char)(1u << mode);
	size_t run = 0; /* start of the pending run of bytes that need no escaping */
	for (size_t i = next_special(s, 0, n); i < n; i = next_special(s, i + 1, n)) {
		if (!(esc_mask[(unsigned char)s[i]] & bit))
			continue;
		const char *rep = NULL;
		switch (s[i]) {
		case '&': rep = "&amp;"; break;
		case '<': rep = "&lt;"; break;
		case '>': rep = "&gt;"; break;
		case '"': rep = "&quot;"; break;
		case '\'': rep = "&apos;"; break;
		case '\r': rep = "&#13;"; break;
		case '\n': rep = "&#10;"; break;
		default: rep = "&#9;"; break; /* '\t' */
		}
		put(out, s + run, i - run);
		put(out, rep, strlen(rep));
		run = i + 1;
	}
	put(out, s + run, n - run);
}

void pv_xml_escape(const char *s, size_t n, pv_buf *out)
{
	escape(s, n, ESC_ALL, out);
}

static void put_attr(pv_buf *out, const char *name, const char *value)
{
	PUT_LIT(out, " ");
	put(out, name, strlen(name));
	PUT_LIT(out, "='");
	escape(value, strlen(value), ESC_ATTR, out);
	PUT_LIT(out, "'");
}

/* The content-namespace swap of pv_xml_serialize_as; from NULL means none. */
typedef struct {
	const char *from, *to;
} ns_map;

#define NS_XML "http://www.w3.org/XML/1998/namespace"

/* scope: the default namespace in effect in the output; inherit: the namespace an
 * element with ns NULL is in (its parent's).  They differ only below an xml:-prefixed
 * element, which leaves the default namespace alone. */
static void serialize(const pv_xml *x, const char *scope, const char *inherit,
	const ns_map *map, pv_buf *out)
{
	if (!x->name) {
		escape(x->text, x->text_len, ESC_TEXT, out);
		return;
	}
	const char *ns = x->ns ? x->ns : inherit;
	if (x->ns && map->from && strcmp(x->ns, map->from) == 0)
		ns = map->to;
	bool xml_prefix = ns && strcmp(ns, NS_XML) == 0;
	size_t name_len = strlen(x->name);
	if (xml_prefix)
		PUT_LIT(out, "<xml:");
	else
		PUT_LIT(out, "<");
	put(out, x->name, name_len);
	if (!xml_prefix && ns != scope && !ns_eq(ns, scope))
		put_attr(out, "xmlns", ns ? ns : "");
	unsigned nprefix = 0;
	for (size_t i = 0; i < x->nattrs; i++) {
		const char *name = x->attrs[2 * i], *value = x->attrs[2 * i + 1];
		/* Namespace declarations come from ns fields only; a stray xmlns attribute
		 * would duplicate or contradict the one written above. */
		if (name[0] == 'x' && (strcmp(name, "xmlns") == 0 || strncmp(name, "xmlns:", 6) == 0))
			continue;
		/* The last '}': a URI may contain '}', an XML name may not. */
		const char *close = name[0] == '{' ? strrchr(name, '}') : NULL;
		if (!close) {
			put_attr(out, name, value);
			continue;
		}
		/* Clark-notation attribute: bind a fresh prefix on this element.  The output
		 * uses no other prefixes (besides xml:), so "nsN" cannot clash. */
		pv_buf_printf(out, " xmlns:ns%u='", nprefix);
		escape(name + 1, (size_t)(close - name - 1), ESC_ATTR, out);
		pv_buf_printf(out, "' ns%u:%s='", nprefix, close + 1);
		escape(value, strlen(value), ESC_ATTR, out);
		PUT_LIT(out, "'");
		nprefix++;
	}
	if (!x->first) {
		PUT_LIT(out, "/>");
		return;
	}
	PUT_LIT(out, ">");
	for (const pv_xml *c = x->first; c; c = c->next)
		serialize(c, xml_prefix ? scope : ns, ns, map, out);
	if (xml_prefix)
		PUT_LIT(out, "</xml:");
	else
		PUT_LIT(out, "</");
	put(out, x->name, name_len);
	PUT_LIT(out, ">");
}

void pv_xml_serialize(const pv_xml *x, const char *parent_ns, pv_buf *out)
{
	static const ns_map none = { NULL, NULL };
	if (x)
		serialize(x, parent_ns, parent_ns, &none, out);
}

void pv_xml_serialize_as(const pv_xml *x, const char *parent_ns, const char *from_ns,
	const char *to_ns, pv_buf *out)
{
	ns_map map = { from_ns, to_ns };
	if (x)
		serialize(x, parent_ns, parent_ns, &map, out);
}
