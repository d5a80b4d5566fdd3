/* test_wheel.c -- unit tests for src/util/wheel.c on a real libuv loop: deadlines fire
 * once, never early, in due order across slots; stop, restart from a callback (also to
 * "now", which must not wait a lap), a callback stopping a node of the same slot, a
 * deadline further than a lap, and 10,000 nodes at once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "peyvand/pv_util.h"
#include "peyvand/pv_wheel.h"

#define MAX_WAIT_MS 5000 /* a bound for a broken wheel, not a speed check */

typedef struct item {
	pv_tnode node;       /* first: the callbacks cast back */
	uint64_t started, wanted;
	uint64_t fired_at;
	int fired;
	int restarts;        /* self-restarts left (0 ms each) */
	struct item *victim; /* stopped by this item's callback */
} item;

static pv_wheel *g_wheel;
static int g_fired;
static int g_order_bad;
static uint64_t g_last_due;

static void on_fire(pv_tnode *n)
{
	item *it = (item *)n;
	it->fired_at = pv_now_ms();
	it->fired++;
	g_fired++;
	/* in due order up to the resolution: one tick's nodes come in any order */
	if ((it->node.due + PV_WHEEL_TICK_MS - 1) / PV_WHEEL_TICK_MS <
	    (g_last_due + PV_WHEEL_TICK_MS - 1) / PV_WHEEL_TICK_MS)
		g_order_bad++;
	g_last_due = it->node.due;
	if (it->victim)
		pv_wheel_stop(g_wheel, &it->victim->node);
	if (it->restarts > 0) {
		it->restarts--;
		pv_wheel_start(g_wheel, &it->node, 0, on_fire);
	}
}

static void on_keepalive(uv_timer_t *t)
{
	(void)t;
}

/* Runs the loop until `*count >= want` (the wheel's own timer does not keep it alive). */
static void run_until(uv_loop_t *loop, const int *count, int want)
{
	uv_timer_t keep;
	uint64_t deadline = pv_now_ms() + MAX_WAIT_MS;
	uv_timer_init(loop, &keep);
	uv_timer_start(&keep, on_keepalive, 1, 1);
	while (*count < want && pv_now_ms() < deadline)
		uv_run(loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&keep, NULL);
	uv_run(loop, UV_RUN_NOWAIT);
}

static void start(item *it, uint64_t in_ms)
{
	it->started = pv_now_ms();
	it->wanted = in_ms;
	pv_wheel_start(g_wheel, &it->node, in_ms, on_fire);
}

static int setup(void **state)
{
	uv_loop_t *loop = malloc(sizeof *loop);
	assert_int_equal(uv_loop_init(loop), 0);
	g_wheel = pv_wheel_new(loop);
	g_fired = g_order_bad = 0;
	g_last_due = 0;
	*state = loop;
	return 0;
}

static int teardown(void **state)
{
	uv_loop_t *loop = *state;
	pv_wheel_free(g_wheel);
	uv_run(loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(loop), 0);
	free(loop);
	return 0;
}

static void check_not_early(const item *it)
{
	assert_int_equal(it->fired, 1);
	assert_true(it->fired_at >= it->started + it->wanted);
}

static void test_order_and_never_early(void **state)
{
	static const uint64_t in[] = {40, 0, 17, 3, 90, 8, 9, 200, 1, 65};
	enum { N = sizeof in / sizeof in[0] };
	item it[N];
	memset(it, 0, sizeof it);
	for (int i = 0; i < N; i++)
		start(&it[i], in[i]);
	assert_int_equal(pv_wheel_count(g_wheel), N);
	run_until(*state, &g_fired, N);
	for (int i = 0; i < N; i++)
		check_not_early(&it[i]);
	assert_int_equal(g_order_bad, 0);
	assert_int_equal(pv_wheel_count(g_wheel), 0);
}

static void test_stop_and_restart(void **state)
{
	item a = {0}, b = {0}, c = {0};
	start(&a, 10);
	start(&b, 10);
	start(&c, 30);
	pv_wheel_stop(g_wheel, &b.node);
	assert_false(pv_wheel_active(&b.node));
	pv_wheel_stop(g_wheel, &b.node); /* twice is harmless */
	start(&a, 50);                   /* restart moves it, not duplicates it */
	assert_int_equal(pv_wheel_count(g_wheel), 2);
	run_until(*state, &g_fired, 2);
	check_not_early(&a);
	check_not_early(&c);
	assert_int_equal(b.fired, 0);
	assert_true(c.fired_at <= a.fired_at);
}

/* A callback that restarts its node for "now" gets it on the next tick: ten rounds
 * take ten ticks, not ten laps (a lap is 32 s, past MAX_WAIT_MS). */
static void test_restart_now_from_callback(void **state)
{
	item a = {0};
	a.restarts = 10;
	start(&a, 0);
	run_until(*state, &g_fired, 11);
	assert_int_equal(a.fired, 11);
	assert_int_equal(pv_wheel_count(g_wheel), 0);
}

/* Two nodes in one slot: the first one's callback stops the second, which never fires. */
static void test_callback_stops_slot_neighbour(void **state)
{
	item a = {0}, b = {0}, c = {0};
	start(&b, 20);
	start(&a, 20); /* pushed in front of b: fires first */
	a.victim = &b;
	start(&c, 60);
	run_until(*state, &g_fired, 2);
	assert_int_equal(a.fired, 1);
	assert_int_equal(b.fired, 0);
	assert_int_equal(c.fired, 1);
	assert_int_equal(pv_wheel_count(g_wheel), 0);
}

/* A deadline more than a lap away shares its slot with near ones and must wait. */
static void test_beyond_one_lap(void **state)
{
	item far = {0}, near[3];
	memset(near, 0, sizeof near);
	for (int i = 0; i < 3; i++)
		start(&near[i], (uint64_t)(i + 1) * 16);
	/* exactly one lap (4096 slots) after near[1]: the same slot, a lap later */
	far.started = near[1].started;
	far.wanted = 32 + 4096 * PV_WHEEL_TICK_MS;
	pv_wheel_start(g_wheel, &far.node, far.wanted - (pv_now_ms() - far.started), on_fire);
	run_until(*state, &g_fired, 3);
	for (int i = 0; i < 3; i++)
		check_not_early(&near[i]);
	assert_int_equal(far.fired, 0);
	assert_true(pv_wheel_active(&far.node));
	assert_int_equal(pv_wheel_count(g_wheel), 1);
	pv_wheel_stop(g_wheel, &far.node);
	assert_int_equal(pv_wheel_count(g_wheel), 0);
}

static void test_many(void **state)
{
	enum { N = 10000 };
	item *it = calloc(N, sizeof *it);
	assert_non_null(it);
	srand(7);
	for (int i = 0; i < N; i++)
		start(&it[i], (uint64_t)(rand() % 200));
	run_until(*state, &g_fired, N);
	for (int i = 0; i < N; i++)
		check_not_early(&it[i]);
	assert_int_equal(g_fired, N);
	assert_int_equal(g_order_bad, 0);
	free(it);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_order_and_never_early, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stop_and_restart, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restart_now_from_callback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_callback_stops_slot_neighbour, setup, teardown),
		cmocka_unit_test_setup_teardown(test_beyond_one_lap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
