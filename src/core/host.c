/* host.c -- virtual hosts: hooks (the event bus modules plug into), disco features,
 * loaded modules, TLS context, and the registry of bound sessions per user.
 *
 * Threading: owned by the worker loop thread (see core.h). */
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/core.h"
#include "core/iq.h"
#include "peyvand/pv_log.h"

pv_host *pv_host_new(pv_server *srv, const char *name, const pv_conf *conf)
{
	pv_host *h = pv_calloc(1, sizeof(*h));
	h->srv = srv;
	h->name = pv_strdup(name);
	h->conf = conf;
	h->hooks = pv_map_new();
	h->users = pv_map_new();
	return h;
}

static void free_hooklist(void *p)
{
	for (pv_hookent *e = p, *nx; e; e = nx) {
		nx = e->next;
		pv_free(e);
	}
}

void pv_host_free(pv_host *h)
{
	if (!h)
		return;
	pv_host_unload_modules(h);
	pv_map_free(h->hooks, free_hooklist);
	pv_map_free(h->users, NULL);
	for (size_t i = 0; i < h->nfeatures; i++)
		pv_free(h->features[i]);
	pv_free(h->features);
	for (size_t i = 0; i < h->nidentities; i++)
		pv_free(h->identities[i]);
	pv_free(h->identities);
	if (h->tls)
		SSL_CTX_free(h->tls);
	pv_free(h->cert_file);
	pv_free(h->key_file);
	pv_free(h->name);
	pv_free(h);
}

/* ---- hooks ---- */

void pv_hook(pv_host *h, const char *event, int priority, pv_hook_fn fn, void *ud)
{
	pv_hookent *e = pv_calloc(1, sizeof(*e));
	e->prio = priority;
	e->fn = fn;
	e->ud = ud;
	pv_hookent *head = pv_map_get(h->hooks, event);
	pv_hookent **pp = &head;
	while (*pp && (*pp)->prio >= priority)
		pp = &(*pp)->next;
	e->next = *pp;
	*pp = e;
	pv_map_put(h->hooks, event, head);
}

void pv_unhook(pv_host *h, const char *event, pv_hook_fn fn, void *ud)
{
	pv_hookent *head = pv_map_get(h->hooks, event);
	for (pv_hookent **pp = &head; *pp; pp = &(*pp)->next) {
		if ((*pp)->fn == fn && (*pp)->ud == ud) {
			pv_hookent *e = *pp;
			*pp = e->next;
			pv_free(e);
			break;
		}
	}
	if (head)
		pv_map_put(h->hooks, event, head);
	else
		pv_map_del(h->hooks, event);
}

int pv_fire(pv_host *h, const char *event, pv_event *ev)
{
	ev->name = event;
	if (!ev->host)
		ev->host = h;
	for (pv_hookent *e = pv_map_get(h->hooks, event); e; e = e->next) {
		if (e->fn(ev, e->ud) == PV_HANDLED)
			return PV_HANDLED;
	}
	return PV_PASS;
}

/* ---- accessors of pv_module.h ---- */

const char *pv_host_name(const pv_host *h)
{
	return h->name;
}

pv_store *pv_host_store(pv_host *h)
{
	return h->srv->store;
}

/* issue 6 (mod_phone's SMS gateway): the loop a module's thread-pool work reports to. */
struct uv_loop_s *pv_host_loop(pv_host *h)
{
	return h->srv->loop;
}

const pv_conf *pv_host_conf(const pv_host *h)
{
	return h->conf;
}

char *pv_host_path(const pv_host *h, const char *path)
{
	return pv_path_under(h->srv->data_dir, path);
}

bool pv_host_is_local(const pv_host *h, const char *domain)
{
	return domain && pv_server_host(h->srv, domain) != NULL;
}

pv_host *pv_host_find(const pv_host *any, const char *domain)
{
	return domain ? pv_server_host(any->srv, domain) : NULL;
}

void pv_host_add_feature(pv_host *h, const char *var)
{
	for (size_t i = 0; i < h->nfeatures; i++)
		if (strcmp(h->features[i], var) == 0)
			return;
	h->features = pv_realloc(h->features, (h->nfeatures + 1) * sizeof(char *));
	h->features[h->nfeatures++] = pv_strdup(var);
}

void pv_host_add_identity(pv_host *h, const char *category, const char *type, const char *name)
{
	h->identities = pv_realloc(h->identities, (h->nidentities + 3) * sizeof(char *));
	h->identities[h->nidentities++] = pv_strdup(category);
	h->identities[h->nidentities++] = pv_strdup(type);
	h->identities[h->nidentities++] = pv_strdup(name ? name : "");
}

size_t pv_host_features(const pv_host *h, const char *const **vars)
{
	*vars = (const char *const *)h->features;
	return h->nfeatures;
}

unsigned pv_host_scram_iterations(const pv_host *h)
{
	return h->srv->lim.scram_iterations;
}

/* ---- session registry ---- */

void pv_host_register(pv_host *h, pv_session *s)
{
	pv_session *head = pv_map_get(h->users, s->user);
	s->next_of_user = head;
	pv_map_put(h->users, s->user, s);
}

void pv_host_unregister(pv_host *h, pv_session *s)
{
	pv_session *head = pv_map_get(h->users, s->user);
	for (pv_session **pp = &head; *pp; pp = &(*pp)->next_of_user) {
		if (*pp == s) {
			*pp = s->next_of_user;
			s->next_of_user = NULL;
			break;
		}
	}
	if (head)
		pv_map_put(h->users, s->user, head);
	else
		pv_map_del(h->users, s->user);
}

pv_session *pv_host_find_resource(pv_host *h, const char *user, const char *resource)
{
	for (pv_session *s = pv_map_get(h->users, user); s; s = s->next_of_user)
		if (s->jid.resource && strcmp(s->jid.resource, resource) == 0)
			return s;
	return NULL;
}

size_t pv_host_user_sessions(pv_host *h, const char *user, pv_session **out, size_t cap)
{
	size_t n = 0;
	for (pv_session *s = user ? pv_map_get(h->users, user) : NULL; s; s = s->next_of_user) {
		if (n < cap)
			out[n] = s;
		n++;
	}
	return n;
}

/* Every bound session is in the worker's by_sid map beside its host's users map (bind
 * and restart recovery put it in both, unbind and free take it out of both).  This
 * used to walk every session of every host: a resumption cost 8 % of a reconnect
 * storm's CPU at 1,000 sessions, and would grow with them. */
pv_session *pv_host_find_sid(pv_server *srv, const char *sid)
{
	return sid ? pv_map_get(srv->worker.by_sid, sid) : NULL;
}

static int count_cb(void *ud, const char *key, void *val)
{
	(void)key;
	size_t *n = ud;
	for (pv_session *s = val; s; s = s->next_of_user)
		(*n)++;
	return 0;
}

size_t pv_host_count_sessions(pv_host *h)
{
	size_t n = 0;
	pv_map_each(h->users, count_cb, &n);
	return n;
}

/* ---- modules ---- */

int pv_host_load_modules(pv_host *h, char **err)
{
	if (pv_host_check_role(h->name, h->conf, err) != 0)
		return PV_EINVAL;
	const pv_conf *list = pv_conf_get(h->conf, "modules");
	size_t n = list ? pv_conf_len(list) : 0;
	if (list && pv_conf_type_of(list) != PV_CONF_LIST) {
		*err = pv_sprintf("hosts.%s.modules: expected a list", h->name);
		return PV_EINVAL;
	}
	h->mods = pv_calloc(n ? n : 1, sizeof(pv_loaded_mod));
	for (size_t i = 0; i < n; i++) {
		const char *name = pv_conf_scalar(pv_conf_at(list, i));
		const pv_module *m = name ? pv_module_find(name) : NULL;
		if (!m) {
			*err = pv_sprintf("hosts.%s.modules: unknown module '%s'", h->name,
				name ? name : "?");
			return PV_EINVAL;
		}
		void *state = NULL;
		if (m->load && m->load(h, pv_conf_get(h->conf, m->name), &state) != 0) {
			*err = pv_sprintf("host %s: module %s failed to load", h->name, m->name);
			return PV_EINVAL;
		}
		h->mods[h->nmods].mod = m;
		h->mods[h->nmods].state = state;
		h->nmods++;
		pv_debug("host", "%s: loaded module %s", h->name, m->name);
	}
	return 0;
}

void pv_host_unload_modules(pv_host *h)
{
	/* Iqs the modules are waiting for end now, while their state still exists. */
	pv_iq_host_flush(h);
	for (size_t i = h->nmods; i-- > 0;)
		if (h->mods[i].mod->unload)
			h->mods[i].mod->unload(h, h->mods[i].state);
	pv_free(h->mods);
	h->mods = NULL;
	h->nmods = 0;
	/* Features are re-registered by the modules on load. */
	for (size_t i = 0; i < h->nfeatures; i++)
		pv_free(h->features[i]);
	h->nfeatures = 0;
	for (size_t i = 0; i < h->nidentities; i++)
		pv_free(h->identities[i]);
	h->nidentities = 0;
}

static SSL_CTX *sni_lookup(void *ud, const char *name)
{
	pv_server *srv = ud;
	pv_host *h = pv_server_host(srv, name);
	return h ? h->tls : NULL;
}

int pv_host_load_tls(pv_host *h, char **err)
{
	const char *cert = pv_conf_str(h->conf, "certificate", NULL);
	const char *key = pv_conf_str(h->conf, "key", NULL);
	char *cf = cert ? pv_host_path(h, cert) : pv_sprintf("%s/certs/%s.crt", h->srv->data_dir, h->name);
	char *kf = key ? pv_host_path(h, key) : pv_sprintf("%s/certs/%s.key", h->srv->data_dir, h->name);
	if (access(cf, R_OK) != 0 && access(kf, R_OK) != 0) {
		if (!pv_conf_bool(h->conf, "self_signed", true)) {
			*err = pv_sprintf("host %s: certificate %s missing", h->name, cf);
			goto fail;
		}
		pv_info("tls", "%s: creating a self-signed certificate in %s", h->name, cf);
		if (pv_tls_make_selfsigned(h->name, cf, kf) != 0) {
			*err = pv_sprintf("host %s: cannot create certificate %s", h->name, cf);
			goto fail;
		}
	}
	SSL_CTX *ctx = pv_tls_server_ctx(cf, kf);
	if (!ctx) {
		*err = pv_sprintf("host %s: cannot load certificate %s / key %s", h->name, cf, kf);
		goto fail;
	}
	pv_tls_set_sni(ctx, sni_lookup, h->srv);
	if (h->tls)
		SSL_CTX_free(h->tls);
	h->tls = ctx;
	pv_free(h->cert_file);
	pv_free(h->key_file);
	h->cert_file = cf;
	h->key_file = kf;
	return 0;
fail:
	pv_free(cf);
	pv_free(kf);
	return PV_EINVAL;
}

size_t pv_host_identities(const pv_host *h, const char *const **triples)
{
	*triples = (const char *const *)h->identities;
	return h->nidentities / 3;
}

/* ---- host role (issue 6) ----
 * `role: provider` (default) or `role: exchange`.  An exchange hosts no people, so the
 * only peers it may ever talk to are the interconnect's members, authenticated by
 * certificate: an exchange without `interconnect.mode: members` would relay for anyone
 * (docs/architecture.md, docs/protocol/exchange.md).  Read from the config on every
 * call, so a reload that changes the role takes effect with the new tree. */

bool pv_host_is_exchange(const pv_host *h)
{
	const char *r = h ? pv_conf_str(h->conf, "role", "provider") : NULL;
	return r && strcmp(r, "exchange") == 0;
}

int pv_host_check_role(const char *name, const pv_conf *hc, char **err)
{
	const char *r = pv_conf_str(hc, "role", "provider");
	if (!r || (strcmp(r, "provider") != 0 && strcmp(r, "exchange") != 0)) {
		*err = pv_sprintf("hosts.%s.role: expected provider or exchange", name);
		return PV_EINVAL;
	}
	if (strcmp(r, "exchange") == 0) {
		const char *mode = pv_conf_str(hc, "interconnect.mode", "open");
		if (!mode || strcmp(mode, "members") != 0) {
			*err = pv_sprintf("hosts.%s: role exchange requires interconnect.mode: members "
					  "(an exchange links only the interconnect's members)",
					  name);
			return PV_EINVAL;
		}
	}
	return 0;
}

size_t pv_host_members(const pv_host *h, const char **out, size_t cap)
{
	const pv_conf *m = pv_conf_get(h->conf, "interconnect.members");
	size_t n = m && pv_conf_type_of(m) == PV_CONF_MAP ? pv_conf_len(m) : 0;
	for (size_t i = 0; i < n && i < cap; i++)
		out[i] = pv_conf_key_at(m, i);
	return n;
}

bool pv_host_is_member(const pv_host *h, const char *domain)
{
	const pv_conf *m = domain ? pv_conf_get(h->conf, "interconnect.members") : NULL;
	size_t n = m && pv_conf_type_of(m) == PV_CONF_MAP ? pv_conf_len(m) : 0;
	for (size_t i = 0; i < n; i++)
		if (strcasecmp(pv_conf_key_at(m, i), domain) == 0)
			return true;
	return false;
}
