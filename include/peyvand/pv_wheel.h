/* pv_wheel.h -- a timer wheel: many coarse deadlines on one libuv timer.
 *
 * A loop keeps one wheel (shared/DESIGN.md: one timer wheel per worker) for the
 * deadlines every connection has (auth, idle, trim, rate-limit resume).  A uv_timer per
 * connection cost 168 bytes of every idle session and a heap operation per re-arm; a
 * wheel node is 32 bytes inside its owner.
 *
 * Resolution PV_WHEEL_TICK_MS: a deadline fires in the first tick at or after it, so up
 * to one tick late, never early.  A deadline further away than one lap of the ring
 * waits in its slot and is looked at once per lap until it is due.
 *
 * Threading: a wheel and its nodes belong to one loop thread.  Callbacks run from the
 * wheel's uv_timer; a callback may start or stop any node, itself included. */
#ifndef PV_WHEEL_H
#define PV_WHEEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct uv_loop_s;
typedef struct pv_wheel pv_wheel;
typedef struct pv_tnode pv_tnode;
typedef void (*pv_tnode_fn)(pv_tnode *n);

struct pv_tnode {
	pv_tnode *next, **pprev;   /* pprev NULL: not scheduled */
	uint64_t due;              /* pv_now_ms() clock */
	pv_tnode_fn fire;
};

#define PV_WHEEL_TICK_MS 8

/* The wheel's timer is unreferenced: pending deadlines do not keep the loop alive. */
pv_wheel *pv_wheel_new(struct uv_loop_s *loop);
/* Closes the timer (the loop must run once more to finish that); nodes still scheduled
 * are dropped without firing and without being touched (their owners may be gone). */
void pv_wheel_free(pv_wheel *w);

/* (Re)schedules n to fire `in_ms` from now; a node is in at most one place. */
void pv_wheel_start(pv_wheel *w, pv_tnode *n, uint64_t in_ms, pv_tnode_fn fire);
void pv_wheel_stop(pv_wheel *w, pv_tnode *n);
static inline bool pv_wheel_active(const pv_tnode *n)
{
	return n->pprev != 0;
}
size_t pv_wheel_count(const pv_wheel *w);

#endif
