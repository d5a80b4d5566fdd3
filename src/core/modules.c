/* modules.c -- the table of compiled-in modules.  Adding a module: write
 * src/modules/mod_<name>.c defining `const pv_module pv_mod_<name>`, list it here,
 * document its keys in docs/config.md. */
#include <string.h>

#include "core/core.h"

extern const pv_module pv_mod_roster, pv_mod_presence, pv_mod_offline, pv_mod_disco,
	pv_mod_ping, pv_mod_version, pv_mod_private, pv_mod_vcard, pv_mod_register, pv_mod_consent;
extern const pv_module pv_mod_blocking;
extern const pv_module pv_mod_adhoc;
extern const pv_module pv_mod_phone; /* issue 6: phone numbers on a provider */
extern const pv_module pv_mod_exchange; /* issue 6: number addressing */
extern const pv_module pv_mod_abuse;    /* issue 6: abuse reports to the sender's provider */
extern const pv_module pv_mod_directory; /* issue 6: discovery and the exchange registry */

static const pv_module *const all[] = {
	&pv_mod_roster, &pv_mod_presence, &pv_mod_offline, &pv_mod_disco, &pv_mod_ping,
	&pv_mod_version, &pv_mod_private, &pv_mod_vcard, &pv_mod_register, &pv_mod_consent,
	&pv_mod_blocking, &pv_mod_adhoc,
	&pv_mod_phone,
	&pv_mod_exchange, &pv_mod_abuse,
	&pv_mod_directory,
};

static const char *const names[] = {
	"roster", "presence", "offline", "disco", "ping", "version", "private", "vcard",
	"register", "consent", "blocking", "adhoc",
	"phone",
	"exchange", "abuse",
	"directory", NULL,
};

const pv_module *pv_module_find(const char *name)
{
	for (size_t i = 0; i < PV_ARRAY_LEN(all); i++)
		if (strcmp(all[i]->name, name) == 0)
			return all[i];
	return NULL;
}

const char *const *pv_module_names(void)
{
	return names;
}
