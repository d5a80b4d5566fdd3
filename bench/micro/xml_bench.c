/* xml_bench.c -- CPU and allocations per stanza on the tree path of issue 5: bytes of
 * a client stream -> pv_xmlstream (the real expat parser) -> pv_stanza_new (addresses
 * parsed) -> pv_stanza_set_from (the server stamps the sender, as c2s.c does) ->
 * pv_stanza_wire (serialise) -> pv_stanza_unref.  No sockets, no TLS, no storage.
 *
 * Not a unit test and not a tool of the
 * release: build and run it with bench/micro/xml.sh, which compiles the sources it
 * needs directly, like tests/fuzz/run.sh, with the release flags (-O3 -DNDEBUG).
 *
 * Allocations are counted by interposing malloc/calloc/realloc/free over glibc's
 * __libc_* entry points, so every allocation in the process is seen (expat's, glibc's
 * strdup, ICU's in jid.c), not only those made through pv_malloc.  Counting is on only
 * around the timed run.  The time is wall-clock (CLOCK_MONOTONIC) over the whole run
 * divided by the stanza count; one core, the machine otherwise as idle as it gets.
 *
 * Output: one line per message shape: ns/stanza, allocations/stanza (malloc + calloc +
 * realloc, and the two apart), frees/stanza, and an FNV-1a checksum of every serialised
 * byte (of the untimed warm-up run), so a change to the tree can be checked to leave the
 * wire bytes identical.  For instruction counts that do not depend on the neighbours:
 *   valgrind --tool=callgrind --toggle-collect=run /tmp/pv-xml-bench 5000 4096 plain
 * and divide the total by 2 x 5000 (the warm-up and the timed run).
 *
 * Single-threaded; everything it allocates is freed before exit. */
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "peyvand/pv_stanza.h"
#include "peyvand/pv_util.h"
#include "peyvand/pv_xml.h"

/* ---- allocation counting -------------------------------------------------------------- */

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);

static int counting;
static uint64_t n_alloc, n_realloc, n_free;

void *malloc(size_t n)
{
	n_alloc += counting;
	return __libc_malloc(n);
}

void *calloc(size_t n, size_t s)
{
	n_alloc += counting;
	return __libc_calloc(n, s);
}

void *realloc(void *p, size_t n)
{
	n_realloc += counting;
	return __libc_realloc(p, n);
}

void free(void *p)
{
	n_free += counting && p;
	__libc_free(p);
}

/* ---- the pipeline ------------------------------------------------------------------- */

typedef struct {
	uint64_t stanzas;
	uint64_t bytes;
	uint32_t fnv;   /* FNV-1a over every wire byte (the warm-up run only) */
	bool checksum, print_first;
} sink;

static void on_element(void *ud, pv_xml *el)
{
	sink *k = ud;
	const char *bad = NULL;
	pv_stanza *st = pv_stanza_new(el, &bad);
	if (!st) {
		fprintf(stderr, "bad stanza (%s)\n", bad ? bad : "?");
		exit(1);
	}
	pv_stanza_set_from(st, "u1@localhost/phone");
	const pv_buf *w = pv_stanza_wire(st);
	if (k->checksum)
		for (size_t i = 0; i < w->len; i++)
			k->fnv = (k->fnv ^ (uint8_t)w->data[i]) * 16777619u;
	k->bytes += w->len;
	if (k->print_first) {
		printf("  first wire: %.*s\n", (int)w->len, w->data);
		k->print_first = false;
	}
	k->stanzas++;
	pv_stanza_unref(st);
}

static const pv_xmlstream_cb cbs = { NULL, on_element, NULL };

/* n messages of one shape, each with its own id, behind a stream header. */
static void make_input(pv_buf *in, const char *shape, uint64_t n)
{
	pv_buf_puts(in, "<?xml version='1.0'?><stream:stream to='localhost' version='1.0' "
			"xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>");
	for (uint64_t i = 0; i < n; i++)
		pv_buf_printf(in, shape, (unsigned long long)i, (unsigned long long)i);
}

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* Feed in chunk-sized pieces, as reads of a busy socket (several stanzas per read). */
/* noinline: callgrind --toggle-collect=run needs the symbol. */
__attribute__((noinline)) static void run(const pv_buf *in, size_t chunk, sink *k)
{
	pv_xmlstream *xs = pv_xmlstream_new(&cbs, k, NULL);
	for (size_t off = 0; off < in->len; off += chunk) {
		size_t len = in->len - off < chunk ? in->len - off : chunk;
		if (pv_xmlstream_feed(xs, in->data + off, len) != PV_XS_OK) {
			fprintf(stderr, "parse error: %s\n", pv_xmlstream_error_text(xs));
			exit(1);
		}
	}
	pv_xmlstream_free(xs);
}

static void bench(const char *label, const char *shape, uint64_t n, size_t chunk)
{
	pv_buf in;
	pv_buf_init(&in);
	make_input(&in, shape, n);

	/* The untimed run warms caches and the allocator and checksums the output (the
	 * same input gives the same bytes in the timed run, which skips it). */
	sink warm = { .fnv = 2166136261u, .checksum = true, .print_first = true };
	printf("%s\n", label);
	run(&in, chunk, &warm);

	sink k = { 0 };
	n_alloc = n_realloc = n_free = 0;
	double t0 = now_ns();
	counting = 1;
	run(&in, chunk, &k);
	counting = 0;
	double t1 = now_ns();
	if (k.stanzas != n) {
		fprintf(stderr, "%llu stanzas, expected %llu\n", (unsigned long long)k.stanzas,
			(unsigned long long)n);
		exit(1);
	}
	printf("  %llu stanzas, %zu bytes in, %llu bytes out, chunk %zu\n",
		(unsigned long long)n, in.len, (unsigned long long)k.bytes, chunk);
	printf("  %.0f ns/stanza  %.2f mallocs/stanza (malloc+calloc %.2f, realloc %.2f)  "
	       "%.2f frees/stanza  wire fnv %08x\n",
		(t1 - t0) / (double)n, (double)(n_alloc + n_realloc) / (double)n,
		(double)n_alloc / (double)n, (double)n_realloc / (double)n,
		(double)n_free / (double)n, warm.fnv);
	pv_buf_fini(&in);
}

int main(int argc, char **argv)
{
	uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 200000;
	size_t chunk = argc > 2 ? strtoul(argv[2], NULL, 10) : 4096;
	const char *only = argc > 3 ? argv[3] : NULL;
	if (n == 0 || chunk == 0) {
		fprintf(stderr, "usage: %s [stanzas] [chunk bytes] [plain|rich]\n", argv[0]);
		return 2;
	}
	/* As the server runs (src/core/main.c): no glibc fastbins. */
#ifdef M_MXFAST
	mallopt(M_MXFAST, 0);
#endif
	/* The message of issue 5 (what peyvand-bench sends, shortened). */
	if (!only || strcmp(only, "plain") == 0)
		bench("plain: <message to id type><body/></message>",
			"<message to='u2@localhost' id='m%llu' type='chat'>"
			"<body>hello %llu</body></message>",
			n, chunk);
	/* What a modern client sends with each chat message: chat state, receipt request,
	 * origin id (XEP-0085, XEP-0184, XEP-0359). */
	if (!only || strcmp(only, "rich") == 0)
		bench("rich: + xml:lang, <active/>, <request/>, <origin-id/>",
			"<message to='u2@localhost' id='m%llu' type='chat' xml:lang='en'>"
			"<body>hello %llu</body>"
			"<active xmlns='http://jabber.org/protocol/chatstates'/>"
			"<request xmlns='urn:xmpp:receipts'/>"
			"<origin-id xmlns='urn:xmpp:sid:0' id='0c8f1d2e-5b7a-4e61-9d3c-2f4a6b8c9e01'/>"
			"</message>",
			n, chunk);
	return 0;
}
