/* streamio.h -- the bytes that open and end an XMPP stream (RFC 6120 4.3, 4.9), shared
 * by client and server streams.  Pure formatting into a pv_buf. */
#ifndef PV_XMPP_STREAMIO_H
#define PV_XMPP_STREAMIO_H

#include <stdbool.h>

#include "peyvand/pv_util.h"

/* <?xml?><stream:stream xmlns=NS ...>.  dialback declares xmlns:db; id, from and to
 * are left out when NULL; lang adds xml:lang='en'. */
void pv_stream_header(pv_buf *b, const char *ns, bool dialback, const char *id, const char *from,
	const char *to, bool lang);
/* <stream:error><COND/>[<text/>][APP]</stream:error></stream:stream> in the schema's
 * order: the defined condition, the optional text, the optional application-specific
 * condition (app: serialised XML or NULL). */
void pv_stream_error(pv_buf *b, const char *cond, const char *text, const char *app);

#endif
