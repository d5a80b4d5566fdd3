/* fuzz_xmlstream.c -- libFuzzer target for the XMPP stream parser (src/xmpp/xmlstream.c)
 * and the serialiser it feeds (src/util/xml.c).
 *
 * Built by hand (not part of CMake), from the project root:
 *   clang -std=c17 -g -O1 -D_GNU_SOURCE -Iinclude -Isrc \
 *     -fsanitize=fuzzer,address,undefined \
 *     tests/fuzz/fuzz_xmlstream.c src/xmpp/xmlstream.c src/util/xml.c \
 *     src/util/util.c src/util/log.c -lexpat -lcrypto -o /tmp/fuzz_xmlstream
 *   /tmp/fuzz_xmlstream -max_len=4096 -timeout=5 /tmp/xs-corpus
 *
 * Input: byte 0 picks where the rest is split into two feeds.  The same bytes are also
 * parsed in one piece; when both runs succeed, the events (header, serialised stanzas,
 * close) must be identical -- a split point must never change what a stream means.
 * Each stanza is also re-parsed from its own serialisation, which must reproduce it
 * byte for byte (the serialiser's output is well-formed, restricted XML). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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
	pv_xml_free(el);
	pv_xml_free(d);
}

static void on_close(void *ud)
{
	ctx *c = ud;
	pv_buf_puts(&c->log, "C\n");
}

static const pv_xmlstream_cb cbs = { on_open, on_element, on_close };
static const pv_xmlstream_limits lim = { 2048, 16 };

static pv_xs_error run(const uint8_t *data, size_t n, size_t split, enum mode mode, pv_buf *log)
{
	ctx c = { .mode = mode };
	pv_buf_init(&c.log);
	/* The re-parse uses default limits: serialising may grow a stanza (xmlns written
	 * out, entities escaped), and that growth is not a parser bug. */
	pv_xmlstream *xs = pv_xmlstream_new(&cbs, &c, mode == REPARSE ? NULL : &lim);
	pv_xs_error e = pv_xmlstream_feed(xs, (const char *)data, split);
	if (e == PV_XS_OK)
		e = pv_xmlstream_feed(xs, (const char *)data + split, n - split);
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
	pv_xs_error e = run((const uint8_t *)in.data, in.len, 0, REPARSE, &out);
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
	if (size < 1)
		return 0;
	size_t n = size - 1;
	size_t split = n ? data[0] % (n + 1) : 0;
	data++;

	pv_buf a, b;
	pv_xs_error ea = run(data, n, split, SPLIT, &a);
	pv_xs_error eb = run(data, n, n, WHOLE, &b);
	/* Size errors depend on where feeds end (the check runs per feed); anything that
	 * both runs accepted must have produced the same events. */
	if (ea == PV_XS_OK && eb == PV_XS_OK &&
	    (a.len != b.len || (a.len && memcmp(a.data, b.data, a.len) != 0)))
		abort();
	/* Outcomes other than the size limit do not depend on the split either. */
	if (ea != eb && ea != PV_XS_ERR_SIZE && eb != PV_XS_ERR_SIZE)
		abort();
	pv_buf_fini(&a);
	pv_buf_fini(&b);
	return 0;
}
