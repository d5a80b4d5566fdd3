/* wheel.c -- see pv_wheel.h.
 *
 * SLOTS lists indexed by tick (due / TICK) modulo SLOTS.  `cur` is the next tick to
 * process; a node is never put in a slot before `cur`, so a deadline already past when
 * it is started (or restarted from a callback) fires on the next tick, not a lap later.
 * The uv_timer is armed for the earliest non-empty slot only, so an idle wheel (every
 * deadline minutes away) wakes once per slot that holds one, not every tick. */
#include "peyvand/pv_wheel.h"

#include "peyvand/pv_util.h"

#include <uv.h>

#define SLOTS 4096 /* one lap: 4096 x 8 ms = 32.8 s */

struct pv_wheel {
	uv_timer_t timer;
	uint64_t cur;        /* next tick to process */
	uint64_t armed;      /* tick the timer is set for; UINT64_MAX: not set */
	size_t count;
	pv_tnode *slot[SLOTS];
};

static uint64_t tick_of(uint64_t ms)
{
	return (ms + PV_WHEEL_TICK_MS - 1) / PV_WHEEL_TICK_MS; /* never early */
}

static void unlink_node(pv_tnode *n)
{
	if (n->next)
		n->next->pprev = n->pprev;
	*n->pprev = n->next;
	n->next = NULL;
	n->pprev = NULL;
}

static void push(pv_tnode **head, pv_tnode *n)
{
	n->next = *head;
	if (n->next)
		n->next->pprev = &n->next;
	n->pprev = head;
	*head = n;
}

static void on_timer(uv_timer_t *t);

static void arm(pv_wheel *w, uint64_t tick, uint64_t now)
{
	uint64_t at = tick * PV_WHEEL_TICK_MS;
	w->armed = tick;
	uv_timer_start(&w->timer, on_timer, at > now ? at - now : 0, 0);
}

/* Arms the timer for the first non-empty slot from cur on, if any. */
static void arm_next(pv_wheel *w, uint64_t now)
{
	w->armed = UINT64_MAX;
	if (!w->count) {
		uv_timer_stop(&w->timer);
		return;
	}
	for (uint64_t t = w->cur; t < w->cur + SLOTS; t++)
		if (w->slot[t % SLOTS]) {
			arm(w, t, now);
			return;
		}
}

static void on_timer(uv_timer_t *t)
{
	pv_wheel *w = t->data;
	uint64_t now = pv_now_ms(), nowt = now / PV_WHEEL_TICK_MS;

	w->armed = UINT64_MAX;
	if (nowt >= w->cur + SLOTS)
		w->cur = nowt + 1 - SLOTS; /* late by a lap or more: each slot once is enough */
	while (w->cur <= nowt) {
		pv_tnode **head = &w->slot[w->cur % SLOTS], *list = *head;
		if (list)
			list->pprev = &list;
		*head = NULL;
		w->cur++; /* from here on, starts go to later slots */
		while (list) {
			pv_tnode *n = list;
			unlink_node(n);
			if (tick_of(n->due) > nowt) {
				push(head, n); /* a later lap's */
				continue;
			}
			w->count--;
			n->fire(n);
		}
	}
	arm_next(w, pv_now_ms());
}

pv_wheel *pv_wheel_new(uv_loop_t *loop)
{
	pv_wheel *w = pv_calloc(1, sizeof *w);
	PV_ASSERT(uv_timer_init(loop, &w->timer) == 0);
	w->timer.data = w;
	uv_unref((uv_handle_t *)&w->timer);
	w->cur = pv_now_ms() / PV_WHEEL_TICK_MS;
	w->armed = UINT64_MAX;
	return w;
}

static void on_closed(uv_handle_t *h)
{
	pv_free(h->data);
}

void pv_wheel_free(pv_wheel *w)
{
	if (!w)
		return;
	/* Nodes still scheduled are not touched: their owners may be gone already. */
	uv_close((uv_handle_t *)&w->timer, on_closed);
}

void pv_wheel_start(pv_wheel *w, pv_tnode *n, uint64_t in_ms, pv_tnode_fn fire)
{
	uint64_t now = pv_now_ms();

	if (n->pprev)
		unlink_node(n);
	else
		w->count++;
	if (w->count == 1 && w->armed == UINT64_MAX && now / PV_WHEEL_TICK_MS > w->cur)
		w->cur = now / PV_WHEEL_TICK_MS; /* idle until now: nothing to catch up */
	n->due = now + in_ms;
	n->fire = fire;
	uint64_t tick = tick_of(n->due);
	if (tick < w->cur)
		tick = w->cur;
	push(&w->slot[tick % SLOTS], n);
	if (tick < w->armed)
		arm(w, tick, now);
}

void pv_wheel_stop(pv_wheel *w, pv_tnode *n)
{
	if (!n->pprev)
		return;
	unlink_node(n);
	w->count--;
}

size_t pv_wheel_count(const pv_wheel *w)
{
	return w->count;
}
