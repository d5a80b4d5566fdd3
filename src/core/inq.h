/* inq.h -- the inbound side of an acknowledged stream (a client's XEP-0198 session or
 * a peer server's stream): which received stanzas are durably handled, and answering
 * <r/> only once they are.
 *
 * Every received stanza gets a pv_inrec with one hold for its dispatch; handlers take
 * more holds (pv_hold_take, pv_module.h) for the storage writes its acceptance rests
 * on.  `done` is the prefix of stanzas whose holds are all released; the owner decides
 * when that becomes `durable` (a c2s session first commits its counter; an s2s stream
 * commits its high-water mark with the delivery) and only durable counts are ever
 * acknowledged.  Each <r/> is answered once the stanzas it covers are durable.
 * Threading: the worker loop only.  A record whose owner went away (pv_inq_fini) stays
 * alive until its last hold is released. */
#ifndef PV_CORE_INQ_H
#define PV_CORE_INQ_H

#include <stdint.h>

typedef struct pv_inq pv_inq;
typedef struct pv_inrec pv_inrec;

struct pv_inrec {
	pv_inrec *next;
	pv_inq *q;                 /* NULL once the owner is gone */
	uint64_t seq;
	uint64_t tag;              /* owner data (s2s: the sender's queue seq) */
	int holds;
};

#define PV_INQ_RS 16
struct pv_inq_rs {
	uint64_t target[PV_INQ_RS]; /* answer once durable >= target */
	uint32_t count[PV_INQ_RS];  /* how many <r/> that answer covers */
};

struct pv_inq {
	pv_inrec *head, *tail;
	uint64_t count;            /* stanzas received */
	uint64_t done;             /* handled prefix */
	uint64_t done_tag;         /* tag of the last stanza in the prefix */
	uint64_t durable;          /* what may be acknowledged */
	uint64_t base;             /* count when acknowledgements started (<enable/>) */
	struct pv_inq_rs *rs;      /* pending <r/>s; made on the first that must wait (most
	                            * sessions never have one: 192 bytes of each idle one) */
	unsigned r_head, r_len;
	void *owner;
	void (*advanced)(void *owner);              /* `done` grew */
	void (*answer)(void *owner, uint32_t h);     /* send <a h=.../> */
};

void pv_inq_init(pv_inq *q, void *owner, void (*advanced)(void *), void (*answer)(void *, uint32_t));
void pv_inq_fini(pv_inq *q);
/* A new stanza arrived: its record, with the dispatch hold, becomes the current hold. */
pv_inrec *pv_inq_begin(pv_inq *q, uint64_t tag);
/* Dispatch finished: release its hold and clear the current hold. */
void pv_inq_end(pv_inrec *r);
/* The owner made `v` durable: answer every <r/> it satisfies. */
void pv_inq_set_durable(pv_inq *q, uint64_t v);
/* An <r/> arrived. */
void pv_inq_request(pv_inq *q);

#endif
