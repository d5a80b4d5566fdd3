/* test_xmlstream.c -- unit tests for src/xmpp/xmlstream.c: a realistic client stream
 * parsed whole, split in two at every byte and fed one byte at a time must give the same
 * events; every restricted-XML, encoding, limit and namespace violation must give its
 * error however the bytes are split; stop() must discard the rest of the feed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "peyvand/pv_util.h"
#include "peyvand/pv_xml.h"

/* ---- event collector ------------------------------------------------------------------ */

typedef struct {
	pv_buf log;             /* one line per event */
	pv_xmlstream *xs;
	const char *stop_on;    /* element name whose callback calls pv_xmlstream_stop */
} coll;

static void c_open(void *ud, const pv_xml *hdr, const char *default_ns)
{
	coll *c = ud;
	pv_buf_printf(&c->log, "OPEN {%s}%s dns=%s", hdr->ns, hdr->name,
		default_ns ? default_ns : "(none)");
	for (size_t i = 0; i < hdr->nattrs; i++)
		pv_buf_printf(&c->log, " %s=%s", hdr->attrs[2 * i], hdr->attrs[2 * i + 1]);
	assert_null(hdr->first);
	pv_buf_puts(&c->log, "\n");
}

static void c_element(void *ud, pv_xml *el)
{
	coll *c = ud;
	assert_null(el->parent);
	pv_xml_serialize(el, "jabber:client", &c->log);
	pv_buf_puts(&c->log, "\n");
	if (c->stop_on && strcmp(el->name, c->stop_on) == 0)
		pv_xmlstream_stop(c->xs);
	pv_xml_free(el);
}

static void c_close(void *ud)
{
	coll *c = ud;
	pv_buf_puts(&c->log, "CLOSE\n");
}

static const pv_xmlstream_cb cbs = { c_open, c_element, c_close };

static void coll_init(coll *c, const pv_xmlstream_limits *lim)
{
	memset(c, 0, sizeof(*c));
	pv_buf_init(&c->log);
	c->xs = pv_xmlstream_new(&cbs, c, lim);
}

static void coll_fini(coll *c)
{
	pv_xmlstream_free(c->xs);
	pv_buf_fini(&c->log);
}

/* Feed `in` as pieces: split == 0 whole, split == SIZE_MAX one byte at a time, otherwise
 * two pieces [0, split) and [split, n).  Stops at the first error. */
static pv_xs_error feed_split(pv_xmlstream *xs, const char *in, size_t n, size_t split)
{
	pv_xs_error e = PV_XS_OK;
	if (split == 0 || split >= n) {
		if (split == SIZE_MAX)
			for (size_t i = 0; i < n && e == PV_XS_OK; i++)
				e = pv_xmlstream_feed(xs, in + i, 1);
		else
			e = pv_xmlstream_feed(xs, in, n);
		return e;
	}
	e = pv_xmlstream_feed(xs, in, split);
	if (e == PV_XS_OK)
		e = pv_xmlstream_feed(xs, in + split, n - split);
	return e;
}

/* Parse `in` with a fresh stream; returns the error and (caller frees) the event log. */
static pv_xs_error run(const char *in, size_t n, size_t split, const pv_xmlstream_limits *lim,
	char **log)
{
	coll c;
	coll_init(&c, lim);
	pv_xs_error e = feed_split(c.xs, in, n, split);
	if (e == PV_XS_OK)
		assert_string_equal(pv_xmlstream_error_text(c.xs), "");
	else
		assert_true(strlen(pv_xmlstream_error_text(c.xs)) > 0);
	/* After an error the stream stays dead. */
	if (e != PV_XS_OK)
		assert_int_equal(pv_xmlstream_feed(c.xs, "<a/>", 4), e);
	*log = pv_buf_take(&c.log);
	coll_fini(&c);
	return e;
}

/* ---- a realistic client stream ------------------------------------------------------- */

#define HDR \
	"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' " \
	"to='example.com' version='1.0'>"

static const char client_stream[] =
	"<?xml version='1.0' encoding='UTF-8'?>\n"
	"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'"
	" to='example.com' version='1.0' xml:lang='en'>\n"
	"<iq type='set' id='bind_1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
	"<resource>balcony</resource></bind></iq>\n"
	" \t \r\n \n" /* whitespace keepalives */
	"<message to='romeo@example.net' type='chat' id='m1' xml:lang='en'>"
	"<body>Tom &amp; Jerry &lt;3 &#x263A; &#9731; caf\xc3\xa9 \"q\" &apos;a&apos; &gt; "
	"\xd8\xb3\xd9\x84\xd8\xa7\xd9\x85 \xf0\x9f\x98\x80</body>"
	"<active xmlns='http://jabber.org/protocol/chatstates'/>"
	"<x:data xmlns:x='jabber:x:data' type='submit'><x:field var='a&amp;b'>"
	"<x:value>1</x:value></x:field></x:data></message>"
	"<presence><show>away</show><status>line one\r\nline two</status>"
	"<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://n' ver='v+/='/>"
	"</presence>\n"
	"<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>"
	"<message><body><![CDATA[<b>bold</b> & co]]></body></message>"
	"<message xmlns:e='urn:ext' e:flag='yes' to='a@b'><e:payload>x<e:in/>y</e:payload></message>"
	"<message><body>a</body><body xmlns=''>no ns</body></message>"
	"<iq type='get' id='p' to='example.com'><ping xmlns='urn:xmpp:ping'/></iq>\n"
	"</stream:stream>";

static const char client_events[] =
	"OPEN {http://etherx.jabber.org/streams}stream dns=jabber:client to=example.com "
	"version=1.0 xml:lang=en\n"
	"<iq type='set' id='bind_1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
	"<resource>balcony</resource></bind></iq>\n"
	"<message to='romeo@example.net' type='chat' id='m1' xml:lang='en'>"
	"<body>Tom &amp; Jerry &lt;3 \xe2\x98\xba \xe2\x98\x83 caf\xc3\xa9 \"q\" 'a' &gt; "
	"\xd8\xb3\xd9\x84\xd8\xa7\xd9\x85 \xf0\x9f\x98\x80</body>"
	"<active xmlns='http://jabber.org/protocol/chatstates'/>"
	"<data xmlns='jabber:x:data' type='submit'><field var='a&amp;b'>"
	"<value>1</value></field></data></message>\n"
	"<presence><show>away</show><status>line one\nline two</status>"
	"<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://n' ver='v+/='/>"
	"</presence>\n"
	"<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>\n"
	"<message><body>&lt;b&gt;bold&lt;/b&gt; &amp; co</body></message>\n"
	"<message xmlns:ns0='urn:ext' ns0:flag='yes' to='a@b'><payload xmlns='urn:ext'>x<in/>y"
	"</payload></message>\n"
	"<message><body>a</body><body xmlns=''>no ns</body></message>\n"
	"<iq type='get' id='p' to='example.com'><ping xmlns='urn:xmpp:ping'/></iq>\n"
	"CLOSE\n";

static void test_client_stream_whole(void **state)
{
	char *log;
	assert_int_equal(run(client_stream, strlen(client_stream), 0, NULL, &log), PV_XS_OK);
	assert_string_equal(log, client_events);
	pv_free(log);
}

static void test_client_stream_every_split(void **state)
{
	size_t n = strlen(client_stream);
	for (size_t split = 1; split < n; split++) {
		char *log;
		pv_xs_error e = run(client_stream, n, split, NULL, &log);
		if (e != PV_XS_OK || strcmp(log, client_events) != 0)
			fail_msg("split at %zu: error %d, events:\n%s", split, e, log);
		pv_free(log);
	}
}

static void test_client_stream_bytewise(void **state)
{
	char *log;
	assert_int_equal(run(client_stream, strlen(client_stream), SIZE_MAX, NULL, &log), PV_XS_OK);
	assert_string_equal(log, client_events);
	pv_free(log);
}

/* Keeps the last element instead of serialising it, to look at the tree itself. */
static void keep_element(void *ud, pv_xml *el)
{
	pv_xml **slot = ud;
	pv_xml_free(*slot);
	*slot = el;
}

static void test_tree_shape(void **state)
{
	/* Text is merged into one node however the bytes arrive; elements carry namespace
	 * URIs (never prefixes); attributes get pv_xml.h names. */
	static const char in[] = HDR "<message><body>a&amp;b&#x263A;c<![CDATA[<d>]]>e</body>"
		"<p:x xmlns:p='urn:p' xml:lang='de' p:y='1' z='2'>t</p:x></message>";
	static const pv_xmlstream_cb keep = { NULL, keep_element, NULL };
	for (size_t split = 0; split < sizeof(in); split += 7) {
		pv_xml *el = NULL;
		pv_xmlstream *xs = pv_xmlstream_new(&keep, &el, NULL);
		assert_int_equal(feed_split(xs, in, sizeof(in) - 1, split ? split : SIZE_MAX), PV_XS_OK);
		pv_xmlstream_free(xs);
		assert_non_null(el);
		assert_string_equal(el->name, "message");
		assert_string_equal(el->ns, "jabber:client");
		pv_xml *body = pv_xml_first_element(el);
		assert_true(pv_xml_is(body, "body", "jabber:client"));
		assert_non_null(body->first);
		assert_ptr_equal(body->first, body->last); /* one merged text node */
		assert_string_equal(body->first->text, "a&b\xe2\x98\xba" "c<d>e");
		assert_int_equal(body->first->text_len, strlen("a&b\xe2\x98\xba" "c<d>e"));
		pv_xml *x = pv_xml_next_element(body);
		assert_string_equal(x->name, "x");
		assert_string_equal(x->ns, "urn:p");
		assert_int_equal(x->nattrs, 3);
		assert_string_equal(pv_xml_attr(x, "xml:lang"), "de");
		assert_string_equal(pv_xml_attr(x, "{urn:p}y"), "1");
		assert_null(pv_xml_attr(x, "y")); /* a namespaced attribute never poses as a plain one */
		assert_string_equal(pv_xml_attr(x, "z"), "2");
		char *t = pv_xml_text(x);
		assert_string_equal(t, "t");
		pv_free(t);
		pv_xml_free(el);
	}
}

/* ---- bad input, table-driven ------------------------------------------------------ */

typedef struct {
	const char *name;
	const char *in;       /* NUL-terminated unless len is set */
	size_t len;
	size_t max_stanza;    /* 0: default */
	unsigned max_depth;   /* 0: default */
	pv_xs_error want;
} bad_case;

#define A10 "aaaaaaaaaa"
#define A100 A10 A10 A10 A10 A10 A10 A10 A10 A10 A10
#define A1000 A100 A100 A100 A100 A100 A100 A100 A100 A100 A100
#define SP100 "          " "          " "          " "          " "          " \
	"          " "          " "          " "          " "          "

static const bad_case bad_cases[] = {
	/* restricted XML, RFC 6120 11.1 */
	{ "DOCTYPE", "<?xml version='1.0'?><!DOCTYPE stream:stream>" HDR, 0, 0, 0,
	  PV_XS_ERR_RESTRICTED },
	{ "DOCTYPE with external id", "<!DOCTYPE s SYSTEM 'file:///etc/passwd'>" HDR, 0, 0, 0,
	  PV_XS_ERR_RESTRICTED },
	{ "entity declaration", "<!DOCTYPE s [<!ENTITY x 'boom'>]>" HDR "<m>&x;</m>", 0, 0, 0,
	  PV_XS_ERR_RESTRICTED },
	{ "billion laughs", "<!DOCTYPE s [<!ENTITY a 'aaaa'><!ENTITY b '&a;&a;&a;'>]>" HDR
	  "<m>&b;</m>", 0, 0, 0, PV_XS_ERR_RESTRICTED },
	{ "undefined entity in text", HDR "<message><body>&foo;</body></message>", 0, 0, 0,
	  PV_XS_ERR_RESTRICTED },
	{ "undefined entity in attribute", HDR "<message to='&foo;'/>", 0, 0, 0,
	  PV_XS_ERR_RESTRICTED },
	{ "comment in prolog", "<!-- hi -->" HDR, 0, 0, 0, PV_XS_ERR_RESTRICTED },
	{ "comment between stanzas", HDR "<presence/><!-- hi --><presence/>", 0, 0, 0,
	  PV_XS_ERR_RESTRICTED },
	{ "comment in stanza", HDR "<message><!-- hi --></message>", 0, 0, 0,
	  PV_XS_ERR_RESTRICTED },
	{ "PI in prolog", "<?xml-stylesheet href='a.xsl'?>" HDR, 0, 0, 0, PV_XS_ERR_RESTRICTED },
	{ "PI in stanza", HDR "<message><?php echo 1; ?></message>", 0, 0, 0,
	  PV_XS_ERR_RESTRICTED },
	/* encoding: forced UTF-8, malformed sequences are not-well-formed */
	{ "invalid UTF-8 C3 28", HDR "<message><body>\xc3\x28</body></message>", 0, 0, 0,
	  PV_XS_ERR_XML },
	{ "overlong UTF-8 C0 AF", HDR "<message><body>\xc0\xaf</body></message>", 0, 0, 0,
	  PV_XS_ERR_XML },
	{ "overlong 3-byte E0 80 AF", HDR "<message><body>\xe0\x80\xaf</body></message>", 0, 0, 0,
	  PV_XS_ERR_XML },
	{ "byte FF", HDR "<message><body>\xff</body></message>", 0, 0, 0, PV_XS_ERR_XML },
	{ "UTF-16 surrogate ED A0 80", HDR "<message><body>\xed\xa0\x80</body></message>", 0, 0, 0,
	  PV_XS_ERR_XML },
	{ "noncharacter U+FFFE", HDR "<message><body>\xef\xbf\xbe</body></message>", 0, 0, 0,
	  PV_XS_ERR_XML },
	{ "beyond U+10FFFF", HDR "<message><body>\xf4\x90\x80\x80</body></message>", 0, 0, 0,
	  PV_XS_ERR_XML },
	{ "truncated sequence", HDR "<message><body>\xe2\x98</body></message>", 0, 0, 0,
	  PV_XS_ERR_XML },
	{ "invalid UTF-8 in attribute", HDR "<message to='\xc3\x28'/>", 0, 0, 0, PV_XS_ERR_XML },
	{ "invalid UTF-8 in header", "<stream:stream xmlns:stream='http://etherx.jabber.org/streams'"
	  " to='\xff'>", 0, 0, 0, PV_XS_ERR_XML },
	{ "encoding declaration cannot switch", "<?xml version='1.0' encoding='ISO-8859-1'?>" HDR
	  "<message><body>\xe9</body></message>", 0, 0, 0, PV_XS_ERR_XML },
	{ "UTF-16LE without BOM", "<\0s\0t\0r\0e\0a\0m\0", 14, 0, 0, PV_XS_ERR_XML },
	{ "UTF-16BE with BOM", "\xfe\xff\0<\0s\0t", 8, 0, 0, PV_XS_ERR_XML },
	{ "UTF-16LE with BOM", "\xff\xfe<\0s\0", 6, 0, 0, PV_XS_ERR_XML },
	{ "whitespace in UTF-16LE", "\t\0", 2, 0, 0, PV_XS_ERR_XML },
	{ "control character", HDR "<message><body>\x01</body></message>", 0, 0, 0, PV_XS_ERR_XML },
	{ "character reference to NUL", HDR "<message><body>&#0;</body></message>", 0, 0, 0,
	  PV_XS_ERR_XML },
	{ "literal NUL", HDR "<message><body>a\0b</body></message>",
	  sizeof(HDR "<message><body>a\0b</body></message>") - 1, 0, 0,
	  PV_XS_ERR_XML },
	/* size limit: stanza bytes, counted from '<' */
	{ "oversized stanza", HDR "<m>" A1000 "</m>", 0, 256, 0, PV_XS_ERR_SIZE },
	{ "oversized stanza that never closes", HDR "<message><body>" A1000, 0, 256, 0,
	  PV_XS_ERR_SIZE },
	{ "endless start tag", HDR "<message to='" A1000, 0, 256, 0, PV_XS_ERR_SIZE },
	{ "endless attribute list", HDR "<message a='1' b='2' c='3' d='4' e='5' f='6' g='7' h='8' "
	  "i='9' j='10' k='11' l='12' m='13' n='14' o='15' p='16' q='17' r='18' s='19' t='20' "
	  "u='21' v='22' w='23' x='24' y='25' z='26'/>", 0, 100, 0, PV_XS_ERR_SIZE },
	{ "endless text between stanzas", HDR "<presence/>" A1000, 0, 256, 0, PV_XS_ERR_SIZE },
	{ "text between stanzas broken by newlines", HDR "<presence/>" A100 "\n" A100 "\n" A100
	  "\n" A100 "\n", 0, 256, 0, PV_XS_ERR_SIZE },
	{ "endless stream header", "<stream:stream xmlns:stream='http://etherx.jabber.org/streams'"
	  " to='" A1000, 0, 256, 0, PV_XS_ERR_SIZE },
	{ "one byte over the limit", HDR "<m>" A100 A100 A10 A10 A10 A10 "aaaaaaaaaa</m>", 0, 256, 0,
	  PV_XS_ERR_SIZE },
	/* depth limit: a stanza is depth 1 */
	{ "too deep", HDR "<a><b><c><d><e/></d></c></b></a>", 0, 0, 4, PV_XS_ERR_DEPTH },
	{ "too deep, never closed", HDR "<a><b><c><d><e><f><g><h>", 0, 0, 4, PV_XS_ERR_DEPTH },
	/* stream header */
	{ "wrong stream namespace", "<stream:stream xmlns='jabber:client' "
	  "xmlns:stream='urn:wrong'>", 0, 0, 0, PV_XS_ERR_NAMESPACE },
	{ "stream in the content namespace", "<stream xmlns='jabber:client'>", 0, 0, 0,
	  PV_XS_ERR_NAMESPACE },
	{ "wrong root name", "<stream:features xmlns:stream='http://etherx.jabber.org/streams'>",
	  0, 0, 0, PV_XS_ERR_NAMESPACE },
	{ "stanza instead of header", "<message xmlns='jabber:client'/>", 0, 0, 0,
	  PV_XS_ERR_NAMESPACE },
	{ "undeclared stream prefix", "<stream:stream xmlns='jabber:client' to='example.com'>",
	  0, 0, 0, PV_XS_ERR_NAMESPACE },
	/* not well-formed */
	{ "mismatched tag", HDR "<message></iq>", 0, 0, 0, PV_XS_ERR_XML },
	{ "undeclared prefix in stanza", HDR "<foo:bar/>", 0, 0, 0, PV_XS_ERR_XML },
	{ "undeclared attribute prefix", HDR "<message foo:bar='1'/>", 0, 0, 0, PV_XS_ERR_XML },
	{ "duplicate attribute", HDR "<message a='1' a='2'/>", 0, 0, 0, PV_XS_ERR_XML },
	{ "duplicate attribute via prefixes", HDR "<message xmlns:p='urn:x' xmlns:q='urn:x' p:a='1' "
	  "q:a='2'/>", 0, 0, 0, PV_XS_ERR_XML },
	{ "unquoted attribute", HDR "<message a=1/>", 0, 0, 0, PV_XS_ERR_XML },
	{ "empty tag", HDR "<>", 0, 0, 0, PV_XS_ERR_XML },
	{ "text before header", "hello" HDR, 0, 0, 0, PV_XS_ERR_XML },
	{ "XML declaration not at start", HDR "<?xml version='1.0'?>", 0, 0, 0, PV_XS_ERR_XML },
	{ "bare ampersand", HDR "<message><body>a & b</body></message>", 0, 0, 0, PV_XS_ERR_XML },
	{ "lt in attribute", HDR "<message to='a<b'/>", 0, 0, 0, PV_XS_ERR_XML },
	{ "content after stream close", HDR "</stream:stream><message/>", 0, 0, 0, PV_XS_ERR_XML },
	{ "reserved xmlns prefix", HDR "<message xmlns:xmlns='urn:x'/>", 0, 0, 0, PV_XS_ERR_XML },
};

static void test_bad_input(void **state)
{
	for (size_t i = 0; i < PV_ARRAY_LEN(bad_cases); i++) {
		const bad_case *c = &bad_cases[i];
		size_t n = c->len ? c->len : strlen(c->in);
		pv_xmlstream_limits lim = { c->max_stanza, c->max_depth };
		/* Whole, one byte at a time, and two pieces split at every byte. */
		for (size_t split = 0; split < n; split++) {
			char *log;
			pv_xs_error e = run(c->in, n, split ? split : SIZE_MAX, &lim, &log);
			if (e != c->want)
				fail_msg("case '%s' split %zu: got error %d, want %d; events:\n%s",
					c->name, split, e, c->want, log);
			pv_free(log);
		}
		char *log;
		assert_int_equal(run(c->in, n, 0, &lim, &log), c->want);
		pv_free(log);
	}
}

/* ---- the good side of each limit ------------------------------------------------------ */

typedef struct {
	const char *name;
	const char *in;
	size_t max_stanza;
	unsigned max_depth;
	const char *want; /* events */
} good_case;

static const good_case good_cases[] = {
	{ "stanza of exactly max_stanza bytes", HDR "<m>" A100 A100 A10 A10 A10 A10 "aaaaaaaaa</m>",
	  256, 0,
	  "OPEN {http://etherx.jabber.org/streams}stream dns=jabber:client to=example.com "
	  "version=1.0\n<m>" A100 A100 A10 A10 A10 A10 "aaaaaaaaa</m>\n" },
	{ "many stanzas add up past max_stanza", HDR "<a/><b/><c/><d/><e/><f/><g/><h/>"
	  "<i>" A100 "</i><j>" A100 "</j><k>" A100 "</k>",
	  140, 0, /* the header (125 bytes) is bounded by max_stanza too */
	  "OPEN {http://etherx.jabber.org/streams}stream dns=jabber:client to=example.com "
	  "version=1.0\n<a/>\n<b/>\n<c/>\n<d/>\n<e/>\n<f/>\n<g/>\n<h/>\n<i>" A100 "</i>\n<j>" A100
	  "</j>\n<k>" A100 "</k>\n" },
	{ "whitespace keepalives far past max_stanza", HDR SP100 SP100 SP100 "<p/>" SP100 SP100
	  "\n\n\n" SP100 SP100 SP100 "\t\r\n",
	  140, 0,
	  "OPEN {http://etherx.jabber.org/streams}stream dns=jabber:client to=example.com "
	  "version=1.0\n<p/>\n" },
	{ "nesting exactly max_depth", HDR "<a><b><c><d/></c></b></a>", 0, 4,
	  "OPEN {http://etherx.jabber.org/streams}stream dns=jabber:client to=example.com "
	  "version=1.0\n<a><b><c><d/></c></b></a>\n" },
	{ "server stream, prefixed header, no declaration",
	  "<stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:server' "
	  "xmlns:db='jabber:server:dialback' from='a.example' to='b.example' version='1.0'>"
	  "<db:result from='a.example' to='b.example'>key</db:result>"
	  "<message from='x@a.example' to='y@b.example'><body>hi</body></message>",
	  0, 0,
	  "OPEN {http://etherx.jabber.org/streams}stream dns=jabber:server from=a.example "
	  "to=b.example version=1.0\n"
	  "<result xmlns='jabber:server:dialback' from='a.example' to='b.example'>key</result>\n"
	  "<message xmlns='jabber:server' from='x@a.example' to='y@b.example'><body>hi</body>"
	  "</message>\n" },
	{ "header without a default namespace, odd prefix and namespaced attribute",
	  "<?xml version='1.0'?><s:stream xmlns:s='http://etherx.jabber.org/streams' "
	  "xmlns:e='urn:ext' e:hint='x' to='example.com'>",
	  0, 0, "OPEN {http://etherx.jabber.org/streams}stream dns=(none) {urn:ext}hint=x "
	  "to=example.com\n" },
	{ "UTF-8 byte order mark", "\xef\xbb\xbf" HDR "<presence/>", 0, 0,
	  "OPEN {http://etherx.jabber.org/streams}stream dns=jabber:client to=example.com "
	  "version=1.0\n<presence/>\n" },
};

static void test_good_input(void **state)
{
	for (size_t i = 0; i < PV_ARRAY_LEN(good_cases); i++) {
		const good_case *c = &good_cases[i];
		size_t n = strlen(c->in);
		pv_xmlstream_limits lim = { c->max_stanza, c->max_depth };
		for (size_t split = 0; split <= n; split++) {
			char *log;
			pv_xs_error e = run(c->in, n, split == n ? SIZE_MAX : split, &lim, &log);
			if (e != PV_XS_OK || strcmp(log, c->want) != 0)
				fail_msg("case '%s' split %zu: error %d, events:\n%s\nwant:\n%s",
					c->name, split, e, log, c->want);
			pv_free(log);
		}
	}
}

/* ---- stop and reset ------------------------------------------------------------------- */

static void test_stop_discards_rest_of_feed(void **state)
{
	/* After <starttls/> the client's next bytes are TLS; anything else that arrived in
	 * the same packet must never be parsed (CVE-2011-0411 class: command injection). */
	pv_buf in;
	pv_buf_init(&in);
	pv_buf_puts(&in, HDR "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
		"<message to='victim@example.com'><body>injected</body></message>");
	/* Garbage that would be an error if parsed, spanning several parser chunks. */
	for (int i = 0; i < 5000; i++)
		pv_buf_append(&in, "\xff\x00<<&", 5);

	for (size_t split = 0; split < 2; split++) {
		coll c;
		coll_init(&c, NULL);
		c.stop_on = "starttls";
		assert_int_equal(pv_xmlstream_feed(c.xs, in.data, in.len), PV_XS_OK);
		assert_string_equal(c.log.data,
			"OPEN {http://etherx.jabber.org/streams}stream dns=jabber:client "
			"to=example.com version=1.0\n"
			"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>\n");
		/* Feeding a stopped stream is a caller bug and reported as an error. */
		if (split == 0)
			assert_int_equal(pv_xmlstream_feed(c.xs, "<presence/>", 11), PV_XS_ERR_XML);

		/* The TLS layer restarts the stream with a fresh parser. */
		pv_xmlstream_reset(c.xs);
		pv_buf_reset(&c.log);
		static const char again[] = HDR "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' "
			"mechanism='PLAIN'>AGFAYg==</auth>";
		assert_int_equal(pv_xmlstream_feed(c.xs, again, strlen(again)), PV_XS_OK);
		assert_string_equal(c.log.data,
			"OPEN {http://etherx.jabber.org/streams}stream dns=jabber:client "
			"to=example.com version=1.0\n"
			"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFAYg==</auth>\n");
		assert_string_equal(pv_xmlstream_error_text(c.xs), "");
		coll_fini(&c);
	}
	pv_buf_fini(&in);
}

static void test_reset_mid_stanza_and_after_error(void **state)
{
	coll c;
	coll_init(&c, NULL);
	static const char part[] = HDR "<message><body>half";
	assert_int_equal(pv_xmlstream_feed(c.xs, part, strlen(part)), PV_XS_OK);
	pv_xmlstream_reset(c.xs); /* the partial tree is freed, never delivered */
	assert_int_equal(pv_xmlstream_feed(c.xs, "<!-- x -->", 10), PV_XS_ERR_RESTRICTED);
	assert_non_null(strstr(pv_xmlstream_error_text(c.xs), "comment"));
	pv_xmlstream_reset(c.xs); /* revives a dead stream */
	pv_buf_reset(&c.log);
	static const char full[] = HDR "<presence/></stream:stream>";
	assert_int_equal(pv_xmlstream_feed(c.xs, full, strlen(full)), PV_XS_OK);
	assert_string_equal(c.log.data,
		"OPEN {http://etherx.jabber.org/streams}stream dns=jabber:client to=example.com "
		"version=1.0\n<presence/>\nCLOSE\n");
	coll_fini(&c);

	/* Freeing with a partial stanza pending leaks nothing (ASan checks). */
	coll_init(&c, NULL);
	assert_int_equal(pv_xmlstream_feed(c.xs, part, strlen(part)), PV_XS_OK);
	coll_fini(&c);
}

/* An idle stream frees its parser (pv_xmlstream_release) and the next feed rebuilds it:
 * releasing wherever it is allowed, byte by byte through the realistic stream, must not
 * change a single event; it must be refused inside a stanza. */
static void test_release_anywhere_is_invisible(void **state)
{
	coll c;
	coll_init(&c, NULL);
	size_t n = strlen(client_stream), released = 0;
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(pv_xmlstream_feed(c.xs, client_stream + i, 1), PV_XS_OK);
		if (pv_xmlstream_release(c.xs))
			released++;
	}
	assert_string_equal(c.log.data, client_events);
	/* once after each of the 9 stanzas at least (and after keepalive whitespace) */
	assert_true(released >= 9);
	coll_fini(&c);
}

/* Parsers take their memory from regions that are pooled when a parser goes away and
 * handed to the next one, dirty.  More streams than the pool holds live at once, are
 * fed in turns, reset, released and freed in a scrambled order and replaced: every one
 * must still report exactly the realistic stream's events. */
static void test_pooled_regions_reused_dirty(void **state)
{
	enum { N = 80, STEP = 7 };
	coll c[N];
	size_t n = strlen(client_stream);
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < N; i++) {
			coll_init(&c[i], NULL);
			if ((i + round) % 3 == 0) {
				/* a reset stream gets another region (maybe one a neighbour had) */
				assert_int_equal(pv_xmlstream_feed(c[i].xs, HDR "<message>", sizeof(HDR "<message>") - 1), PV_XS_OK);
				pv_xmlstream_reset(c[i].xs);
				pv_buf_reset(&c[i].log);
			}
		}
		for (size_t off = 0; off < n; off += STEP)
			for (int i = 0; i < N; i++) {
				size_t len = n - off < STEP ? n - off : STEP;
				assert_int_equal(pv_xmlstream_feed(c[i].xs, client_stream + off, len), PV_XS_OK);
				if ((i + (int)off) % 5 == 0)
					pv_xmlstream_release(c[i].xs);
			}
		for (int k = 0; k < N; k++) {
			int i = (k * 37 + round) % N; /* 37 is prime to N: each once */
			assert_string_equal(c[i].log.data, client_events);
			coll_fini(&c[i]);
		}
	}
}

typedef struct {
	const char *hdr;       /* stream header */
	const char *rest;      /* fed after a release attempt */
	bool releasable;
	const char *events;    /* log after the header's OPEN line */
} rel_case;

static const rel_case rel_cases[] = {
	/* a prefix declared on the header and used in a stanza after the rebuild */
	{ "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
	  "xmlns:p='urn:p'>", "<message><p:x a='1'/></message></stream:stream>", true,
	  "<message><x xmlns='urn:p' a='1'/></message>\nCLOSE\n" },
	/* another prefix for the streams namespace: the close tag must still match */
	{ "<x:stream xmlns='jabber:client' xmlns:x='http://etherx.jabber.org/streams'>",
	  "<iq type='get' id='1'/></x:stream>", true, "<iq type='get' id='1'/>\nCLOSE\n" },
	/* a namespace with characters XML must escape in an attribute */
	{ "<stream:stream xmlns='urn:a&amp;b&apos;c' xmlns:stream='http://etherx.jabber.org/streams'>",
	  "<message/></stream:stream>", true, "<message xmlns='urn:a&amp;b&apos;c'/>\nCLOSE\n" },
	/* two prefixes for the streams namespace: which one closes is unknown -> kept */
	{ "<s:stream xmlns='jabber:client' xmlns:s='http://etherx.jabber.org/streams' "
	  "xmlns:t='http://etherx.jabber.org/streams'>", "<message/></s:stream>", false,
	  "<message/>\nCLOSE\n" },
};

static void test_release_rebuild_cases(void **state)
{
	for (size_t i = 0; i < sizeof(rel_cases) / sizeof(rel_cases[0]); i++) {
		const rel_case *rc = &rel_cases[i];
		coll c;
		coll_init(&c, NULL);
		assert_int_equal(pv_xmlstream_feed(c.xs, rc->hdr, strlen(rc->hdr)), PV_XS_OK);
		char *nl = strchr(c.log.data, '\n');
		assert_non_null(nl);
		size_t open_len = (size_t)(nl + 1 - c.log.data);
		assert_int_equal(pv_xmlstream_release(c.xs), rc->releasable);
		assert_int_equal(pv_xmlstream_release(c.xs), rc->releasable); /* still so */
		assert_int_equal(pv_xmlstream_feed(c.xs, rc->rest, strlen(rc->rest)), PV_XS_OK);
		assert_string_equal(c.log.data + open_len, rc->events);
		coll_fini(&c);
	}
	/* inside a stanza, and with a partial tag buffered, it is refused */
	coll c;
	coll_init(&c, NULL);
	assert_int_equal(pv_xmlstream_feed(c.xs, HDR "<message><bo", strlen(HDR) + 12), PV_XS_OK);
	assert_false(pv_xmlstream_release(c.xs));
	assert_int_equal(pv_xmlstream_feed(c.xs, "dy/></message><mes", 18), PV_XS_OK);
	assert_false(pv_xmlstream_release(c.xs));
	assert_int_equal(pv_xmlstream_feed(c.xs, "sage/>", 6), PV_XS_OK);
	assert_true(pv_xmlstream_release(c.xs));
	coll_fini(&c);
}

/* A stream with a common header moves to the thread's shared parser after a few
 * stanzas (xmlstream.c, "shared parsers").  Each way off it must behave as a parser of
 * the stream's own would: a stanza cut by a read, an error, a stop, the stream's end,
 * an oversized stanza, and a stream fed from inside another stream's callback. */
#define FOUR "<presence/><presence/><presence/><presence/>"
#define FOUR_EV "<presence/>\n<presence/>\n<presence/>\n<presence/>\n"

static coll *g_inner; /* fed from c_element_nested */

static void c_element_nested(void *ud, pv_xml *el)
{
	coll *c = ud;
	c_element(ud, el);
	if (g_inner && c != g_inner) {
		static const char m[] = "<message id='in'/>";
		assert_int_equal(pv_xmlstream_feed(g_inner->xs, m, strlen(m)), PV_XS_OK);
	}
}

static const pv_xmlstream_cb nested_cbs = { c_open, c_element_nested, c_close };

static void test_shared_parser_paths(void **state)
{
	coll a, b;
	const char *open = "OPEN {http://etherx.jabber.org/streams}stream dns=jabber:client "
			   "to=example.com version=1.0\n";
	pv_buf want;
	pv_buf_init(&want);

	/* two streams on the shared parser, one left inside a stanza between reads */
	coll_init(&a, NULL);
	coll_init(&b, NULL);
	assert_int_equal(pv_xmlstream_feed(a.xs, HDR FOUR, strlen(HDR FOUR)), PV_XS_OK);
	assert_int_equal(pv_xmlstream_feed(b.xs, HDR FOUR, strlen(HDR FOUR)), PV_XS_OK);
	assert_true(pv_xmlstream_release(a.xs)); /* on its own already */
	assert_int_equal(pv_xmlstream_feed(a.xs, "<message id='1'><bo", 19), PV_XS_OK);
	assert_false(pv_xmlstream_release(a.xs)); /* holds a parser with the half stanza */
	assert_int_equal(pv_xmlstream_feed(b.xs, "<iq id='2' type='get'/>", 23), PV_XS_OK);
	assert_int_equal(pv_xmlstream_feed(a.xs, "dy>x</body></message> ", 22), PV_XS_OK);
	assert_true(pv_xmlstream_release(a.xs));
	assert_int_equal(pv_xmlstream_feed(b.xs, "</stream:stream>", 16), PV_XS_OK);
	pv_buf_printf(&want, "%s" FOUR_EV "<message id='1'><body>x</body></message>\n", open);
	assert_string_equal(a.log.data, want.data);
	pv_buf_reset(&want);
	pv_buf_printf(&want, "%s" FOUR_EV "<iq id='2' type='get'/>\nCLOSE\n", open);
	assert_string_equal(b.log.data, want.data);
	/* after the end: whitespace is allowed, anything else is not-well-formed */
	assert_int_equal(pv_xmlstream_feed(b.xs, " \n", 2), PV_XS_OK);
	assert_int_equal(pv_xmlstream_feed(b.xs, "<presence/>", 11), PV_XS_ERR_XML);
	coll_fini(&b);
	/* ... and a comment there is restricted XML, as on a parser of the stream's own */
	coll_init(&b, NULL);
	assert_int_equal(pv_xmlstream_feed(b.xs, HDR FOUR, strlen(HDR FOUR)), PV_XS_OK);
	assert_int_equal(pv_xmlstream_feed(b.xs, "</stream:stream> <!-- x -->", 27),
		PV_XS_ERR_RESTRICTED);
	/* the shared parser is whole again for the other stream */
	assert_int_equal(pv_xmlstream_feed(a.xs, "<presence id='3'/>", 18), PV_XS_OK);
	assert_non_null(strstr(a.log.data, "<presence id='3'/>\n"));
	coll_fini(&b);

	/* a CDATA section between stanzas, read a byte at a time: the mark must not move
	 * into it, on the shared parser nor on the stream's own (fuzzer finding) */
	static const char cdata[] = "<s/>  <![CDATA[ x ]]> <s/><![CDATA[   ]]><s/>";
	coll_init(&b, NULL);
	assert_int_equal(pv_xmlstream_feed(b.xs, HDR FOUR, strlen(HDR FOUR)), PV_XS_OK);
	for (size_t i = 0; i < strlen(cdata); i++)
		assert_int_equal(pv_xmlstream_feed(b.xs, cdata + i, 1), PV_XS_OK);
	pv_buf_reset(&want);
	pv_buf_printf(&want, "%s" FOUR_EV "<s/>\n<s/>\n<s/>\n", open);
	assert_string_equal(b.log.data, want.data);
	coll_fini(&b);
	coll_init(&b, NULL);
	assert_int_equal(pv_xmlstream_feed(b.xs, HDR, strlen(HDR)), PV_XS_OK);
	for (size_t i = 0; i < strlen(cdata); i++) {
		assert_int_equal(pv_xmlstream_feed(b.xs, cdata + i, 1), PV_XS_OK);
		pv_xmlstream_release(b.xs); /* what c2s does between reads */
	}
	pv_buf_reset(&want);
	pv_buf_printf(&want, "%s<s/>\n<s/>\n<s/>\n", open);
	assert_string_equal(b.log.data, want.data);
	coll_fini(&b);

	/* an error on the shared parser ends that stream only; reset revives it */
	coll_init(&b, NULL);
	assert_int_equal(pv_xmlstream_feed(b.xs, HDR FOUR, strlen(HDR FOUR)), PV_XS_OK);
	assert_int_equal(pv_xmlstream_feed(b.xs, "<a></b>", 7), PV_XS_ERR_XML);
	/* no position: the shared parser's counts all its streams' lines */
	assert_null(strstr(pv_xmlstream_error_text(b.xs), "line"));
	assert_int_equal(pv_xmlstream_feed(b.xs, "<presence/>", 11), PV_XS_ERR_XML);
	assert_int_equal(pv_xmlstream_feed(a.xs, "<presence id='4'/>", 18), PV_XS_OK);
	assert_non_null(strstr(a.log.data, "<presence id='4'/>\n"));
	pv_xmlstream_reset(b.xs);
	pv_buf_reset(&b.log);
	assert_int_equal(pv_xmlstream_feed(b.xs, HDR "<presence/>", strlen(HDR) + 11), PV_XS_OK);
	pv_buf_reset(&want);
	pv_buf_printf(&want, "%s<presence/>\n", open);
	assert_string_equal(b.log.data, want.data);
	coll_fini(&b);

	/* a stop from a callback: the rest of that read is never parsed */
	coll_init(&b, NULL);
	b.stop_on = "starttls";
	assert_int_equal(pv_xmlstream_feed(b.xs, HDR FOUR, strlen(HDR FOUR)), PV_XS_OK);
	assert_int_equal(pv_xmlstream_feed(b.xs, "<starttls/><junk", 16), PV_XS_OK);
	assert_int_equal(pv_xmlstream_feed(b.xs, "/>", 2), PV_XS_ERR_XML);
	pv_buf_reset(&want);
	pv_buf_printf(&want, "%s" FOUR_EV "<starttls/>\n", open);
	assert_string_equal(b.log.data, want.data);
	coll_fini(&b);

	/* the size limit holds on the shared parser and after the move off it */
	pv_xmlstream_limits lim = { .max_stanza = 150 }; /* the header is 113 bytes */
	coll_init(&b, &lim);
	assert_int_equal(pv_xmlstream_feed(b.xs, HDR FOUR, strlen(HDR FOUR)), PV_XS_OK);
	static const char big[] = "<message><body>0123456789012345678901234567890123456789"
				  "0123456789012345678901234567890123456789"
				  "0123456789012345678901234567890123456789"
				  "0123456789012345678901234567890123456789</body></message>";
	assert_int_equal(pv_xmlstream_feed(b.xs, big, strlen(big)), PV_XS_ERR_SIZE);
	coll_fini(&b);
	coll_init(&b, &lim);
	assert_int_equal(pv_xmlstream_feed(b.xs, HDR FOUR, strlen(HDR FOUR)), PV_XS_OK);
	assert_int_equal(pv_xmlstream_feed(b.xs, big, 100), PV_XS_OK);
	assert_int_equal(pv_xmlstream_feed(b.xs, big + 100, strlen(big) - 100), PV_XS_ERR_SIZE);
	coll_fini(&b);

	/* a stream fed from inside another stream's callback (the shared parser is busy) */
	coll inner;
	coll_init(&inner, NULL);
	assert_int_equal(pv_xmlstream_feed(inner.xs, HDR FOUR, strlen(HDR FOUR)), PV_XS_OK);
	coll outer;
	memset(&outer, 0, sizeof(outer));
	pv_buf_init(&outer.log);
	outer.xs = pv_xmlstream_new(&nested_cbs, &outer, NULL);
	assert_int_equal(pv_xmlstream_feed(outer.xs, HDR FOUR, strlen(HDR FOUR)), PV_XS_OK);
	g_inner = &inner;
	assert_int_equal(pv_xmlstream_feed(outer.xs, "<iq id='o' type='get'/>", 23), PV_XS_OK);
	g_inner = NULL;
	assert_int_equal(pv_xmlstream_feed(outer.xs, "<presence id='o2'/>", 19), PV_XS_OK);
	assert_non_null(strstr(outer.log.data, "<iq id='o' type='get'/>\n<presence id='o2'/>\n"));
	assert_non_null(strstr(inner.log.data, "<message id='in'/>\n"));
	coll_fini(&outer);
	coll_fini(&inner);

	coll_fini(&a);
	pv_buf_fini(&want);
}

static void test_null_callbacks(void **state)
{
	/* Callbacks are optional; undelivered elements are freed. */
	pv_xmlstream *xs = pv_xmlstream_new(NULL, NULL, NULL);
	static const char in[] = HDR "<message><body>x</body></message></stream:stream>";
	assert_int_equal(pv_xmlstream_feed(xs, in, strlen(in)), PV_XS_OK);
	assert_int_equal(pv_xmlstream_feed(xs, "", 0), PV_XS_OK);
	pv_xmlstream_free(xs);
	pv_xmlstream_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_client_stream_whole),
		cmocka_unit_test(test_shared_parser_paths),
		cmocka_unit_test(test_client_stream_every_split),
		cmocka_unit_test(test_client_stream_bytewise),
		cmocka_unit_test(test_tree_shape),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_good_input),
		cmocka_unit_test(test_stop_discards_rest_of_feed),
		cmocka_unit_test(test_reset_mid_stanza_and_after_error),
		cmocka_unit_test(test_null_callbacks),
		cmocka_unit_test(test_release_anywhere_is_invisible),
		cmocka_unit_test(test_release_rebuild_cases),
		cmocka_unit_test(test_pooled_regions_reused_dirty),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
