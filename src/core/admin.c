/* admin.c -- the local admin socket that peyvandctl talks to, and the account commands
 * shared with peyvandctl's offline mode (working on the data dir of a stopped server).
 *
 * Wire format (unix stream socket, mode 0600): the request is one argument per line,
 * ended by an empty line; the answer is "ok" or "error <message>" on the first line,
 * then the command's output lines; the server closes the connection after answering.
 * Threading: the main loop; commands run synchronously (account commands derive SCRAM
 * keys: a few ms each). */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/core.h"
#include "peyvand/pv_log.h"
#include "xmpp/s2s.h"
#include "xmpp/sasl/sasl.h"

typedef struct admin_conn {
	uv_pipe_t pipe;
	pv_server *srv;
	pv_buf in;
	bool done;
} admin_conn;

static int parse_user_jid(const pv_conf *conf, const char *s, pv_jid *j, pv_buf *out)
{
	if (pv_jid_parse_str(j, s) != 0 || !j->local || j->resource) {
		pv_buf_printf(out, "invalid account address '%s' (expected user@domain)", s);
		if (j->domain)
			pv_jid_fini(j);
		return PV_EINVAL;
	}
	if (!pv_conf_get(pv_conf_get(conf, "hosts"), j->domain)) {
		pv_buf_printf(out, "domain '%s' is not a host of this server", j->domain);
		pv_jid_fini(j);
		return PV_ENOENT;
	}
	return 0;
}

static void list_cb(void *ud, const char *user)
{
	pv_buf_printf(ud, "%s\n", user);
}

/* ---- consent (issue 4): operators read and set what users chose ---- */

static const char *policy_name(int p)
{
	return p == PV_CONSENT_EVERYONE ? "everyone" : p == PV_CONSENT_CONTACTS ? "contacts" : "off";
}

static void iso(int64_t t, char out[32])
{
	time_t tt = (time_t)t;
	struct tm tm;
	gmtime_r(&tt, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void entry_line(void *ud, const pv_consent_entry *e)
{
	char ts[32];
	iso(e->stamp, ts);
	pv_buf_printf(ud, "%llu %s %s prev=%s hash=%s\n", (unsigned long long)e->seq, ts, e->action, e->prev,
		e->hash);
}

static void request_line(void *ud, const pv_request_info *r)
{
	char a[32], b[32];
	iso(r->first, a);
	iso(r->last, b);
	pv_buf_printf(ud, "%s count=%zu bytes=%zu first=%s last=%s\n", r->sender, r->count, r->bytes, a, b);
}

static void report_line(void *ud, const pv_report *r)
{
	char ts[32];
	iso(r->stamp, ts);
	/* No message bodies: evidence is stored for operators to read in the database. */
	pv_buf_printf(ud, "%lld %s %s@%s reported %s reason=%s evidence=%zu bytes\n", (long long)r->id, ts, r->user,
		r->host, r->sender, r->reason, r->evidence ? strlen(r->evidence) : (size_t)0);
}

typedef struct one_entry {
	uint64_t want;
	pv_buf *out;
} one_entry;

static void entry_if(void *ud, const pv_consent_entry *e)
{
	one_entry *o = ud;
	if (e->seq == o->want)
		entry_line(o->out, e);
}

static int consent_cmd(pv_store *st, const pv_conf *conf, int argc, char **argv, pv_buf *out)
{
	pv_jid j = {0};
	int rc = PV_EINVAL;
	if (strcmp(argv[0], "reports") == 0) {
		if (argc > 2) {
			pv_buf_puts(out, "usage: reports [DOMAIN]");
			return PV_EINVAL;
		}
		return pv_store_report_list(st, argc == 2 ? argv[1] : NULL, 0, report_line, out) < 0 ? PV_EIO : 0;
	}
	if (argc < 2 || (rc = parse_user_jid(conf, argv[argc > 2 && strcmp(argv[0], "consent") == 0 ? 2 : 1], &j, out)) != 0) {
		if (out->len == 0)
			pv_buf_puts(out, "usage: requests JID | consent show|log|verify JID | consent set JID off|contacts|everyone | consent why JID STANZA-ID");
		return rc ? rc : PV_EINVAL;
	}
	if (strcmp(argv[0], "requests") == 0 && argc == 2) {
		rc = pv_store_request_list(st, j.domain, j.local, request_line, out) < 0 ? PV_EIO : 0;
	} else if (argc == 3 && strcmp(argv[1], "show") == 0) {
		pv_consent c;
		rc = pv_store_consent_get(st, j.domain, j.local, &c);
		if (rc == 0) {
			pv_buf_printf(out, "policy %s\n", policy_name(c.policy));
			for (size_t i = 0; i < c.nproviders; i++)
				pv_buf_printf(out, "provider %s %s\n", c.providers[i].subject, policy_name(c.providers[i].kind));
			for (size_t i = 0; i < c.nsenders; i++)
				pv_buf_printf(out, "sender %s %s\n", c.senders[i].subject, c.senders[i].kind ? "allow" : "deny");
			pv_consent_fini(&c);
		}
	} else if (argc == 4 && strcmp(argv[1], "set") == 0) {
		int p = strcmp(argv[3], "off") == 0 ? PV_CONSENT_OFF : strcmp(argv[3], "contacts") == 0 ? PV_CONSENT_CONTACTS
			: strcmp(argv[3], "everyone") == 0 ? PV_CONSENT_EVERYONE : -1;
		if (p < 0) {
			pv_buf_puts(out, "policy must be off, contacts or everyone");
		} else {
			char action[64];
			snprintf(action, sizeof(action), "policy %s (operator)", policy_name(p));
			pv_store_consent_set_policy(st, j.domain, j.local, (pv_consent_policy)p, NULL, NULL);
			pv_store_consent_log(st, j.domain, j.local, action, pv_wall_s(), NULL, NULL);
			pv_store_flush(st);
			if (pv_the_server && pv_the_server->store == st) {
				pv_host *h = pv_server_host(pv_the_server, j.domain);
				pv_event ev = {.host = h, .user = j.local};
				if (h)
					pv_fire(h, "consent-changed", &ev);
			}
			rc = 0;
		}
	} else if (argc == 3 && (strcmp(argv[1], "log") == 0 || strcmp(argv[1], "verify") == 0)) {
		uint64_t bad = 0;
		int v = pv_store_consent_log_verify(st, j.domain, j.local, &bad);
		if (strcmp(argv[1], "log") == 0)
			pv_store_consent_log_list(st, j.domain, j.local, 0, entry_line, out);
		if (v == 0)
			pv_buf_puts(out, "chain ok\n");
		else
			pv_buf_printf(out, "chain BROKEN at entry %llu\n", (unsigned long long)bad);
		rc = v == 0 ? 0 : PV_EINVAL;
	} else if (argc == 4 && strcmp(argv[1], "why") == 0) {
		char *sender = NULL;
		uint64_t seq = 0;
		int64_t stamp = 0;
		rc = pv_store_consent_evidence_get(st, j.domain, j.local, argv[3], &sender, &seq, &stamp);
		if (rc == 0) {
			char ts[32];
			iso(stamp, ts);
			pv_buf_printf(out, "stanza %s from %s delivered %s under log entry %llu:\n", argv[3], sender, ts,
				(unsigned long long)seq);
			one_entry o = {.want = seq, .out = out};
			if (seq)
				pv_store_consent_log_list(st, j.domain, j.local, seq - 1, entry_if, &o);
			else
				pv_buf_puts(out, "(no entry: the user's settings were the defaults)\n");
			pv_free(sender);
		} else {
			pv_buf_printf(out, "no delivery of stanza %s to %s recorded", argv[3], j.bare);
		}
	} else {
		pv_buf_puts(out, "usage: requests JID | consent show|log|verify JID | consent set JID off|contacts|everyone | consent why JID STANZA-ID");
	}
	pv_jid_fini(&j);
	return rc;
}

int pv_admin_exec_store(pv_store *st, const pv_conf *conf, unsigned iterations, int argc,
	char **argv, pv_buf *out)
{
	pv_jid j = {0};
	int rc = PV_EINVAL;
	if (argc >= 2 && strcmp(argv[0], "user") == 0 && strcmp(argv[1], "list") == 0) {
		if (argc != 3) {
			pv_buf_puts(out, "usage: user list DOMAIN");
			return PV_EINVAL;
		}
		char *d = pv_jid_norm_domain(argv[2], strlen(argv[2]));
		if (!d || !pv_conf_get(pv_conf_get(conf, "hosts"), d)) {
			pv_buf_printf(out, "domain '%s' is not a host of this server", argv[2]);
			pv_free(d);
			return PV_ENOENT;
		}
		pv_buf tmp;
		pv_buf_init(&tmp);
		int n = pv_store_user_list(st, d, list_cb, &tmp);
		pv_free(d);
		if (n < 0) {
			pv_buf_fini(&tmp);
			pv_buf_puts(out, "storage error");
			return n;
		}
		pv_buf_append(out, tmp.data, tmp.len);
		pv_buf_fini(&tmp);
		return 0;
	}
	if (argc >= 3 && strcmp(argv[0], "user") == 0 &&
	    (strcmp(argv[1], "add") == 0 || strcmp(argv[1], "passwd") == 0)) {
		if (argc != 4 || !argv[3][0]) {
			pv_buf_printf(out, "usage: user %s JID PASSWORD", argv[1]);
			return PV_EINVAL;
		}
		if ((rc = parse_user_jid(conf, argv[2], &j, out)) != 0)
			return rc;
		pv_scram_cred creds[2];
		if (pv_scram_make_creds(argv[3], iterations, creds) != 2) {
			pv_buf_puts(out, "the password is not acceptable (control characters?)");
			rc = PV_EINVAL;
			goto done;
		}
		if (strcmp(argv[1], "add") == 0) {
			rc = pv_store_user_create(st, j.domain, j.local, creds, 2);
			if (rc == PV_EEXIST)
				pv_buf_printf(out, "account %s already exists", j.bare);
		} else {
			rc = pv_store_user_set_creds(st, j.domain, j.local, creds, 2);
			if (rc == PV_ENOENT)
				pv_buf_printf(out, "no such account %s", j.bare);
		}
		if (rc < 0 && out->len == 0)
			pv_buf_puts(out, "storage error");
		goto done;
	}
	if (argc >= 2 && strcmp(argv[0], "user") == 0 && strcmp(argv[1], "del") == 0) {
		if (argc != 3) {
			pv_buf_puts(out, "usage: user del JID");
			return PV_EINVAL;
		}
		if ((rc = parse_user_jid(conf, argv[2], &j, out)) != 0)
			return rc;
		if (pv_store_user_exists(st, j.domain, j.local) != 1) {
			pv_buf_printf(out, "no such account %s", j.bare);
			rc = PV_ENOENT;
			goto done;
		}
		rc = pv_store_user_delete(st, j.domain, j.local);
		if (rc < 0)
			pv_buf_puts(out, "storage error");
		goto done;
	}
	if (argc >= 1 && (strcmp(argv[0], "consent") == 0 || strcmp(argv[0], "reports") == 0 ||
			     strcmp(argv[0], "requests") == 0))
		return consent_cmd(st, conf, argc, argv, out);
	pv_buf_puts(out, "unknown command (try: user add|del|passwd|list, sessions, stats, reload, links, "
			 "queue, consent, requests, reports)");
	return PV_EINVAL;
done:
	pv_jid_fini(&j);
	return rc;
}

static int sess_line(void *ud, const char *key, void *val)
{
	pv_buf *out = ud;
	char info[160];
	for (pv_session *s = val; s; s = s->next_of_user) {
		pv_buf_printf(out, "%s %s sm=%s %s\n", s->jid.full, s->available ? "available" : "unavailable",
			s->sm ? (s->resumable ? "resumable" : "on") : "off",
			s->c2s ? pv_c2s_info(s->c2s, info, sizeof(info)) : "hibernating");
	}
	return 0;
}

static int server_exec(pv_server *srv, int argc, char **argv, pv_buf *out)
{
	if (argc == 1 && strcmp(argv[0], "sessions") == 0) {
		for (size_t i = 0; i < srv->nhosts; i++)
			pv_map_each(srv->hosts[i]->users, sess_line, out);
		return 0;
	}
	if (argc == 1 && strcmp(argv[0], "stats") == 0) {
		size_t sessions = 0;
		for (size_t i = 0; i < srv->nhosts; i++)
			sessions += pv_host_count_sessions(srv->hosts[i]);
		pv_store_stats ss;
		pv_store_get_stats(srv->store, &ss);
		pv_buf_printf(out,
			"uptime_s %lld\nconnections %zu\nsessions %zu\nc2s_accepted %llu\nauth_ok %llu\n"
			"auth_fail %llu\nstanzas_in %llu\nstanzas_out %llu\nstream_errors %llu\n"
			"offline_stored %llu\nresumed %llu\nstore_commits %llu\nstore_writes %llu\n"
			"store_reads %llu\nstore_reads_loop %llu\n",
			(long long)(pv_wall_s() - srv->started), srv->worker.nconns, sessions,
			(unsigned long long)srv->stats.c2s_accepted, (unsigned long long)srv->stats.c2s_auth_ok,
			(unsigned long long)srv->stats.c2s_auth_fail, (unsigned long long)srv->stats.stanzas_in,
			(unsigned long long)srv->stats.stanzas_out, (unsigned long long)srv->stats.stream_errors,
			(unsigned long long)srv->stats.offline_stored, (unsigned long long)srv->stats.resumed,
			(unsigned long long)ss.commits, (unsigned long long)ss.writes,
			(unsigned long long)ss.reads, (unsigned long long)ss.reads_loop);
		pv_s2s_stats(srv, out);
		return 0;
	}
	if ((argc == 1 && strcmp(argv[0], "links") == 0) || (argc >= 1 && strcmp(argv[0], "queue") == 0) ||
	    (argc >= 1 && strcmp(argv[0], "exchange") == 0)) /* issue 6: exchange = relay view */
		return pv_s2s_admin(srv, argc, argv, out);
	if (argc == 1 && strcmp(argv[0], "reload") == 0) {
		char *err = NULL;
		int rc = pv_server_reload(srv, &err);
		if (rc != 0) {
			pv_buf_puts(out, err ? err : "reload failed");
			pv_free(err);
		}
		return rc;
	}
	int rc = pv_admin_exec_store(srv->store, srv->conf, srv->lim.scram_iterations, argc, argv, out);
	if (rc == 0 && argc == 3 && strcmp(argv[0], "user") == 0 && strcmp(argv[1], "del") == 0) {
		/* End the deleted account's sessions at once. */
		pv_jid j;
		if (pv_jid_parse_str(&j, argv[2]) == 0) {
			pv_host *h = pv_server_host(srv, j.domain);
			pv_session *ss[64];
			size_t n = h ? pv_host_user_sessions(h, j.local, ss, 64) : 0;
			for (size_t i = 0; i < n && i < 64; i++) {
				ss[i]->resumable = false;
				if (ss[i]->c2s)
					pv_c2s_stream_error(ss[i]->c2s, "not-authorized", "account deleted");
				else
					pv_session_unbind(ss[i], "account deleted");
			}
			pv_event ev = {.host = h, .user = j.local};
			if (h)
				pv_fire(h, "user-deleted", &ev);
			pv_jid_fini(&j);
		}
	}
	return rc;
}

static void admin_closed(uv_handle_t *h)
{
	admin_conn *a = h->data;
	pv_buf_fini(&a->in);
	pv_free(a);
}

typedef struct admin_wr {
	uv_write_t req;
	pv_buf ans;
	admin_conn *a;
} admin_wr;

static void admin_written(uv_write_t *req, int status)
{
	admin_wr *w = (admin_wr *)req;
	uv_close((uv_handle_t *)&w->a->pipe, admin_closed);
	pv_buf_fini(&w->ans);
	pv_free(w);
}

static void admin_alloc(uv_handle_t *h, size_t sz, uv_buf_t *buf)
{
	static char slab[4096];
	buf->base = slab;
	buf->len = sizeof(slab);
}

static void admin_run(admin_conn *a)
{
	char *argv[16];
	int argc = 0;
	char *p = a->in.data;
	while (argc < 16) {
		char *nl = strchr(p, '\n');
		if (!nl || nl == p)
			break;
		*nl = 0;
		argv[argc++] = p;
		p = nl + 1;
	}
	pv_buf out, ans;
	pv_buf_init(&out);
	pv_buf_init(&ans);
	int rc = argc ? server_exec(a->srv, argc, argv, &out) : (pv_buf_puts(&out, "empty request"), PV_EINVAL);
	if (rc == 0) {
		pv_buf_puts(&ans, "ok\n");
		pv_buf_append(&ans, out.data, out.len);
	} else {
		pv_buf_printf(&ans, "error %s\n", pv_buf_str(&out));
	}
	pv_info("admin", "%s %s -> %s", argc > 0 ? argv[0] : "", argc > 1 ? argv[1] : "", rc == 0 ? "ok" : "error");
	admin_wr *w = pv_calloc(1, sizeof(*w));
	w->a = a;
	w->ans = ans; /* owned by the request until admin_written */
	uv_buf_t b = uv_buf_init(w->ans.data, (unsigned)w->ans.len);
	uv_write(&w->req, (uv_stream_t *)&a->pipe, &b, 1, admin_written);
	pv_buf_fini(&out);
}

static void admin_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	admin_conn *a = s->data;
	if (n < 0) {
		uv_close((uv_handle_t *)&a->pipe, admin_closed);
		return;
	}
	if (a->done)
		return;
	pv_buf_append(&a->in, buf->base, (size_t)n);
	if (a->in.len > 65536) {
		uv_close((uv_handle_t *)&a->pipe, admin_closed);
		return;
	}
	if ((a->in.len >= 2 && memcmp(a->in.data + a->in.len - 2, "\n\n", 2) == 0) ||
	    (a->in.len == 1 && a->in.data[0] == '\n')) {
		a->done = true;
		uv_read_stop(s);
		admin_run(a);
	}
}

static void admin_conn_cb(uv_stream_t *server, int status)
{
	pv_server *srv = server->data;
	if (status < 0)
		return;
	admin_conn *a = pv_calloc(1, sizeof(*a));
	a->srv = srv;
	pv_buf_init(&a->in);
	uv_pipe_init(srv->loop, &a->pipe, 0);
	a->pipe.data = a;
	if (uv_accept(server, (uv_stream_t *)&a->pipe) != 0) {
		uv_close((uv_handle_t *)&a->pipe, admin_closed);
		return;
	}
	uv_read_start((uv_stream_t *)&a->pipe, admin_alloc, admin_read);
}

int pv_admin_start(pv_server *srv)
{
	unlink(srv->admin_path);
	uv_pipe_init(srv->loop, &srv->admin, 0);
	srv->admin.data = srv;
	mode_t old = umask(0077);
	int rc = uv_pipe_bind(&srv->admin, srv->admin_path);
	umask(old);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&srv->admin, 16, admin_conn_cb);
	if (rc != 0) {
		pv_error("admin", "cannot listen on %s: %s", srv->admin_path, uv_strerror(rc));
		return PV_EIO;
	}
	srv->admin_open = true;
	pv_info("admin", "admin socket %s", srv->admin_path);
	return 0;
}

void pv_admin_stop(pv_server *srv)
{
	if (!srv->admin_open)
		return;
	srv->admin_open = false;
	uv_close((uv_handle_t *)&srv->admin, NULL);
	unlink(srv->admin_path);
}
