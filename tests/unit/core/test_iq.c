/* test_iq.c -- unit tests for src/core/iq.c, the iq tracker, with the real router and
 * host code and a libuv loop but no network: one host "a.example", a minimal pv_server
 * without s2s (so an iq for another domain bounces at once with
 * remote-server-not-found) and test handlers on the host's events.
 * Checks: the callback runs exactly once -- with the answer, with an error bounce, with
 * NULL on timeout, on flush --; answers from anyone but the addressee are ignored; ids
 * are assigned when absent or already pending; nothing stays pending or leaks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "core/core.h"
#include "core/iq.h"

#define NS_T "urn:test:iq"

typedef struct calls {
	int n;
	char type[16];
	char from[64];
	char id[64];
} calls;

static pv_server srv;
static pv_host *host;

static void on_reply(void *ud, pv_stanza *reply)
{
	calls *c = ud;
	c->n++;
	snprintf(c->type, sizeof(c->type), "%s", reply ? (reply->type ? reply->type : "?") : "NULL");
	snprintf(c->from, sizeof(c->from), "%s", reply && reply->has_from ? reply->from.full : "");
	snprintf(c->id, sizeof(c->id), "%s", reply && reply->id ? reply->id : "");
}

static pv_stanza *make_iq(const char *to, const char *id)
{
	pv_xml *x = pv_xml_new("iq", PV_NS_CLIENT);
	pv_xml_set_attr(x, "type", "get");
	pv_xml_set_attr(x, "to", to);
	if (id)
		pv_xml_set_attr(x, "id", id);
	pv_xml_add_child(x, "q", NS_T);
	pv_stanza *st = pv_stanza_new(x, NULL);
	assert_non_null(st);
	return st;
}

/* Handlers for iq-get/host/urn:test:iq on a.example: answer, stay silent, or have a
 * stranger answer first. */
static int mode;
static char last_id[64];
static int handler(pv_event *ev, void *ud)
{
	pv_stanza *st = ev->stanza;
	snprintf(last_id, sizeof(last_id), "%s", st->id ? st->id : "");
	if (mode == 0) {
		pv_stanza *r = pv_stanza_iq_result(st);
		pv_stanza_set_from(r, st->to.full);
		pv_route(ev->host, r);
		pv_stanza_unref(r);
	} else if (mode == 2) {
		/* Someone else guesses the id: ignored by the tracker. */
		pv_stanza *r = pv_stanza_iq_result(st);
		pv_stanza_set_from(r, "mallory@a.example/x");
		pv_route(ev->host, r);
		pv_stanza_unref(r);
	}
	return PV_HANDLED;
}

static int setup(void **state)
{
	memset(&srv, 0, sizeof(srv));
	srv.loop = pv_malloc(sizeof(uv_loop_t));
	uv_loop_init(srv.loop);
	host = pv_host_new(&srv, "a.example", NULL);
	srv.hosts = &host;
	srv.nhosts = 1;
	pv_hook(host, "iq-get/host/" NS_T, 0, handler, NULL);
	return 0;
}

static int teardown(void **state)
{
	pv_iq_fini();
	pv_host_free(host);
	uv_run(srv.loop, UV_RUN_DEFAULT); /* close callbacks free the timers */
	assert_int_equal(uv_loop_close(srv.loop), 0);
	pv_free(srv.loop);
	return 0;
}

static void run_for(uint64_t ms)
{
	uint64_t end = pv_now_ms() + ms;
	while (pv_now_ms() < end)
		uv_run(srv.loop, UV_RUN_NOWAIT);
}

static void test_answer_once(void **state)
{
	calls c = {0};
	mode = 0;
	pv_iq_send(host, make_iq("a.example", "q1"), 1000, on_reply, &c);
	assert_int_equal(c.n, 1); /* a local addressee answers inside pv_iq_send */
	assert_string_equal(c.type, "result");
	assert_string_equal(c.from, "a.example");
	assert_string_equal(c.id, "q1");
	assert_int_equal(pv_iq_pending(), 0);
	run_for(50);
	assert_int_equal(c.n, 1);
}

static void test_bounce_is_the_answer(void **state)
{
	calls c = {0};
	/* No s2s: the router bounces remote-server-not-found from b.example. */
	pv_iq_send(host, make_iq("b.example", NULL), 1000, on_reply, &c);
	assert_int_equal(c.n, 1);
	assert_string_equal(c.type, "error");
	assert_string_equal(c.from, "b.example");
	assert_true(strncmp(c.id, "pviq-", 5) == 0); /* assigned */
	assert_int_equal(pv_iq_pending(), 0);
}

static void test_timeout(void **state)
{
	calls c = {0};
	mode = 1;
	pv_iq_send(host, make_iq("a.example", "slow"), 30, on_reply, &c);
	assert_int_equal(c.n, 0);
	assert_int_equal(pv_iq_pending(), 1);
	run_for(200);
	assert_int_equal(c.n, 1);
	assert_string_equal(c.type, "NULL");
	assert_int_equal(pv_iq_pending(), 0);
	/* A late answer is not tracked any more: nothing happens. */
	pv_stanza *late = make_iq("a.example", "slow");
	pv_xml_set_attr(late->xml, "type", "result");
	late->type = pv_xml_attr(late->xml, "type");
	pv_stanza_set_from(late, "a.example");
	assert_false(pv_iq_reply(host, late));
	pv_stanza_unref(late);
	assert_int_equal(c.n, 1);
}

static void test_wrong_sender_ignored(void **state)
{
	calls c = {0};
	mode = 2;
	pv_iq_send(host, make_iq("a.example", "guess"), 50, on_reply, &c);
	assert_int_equal(c.n, 0);              /* mallory's answer did not count */
	assert_int_equal(pv_iq_pending(), 1);
	/* The real answer still does. */
	pv_stanza *r = make_iq("a.example", last_id);
	pv_xml_set_attr(r->xml, "type", "result");
	r->type = pv_xml_attr(r->xml, "type");
	pv_stanza_set_from(r, "a.example");
	assert_true(pv_iq_reply(host, r));
	assert_false(pv_iq_reply(host, r));    /* and only once */
	pv_stanza_unref(r);
	assert_int_equal(c.n, 1);
	assert_string_equal(c.type, "result");
	run_for(100);
	assert_int_equal(c.n, 1);
}

static void test_duplicate_id_and_flush(void **state)
{
	calls c1 = {0}, c2 = {0};
	mode = 1;
	pv_iq_send(host, make_iq("a.example", "dup"), 5000, on_reply, &c1);
	pv_iq_send(host, make_iq("a.example", "dup"), 5000, on_reply, &c2);
	assert_int_equal(pv_iq_pending(), 2); /* the second got an id of its own */
	pv_iq_host_flush(host);
	assert_int_equal(c1.n, 1);
	assert_int_equal(c2.n, 1);
	assert_string_equal(c1.type, "NULL");
	assert_int_equal(pv_iq_pending(), 0);
	run_for(50);
	assert_int_equal(c1.n + c2.n, 2);
}

static void test_fini_calls_pending(void **state)
{
	calls c = {0};
	mode = 1;
	pv_iq_send(host, make_iq("a.example", "end"), 5000, on_reply, &c);
	pv_iq_fini();
	assert_int_equal(c.n, 1);
	assert_string_equal(c.type, "NULL");
	assert_int_equal(pv_iq_pending(), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_answer_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bounce_is_the_answer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wrong_sender_ignored, setup, teardown),
		cmocka_unit_test_setup_teardown(test_duplicate_id_and_flush, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fini_calls_pending, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
