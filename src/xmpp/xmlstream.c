/* xmlstream.c -- the XMPP stream parser: bytes in, stream header / stanza trees / close out.
 *
 * Built on expat in namespace mode: every name arrives as "uri<SEP>local", so the trees we
 * build carry namespace URIs and never prefixes (see pv_xml.h).  RFC 6120 section 11.1
 * restricts the XML that may appear in a stream; we refuse each forbidden construct as
 * soon as expat reports it: DOCTYPE (and with it any internal subset, hence any entity
 * declaration), entity declarations, comments, processing instructions (the XML
 * declaration is not one and stays allowed) and any entity reference that is not one of
 * the five predefined ones (without a DTD expat reports those as undefined).  Character
 * references are ordinary XML and are decoded.  The encoding is forced to UTF-8 (RFC 6120
 * 11.6), which makes expat reject malformed UTF-8 (overlong forms, surrogates, stray
 * continuation bytes, 0xFE/0xFF) as not-well-formed.
 *
 * Limits (policy-violation when exceeded): max_stanza bounds the bytes of one depth-1
 * element, counted from its '<' -- checked on every event inside a stanza and after every
 * chunk given to expat, so a stanza that never closes, an endless start tag and endless
 * non-whitespace text between stanzas are all cut off after about max_stanza bytes.
 * max_depth bounds nesting below the stream root (a stanza is depth 1).
 *
 * Idle streams (pv_xmlstream_release): an expat parser with its buffers and name tables
 * is ~7 KiB, a quarter of an idle TLS session (bench/NOTES.md).  Between stanzas a stream
 * has no state but the stream header's namespace declarations, so an idle stream frees
 * its parser and the next feed builds a new one, primed with a copy of the header that
 * declares the same prefixes (its events are not reported again).  A stream with one of
 * the common headers goes further: between reads it uses a parser the thread shares
 * among such streams (see "shared parsers" below).
 *
 * Trees are built with one allocation per element (pv_xml_new_sized: names and
 * namespaces interned or copied from expat's bytes, attribute strings inline), and a
 * stanza's root keeps room for the `from` the server adds (issue 5, CPU per message).
 * A <message> root also hosts the nodes under it (pv_xml_host, "carving" in xml.c):
 * CARVE_ROOM bytes of its allocation hold the body, its text and the usual small
 * extensions, then the pv_stanza record and JIDs that stanza.c carves, so a chat
 * message is one allocation instead of six or more.  Presence stanzas are not hosts: a
 * session keeps its last one for as long as it is online, and unused carving room would
 * be idle memory.
 *
 * Threading/ownership: one stream per session, used by its owning thread only.  Callbacks
 * run inside pv_xmlstream_feed(); they may call pv_xmlstream_stop() but must not call
 * pv_xmlstream_feed/reset/free on the same stream (reset after feed has returned: the c2s
 * does element callback -> stop -> feed returns -> reset). */
#include "peyvand/pv_xml.h"
#include "peyvand/pv_stanza.h"

#include <expat.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* Joins namespace URI and local name.  A control character cannot occur in XML 1.0
 * names or (even as a character reference) in attribute values, and expat refuses a
 * namespace URI containing the separator, so the split below is unambiguous. */
#define SEP '\x01'
#define NS_XML "http://www.w3.org/XML/1998/namespace"
/* Bytes handed to expat per XML_Parse call: bounds what expat buffers for one unfinished
 * token before the size limit is checked again. */
#define CHUNK 16384

/* ---- the parser's memory ------------------------------------------------------------
 * Freeing an idle stream's parser only helps if the memory goes back to the kernel, and
 * glibc cannot return ~7 KiB of small blocks that were allocated between other
 * sessions' blocks (measured: RSS did not move).  So each parser allocates from one
 * region of its own, mapped when the parser is made and unmapped when it is freed.
 * Bump allocation: expat's steady state reuses what it allocated, so freeing inside the
 * region is a no-op; what does not fit (a stanza larger than the region, growth) comes
 * from malloc as usual.  expat's memory suite has no context pointer, so the region of
 * the parser being called is passed in t_arena around every expat call that can
 * allocate or free (one loop per thread, no interleaving). */
/* Stanzas a stream reports on a parser of its own before it moves to the shared one
 * (see "shared parsers"): the streams of a login's negotiation end after a few, and
 * each such end would throw the shared parser away. */
#define HOT_AFTER 4
#define ARENA_SIZE 16384
#define ARENA_HDR 16

typedef struct arena {
	char *base;  /* mmap'ed, ARENA_SIZE bytes; NULL when mapping failed (malloc only) */
	size_t used;
} arena;

static _Thread_local arena *t_arena;

static bool arena_has(const arena *a, const void *p)
{
	return a && a->base && (const char *)p >= a->base && (const char *)p < a->base + ARENA_SIZE;
}

static void *xa_malloc(size_t n)
{
	arena *a = t_arena;
	size_t need = ARENA_HDR + ((n + 15) & ~(size_t)15);
	if (a && a->base && n < ARENA_SIZE && a->used + need <= ARENA_SIZE) {
		char *p = a->base + a->used;
		memcpy(p, &n, sizeof(n));
		a->used += need;
		return p + ARENA_HDR;
	}
	return malloc(n);
}

static void xa_free(void *p)
{
	if (p && !arena_has(t_arena, p))
		free(p);
}

static void *xa_realloc(void *p, size_t n)
{
	if (!p)
		return xa_malloc(n);
	if (!arena_has(t_arena, p))
		return realloc(p, n);
	size_t old;
	memcpy(&old, (char *)p - ARENA_HDR, sizeof(old));
	if (n <= old)
		return p;
	void *q = xa_malloc(n);
	if (q)
		memcpy(q, p, old);
	return q;
}

static const XML_Memory_Handling_Suite xa_suite = { xa_malloc, xa_realloc, xa_free };

#if defined(__SANITIZE_ADDRESS__)
#define ARENA_OFF 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ARENA_OFF 1
#endif
#endif

/* Regions given back wait here for the next parser instead of going back to the
 * kernel at once.  Every login makes three parsers (stream, after STARTTLS, after SASL)
 * and every connection ends one, so mapping and unmapping each was 3 mmap, 3 munmap and
 * up to 12 page faults per login, 7 % of a login's CPU (perf, bench/NOTES.md).  A
 * bounded pool keeps that to none in steady state while idle streams still hand all but
 * POOL_MAX regions (512 KiB) back to the kernel. */
#define POOL_MAX 32
static _Thread_local char *t_pool[POOL_MAX];
static _Thread_local unsigned t_pooled;

static void arena_map(arena *a)
{
	a->used = 0;
#ifdef ARENA_OFF
	/* Under AddressSanitizer expat's blocks come from malloc, where the sanitizer sees
	 * every overflow and leak; the release unit tests run the region. */
	a->base = NULL;
	return;
#endif
	if (t_pooled) {
		a->base = t_pool[--t_pooled];
		return;
	}
	void *m = mmap(NULL, ARENA_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	a->base = m == MAP_FAILED ? NULL : m;
}

static void arena_unmap(arena *a)
{
	if (a->base) {
		if (t_pooled < POOL_MAX)
			t_pool[t_pooled++] = a->base;
		else
			munmap(a->base, ARENA_SIZE);
	}
	a->base = NULL;
	a->used = 0;
}

struct pv_xmlstream {
	XML_Parser p;
	arena mem;          /* p's memory (see above) */
	pv_xmlstream_cb cb;
	void *ud;
	pv_xmlstream_limits lim;
	unsigned level;     /* open elements, counting the stream root */
	pv_xml *stanza;     /* depth-1 element being built, NULL between stanzas */
	pv_xml *cur;        /* innermost open element of `stanza` */
	pv_buf text;        /* character data not yet attached to cur (merged runs) */
	char *default_ns;   /* xmlns of the stream header (owned, or one of common[]) */
	uint64_t fed;       /* bytes given to the current parser */
	uint64_t mark;      /* where the current unit began: stanza '<' or end of last one */
	bool junk;          /* non-whitespace text seen since mark (mark must not move) */
	unsigned char head[2]; /* the first bytes fed, for the encoding check */
	bool in_feed, stopped;
	/* the stream header as needed to rebuild a released parser: its qname and its
	 * namespace declarations (" xmlns='…'" / " xmlns:p='…'"); root_ok false when it
	 * cannot be rebuilt unambiguously (the stream is then never released) */
	char *root_qname;   /* owned, or one of common[] once released */
	pv_buf root_decls;
	const char *decls_common; /* root_decls as one of common[] once released */
	bool root_ok;
	bool priming;       /* feeding the rebuilt header: report nothing */
	unsigned char stanzas; /* reported on this stream, counted up to HOT_AFTER */
	pv_xs_error err;
	char *errtext;      /* detail of err, allocated on the first error (idle streams
	                     * are many and have none) */
};

/* ---- header strings ------------------------------------------------------------------
 * Every client stream's header says the same few things; an idle stream points to these
 * instead of keeping its own copies (~170 bytes of each idle session, massif). */
static const char *const common[] = {
	"stream:stream",
	"jabber:client",
	"jabber:server",
	" xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'",
	" xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:client'",
	" xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'",
	" xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:server'",
};

static const char *common_of(const char *s)
{
	for (size_t i = 0; s && i < PV_ARRAY_LEN(common); i++)
		if (strcmp(s, common[i]) == 0)
			return common[i];
	return NULL;
}

static bool is_common(const char *s)
{
	for (size_t i = 0; i < PV_ARRAY_LEN(common); i++)
		if (s == common[i])
			return true;
	return false;
}

static void str_free(char *s)
{
	if (!is_common(s))
		pv_free(s);
}

/* s itself, or (s freed) the common string equal to it. */
static char *str_share(char *s)
{
	const char *c = common_of(s);
	if (!c || c == s)
		return s;
	pv_free(s);
	return (char *)c; /* never written to or freed (str_free) */
}

#define ERRTEXT_MAX 200

static void fail(pv_xmlstream *xs, pv_xs_error err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void fail(pv_xmlstream *xs, pv_xs_error err, const char *fmt, ...)
{
	if (xs->err)
		return;
	xs->err = err;
	va_list ap;
	va_start(ap, fmt);
	if (!xs->errtext)
		xs->errtext = pv_malloc(ERRTEXT_MAX);
	vsnprintf(xs->errtext, ERRTEXT_MAX, fmt, ap);
	va_end(ap);
	if (xs->in_feed)
		XML_StopParser(xs->p, XML_FALSE);
}

/* End offset of the event being reported, in bytes since the parser was created. */
static uint64_t event_end(pv_xmlstream *xs)
{
	XML_Index i = XML_GetCurrentByteIndex(xs->p);
	int n = XML_GetCurrentByteCount(xs->p);
	return (uint64_t)(i < 0 ? 0 : i) + (uint64_t)(n < 0 ? 0 : n);
}

static bool check_size(pv_xmlstream *xs)
{
	uint64_t end = event_end(xs);
	if (end > xs->mark && end - xs->mark > xs->lim.max_stanza) {
		fail(xs, PV_XS_ERR_SIZE, "stanza exceeds %zu bytes", xs->lim.max_stanza);
		return false;
	}
	return true;
}

/* Bytes a stanza's root keeps for attributes set after parsing: the `from` the server
 * stamps on every client stanza (pv_stanza_set_from), so that costs no allocation. */
#define STAMP_ROOM 64
/* A <message>'s room for the nodes under it and for its pv_stanza record and addresses
 * (stanza.c): a body of ~100 bytes with its text node (measured: 104 + 165 bytes for an
 * element and a 64-byte text), the record (144) and two JIDs (~60 each), or in place
 * of the record and JIDs a receipt request, a chat state and an origin-id.  What does
 * not fit is allocated as before.  With it a chat message's root stays under 1 KiB,
 * the largest size glibc's per-thread cache serves. */
#define CARVE_ROOM 704

/* Append one attribute as pv_xml.h names it: plain, "xml:lang", or "{uri}local". */
static void add_attr(pv_xml *x, const char *qname, const char *value)
{
	size_t vlen = strlen(value);
	const char *sep = strchr(qname, SEP);
	if (!sep) {
		pv_xml_add_attr(x, qname, strlen(qname), value, vlen);
		return;
	}
	size_t ulen = (size_t)(sep - qname), llen = strlen(sep + 1);
	bool xml = ulen == strlen(NS_XML) && memcmp(qname, NS_XML, ulen) == 0;
	size_t nlen = xml ? 4 + llen : ulen + 2 + llen;
	char buf[256];
	char *name = nlen < sizeof(buf) ? buf : pv_malloc(nlen + 1);
	if (xml) {
		memcpy(name, "xml:", 4);
		memcpy(name + 4, sep + 1, llen);
	} else {
		name[0] = '{';
		memcpy(name + 1, qname, ulen);
		name[ulen + 1] = '}';
		memcpy(name + ulen + 2, sep + 1, llen);
	}
	name[nlen] = '\0';
	pv_xml_add_attr(x, name, nlen, value, vlen);
	if (name != buf)
		pv_free(name);
}

/* One element from expat's "uri<SEP>local" name and attributes, in one allocation: the
 * namespace is looked up (or copied) from expat's bytes, never split into a string of
 * its own.  Unqualified names get ns "" (no namespace).  spare: extra bytes for
 * attributes set later (a stanza's root), which also get one more attribute pair. */
static pv_xml *make_element(const char *qname, const char **atts, size_t spare, pv_xml *host)
{
	const char *sep = strchr(qname, SEP);
	const char *local = sep ? sep + 1 : qname;
	size_t n = 0, room = spare;
	for (; atts[2 * n]; n++) /* a "{uri}local" name is one byte longer than expat's */
		room += strlen(atts[2 * n]) + 2 + strlen(atts[2 * n + 1]) + 1;
	pv_xml *x = pv_xml_new_in(host, local, strlen(local), sep ? qname : "",
		sep ? (size_t)(sep - qname) : 0, n + (spare ? 1 : 0), room);
	/* Appended directly: expat already rejected duplicates, so set_attr's search
	 * (quadratic in the attribute count) is not needed. */
	for (size_t i = 0; i < n; i++)
		add_attr(x, atts[2 * i], atts[2 * i + 1]);
	return x;
}

static void flush_text(pv_xmlstream *xs)
{
	if (xs->text.len && xs->cur)
		pv_xml_add_text_in(xs->stanza, xs->cur, xs->text.data, xs->text.len);
	pv_buf_reset(&xs->text);
}

/* ---- expat handlers ---------------------------------------------------------------- */

static void XMLCALL on_start(void *ud, const XML_Char *name, const XML_Char **atts)
{
	pv_xmlstream *xs = ud;
	if (xs->err || xs->stopped)
		return;
	if (xs->level == 0) {
		const char *sep = strchr(name, SEP);
		bool ok = sep && (size_t)(sep - name) == strlen(PV_NS_STREAM) &&
			  memcmp(name, PV_NS_STREAM, strlen(PV_NS_STREAM)) == 0 &&
			  strcmp(sep + 1, "stream") == 0;
		if (!ok) {
			fail(xs, PV_XS_ERR_NAMESPACE, "stream header is not <stream> in %s", PV_NS_STREAM);
			return;
		}
		if (!check_size(xs))
			return;
		xs->level = 1;
		xs->mark = event_end(xs);
		if (xs->priming)
			return;
		pv_xml *hdr = make_element(name, atts, 0, NULL);
		if (xs->cb.open)
			xs->cb.open(xs->ud, hdr, xs->default_ns);
		pv_xml_free(hdr);
		return;
	}
	/* The new element sits at depth `level` below the root. */
	if (xs->level > xs->lim.max_depth) {
		fail(xs, PV_XS_ERR_DEPTH, "elements nested deeper than %u", xs->lim.max_depth);
		return;
	}
	if (xs->level == 1) {
		XML_Index i = XML_GetCurrentByteIndex(xs->p);
		xs->mark = (uint64_t)(i < 0 ? 0 : i);
		xs->junk = false;
		if (!check_size(xs))
			return;
		const char *sep = strchr(name, SEP);
		bool message = strcmp(sep ? sep + 1 : name, "message") == 0;
		xs->stanza = xs->cur =
			make_element(name, atts, STAMP_ROOM + (message ? CARVE_ROOM : 0), NULL);
		if (message)
			pv_xml_host(xs->stanza, STAMP_ROOM);
	} else {
		if (!check_size(xs))
			return;
		flush_text(xs);
		xs->cur = pv_xml_add(xs->cur, make_element(name, atts, 0, xs->stanza));
	}
	xs->level++;
}

static void XMLCALL on_end(void *ud, const XML_Char *name)
{
	pv_xmlstream *xs = ud;
	if (xs->err || xs->stopped)
		return;
	if (xs->level == 1) {
		xs->level = 0;
		xs->mark = event_end(xs);
		if (xs->priming)
			return;
		if (xs->cb.close)
			xs->cb.close(xs->ud);
		return;
	}
	if (!check_size(xs))
		return;
	flush_text(xs);
	xs->level--;
	if (xs->level > 1) {
		xs->cur = xs->cur->parent;
		return;
	}
	pv_xml *el = xs->stanza;
	xs->stanza = xs->cur = NULL;
	xs->mark = event_end(xs);
	if (xs->stanzas < HOT_AFTER)
		xs->stanzas++;
	xs->junk = false;
	if (xs->cb.element)
		xs->cb.element(xs->ud, el);
	else
		pv_xml_free(el);
}

static bool all_space(const char *s, int len)
{
	for (int i = 0; i < len; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r')
			return false;
	return true;
}

static void XMLCALL on_text(void *ud, const XML_Char *s, int len)
{
	pv_xmlstream *xs = ud;
	if (xs->err || xs->stopped || len <= 0)
		return;
	if (xs->level == 1) {
		/* Between stanzas: whitespace is a keepalive and is dropped.  Other text has
		 * no meaning in XMPP either; it is dropped too, but counted against the size
		 * limit (mark stays put) so it cannot go on forever. */
		if (!xs->junk && all_space(s, len)) {
			xs->mark = event_end(xs);
			return;
		}
		xs->junk = true;
		check_size(xs);
		return;
	}
	if (xs->level < 2 || !check_size(xs))
		return;
	pv_buf_append(&xs->text, s, (size_t)len);
}

/* A CDATA section between stanzas is text there, like any other (on_text), except that
 * even its whitespace must not move the mark: a parser resumed from inside the section
 * would read its "]]>" as not-well-formed (the xmlstream fuzzer found a stream that
 * failed or passed by where its reads ended).  It counts as junk until the next stanza,
 * so the mark stays before it and the stream is not at rest. */
static void XMLCALL on_cdata_start(void *ud)
{
	pv_xmlstream *xs = ud;
	if (!xs->err && !xs->stopped && xs->level == 1)
		xs->junk = true;
}

static void XMLCALL on_ns_start(void *ud, const XML_Char *prefix, const XML_Char *uri)
{
	pv_xmlstream *xs = ud;
	/* Declarations are reported before the start tag that carries them, so at level 0
	 * this is the stream header's own default namespace. */
	if (xs->level != 0 || xs->priming)
		return;
	if (!prefix) {
		str_free(xs->default_ns);
		xs->default_ns = pv_strdup(uri);
	}
	/* Remember the declaration for a rebuild; the root is <stream> in the streams
	 * namespace, so the declaration of that namespace names the root's prefix. */
	if (!uri)
		uri = ""; /* xmlns='' */
	if (strcmp(uri, PV_NS_STREAM) == 0) {
		if (xs->root_qname)
			xs->root_ok = false; /* two candidates: do not guess */
		else
			xs->root_qname = prefix ? pv_sprintf("%s:stream", prefix) : pv_strdup("stream");
	}
	pv_buf_append(&xs->root_decls, prefix ? " xmlns:" : " xmlns", prefix ? 7 : 6);
	if (prefix)
		pv_buf_append(&xs->root_decls, prefix, strlen(prefix));
	pv_buf_append(&xs->root_decls, "='", 2);
	for (const char *c = uri; *c; c++) {
		/* a namespace name is a URI reference, but escape what XML needs anyway */
		const char *e = *c == '\'' ? "&apos;" : *c == '&' ? "&amp;" : *c == '<' ? "&lt;" : NULL;
		if (e)
			pv_buf_append(&xs->root_decls, e, strlen(e));
		else
			pv_buf_append(&xs->root_decls, c, 1);
	}
	pv_buf_append(&xs->root_decls, "'", 1);
}

static void XMLCALL on_doctype(void *ud, const XML_Char *name, const XML_Char *sysid,
	const XML_Char *pubid, int has_internal_subset)
{
	fail(ud, PV_XS_ERR_RESTRICTED, "restricted XML: DOCTYPE");
}

static void XMLCALL on_entity_decl(void *ud, const XML_Char *name, int is_param,
	const XML_Char *value, int value_len, const XML_Char *base, const XML_Char *sysid,
	const XML_Char *pubid, const XML_Char *notation)
{
	fail(ud, PV_XS_ERR_RESTRICTED, "restricted XML: entity declaration");
}

static void XMLCALL on_skipped_entity(void *ud, const XML_Char *name, int is_param)
{
	fail(ud, PV_XS_ERR_RESTRICTED, "restricted XML: entity reference");
}

static void XMLCALL on_comment(void *ud, const XML_Char *data)
{
	fail(ud, PV_XS_ERR_RESTRICTED, "restricted XML: comment");
}

static void XMLCALL on_pi(void *ud, const XML_Char *target, const XML_Char *data)
{
	fail(ud, PV_XS_ERR_RESTRICTED, "restricted XML: processing instruction");
}

static void XMLCALL on_default(void *ud, const XML_Char *s, int len)
{
	/* Installed so expat never expands internal entities into content; what reaches
	 * it here (XML declaration, whitespace outside the root) is harmless. */
}

/* ---- parser lifecycle ------------------------------------------------------------------ */

/* The salt of expat's name hash tables (hash flooding), drawn once per thread.  Left
 * to itself, expat asks getrandom(2) for one in every parser's first parse: three
 * system calls per login (strace).  Secret per thread is what the salt needs; 0 would
 * make expat draw its own again, which is harmless. */
static _Thread_local unsigned long t_salt;
static _Thread_local bool t_salted;

/* An expat parser with our handlers, allocating from mem (already mapped). */
static XML_Parser expat_new(arena *mem)
{
	static const XML_Char sep[] = { SEP, 0 };
	arena *saved = t_arena;
	t_arena = mem;
	XML_Parser p = XML_ParserCreate_MM("UTF-8", &xa_suite, sep);
	t_arena = saved;
	PV_ASSERT(p != NULL); /* fails only on OOM */
	if (!t_salted) {
		pv_random(&t_salt, sizeof t_salt);
		t_salted = true;
	}
	XML_SetHashSalt(p, t_salt);
	XML_SetElementHandler(p, on_start, on_end);
	XML_SetCharacterDataHandler(p, on_text);
	XML_SetStartNamespaceDeclHandler(p, on_ns_start);
	XML_SetStartDoctypeDeclHandler(p, on_doctype);
	XML_SetEntityDeclHandler(p, on_entity_decl);
	XML_SetSkippedEntityHandler(p, on_skipped_entity);
	XML_SetCommentHandler(p, on_comment);
	XML_SetCdataSectionHandler(p, on_cdata_start, NULL);
	XML_SetProcessingInstructionHandler(p, on_pi);
	XML_SetDefaultHandler(p, on_default);
	XML_SetParamEntityParsing(p, XML_PARAM_ENTITY_PARSING_NEVER);
	return p;
}

static void expat_free(XML_Parser p, arena *mem)
{
	arena *saved = t_arena;
	t_arena = mem;
	XML_ParserFree(p);
	t_arena = saved;
}

static void parser_free(pv_xmlstream *xs)
{
	expat_free(xs->p, &xs->mem);
	xs->p = NULL;
	arena_unmap(&xs->mem);
}

static void parser_create(pv_xmlstream *xs)
{
	arena_map(&xs->mem);
	xs->p = expat_new(&xs->mem);
	XML_SetUserData(xs->p, xs);
}

static void parser_init(pv_xmlstream *xs)
{
	parser_create(xs);
	str_free(xs->root_qname);
	xs->root_qname = NULL;
	pv_buf_reset(&xs->root_decls);
	xs->decls_common = NULL;
	xs->root_ok = true;
	xs->priming = false;
	xs->stanzas = 0;
	xs->level = 0;
	xs->stanza = xs->cur = NULL;
	pv_buf_reset(&xs->text);
	str_free(xs->default_ns);
	xs->default_ns = NULL;
	xs->fed = xs->mark = 0;
	xs->junk = false;
	xs->in_feed = xs->stopped = false;
	xs->err = PV_XS_OK;
	pv_free(xs->errtext);
	xs->errtext = NULL;
}

static void parser_fini(pv_xmlstream *xs)
{
	if (xs->p)
		parser_free(xs);
	pv_xml_free(xs->stanza); /* a partial stanza is never delivered */
	xs->stanza = xs->cur = NULL;
}

pv_xmlstream *pv_xmlstream_new(const pv_xmlstream_cb *cb, void *ud, const pv_xmlstream_limits *lim)
{
	pv_xmlstream *xs = pv_calloc(1, sizeof(*xs));
	if (cb)
		xs->cb = *cb;
	xs->ud = ud;
	xs->lim.max_stanza = lim && lim->max_stanza ? lim->max_stanza : 262144;
	xs->lim.max_depth = lim && lim->max_depth ? lim->max_depth : 32;
	pv_buf_init(&xs->text);
	pv_buf_init(&xs->root_decls);
	parser_init(xs);
	return xs;
}

void pv_xmlstream_free(pv_xmlstream *xs)
{
	if (!xs)
		return;
	PV_ASSERT(!xs->in_feed);
	parser_fini(xs);
	pv_buf_fini(&xs->text);
	pv_buf_fini(&xs->root_decls);
	str_free(xs->root_qname);
	str_free(xs->default_ns);
	pv_free(xs->errtext);
	pv_free(xs);
}

void pv_xmlstream_reset(pv_xmlstream *xs)
{
	/* Freeing the expat parser from inside one of its own handlers would be a
	 * use-after-free; callers stop() there and reset after feed returns. */
	PV_ASSERT(!xs->in_feed);
	parser_fini(xs);
	parser_init(xs);
}

void pv_xmlstream_stop(pv_xmlstream *xs)
{
	xs->stopped = true;
	if (xs->in_feed)
		XML_StopParser(xs->p, XML_FALSE); /* not resumable: the rest is never parsed */
}

/* Even with the encoding forced to UTF-8, expat switches to UTF-16 when the first two
 * bytes are a UTF-16 byte order mark or contain a NUL (its XML 1.0 appendix F sniffing).
 * RFC 6120 11.6 allows UTF-8 only, and NUL is never legal in UTF-8 XML, so refuse those
 * starts before expat sees the second byte (it postpones the decision on a lone first
 * byte of 0x00, 0xFE or 0xFF, so there is always a chance to look at both). */
static bool sniff_ok(pv_xmlstream *xs, const char *data, size_t n)
{
	unsigned char b[2];
	size_t have = 0;
	for (; have < xs->fed && have < 2; have++)
		b[have] = xs->head[have];
	for (size_t i = 0; have < 2 && i < n; i++, have++)
		b[have] = xs->head[have] = (unsigned char)data[i];
	bool bad = (have >= 1 && b[0] == 0) ||
		   (have == 2 && (b[1] == 0 || (b[0] == 0xFE && b[1] == 0xFF) ||
				  (b[0] == 0xFF && b[1] == 0xFE)));
	if (bad)
		fail(xs, PV_XS_ERR_XML, "not-well-formed: stream is not UTF-8");
	return !bad;
}

bool pv_xmlstream_release(pv_xmlstream *xs)
{
	if (!xs->p && !xs->in_feed && !xs->err)
		return true; /* released already (or on the shared parser, see hot_feed) */
	/* Only between stanzas with nothing held: every byte fed was reported (mark is
	 * the end of the last event), no text, no error. */
	if (!xs->p || xs->in_feed || xs->err || xs->stopped || xs->level != 1 || xs->stanza ||
	    xs->junk || xs->text.len || !xs->root_ok || !xs->root_qname || xs->fed != xs->mark)
		return false;
	parser_free(xs);
	pv_buf_fini(&xs->text); /* its capacity is kept otherwise (256 bytes, massif) */
	xs->root_qname = str_share(xs->root_qname);
	xs->default_ns = str_share(xs->default_ns);
	if (!xs->decls_common && (xs->decls_common = common_of(xs->root_decls.data)))
		pv_buf_fini(&xs->root_decls);
	return true;
}

/* Parses s on xs->p (allocating from mem) reporting nothing; whether that went well. */
static bool quiet_parse(pv_xmlstream *xs, arena *mem, const char *s, size_t n)
{
	xs->priming = true;
	xs->in_feed = true;
	arena *saved = t_arena;
	t_arena = mem;
	enum XML_Status st = XML_Parse(xs->p, s, (int)n, XML_FALSE);
	t_arena = saved;
	xs->in_feed = false;
	xs->priming = false;
	return st == XML_STATUS_OK && !xs->err;
}

/* Feeds xs's parser (xs->p, allocating from mem) the stream header as a released stream
 * recorded it, reporting nothing: afterwards the parser is inside the root, as the
 * stream's own parser was between stanzas.  Returns the header's length. */
static size_t prime(pv_xmlstream *xs, arena *mem)
{
	pv_buf hdr;
	pv_buf_init(&hdr);
	pv_buf_append(&hdr, "<", 1);
	pv_buf_append(&hdr, xs->root_qname, strlen(xs->root_qname));
	if (xs->decls_common)
		pv_buf_append(&hdr, xs->decls_common, strlen(xs->decls_common));
	else
		pv_buf_append(&hdr, xs->root_decls.data, xs->root_decls.len);
	pv_buf_append(&hdr, ">", 1);
	xs->level = 0;
	xs->mark = 0; /* the header's own size, not the stream's old offsets, is checked */
	/* It parsed once as the client's header; it cannot fail now. */
	bool ok = quiet_parse(xs, mem, hdr.data, hdr.len);
	PV_ASSERT(ok && xs->level == 1);
	size_t n = hdr.len;
	pv_buf_fini(&hdr);
	return n;
}

/* A new parser in the state the released one was in: inside the stream header. */
static void rebuild(pv_xmlstream *xs)
{
	parser_create(xs);
	xs->fed = xs->mark = prime(xs, &xs->mem);
}

/* Takes a rebuilt parser past the root's end tag, reporting nothing. */
static void close_root(pv_xmlstream *xs)
{
	char *tag = pv_sprintf("</%s>", xs->root_qname);
	size_t n = strlen(tag);
	bool ok = quiet_parse(xs, &xs->mem, tag, n);
	PV_ASSERT(ok && xs->level == 0);
	xs->fed += n;
	xs->mark = xs->fed;
	pv_free(tag);
}

/* ---- shared parsers -------------------------------------------------------------------
 * A released stream whose header is one of the common ones has no state an expat parser
 * would need but that header.  So its input goes to a parser the thread keeps for that
 * header (one per common[] declaration string), already inside the root, instead of one
 * of its own.  Between stanzas that parser is in the same state for every such stream.
 *
 * Why: with a parser per connection, every read finds that connection's expat state
 * (name hash tables, buffers) cold in the cache.  bench/micro: one stanza to each of
 * 1,000 parsers in turn costs 18 % more than to one parser, 105 % more with 5,000; in
 * the server expat was 12 % of the CPU per message (perf, bench/NOTES.md).  And a busy
 * connection holds no parser at all.
 *
 * A feed that ends between stanzas leaves the shared parser as it found it.  Otherwise
 * (a stanza or text cut by the read, an error, a stop, the stream's end) the shared
 * parser is thrown away; a stream left inside a stanza gets a parser of its own, fed
 * again from the start of the unfinished unit (mark, which is never before the start
 * of this read), which reports nothing twice: only a finished stanza is reported. */
typedef struct hot {
	XML_Parser p;
	arena mem;
	uint64_t fed; /* bytes given to p, its priming header included */
	bool busy;    /* in use: a callback feeding another stream takes the private path */
	pv_buf text;  /* lent to the stream being fed (empty between stanzas) */
} hot;

static _Thread_local hot t_hot[PV_ARRAY_LEN(common)];

static void hot_drop(hot *h)
{
	if (!h->p)
		return;
	expat_free(h->p, &h->mem);
	h->p = NULL;
	arena_unmap(&h->mem);
}

/* Whether xs's header is one a shared parser serves: <stream:stream> declaring one of
 * common[]'s namespace sets (before or after release). */
static bool common_header(const pv_xmlstream *xs)
{
	return xs->root_qname && strcmp(xs->root_qname, common[0]) == 0 &&
	       (xs->decls_common || common_of(xs->root_decls.data));
}

/* The thread's shared parser for xs's header, primed; NULL if xs cannot use one. */
static hot *hot_for(pv_xmlstream *xs)
{
	if (!common_header(xs) || !xs->decls_common)
		return NULL;
	hot *h = NULL;
	for (size_t i = 0; i < PV_ARRAY_LEN(common) && !h; i++)
		if (common[i] == xs->decls_common)
			h = &t_hot[i];
	if (!h || h->busy)
		return NULL;
	if (!h->p) {
		/* primed through xs, which has no parser of its own (released) */
		arena_map(&h->mem);
		h->p = expat_new(&h->mem);
		XML_SetUserData(h->p, xs);
		xs->p = h->p;
		h->fed = prime(xs, &h->mem);
		xs->p = NULL;
	}
	return h;
}

void pv_xmlstream_thread_fini(void)
{
	for (size_t i = 0; i < PV_ARRAY_LEN(t_hot); i++) {
		PV_ASSERT(!t_hot[i].busy);
		hot_drop(&t_hot[i]);
		pv_buf_fini(&t_hot[i].text);
	}
}

static pv_xs_error parse(pv_xmlstream *xs, arena *mem, const char *data, size_t n);

/* Between stanzas, nothing held: the state a released stream is in. */
static bool at_rest(const pv_xmlstream *xs)
{
	return !xs->err && !xs->stopped && xs->level == 1 && !xs->stanza && !xs->junk &&
	       !xs->text.len && xs->fed == xs->mark;
}

/* Parses data for the released stream xs on the shared parser h (see above). */
static pv_xs_error hot_feed(pv_xmlstream *xs, hot *h, const char *data, size_t n)
{
	uint64_t base = h->fed;
	h->busy = true;
	XML_SetUserData(h->p, xs);
	xs->p = h->p;
	xs->fed = xs->mark = base;
	/* A released stream keeps no text buffer; it borrows the shared one. */
	pv_buf own = xs->text;
	xs->text = h->text;
	pv_xs_error e = parse(xs, &h->mem, data, n);
	bool rest = at_rest(xs);
	xs->p = NULL;
	h->text = xs->text;
	xs->text = own;
	pv_buf_reset(&h->text);
	h->busy = false;
	if (rest) {
		h->fed = xs->fed;
		return PV_XS_OK;
	}
	hot_drop(h);
	if (e || xs->err || xs->stopped)
		return xs->err;
	/* Inside a stanza, after text that was not whitespace, or past the root's end:
	 * again, on a parser of its own in the same place, from where that unit began
	 * (whatever follows the end is then expat's to judge, as on any stream). */
	PV_ASSERT(xs->mark >= base && xs->mark - base <= n);
	size_t from = (size_t)(xs->mark - base);
	bool closed = xs->level == 0;
	pv_xml_free(xs->stanza);
	xs->stanza = xs->cur = NULL;
	pv_buf_reset(&xs->text);
	xs->junk = false;
	rebuild(xs);
	if (closed)
		close_root(xs);
	return parse(xs, &xs->mem, data + from, n - from);
}

pv_xs_error pv_xmlstream_feed(pv_xmlstream *xs, const char *data, size_t n)
{
	PV_ASSERT(!xs->in_feed);
	if (xs->err)
		return xs->err;
	if (xs->stopped) {
		/* Bytes after a stop belong to whatever replaces this stream (TLS, a new
		 * stream); parsing them here would be exactly the bug stop() prevents. */
		fail(xs, PV_XS_ERR_XML, "stream was stopped; reset before feeding");
		return xs->err;
	}
	if (!xs->p) {
		hot *h = hot_for(xs);
		if (h)
			return hot_feed(xs, h, data, n);
		rebuild(xs);
	}
	if (xs->fed < 2 && !sniff_ok(xs, data, n))
		return xs->err;
	pv_xs_error e = parse(xs, &xs->mem, data, n);
	/* A stream with a common header goes on on the thread's shared parser. */
	if (!e && xs->stanzas >= HOT_AFTER && at_rest(xs) && common_header(xs))
		pv_xmlstream_release(xs);
	return e;
}

/* Gives data to xs->p (allocating from mem) in CHUNK pieces, checking the limits. */
static pv_xs_error parse(pv_xmlstream *xs, arena *mem, const char *data, size_t n)
{
	size_t off = 0;
	do {
		size_t len = n - off < CHUNK ? n - off : CHUNK;
		xs->in_feed = true;
		arena *saved = t_arena;
		t_arena = mem;
		enum XML_Status st = XML_Parse(xs->p, data + off, (int)len, XML_FALSE);
		t_arena = saved;
		xs->in_feed = false;
		xs->fed += len;
		off += len;
		if (st != XML_STATUS_OK) {
			if (xs->err)
				return xs->err;
			if (xs->stopped)
				return PV_XS_OK;
			enum XML_Error e = XML_GetErrorCode(xs->p);
			/* Without a DTD every entity but the five predefined ones is undefined;
			 * using one is what RFC 6120 11.1 forbids, so say restricted-xml. */
			if (e == XML_ERROR_UNDEFINED_ENTITY) {
				fail(xs, PV_XS_ERR_RESTRICTED, "restricted XML: entity reference");
				return xs->err;
			}
			/* An undeclared prefix on the stream header (typically stream:) is
			 * bad-namespace-prefix, a namespace error (RFC 6120 4.9.3.2). */
			if (e == XML_ERROR_UNBOUND_PREFIX && xs->level == 0) {
				fail(xs, PV_XS_ERR_NAMESPACE, "stream header uses an undeclared prefix");
				return xs->err;
			}
			/* A shared parser's position counts every stream it parsed: none is
			 * said then. */
			if (mem != &xs->mem)
				fail(xs, PV_XS_ERR_XML, "not-well-formed: %s", XML_ErrorString(e));
			else
				fail(xs, PV_XS_ERR_XML, "not-well-formed: %s (line %lu, column %lu)",
					XML_ErrorString(e),
					(unsigned long)XML_GetCurrentLineNumber(xs->p),
					(unsigned long)XML_GetCurrentColumnNumber(xs->p));
			return xs->err;
		}
		/* Whatever expat holds unfinished (a partial stanza, a start tag still
		 * open, text between stanzas) began at or after mark. */
		if (xs->fed - xs->mark > xs->lim.max_stanza) {
			fail(xs, PV_XS_ERR_SIZE, "stanza exceeds %zu bytes", xs->lim.max_stanza);
			return xs->err;
		}
	} while (off < n);
	return PV_XS_OK;
}

const char *pv_xmlstream_error_text(const pv_xmlstream *xs)
{
	return xs->errtext ? xs->errtext : "";
}
