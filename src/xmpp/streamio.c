/* streamio.c -- see streamio.h. */
#include "xmpp/streamio.h"

#include <string.h>

#include "peyvand/pv_stanza.h"

static void attr(pv_buf *b, const char *name, const char *v)
{
	if (!v)
		return;
	pv_buf_printf(b, " %s='", name);
	pv_xml_escape(v, strlen(v), b);
	pv_buf_puts(b, "'");
}

void pv_stream_header(pv_buf *b, const char *ns, bool dialback, const char *id, const char *from,
	const char *to, bool lang)
{
	pv_buf_printf(b, "<?xml version='1.0'?><stream:stream xmlns='%s' xmlns:stream='" PV_NS_STREAM "'", ns);
	if (dialback)
		pv_buf_puts(b, " xmlns:db='jabber:server:dialback'");
	attr(b, "id", id);
	attr(b, "from", from);
	attr(b, "to", to);
	pv_buf_puts(b, " version='1.0'");
	if (lang)
		pv_buf_puts(b, " xml:lang='en'");
	pv_buf_puts(b, ">");
}

void pv_stream_error(pv_buf *b, const char *cond, const char *text, const char *app)
{
	pv_buf_printf(b, "<stream:error><%s xmlns='" PV_NS_STREAMS "'/>", cond);
	if (text) {
		pv_buf_puts(b, "<text xmlns='" PV_NS_STREAMS "'>");
		pv_xml_escape(text, strlen(text), b);
		pv_buf_puts(b, "</text>");
	}
	if (app)
		pv_buf_puts(b, app);
	pv_buf_puts(b, "</stream:error></stream:stream>");
}
