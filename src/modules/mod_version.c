/* mod_version.c -- Software Version (XEP-0092): answers
 * <iq type='get'><query xmlns='jabber:iq:version'/></iq> sent to this host with the
 * server's name and version.  The <os/> element is optional in the XEP and revealing
 * the operating system helps attackers (XEP-0092 section 5 requires a way to turn it
 * off), so it is sent only when the host config says `version: { show_os: true }`.
 *
 * Config (section "version"): show_os (bool, default false).
 * Threading: hooks run on the host's worker loop; per-host state is read-only after
 * load. */
#include <string.h>
#include <sys/utsname.h>

#include "peyvand/pv_module.h"

#define NS_VERSION "jabber:iq:version"

/* The build defines PV_VERSION (CMake passes the project version). */
#ifndef PV_VERSION
#define PV_VERSION "0.1.0"
#endif

typedef struct version_state {
	char *os; /* NULL: do not reveal */
} version_state;

static void add_text_child(pv_xml *parent, const char *name, const char *text)
{
	pv_xml *c = pv_xml_add_child(parent, name, NULL);
	pv_xml_add_text(c, text, strlen(text));
}

static int on_version(pv_event *ev, void *ud)
{
	version_state *vs = ud;
	pv_xml *q = pv_xml_first_element(ev->stanza->xml);
	if (!q || !pv_xml_is(q, "query", NS_VERSION)) {
		pv_reply_error(ev, "cancel", "feature-not-implemented");
		return PV_HANDLED;
	}
	pv_stanza *r = pv_stanza_iq_result(ev->stanza);
	if (!r)
		return PV_HANDLED;
	pv_xml *rq = pv_xml_add_child(r->xml, "query", NS_VERSION);
	add_text_child(rq, "name", "peyvand");
	add_text_child(rq, "version", PV_VERSION);
	if (vs->os)
		add_text_child(rq, "os", vs->os);
	pv_reply(ev, r);
	return PV_HANDLED;
}

static int version_load(pv_host *h, const pv_conf *conf, void **state)
{
	version_state *vs = pv_calloc(1, sizeof(*vs));
	if (pv_cfg_bool(conf, "show_os", false)) {
		struct utsname u;
		/* Only the system name ("Linux"): the kernel release says even more. */
		if (uname(&u) == 0)
			vs->os = pv_strdup(u.sysname);
	}
	pv_host_add_feature(h, NS_VERSION);
	pv_hook(h, "iq-get/host/" NS_VERSION, 0, on_version, vs);
	*state = vs;
	return 0;
}

static void version_unload(pv_host *h, void *state)
{
	version_state *vs = state;
	pv_unhook(h, "iq-get/host/" NS_VERSION, on_version, vs);
	pv_free(vs->os);
	pv_free(vs);
}

const pv_module pv_mod_version = {
	.name = "version",
	.load = version_load,
	.unload = version_unload,
};
