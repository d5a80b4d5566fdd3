/* inq.c -- see inq.h.  Also the hold functions of pv_module.h. */
#include <string.h>
#include "core/core.h"
#include "peyvand/pv_log.h"

void pv_inq_init(pv_inq *q, void *owner, void (*advanced)(void *), void (*answer)(void *, uint32_t))
{
	memset(q, 0, sizeof(*q));
	q->owner = owner;
	q->advanced = advanced;
	q->answer = answer;
}

void pv_inq_fini(pv_inq *q)
{
	for (pv_inrec *r = q->head, *nx; r; r = nx) {
		nx = r->next;
		r->next = NULL;
		if (r->holds > 0)
			r->q = NULL; /* freed by its last pv_hold_release */
		else
			pv_free(r);
	}
	q->head = q->tail = NULL;
	pv_free(q->rs);
	q->rs = NULL;
	q->r_len = 0;
	if (pv_the_server && pv_the_server->worker.cur_hold && pv_the_server->worker.cur_hold->q == q)
		pv_the_server->worker.cur_hold = NULL;
}

pv_inrec *pv_inq_begin(pv_inq *q, uint64_t tag)
{
	pv_inrec *r = pv_calloc(1, sizeof(*r));
	r->q = q;
	r->seq = ++q->count;
	r->tag = tag;
	r->holds = 1;
	if (q->tail)
		q->tail->next = r;
	else
		q->head = r;
	q->tail = r;
	pv_the_server->worker.cur_hold = r;
	return r;
}

void pv_inq_end(pv_inrec *r)
{
	pv_the_server->worker.cur_hold = NULL;
	pv_the_server->worker.cur_stanza = NULL;
	pv_hold_release((pv_hold *)r);
}

static void advance(pv_inq *q)
{
	uint64_t before = q->done;
	while (q->head && q->head->holds == 0) {
		pv_inrec *r = q->head;
		q->head = r->next;
		q->done = r->seq;
		if (r->tag)
			q->done_tag = r->tag;
		pv_free(r);
	}
	if (!q->head)
		q->tail = NULL;
	if (q->done != before && q->advanced)
		q->advanced(q->owner);
}

void pv_inq_set_durable(pv_inq *q, uint64_t v)
{
	if (v > q->durable)
		q->durable = v;
	while (q->r_len && q->durable >= q->rs->target[q->r_head]) {
		uint32_t n = q->rs->count[q->r_head];
		q->r_head = (q->r_head + 1) % PV_INQ_RS;
		q->r_len--;
		while (n--)
			q->answer(q->owner, (uint32_t)(q->durable - q->base));
	}
}

void pv_inq_request(pv_inq *q)
{
	if (!q->r_len && q->durable >= q->count) {
		q->answer(q->owner, (uint32_t)(q->durable - q->base)); /* nothing to wait for */
		return;
	}
	if (!q->rs)
		q->rs = pv_malloc(sizeof(*q->rs));
	if (q->r_len == PV_INQ_RS) {
		/* Full: the newest entry covers this <r/> too and answers it once more. */
		unsigned last = (q->r_head + PV_INQ_RS - 1) % PV_INQ_RS;
		q->rs->target[last] = q->count;
		if (q->rs->count[last] < 1024)
			q->rs->count[last]++; /* beyond that a flood of <r/> gets merged answers */
	} else {
		unsigned i = (q->r_head + q->r_len) % PV_INQ_RS;
		q->rs->target[i] = q->count;
		q->rs->count[i] = 1;
		q->r_len++;
	}
	pv_inq_set_durable(q, q->durable);
}

pv_hold *pv_hold_take(void)
{
	pv_inrec *r = pv_the_server ? pv_the_server->worker.cur_hold : NULL;
	if (!r)
		return NULL;
	r->holds++;
	return (pv_hold *)r;
}

void pv_hold_release(pv_hold *h)
{
	pv_inrec *r = (pv_inrec *)h;
	if (!r)
		return;
	PV_ASSERT(r->holds > 0);
	if (--r->holds > 0)
		return;
	if (!r->q) {
		pv_free(r);
		return;
	}
	advance(r->q);
}

void pv_hold_store_done(void *ud, int rc)
{
	if (rc != 0)
		pv_error("store", "a write a stanza's acknowledgement rests on failed: rc=%d", rc);
	pv_hold_release(ud);
}
