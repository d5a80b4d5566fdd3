/* iq.c -- the iq tracker: send an iq get/set from a local host and get its answer back
 * (RFC 6120 8.2.3: every get/set is answered by exactly one result or error with the
 * same id, from the entity it was sent to).
 *
 * pv_iq_send stamps an id ("pviq-<seq>-<random>" when the iq has none or its id is
 * already pending), remembers (host, id) -> {expected sender, callback}, arms a libuv
 * timer and routes the iq.  The router hands every result/error addressed to a host
 * itself to pv_iq_reply (router.c, iq_event); a reply whose sender is not the JID the
 * iq was sent to is ignored (anyone can guess an id; only the addressee may answer).
 * The callback runs exactly once: the entry leaves the table before it is called, and
 * whichever of reply / timeout / flush comes first wins.
 *
 * Ownership: the tracker owns the entries and their timers (a timer's memory is freed
 * in its uv_close callback); replies are borrowed for the duration of the callback.
 * Threading: the worker loop only (one table per process today; it becomes per worker
 * together with the rest of pv_worker). */
#include <stdio.h>
#include <string.h>

#include <uv.h>

#include "core/core.h"
#include "core/iq.h"
#include "peyvand/pv_log.h"

typedef struct pending {
	uv_timer_t timer;          /* first: the close callback frees the whole entry */
	char *key;                 /* "<host>\n<id>" */
	pv_host *host;
	char *peer;                /* normalised full JID the iq was sent to */
	pv_iq_cb cb;
	void *ud;
} pending;

static pv_map *table;          /* key -> pending */
static uint64_t seq;

static char *make_key(const char *host, const char *id)
{
	return pv_sprintf("%s\n%s", host, id);
}

static void free_entry(uv_handle_t *t)
{
	pending *p = t->data;
	pv_free(p->key);
	pv_free(p->peer);
	pv_free(p);
}

/* Takes p out of the table and runs its callback; p is freed afterwards. */
static void finish(pending *p, pv_stanza *reply)
{
	pv_map_del(table, p->key);
	uv_timer_stop(&p->timer);
	uv_close((uv_handle_t *)&p->timer, free_entry);
	p->cb(p->ud, reply);
}

static void on_timeout(uv_timer_t *t)
{
	pending *p = t->data;
	pv_debug("iq", "%s: no answer from %s in time (id %s)", p->host->name, p->peer,
		strchr(p->key, '\n') + 1);
	finish(p, NULL);
}

void pv_iq_send(pv_host *h, pv_stanza *iq, unsigned timeout_ms, pv_iq_cb cb, void *ud)
{
	PV_ASSERT(iq && iq->kind == PV_ST_IQ && iq->has_to && cb);
	if (!table)
		table = pv_map_new();
	char *key = iq->id && *iq->id ? make_key(h->name, iq->id) : NULL;
	if (!key || pv_map_get(table, key)) {
		char *rnd = pv_random_hex(4);
		char *id = pv_sprintf("pviq-%llu-%s", (unsigned long long)++seq, rnd);
		pv_xml_set_attr(iq->xml, "id", id);
		iq->id = pv_xml_attr(iq->xml, "id");
		pv_free(key);
		key = make_key(h->name, id);
		pv_free(rnd);
		pv_free(id);
	}
	if (!iq->has_from)
		pv_stanza_set_from(iq, h->name);
	pending *p = pv_calloc(1, sizeof(*p));
	p->key = key;
	p->host = h;
	p->peer = pv_strdup(iq->to.full);
	p->cb = cb;
	p->ud = ud;
	uv_timer_init(h->srv->loop, &p->timer);
	p->timer.data = p;
	uv_timer_start(&p->timer, on_timeout, timeout_ms ? timeout_ms : 1, 0);
	pv_map_put(table, key, p);
	/* Routed last: a local addressee answers from inside pv_route. */
	pv_route(h, iq);
	pv_stanza_unref(iq);
}

bool pv_iq_reply(pv_host *h, pv_stanza *st)
{
	if (!table || !st->id || !st->has_from)
		return false;
	char *key = make_key(h->name, st->id);
	pending *p = pv_map_get(table, key);
	pv_free(key);
	if (!p)
		return false;
	if (strcmp(p->peer, st->from.full) != 0) {
		pv_info("iq", "%s: answer to id %s from %s ignored (sent to %s)", h->name, st->id,
			st->from.full, p->peer);
		return false;
	}
	finish(p, st);
	return true;
}

typedef struct {
	pv_host *host;             /* NULL: every host */
	pending **v;
	size_t n, cap;
} collect_ctx;

static int collect(void *ud, const char *key, void *val)
{
	collect_ctx *c = ud;
	pending *p = val;
	if (c->host && p->host != c->host)
		return 0;
	if (c->n == c->cap) {
		c->cap = c->cap ? 2 * c->cap : 8;
		c->v = pv_realloc(c->v, c->cap * sizeof(*c->v));
	}
	c->v[c->n++] = p;
	return 0;
}

static void flush(pv_host *h)
{
	if (!table)
		return;
	/* Collected first: a callback may send new iqs (which stay pending). */
	collect_ctx c = {.host = h};
	pv_map_each(table, collect, &c);
	for (size_t i = 0; i < c.n; i++)
		finish(c.v[i], NULL);
	pv_free(c.v);
}

void pv_iq_host_flush(pv_host *h)
{
	flush(h);
}

void pv_iq_fini(void)
{
	/* Callbacks may send again; a few rounds settle it, then whatever is left is
	 * dropped without a callback (nothing can answer it any more). */
	for (int round = 0; round < 4 && table && pv_map_count(table); round++)
		flush(NULL);
	if (table && pv_map_count(table)) {
		collect_ctx c = {0};
		pv_map_each(table, collect, &c);
		for (size_t i = 0; i < c.n; i++) {
			pv_map_del(table, c.v[i]->key);
			uv_close((uv_handle_t *)&c.v[i]->timer, free_entry);
		}
		pv_free(c.v);
	}
	pv_map_free(table, NULL);
	table = NULL;
}

size_t pv_iq_pending(void)
{
	return table ? pv_map_count(table) : 0;
}
