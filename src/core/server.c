/* server.c -- start-up, the main loop, signals, reload and shutdown.
 *
 * Start: read config -> open storage -> hosts (TLS, modules) -> restore sessions that
 * were waiting for resumption -> listeners -> admin socket -> run.
 * SIGHUP: re-read the config; log level, limits, certificates and module lists change
 * in place, sessions stay.  SIGTERM/SIGINT: every stream gets <system-shutdown/> and
 * </stream:stream>, resumable session state stays on disk, storage is flushed.
 * Threading: everything here runs on the main loop thread (worker 0). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"
#include "core/iq.h"
#include "peyvand/pv_log.h"
#include "xmpp/s2s.h"

static uint64_t ms_of(const pv_conf *c, const char *path, uint64_t def)
{
	int64_t v = pv_conf_ms(c, path, (int64_t)def);
	return v > 0 ? (uint64_t)v : def;
}

void pv_limits_read(pv_limits *l, const pv_conf *c)
{
	l->max_stanza = (size_t)pv_conf_size(c, "limits.max_stanza_size", 256 * 1024);
	l->max_depth = (unsigned)pv_conf_int(c, "limits.max_xml_depth", 32);
	l->max_conn_per_ip = (unsigned)pv_conf_int(c, "limits.max_connections_per_ip", 100);
	l->auth_timeout_ms = ms_of(c, "limits.auth_timeout", 30000);
	l->idle_timeout_ms = ms_of(c, "limits.idle_timeout", 600000);
	l->max_output = (size_t)pv_conf_size(c, "limits.max_output_buffer", 1024 * 1024);
	l->slow_reader_grace_ms = ms_of(c, "limits.slow_reader_grace", 5000);
	l->read_rate = (size_t)pv_conf_size(c, "limits.read_rate", 1024 * 1024);
	l->auth_fail_ip = (unsigned)pv_conf_int(c, "limits.auth_failures_per_ip", 10);
	l->auth_fail_account = (unsigned)pv_conf_int(c, "limits.auth_failures_per_account", 5);
	l->auth_fail_window_ms = ms_of(c, "limits.auth_failure_window", 300000);
	l->scram_iterations = (unsigned)pv_conf_int(c, "scram_iterations", 4096);
	l->resume_timeout_ms = ms_of(c, "sm.resume_timeout", 300000);
	/* 0 is a setting of its own (store every message first), not "unset" */
	int64_t sa = pv_conf_ms(c, "sm.store_after", 200);
	l->sm_store_after_ms = sa < 0 ? 200 : (uint64_t)sa;
	l->max_resources = (unsigned)pv_conf_int(c, "limits.max_resources", 10);
	if (l->read_rate < 1024)
		l->read_rate = 1024;
	if (l->max_depth < 4)
		l->max_depth = 4;
}

pv_host *pv_server_host(pv_server *srv, const char *domain)
{
	for (size_t i = 0; i < srv->nhosts; i++)
		if (strcmp(srv->hosts[i]->name, domain) == 0)
			return srv->hosts[i];
	return NULL;
}

static int mkdir_p(const char *path, mode_t mode)
{
	char *p = pv_strdup(path);
	for (char *s = p + 1; *s; s++) {
		if (*s == '/') {
			*s = 0;
			mkdir(p, mode);
			*s = '/';
		}
	}
	int rc = mkdir(p, mode);
	pv_free(p);
	return rc == 0 || errno == EEXIST ? 0 : -1;
}

/* Config-wide checks --check-config reports and start-up refuses. */
static int check_conf(pv_conf *conf, char **err)
{
	const pv_conf *hosts = pv_conf_get(conf, "hosts");
	if (!hosts || pv_conf_type_of(hosts) != PV_CONF_MAP || pv_conf_len(hosts) == 0) {
		*err = pv_strdup("config: 'hosts' must map at least one domain to its settings");
		return PV_EINVAL;
	}
	for (size_t i = 0; i < pv_conf_len(hosts); i++) {
		const char *name = pv_conf_key_at(hosts, i);
		char *norm = pv_jid_norm_domain(name, strlen(name));
		bool same = norm && strcmp(norm, name) == 0;
		pv_free(norm);
		if (!same) {
			*err = pv_sprintf("config: host '%s' is not a normalised domain name", name);
			return PV_EINVAL;
		}
		/* issue 6: role provider|exchange and what an exchange requires */
		if (pv_host_check_role(name, pv_conf_at(hosts, i), err) != 0)
			return PV_EINVAL;
		const pv_conf *mods = pv_conf_get(pv_conf_at(hosts, i), "modules");
		for (size_t j = 0; mods && j < pv_conf_len(mods); j++) {
			const char *m = pv_conf_scalar(pv_conf_at(mods, j));
			if (!m || !pv_module_find(m)) {
				*err = pv_sprintf("config: host %s: unknown module '%s'", name, m ? m : "?");
				return PV_EINVAL;
			}
		}
	}
	const char *lvl = pv_conf_str(conf, "log_level", "info");
	pv_log_level l;
	if (pv_log_level_parse(lvl, &l) != 0) {
		*err = pv_sprintf("config: log_level '%s' is not debug, info, warn or error", lvl);
		return PV_EINVAL;
	}
	for (size_t i = 0; i < 2; i++) {
		const char *key = i ? "c2s.direct_tls_port" : "c2s.port";
		int64_t port = pv_conf_int(conf, key, 5222);
		if (port < 0 || port > 65535) {
			*err = pv_sprintf("config: %s must be a port number (0 disables)", key);
			return PV_EINVAL;
		}
	}
	pv_conf_bool(conf, "c2s.require_encryption", true);
	pv_conf_str(conf, "data_dir", NULL);
	pv_limits lim;
	pv_limits_read(&lim, conf);
	if (pv_conf_errors(conf)) {
		*err = pv_strdup(pv_conf_errors(conf));
		return PV_EINVAL;
	}
	return 0;
}

static void on_c2s_conn(uv_stream_t *server, int status)
{
	if (status < 0)
		return;
	pv_c2s_accept(pv_the_server, server, false);
}

static void on_c2s_tls_conn(uv_stream_t *server, int status)
{
	if (status < 0)
		return;
	pv_c2s_accept(pv_the_server, server, true);
}

static int listen_all(pv_server *srv)
{
	const pv_conf *addrs = pv_conf_get(srv->conf, "c2s.listen");
	int port = (int)pv_conf_int(srv->conf, "c2s.port", 5222);
	int tls_port = (int)pv_conf_int(srv->conf, "c2s.direct_tls_port", 5223);
	size_t naddr = addrs ? pv_conf_len(addrs) : 0;
	const char *defaults[] = {"127.0.0.1", "::1"};
	size_t n = naddr ? naddr : 2;
	srv->listeners = pv_calloc(n * 2, sizeof(uv_tcp_t *));
	for (size_t i = 0; i < n; i++) {
		const char *ip = naddr ? pv_conf_scalar(pv_conf_at(addrs, i)) : defaults[i];
		if (!ip)
			continue;
		uv_tcp_t *t;
		if (port > 0) {
			if (pv_listen_tcp(srv->loop, ip, port, on_c2s_conn, srv, &t) == 0)
				srv->listeners[srv->nlisteners++] = t;
			else if (naddr)
				return PV_EIO;
		}
		if (tls_port > 0) {
			if (pv_listen_tcp(srv->loop, ip, tls_port, on_c2s_tls_conn, srv, &t) == 0)
				srv->listeners[srv->nlisteners++] = t;
			else if (naddr)
				return PV_EIO;
		}
		pv_info("server", "c2s listening on %s port %d (STARTTLS) and %d (direct TLS)", ip, port, tls_port);
	}
	return srv->nlisteners ? 0 : PV_EIO;
}

static int make_hosts(pv_server *srv, char **err)
{
	const pv_conf *hosts = pv_conf_get(srv->conf, "hosts");
	srv->nhosts = pv_conf_len(hosts);
	srv->hosts = pv_calloc(srv->nhosts, sizeof(pv_host *));
	for (size_t i = 0; i < srv->nhosts; i++)
		srv->hosts[i] = pv_host_new(srv, pv_conf_key_at(hosts, i), pv_conf_at(hosts, i));
	for (size_t i = 0; i < srv->nhosts; i++) {
		if (pv_host_load_tls(srv->hosts[i], err) != 0)
			return PV_EINVAL;
		if (pv_host_load_modules(srv->hosts[i], err) != 0)
			return PV_EINVAL;
	}
	return 0;
}

/* A per-installation secret, stable across restarts, so the fake SCRAM exchange for a
 * non-existent account looks the same every time (no account enumeration). */
static int load_secret(pv_server *srv)
{
	char *path = pv_sprintf("%s/secret", srv->data_dir);
	int rc = 0;
	FILE *f = fopen(path, "rb");
	if (f) {
		if (fread(srv->secret, 1, sizeof(srv->secret), f) != sizeof(srv->secret))
			rc = PV_EIO;
		fclose(f);
	} else {
		pv_random(srv->secret, sizeof(srv->secret));
		mode_t old = umask(0077);
		f = fopen(path, "wb");
		umask(old);
		if (!f || fwrite(srv->secret, 1, sizeof(srv->secret), f) != sizeof(srv->secret))
			rc = PV_EIO;
		if (f && fclose(f) != 0)
			rc = PV_EIO;
	}
	if (rc)
		pv_error("server", "cannot read or create %s", path);
	pv_free(path);
	return rc;
}

int pv_server_init(pv_server *srv, const char *config_path, bool check_only)
{
	char *err = NULL;
	memset(srv, 0, sizeof(*srv));
	pv_the_server = srv;
	srv->config_path = pv_strdup(config_path);
	srv->conf = pv_conf_load(config_path, &err);
	if (!srv->conf || check_conf(srv->conf, &err) != 0) {
		fprintf(stderr, "peyvand: %s\n", err ? err : "cannot read config");
		pv_free(err);
		return PV_EINVAL;
	}
	if (check_only)
		return 0;
	pv_log_level lvl = PV_LOG_INFO;
	pv_log_level_parse(pv_conf_str(srv->conf, "log_level", "info"), &lvl);
	pv_log_set_level(lvl);
	pv_limits_read(&srv->lim, srv->conf);
	srv->data_dir = pv_strdup(pv_conf_str(srv->conf, "data_dir", "/var/lib/peyvand"));
	const char *adm = pv_conf_str(srv->conf, "admin_socket", NULL);
	srv->admin_path = adm ? pv_strdup(adm) : pv_sprintf("%s/admin.sock", srv->data_dir);
	if (mkdir_p(srv->data_dir, 0750) != 0) {
		pv_error("server", "cannot create data_dir %s: %s", srv->data_dir, strerror(errno));
		return PV_EIO;
	}
	if (load_secret(srv) != 0)
		return PV_EIO;
	/* SIGPIPE would kill us on a write to a closed socket; libuv reports EPIPE instead. */
	signal(SIGPIPE, SIG_IGN);
	srv->loop = pv_malloc(sizeof(uv_loop_t));
	uv_loop_init(srv->loop);
	srv->worker.srv = srv;
	srv->worker.loop = srv->loop;
	srv->worker.conn_per_ip = pv_map_new();
	srv->worker.auth_fail = pv_map_new();
	srv->worker.by_sid = pv_map_new();
	srv->worker.wheel = pv_wheel_new(srv->loop);
	pv_sessions_init(srv);
	srv->store = pv_store_open(srv->data_dir, srv->loop);
	if (!srv->store)
		return PV_EIO;
	if (make_hosts(srv, &err) != 0) {
		pv_error("server", "%s", err);
		pv_free(err);
		return PV_EINVAL;
	}
	if (pv_sessions_restore(srv) != 0)
		return PV_EIO;
	if (pv_s2s_start(srv, &err) != 0) {
		pv_error("server", "%s", err ? err : "s2s start failed");
		pv_free(err);
		return PV_EINVAL;
	}
	if (listen_all(srv) != 0) {
		pv_error("server", "cannot listen on the configured c2s addresses");
		return PV_EIO;
	}
	if (pv_admin_start(srv) != 0)
		return PV_EIO;
	srv->started = pv_wall_s();
	return 0;
}

int pv_server_reload(pv_server *srv, char **err)
{
	pv_conf *conf = pv_conf_load(srv->config_path, err);
	if (!conf)
		return PV_EINVAL;
	if (check_conf(conf, err) != 0) {
		pv_conf_free(conf);
		return PV_EINVAL;
	}
	const pv_conf *hosts = pv_conf_get(conf, "hosts");
	for (size_t i = 0; i < pv_conf_len(hosts); i++) {
		if (!pv_server_host(srv, pv_conf_key_at(hosts, i)))
			pv_warn("server", "reload: new host %s needs a restart", pv_conf_key_at(hosts, i));
	}
	pv_conf *old = srv->conf;
	srv->conf = conf;
	pv_log_level lvl = PV_LOG_INFO;
	pv_log_level_parse(pv_conf_str(conf, "log_level", "info"), &lvl);
	pv_log_set_level(lvl);
	pv_limits_read(&srv->lim, conf);
	for (size_t i = 0; i < srv->nhosts; i++) {
		pv_host *h = srv->hosts[i];
		const pv_conf *hc = pv_conf_get(hosts, h->name);
		if (!hc) {
			pv_warn("server", "reload: host %s removed from config; kept until restart", h->name);
			continue;
		}
		/* Module settings may have changed: reload the modules in place. */
		pv_host_unload_modules(h);
		h->conf = hc;
		char *e = NULL;
		if (pv_host_load_tls(h, &e) != 0 || pv_host_load_modules(h, &e) != 0) {
			pv_error("server", "reload: %s", e);
			pv_free(e);
		}
	}
	/* Hosts whose section disappeared still point into the old tree. */
	bool still_used = false;
	for (size_t i = 0; i < srv->nhosts; i++)
		if (!pv_conf_get(hosts, srv->hosts[i]->name))
			still_used = true;
	if (!still_used)
		pv_conf_free(old);
	if (srv->s2s && pv_s2s_reload(srv, err) != 0) {
		pv_error("server", "reload: %s", *err);
		pv_free(*err);
		*err = NULL;
	}
	pv_info("server", "configuration reloaded");
	return 0;
}

static void free_handle(uv_handle_t *h)
{
	pv_free(h);
}

static void on_signal(uv_signal_t *sig, int signum)
{
	pv_server *srv = sig->data;
	if (signum == SIGHUP) {
		char *err = NULL;
		if (pv_server_reload(srv, &err) != 0) {
			pv_error("server", "reload failed, keeping the running configuration: %s", err);
			pv_free(err);
		}
		return;
	}
	if (srv->stopping)
		return;
	pv_info("server", "shutting down (signal %d)", signum);
	srv->stopping = true;
	for (size_t i = 0; i < srv->nlisteners; i++)
		uv_close((uv_handle_t *)srv->listeners[i], free_handle);
	srv->nlisteners = 0;
	pv_admin_stop(srv);
	pv_c2s_shutdown_all(srv);
	pv_s2s_stop(srv);
	uv_signal_stop(&srv->sigterm);
	uv_signal_stop(&srv->sigint);
	uv_signal_stop(&srv->sighup);
	uv_close((uv_handle_t *)&srv->sigterm, NULL);
	uv_close((uv_handle_t *)&srv->sigint, NULL);
	uv_close((uv_handle_t *)&srv->sighup, NULL);
}

static void close_walk(uv_handle_t *h, void *arg)
{
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

static int free_sess(void *ud, const char *key, void *val)
{
	for (pv_session *s = val, *nx; s; s = nx) {
		nx = s->next_of_user;
		pv_session_free(s);
	}
	return 1;
}

int pv_server_run(pv_server *srv)
{
	uv_signal_init(srv->loop, &srv->sigterm);
	uv_signal_init(srv->loop, &srv->sigint);
	uv_signal_init(srv->loop, &srv->sighup);
	srv->sigterm.data = srv->sigint.data = srv->sighup.data = srv;
	uv_signal_start(&srv->sigterm, on_signal, SIGTERM);
	uv_signal_start(&srv->sigint, on_signal, SIGINT);
	uv_signal_start(&srv->sighup, on_signal, SIGHUP);
	pv_info("server", "peyvand %s started, %zu host(s)", PV_VERSION, srv->nhosts);
	/* Runs until shutdown closed the listeners and every connection finished closing;
	 * storage completions keep arriving through the store's async handle. */
	while (uv_run(srv->loop, UV_RUN_ONCE)) {
		if (srv->stopping && srv->worker.nconns == 0 && pv_s2s_nconns(srv) == 0)
			break;
	}
	return 0;
}

void pv_server_fini(pv_server *srv)
{
	/* issue 6: pending iqs end (callbacks with NULL) while storage and links still work. */
	pv_iq_fini();
	if (srv->store) {
		/* Commit what is queued and run the pending completions while the sessions
		 * and links they refer to still exist; then free memory only (sessions and
		 * link queues stay on disk for after the restart). */
		pv_sessions_store_expiries(srv);
		pv_sessions_store_pending(srv);
		pv_store_close(srv->store);
		srv->store = NULL;
		for (size_t i = 0; i < srv->nhosts; i++)
			pv_map_each(srv->hosts[i]->users, free_sess, NULL);
	}
	pv_s2s_free(srv);
	for (size_t i = 0; i < srv->nhosts; i++)
		pv_host_free(srv->hosts[i]);
	pv_free(srv->hosts);
	if (srv->loop) {
		pv_wheel_free(srv->worker.wheel); /* before the walk closes its timer blindly */
		srv->worker.wheel = NULL;
		pv_conn_loop_closing(srv->loop); /* likewise */
		uv_walk(srv->loop, close_walk, NULL);
		uv_run(srv->loop, UV_RUN_DEFAULT);
		uv_loop_close(srv->loop);
		pv_free(srv->loop);
	}
	pv_xmlstream_thread_fini(); /* every stream of this thread is gone by now */
	pv_free(srv->listeners); /* the handles themselves were freed by their close callbacks */
	pv_map_free(srv->worker.conn_per_ip, NULL);
	pv_map_free(srv->worker.auth_fail, pv_free);
	pv_map_free(srv->worker.by_sid, NULL);
	if (srv->conf)
		pv_conf_free(srv->conf);
	pv_free(srv->config_path);
	pv_free(srv->data_dir);
	pv_free(srv->admin_path);
	pv_info("server", "stopped");
}
