/* fuzz_xmlstream.c -- libFuzzer target for the XMPP stream parser (src/xmpp/xmlstream.c)
 * and the serialiser it feeds (src/util/xml.c).
 *
 * Built by hand (not part of CMake), from the project root:
 *   clang -std=c17 -g -O1 -D_GNU_SOURCE -Iinclude -Isrc \
 *     -fsanitize=fuzzer,address,undefined \
 *     tests/fuzz/fuzz_xmlstream.c src/xmpp/xmlstream.c src/util/xml.c \
 *     src/util/xmlparse.c src/xmpp/stanza.c src/xmpp/jid.c src/util/util.c src/util/log.c \
 *     $(pkg-config --libs expat libcrypto libidn2 icu-uc) -o /tmp/fuzz_xmlstream
 *   (tests/fuzz/run.sh xmlstream does this)
 *   /tmp/fuzz_xmlstream -max_len=4096 -timeout=5 /tmp/xs-corpus
 *
 * Input: byte 0 picks where the rest is split, byte 1 the size of each later feed (0: the
 * rest in one) and, with its top bit, a first feed of a common header and four stanzas:
 * after those a stream moves to the thread's shared parser, and a feed that ends inside
 * a stanza takes it off again.  The same bytes are also
 * parsed in one piece; when both runs succeed, the events (header, serialised stanzas,
 * close) must be identical -- a split point must never change what a stream means.
 * Each stanza is also re-parsed from its own serialisation, which must reproduce it
 * byte for byte (the serialiser's output is well-formed, restricted XML), and made a
 * pv_stanza the way c2s makes one (addresses parsed, from stamped, wire form). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "peyvand/pv_jid.h"
#include "peyvand/pv_stanza.h"
#include "peyvand/pv_xml.h"

#define HDR "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"

enum mode {
	SPLIT,   /* the fuzzer's split, fuzz limits, every stanza round-tripped */
	WHOLE,   /* one feed, fuzz limits */
	REPARSE, /* a round trip's re-parse: default limits */
};

typedef struct {
	pv_buf log;
	enum mode mode;
} ctx;

static void on_open(void *ud, const pv_xml *hdr, const char *default_ns)
{
	ctx *c = ud;
	pv_buf_printf(&c->log, "O %s|", default_ns ? default_ns : "-");
	for (size_t i = 0; i < hdr->nattrs; i++) {
		pv_xml_escape(hdr->attrs[2 * i], strlen(hdr->attrs[2 * i]), &c->log);
		pv_buf_puts(&c->log, "=");
		pv_xml_escape(hdr->attrs[2 * i + 1], strlen(hdr->attrs[2 * i + 1]), &c->log);
		pv_buf_puts(&c->log, "|");
	}
	pv_buf_puts(&c->log, "\n");
}

static void roundtrip(const char *wire, size_t n);

static void on_element(void *ud, pv_xml *el)
{
	ctx *c = ud;
	size_t start = c->log.len;
	pv_xml_serialize(el, "jabber:client", &c->log);
	if (c->mode == SPLIT)
		roundtrip(c->log.data + start, c->log.len - start);
	pv_buf_puts(&c->log, "\n");
	pv_xml *d = pv_xml_dup(el); /* exercise dup/free on hostile trees too */
	/* What c2s does with a client's stanza: a <message> root hosts its record and
	 * addresses (stanza.c), the from stamp may land there too, then the wire form. */
	static pv_jid from;
	if (!from.full && pv_jid_parse_str(&from, "fuzz@localhost/resource") != 0)
		abort();
	pv_stanza *st = pv_stanza_new(el, NULL);
	if (st) {
		pv_stanza_set_from_jid(st, &from);
		if (pv_stanza_wire(st)->len == 0)
			abort();
		pv_stanza_unref(st);
	} else {
		pv_xml_free(el);
	}
	pv_xml_free(d);
}

static void on_close(void *ud)
{
	ctx *c = ud;
	pv_buf_puts(&c->log, "C\n");
}

static const pv_xmlstream_cb cbs = { on_open, on_element, on_close };
static const pv_xmlstream_limits lim = { 2048, 16 };

/* A common header and four stanzas: a stream that continues from here is on the
 * thread's shared parser from its next feed (xmlstream.c, "shared parsers"). */
#define WARM HDR "<presence/><presence/><presence/><presence/>"

/* Feeds data[0, split) and then the rest in pieces of step bytes (0: in one); when
 * warm, WARM goes first, as a feed of its own. */
static pv_xs_error run(const uint8_t *data, size_t n, size_t split, size_t step, enum mode mode,
	bool warm, pv_buf *log)
{
	ctx c = { .mode = mode };
	pv_buf_init(&c.log);
	/* The re-parse uses default limits: serialising may grow a stanza (xmlns written
	 * out, entities escaped), and that growth is not a parser bug. */
	pv_xmlstream *xs = pv_xmlstream_new(&cbs, &c, mode == REPARSE ? NULL : &lim);
	pv_xs_error e = warm ? pv_xmlstream_feed(xs, WARM, strlen(WARM)) : PV_XS_OK;
	if (e == PV_XS_OK)
		e = pv_xmlstream_feed(xs, (const char *)data, split);
	for (size_t off = split; e == PV_XS_OK && off < n;) {
		size_t len = step && n - off > step ? step : n - off;
		e = pv_xmlstream_feed(xs, (const char *)data + off, len);
		off += len;
	}
	if (e != PV_XS_OK && pv_xmlstream_error_text(xs)[0] == '\0')
		abort(); /* every error explains itself */
	pv_xmlstream_free(xs);
	*log = c.log;
	return e;
}

static void roundtrip(const char *wire, size_t n)
{
	/* A serialised stanza is a complete element in scope jabber:client, so inside a
	 * fresh jabber:client stream it must parse and serialise to the same bytes. */
	pv_buf in, out;
	pv_buf_init(&in);
	pv_buf_puts(&in, HDR);
	pv_buf_append(&in, wire, n);
	pv_xs_error e = run((const uint8_t *)in.data, in.len, 0, 0, REPARSE, false, &out);
	if (e != PV_XS_OK)
		abort();
	const char *nl = strchr(out.data, '\n'); /* skip the "O ..." header line */
	if (!nl || out.len - (size_t)(nl + 1 - out.data) != n + 1 || memcmp(nl + 1, wire, n) != 0)
		abort();
	pv_buf_fini(&in);
	pv_buf_fini(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	size_t n = size - 2;
	size_t split = n ? data[0] % (n + 1) : 0;
	/* the reads after the first, which move a stream on and off the thread's shared
	 * parser (xmlstream.c); the top bit starts the stream with WARM */
	size_t step = data[1] & 0x7f;
	bool warm = data[1] & 0x80;
	data += 2;

	pv_buf a, b;
	pv_xs_error ea = run(data, n, split, step, SPLIT, warm, &a);
	pv_xs_error eb;
	if (warm) {
		/* the same bytes in one feed: WARM and the input together */
		pv_buf whole;
		pv_buf_init(&whole);
		pv_buf_puts(&whole, WARM);
		pv_buf_append(&whole, data, n);
		eb = run((const uint8_t *)whole.data, whole.len, whole.len, 0, WHOLE, false, &b);
		pv_buf_fini(&whole);
	} else {
		eb = run(data, n, n, 0, WHOLE, false, &b);
	}
	/* Size errors depend on where feeds end (the check runs per feed); anything that
	 * both runs accepted must have produced the same events. */
	if (ea == PV_XS_OK && eb == PV_XS_OK &&
	    (a.len != b.len || (a.len && memcmp(a.data, b.data, a.len) != 0)))
		abort();
	/* Outcomes other than the size limit do not depend on the split either, but for
	 * bytes after the stream's end: expat judges an unfinished token there only once
	 * more input comes, so junk at the end of the last feed may pass.  Both runs must
	 * then have reported the same events, the close included. */
	bool same = a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0);
	bool closed = same && a.len >= 2 && memcmp(a.data + a.len - 2, "C\n", 2) == 0;
	if (ea != eb && ea != PV_XS_ERR_SIZE && eb != PV_XS_ERR_SIZE && !closed)
		abort();
	pv_buf_fini(&a);
	pv_buf_fini(&b);
	return 0;
}
