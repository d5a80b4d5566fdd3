/* iq.h -- the core's side of the iq tracker (src/core/iq.c; the module API is pv_iq_send
 * in pv_module.h).  Threading: the worker loop only. */
#ifndef PV_CORE_IQ_H
#define PV_CORE_IQ_H

#include <stdbool.h>

#include "peyvand/pv_module.h"

/* The router hands over every iq result/error addressed to host h itself.  Returns true
 * when it answered a tracked iq (the callback ran). */
bool pv_iq_reply(pv_host *h, pv_stanza *st);
/* Call every pending callback of host h with NULL (module reload, host teardown). */
void pv_iq_host_flush(pv_host *h);
/* Shutdown: flush every host and free the tracker (idempotent). */
void pv_iq_fini(void);
/* Pending iqs, for tests and stats. */
size_t pv_iq_pending(void);

#endif
