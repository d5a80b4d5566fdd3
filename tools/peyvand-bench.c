/* peyvand-bench -- an XMPP load generator that drives any XMPP server (issue 5).
 *
 * Speaks plain client XMPP only (RFC 6120/6121): TCP, STARTTLS to TLS 1.3 (OpenSSL with
 * memory BIOs on a libuv loop), SASL SCRAM-SHA-256 or SCRAM-SHA-1 (RFC 5802, RFC 7677,
 * client side written here with OpenSSL primitives), resource binding, presence and
 * messages.  XEP-0077 in-band registration creates the accounts (scenario "register"),
 * XEP-0199 pings pace the offline scenario.
 *
 * Processes: the parent forks --procs workers, each running one libuv loop with many
 * connections; user u belongs to worker u % procs, and a worker's senders pick their
 * recipients among its own users, so every message is sent and received by the same
 * process (in-flight counting and latency need no cross-process state).  Latency comes
 * from a CLOCK_MONOTONIC timestamp inside the body (the same clock in every process).
 * Source addresses are spread over 127.100.0.0/16 (IP_BIND_ADDRESS_NO_PORT) so that
 * many connections pass the ephemeral port range and per-IP connection limits.
 *
 * The parent runs the scenario as phases: it sends GO(phase) to every worker over a
 * pipe, samples the server's /proc (CPU ticks, VmRSS) and /proc/net/sockstat at the
 * phase boundaries, waits for each worker's DONE record (counters, a log-linear latency
 * histogram, the worker's own CPU) and prints one JSON result line on stdout plus a
 * human summary on stderr.  Every phase is bounded in time; workers close their
 * connections and exit at the END phase.
 *
 * SCRAM client keys are derived once per user and cached (per worker) so that repeated
 * logins measure the server, not the client's PBKDF2.
 *
 * Threading: one thread per process; all state below is per process (copied by fork). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <expat.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <uv.h>

#include "peyvand/pv_util.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define NS_STREAM "http://etherx.jabber.org/streams"
#define NS_TLS "urn:ietf:params:xml:ns:xmpp-tls"
#define NS_SASL "urn:ietf:params:xml:ns:xmpp-sasl"
#define NS_SASL2 "urn:xmpp:sasl:2"
#define NS_BIND2 "urn:xmpp:bind:0"
#define NS_SM "urn:xmpp:sm:3"
#define NS_BIND "urn:ietf:params:xml:ns:xmpp-bind"
#define NS_SESSION "urn:ietf:params:xml:ns:xmpp-session"
#define NS_CLIENT "jabber:client"
#define NS_REGISTER "jabber:iq:register"

/* ---- options ------------------------------------------------------------------------ */

enum scenario { SC_REGISTER, SC_LOGIN, SC_IDLE, SC_CHAT, SC_OFFLINE, SC_INTERCONNECT };
static const char *const scenario_names[] = {"register", "login", "idle", "chat", "offline",
	"interconnect"};

#define MAX_PIDS 8

static struct {
	enum scenario sc;
	const char *label;
	const char *host[2];
	int port[2];
	const char *domain[2];
	int ndomains;
	const char *prefix;
	const char *password;
	unsigned users;
	unsigned procs;
	double duration;    /* measured window (s) */
	double warmup;      /* chat: sending before the window (s) */
	double settle;      /* idle: wait after the last login before sampling (s) */
	double rate;        /* chat: offered msgs/s over all workers; 0 = saturation */
	unsigned window;    /* chat saturation: in-flight messages per worker */
	unsigned concurrency; /* logins in progress per worker */
	unsigned src_ips;   /* 0: let the kernel pick 127.0.0.1 */
	unsigned body_size;
	unsigned per_user;  /* offline: messages per offline receiver */
	double timeout;     /* bound of each setup phase (s) */
	pid_t pids[MAX_PIDS];
	int npids;
	bool quiet;
	bool verbose;
	bool tls_resume;    /* login: offer each user's last TLS session (ticket) */
	bool direct_tls;    /* TLS from the first byte (XEP-0368), no STARTTLS */
	bool sasl2;         /* XEP-0388 + XEP-0386 where offered: no restart, no bind iq */
	bool sm;            /* login, chat: XEP-0198 on (inside Bind 2 where offered) */
	bool sm_resume;     /* login: ... and the next login of the user resumes it */
} opt = {
	.sc = SC_CHAT,
	.label = "server",
	.host = {"127.0.0.1", "127.0.0.1"},
	.port = {5222, 5222},
	.domain = {"localhost", NULL},
	.ndomains = 1,
	.prefix = "bench",
	.password = "bench-pass-1",
	.users = 100,
	.procs = 2,
	.duration = 10,
	.warmup = 2,
	.settle = 2,
	.rate = 0,
	.window = 0,
	.concurrency = 50,
	.src_ips = 200,
	.body_size = 64,
	.per_user = 10,
	.timeout = 120,
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: peyvand-bench [options] SCENARIO\n"
		"scenarios:\n"
		"  register      create the accounts with XEP-0077 (server must allow it)\n"
		"  login         logins per second (TCP+TLS+SASL+bind), keys cached client-side\n"
		"  idle          N idle authenticated sessions: server RSS and kernel socket memory\n"
		"  chat          online users message random online users: msgs/s, latency, CPU\n"
		"  offline       messages to offline users stored, then delivered on login\n"
		"  interconnect  chat between users of --domain and of --domain2 (over s2s)\n"
		"options:\n"
		"  --host H --port P --domain D        server (127.0.0.1 5222 localhost)\n"
		"  --host2 H --port2 P --domain2 D     second provider (interconnect)\n"
		"  --users N (100)  --prefix S (bench)  --password S   accounts S0..S{N-1}@D\n"
		"  --procs N (2)    worker processes\n"
		"  --duration S (10)  measured window; offline: bound of each phase\n"
		"  --warmup S (2)   chat sending before the window\n"
		"  --settle S (2)   idle: wait before sampling memory\n"
		"  --rate R (0)     chat: offered msgs/s in total, 0 = saturation\n"
		"  --window N       chat saturation: in-flight messages per worker (2 x users)\n"
		"  --concurrency N (50)  logins in progress per worker\n"
		"  --src-ips N (200)  source addresses 127.100.x.y used (0: the default)\n"
		"  --body-size N (64)  --per-user N (10, offline)  --timeout S (120, setup bound)\n"
		"  --server-pid P[,P...]  server processes to sample (/proc CPU, VmRSS)\n"
		"  --label S        name of the server in the result line\n"
		"  --quiet          no human summary\n"
		"  --verbose        say why each failed login failed\n"
		"  --tls-resume     login: each user resumes its last TLS session (a reconnecting\n"
		"                   client with a ticket); tls_resumed counts the resumptions\n"
		"  --direct-tls     TLS from the first byte (XEP-0368): --port is the server's\n"
		"                   direct TLS port; no STARTTLS round trips\n"
		"  --sasl2          authenticate with XEP-0388 and bind with XEP-0386 inside it\n"
		"                   where the server offers both (else RFC 6120's way);\n"
		"                   sasl2_logins counts them\n"
		"  --sm             login, chat: enable XEP-0198 (resumable) once bound; inside\n"
		"                   the binding with --sasl2 where the server offers it; chat\n"
		"                   users count what they receive and answer the server's <r/>\n"
		"  --sm-resume      login: as --sm, but each login drops the connection\n"
		"                   without closing the stream (a phone losing its network)\n"
		"                   and the next resumes that session: <resume/> in place of\n"
		"                   the binding, or inside <authenticate/> with --sasl2;\n"
		"                   sm_resumed counts the resumptions\n"
		"Output: one JSON line on stdout; a summary on stderr.\n");
}

/* ---- small helpers ------------------------------------------------------------------ */

static uint64_t now_ns(void)
{
	return uv_hrtime();
}

static uint64_t rng_state;
static uint64_t rnd(void)
{
	/* xorshift64*: recipient choice only, not security */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ULL;
}

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "peyvand-bench: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(2);
}

/* Append s XML-escaped for an attribute value or text. */
static void buf_esc(pv_buf *b, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '&': pv_buf_puts(b, "&amp;"); break;
		case '<': pv_buf_puts(b, "&lt;"); break;
		case '>': pv_buf_puts(b, "&gt;"); break;
		case '\'': pv_buf_puts(b, "&apos;"); break;
		case '"': pv_buf_puts(b, "&quot;"); break;
		default: pv_buf_append(b, s, 1);
		}
	}
}

/* ---- latency histogram (log-linear: 16 sub-buckets per power of two, ~6 %) ----------- */

#define NBUCKETS 640

typedef struct hist {
	uint64_t n[NBUCKETS];
	uint64_t count, max;
} hist;

static unsigned hist_idx(uint64_t v)
{
	if (v < 32)
		return (unsigned)v;
	unsigned e = 63 - (unsigned)__builtin_clzll(v);
	unsigned i = 32 + (e - 5) * 16 + (unsigned)((v >> (e - 4)) & 15);
	return i < NBUCKETS ? i : NBUCKETS - 1;
}

static uint64_t hist_mid(unsigned i)
{
	if (i < 32)
		return i;
	unsigned e = (i - 32) / 16 + 5, sub = (i - 32) % 16;
	uint64_t lo = (16ULL + sub) << (e - 4), w = 1ULL << (e - 4);
	return lo + w / 2;
}

static void hist_add(hist *h, uint64_t v)
{
	h->n[hist_idx(v)]++;
	h->count++;
	if (v > h->max)
		h->max = v;
}

static void hist_merge(hist *to, const hist *from)
{
	for (unsigned i = 0; i < NBUCKETS; i++)
		to->n[i] += from->n[i];
	to->count += from->count;
	if (from->max > to->max)
		to->max = from->max;
}

static uint64_t hist_pct(const hist *h, double p)
{
	if (!h->count)
		return 0;
	uint64_t want = (uint64_t)ceil(p / 100.0 * (double)h->count), seen = 0;
	if (want < 1)
		want = 1;
	for (unsigned i = 0; i < NBUCKETS; i++) {
		seen += h->n[i];
		if (seen >= want) {
			uint64_t m = hist_mid(i);
			return m > h->max ? h->max : m;
		}
	}
	return h->max;
}

/* ---- parent <-> worker records ------------------------------------------------------ */

enum phase {
	PH_SETUP,       /* log in the users the scenario keeps online (+ presence) */
	PH_WARM,        /* login: one login per user (derives the keys); chat: start sending */
	PH_MEASURE,     /* the measured window */
	PH_STORE,       /* offline: send to offline receivers, paced by pings */
	PH_SETUP_RECV,  /* offline: receivers log in without presence */
	PH_DELIVER,     /* offline: receivers send presence; count what arrives */
	PH_HOLD,        /* idle: keep the sessions, send nothing */
	PH_END,
};
static const char *const phase_names[] = {"setup", "warm", "measure", "store", "setup-recv",
	"deliver", "hold", "end"};

typedef struct go_rec {
	int phase;
	double duration;
} go_rec;

typedef struct done_rec {
	int phase;
	uint64_t ok, failed, sent, delivered, errors, dropped, stalls, derivations, resumed;
	uint64_t sasl2;     /* logins done with XEP-0388 + XEP-0386 */
	uint64_t sm_resumed; /* --sm-resume: logins that resumed a XEP-0198 session */
	uint64_t gen_cpu_us;   /* this worker's user+system CPU in the phase */
	double elapsed;        /* seconds from GO to DONE (or to the window's end) */
	char mech[16];
	hist lat;              /* microseconds */
} done_rec;

static int write_full(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n) {
		ssize_t w = write(fd, c, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

/* ---- worker state ------------------------------------------------------------------- */

enum cstate {
	S_CONNECTING, S_FEATURES1, S_STARTTLS, S_HANDSHAKE, S_FEATURES2, S_REGISTER, S_SASL1,
	S_SASL2, S_FEATURES3, S_BIND, S_SESSION, S_SM_ENABLE, S_SM_RESUME, S_ONLINE, S_CLOSED
};

enum top { T_OTHER, T_FEATURES, T_PROCEED, T_TLSFAIL, T_CHALLENGE, T_SUCCESS, T_FAILURE,
	T_IQ, T_MESSAGE, T_PRESENCE, T_STREAMERR, T_SM_ENABLED, T_SM_RESUMED, T_SM_FAILED,
	T_SM_R };

enum purpose { P_SETUP, P_STORM, P_REGISTER };

typedef struct user user;

typedef struct bconn {
	uv_tcp_t tcp;
	struct bconn *next, *prev;  /* every live connection of the worker */
	uv_connect_t creq;
	SSL *ssl;
	BIO *rbio, *wbio;
	XML_Parser xp;
	user *u;
	enum cstate st;
	enum purpose purpose;
	int slot;               /* login storm slot, else -1 */
	bool presence;          /* send initial presence once bound */
	bool dead;              /* close at the next safe point */
	bool closing;
	bool restart;           /* new stream: reset the parser after this chunk */
	uint64_t t0;            /* connect start (ns) */
	/* parser state */
	int depth;
	enum top top;
	bool capture, in_mechs, feat_tls, feat_bind, feat_session, session_optional;
	bool feat_sm;           /* XEP-0198 offered in the features */
	bool sm_on;             /* ... and enabled or resumed on this stream */
	uint32_t sm_h;          /* stanzas received since then (XEP-0198 h) */
	bool mech256, mech1;
	bool feat_sasl2, feat_bind2, sasl2, bound2; /* XEP-0388 / XEP-0386 */
	bool sm_resumed;        /* XEP-0198: <resumed/> inside <success/> */
	char iq_type[8], iq_id[40], msg_type[12];
	char *iq_from;
	bool iq_has_error;
	pv_buf text;
	/* SCRAM */
	const EVP_MD *md;
	char cnonce[33];
	char *first_bare;
	unsigned char server_sig[EVP_MAX_MD_SIZE];
	unsigned sig_len;
	/* offline senders */
	uint64_t ping_pending;
} bconn;

typedef struct ukeys {
	bool valid;
	int hash;               /* 1 or 256 */
	unsigned iter;
	unsigned char salt[64];
	size_t salt_len;
	unsigned char ck[EVP_MAX_MD_SIZE], stored[EVP_MAX_MD_SIZE], sk[EVP_MAX_MD_SIZE];
	unsigned klen;
} ukeys;

struct user {
	unsigned idx;
	int dom;
	char name[48];
	bconn *conn;            /* the online session, if any */
	ukeys keys;
	SSL_SESSION *tls_sess;  /* --tls-resume: the session of the last login */
	char sm_id[96];         /* --sm-resume: the XEP-0198 session to resume ("": none) */
	/* offline: messages this sender still has to send, and where */
	uint64_t to_send, sent_off;
	bool sender_done;
};

static struct {
	uv_loop_t loop;
	unsigned id;
	int up_fd;              /* DONE records to the parent */
	uv_pipe_t ctl;          /* GO records from the parent */
	char ctl_buf[sizeof(go_rec)];
	size_t ctl_len;
	SSL_CTX *ssl_ctx;
	user *users;
	size_t nusers;
	user **online[2];       /* chat: online users per domain */
	size_t nonline[2];
	uint64_t conn_seq;
	unsigned live;          /* bconns not yet freed */
	bconn *all;             /* list of them */
	/* the current phase */
	int phase;
	bool phase_active;
	double phase_dur;
	uint64_t phase_t0, window_end;
	struct rusage ru0;
	uv_timer_t phase_timer, tick;
	done_rec res;
	/* setup / register queue */
	user **queue;
	size_t qlen, qpos;
	unsigned active;
	bool presence_on_setup;
	/* login storm */
	unsigned nslots, slots_live;
	size_t *slot_next;
	/* chat */
	bool sending;
	uint64_t send_t0, sent_total, recv_total, last_recv_ns, measure_t0, sent0;
	uint64_t send_seq;
	unsigned window;
	double rate;            /* this worker's share */
	/* offline */
	user **senders, **receivers;
	size_t nsenders, nreceivers;
	uint64_t expected;
	bool draining;
	char *pad;
} W;

static void conn_close(bconn *c);
static void phase_done(void);
static void pump(void);
static void setup_next(void);

/* ---- output to the server ----------------------------------------------------------- */

typedef struct wreq {
	uv_write_t req;
	char data[];
} wreq;

static void on_written(uv_write_t *req, int status)
{
	pv_free(req);
}

static void raw_send(bconn *c, const char *p, size_t n)
{
	if (c->closing || !n)
		return;
	uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
	int w = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
	if (w == (int)n)
		return;
	if (w < 0 && w != UV_EAGAIN) {
		c->dead = true;
		return;
	}
	if (w < 0)
		w = 0;
	wreq *r = pv_malloc(sizeof(*r) + n - (size_t)w);
	memcpy(r->data, p + w, n - (size_t)w);
	b = uv_buf_init(r->data, (unsigned)(n - (size_t)w));
	if (uv_write(&r->req, (uv_stream_t *)&c->tcp, &b, 1, on_written) < 0) {
		pv_free(r);
		c->dead = true;
	}
}

static void tls_flush(bconn *c)
{
	char buf[16384];
	int n;
	while ((n = BIO_read(c->wbio, buf, sizeof(buf))) > 0)
		raw_send(c, buf, (size_t)n);
}

static void conn_send(bconn *c, const char *p, size_t n)
{
	if (c->closing || c->dead)
		return;
	if (c->ssl && SSL_is_init_finished(c->ssl)) {
		if (SSL_write(c->ssl, p, (int)n) != (int)n) {
			c->dead = true;
			return;
		}
		tls_flush(c);
	} else {
		raw_send(c, p, n);
	}
}

static void conn_sends(bconn *c, const char *s)
{
	conn_send(c, s, strlen(s));
}

static void send_stream_header(bconn *c)
{
	char h[512];
	snprintf(h, sizeof(h),
		"<?xml version='1.0'?><stream:stream to='%s' version='1.0' xml:lang='en' "
		"xmlns='" NS_CLIENT "' xmlns:stream='" NS_STREAM "'>",
		opt.domain[c->u->dom]);
	conn_sends(c, h);
}

/* ---- SCRAM client (RFC 5802) -------------------------------------------------------- */

static void hmac(const EVP_MD *md, const unsigned char *key, unsigned klen, const void *d,
	size_t dlen, unsigned char *out, unsigned *olen)
{
	HMAC(md, key, (int)klen, d, dlen, out, olen);
}

static bool keys_derive(user *u, const EVP_MD *md, int hash, const unsigned char *salt,
	size_t salt_len, unsigned iter)
{
	ukeys *k = &u->keys;
	if (k->valid && k->hash == hash && k->iter == iter && k->salt_len == salt_len &&
		!memcmp(k->salt, salt, salt_len))
		return true;
	if (salt_len > sizeof(k->salt))
		return false;
	unsigned char salted[EVP_MAX_MD_SIZE];
	unsigned len = (unsigned)EVP_MD_get_size(md);
	if (!PKCS5_PBKDF2_HMAC(opt.password, (int)strlen(opt.password), salt, (int)salt_len,
		    (int)iter, md, (int)len, salted))
		return false;
	unsigned l;
	hmac(md, salted, len, "Client Key", 10, k->ck, &l);
	EVP_Digest(k->ck, len, k->stored, NULL, md, NULL);
	hmac(md, salted, len, "Server Key", 10, k->sk, &l);
	k->klen = len;
	k->hash = hash;
	k->iter = iter;
	memcpy(k->salt, salt, salt_len);
	k->salt_len = salt_len;
	k->valid = true;
	W.res.derivations++;
	return true;
}

/* XEP-0198 5: resume the user's last session.  h is 0: a login storm's sessions get
 * no stanzas. */
static char *resume_xml(const user *u)
{
	return pv_sprintf("<resume xmlns='" NS_SM "' previd='%s' h='0'/>", u->sm_id);
}

static void sasl_start(bconn *c)
{
	c->md = c->mech256 ? EVP_sha256() : EVP_sha1();
	unsigned char rb[16];
	RAND_bytes(rb, sizeof(rb));
	for (int i = 0; i < 16; i++)
		snprintf(c->cnonce + 2 * i, 3, "%02x", rb[i]);
	c->first_bare = pv_sprintf("n=%s,r=%s", c->u->name, c->cnonce);
	char *gs2 = pv_sprintf("n,,%s", c->first_bare);
	char *b64 = pv_base64_encode(gs2, strlen(gs2));
	c->sasl2 = opt.sasl2 && c->feat_sasl2 && c->feat_bind2;
	/* --sm-resume: resume the user's last session inside <authenticate/>; --sm: enable
	 * XEP-0198 in the binding, which a working resumption skips */
	bool smr = c->sasl2 && opt.sm_resume, sme = c->sasl2 && opt.sm;
	char *resume = smr && c->u->sm_id[0] ? resume_xml(c->u) : pv_strdup("");
	char *auth = c->sasl2
		? pv_sprintf("<authenticate xmlns='" NS_SASL2 "' mechanism='%s'><initial-response>%s"
			     "</initial-response>%s<bind xmlns='" NS_BIND2 "'><tag>bench</tag>%s</bind>"
			     "</authenticate>",
			c->mech256 ? "SCRAM-SHA-256" : "SCRAM-SHA-1", b64, resume,
			sme ? "<enable xmlns='" NS_SM "' resume='true'/>" : "")
		: pv_sprintf("<auth xmlns='" NS_SASL "' mechanism='%s'>%s</auth>",
			c->mech256 ? "SCRAM-SHA-256" : "SCRAM-SHA-1", b64);
	snprintf(W.res.mech, sizeof(W.res.mech), "%s", c->mech256 ? "SCRAM-SHA-256" : "SCRAM-SHA-1");
	conn_sends(c, auth);
	pv_free(resume);
	pv_free(auth);
	pv_free(b64);
	pv_free(gs2);
	c->st = S_SASL1;
}

/* The value of attribute `a` ("r", "s", "i", "v") in a SCRAM message; borrowed slice. */
static const char *scram_attr(const char *msg, char a, size_t *len)
{
	const char *p = msg;
	while (p && *p) {
		if (p[0] == a && p[1] == '=') {
			const char *e = strchr(p, ',');
			*len = e ? (size_t)(e - p - 2) : strlen(p + 2);
			return p + 2;
		}
		p = strchr(p, ',');
		if (p)
			p++;
	}
	return NULL;
}

static bool sasl_challenge(bconn *c)
{
	unsigned char *sf = NULL, *salt = NULL;
	size_t sflen, saltlen;
	char *final_nop = NULL, *authmsg = NULL, *proof64 = NULL, *resp = NULL, *b64 = NULL;
	bool ok = false;
	if (pv_base64_decode(c->text.data ? c->text.data : "", c->text.len, &sf, &sflen) < 0)
		goto fail;
	char *server_first = pv_strndup((char *)sf, sflen);
	pv_free(sf);
	sf = (unsigned char *)server_first;
	size_t rl, sl, il;
	const char *r = scram_attr(server_first, 'r', &rl);
	const char *s = scram_attr(server_first, 's', &sl);
	const char *i = scram_attr(server_first, 'i', &il);
	if (!r || !s || !i || rl < 32 || strncmp(r, c->cnonce, 32))
		goto fail;
	unsigned iter = (unsigned)strtoul(i, NULL, 10);
	if (iter == 0 || iter > 10000000 || pv_base64_decode(s, sl, &salt, &saltlen) < 0)
		goto fail;
	if (!keys_derive(c->u, c->md, c->mech256 ? 256 : 1, salt, saltlen, iter))
		goto fail;
	final_nop = pv_sprintf("c=biws,r=%.*s", (int)rl, r);
	authmsg = pv_sprintf("%s,%s,%s", c->first_bare, server_first, final_nop);
	ukeys *k = &c->u->keys;
	unsigned char sig[EVP_MAX_MD_SIZE], proof[EVP_MAX_MD_SIZE];
	unsigned l;
	hmac(c->md, k->stored, k->klen, authmsg, strlen(authmsg), sig, &l);
	for (unsigned j = 0; j < k->klen; j++)
		proof[j] = k->ck[j] ^ sig[j];
	hmac(c->md, k->sk, k->klen, authmsg, strlen(authmsg), c->server_sig, &c->sig_len);
	proof64 = pv_base64_encode(proof, k->klen);
	resp = pv_sprintf("%s,p=%s", final_nop, proof64);
	b64 = pv_base64_encode(resp, strlen(resp));
	pv_free(resp);
	resp = pv_sprintf("<response xmlns='%s'>%s</response>", c->sasl2 ? NS_SASL2 : NS_SASL, b64);
	conn_sends(c, resp);
	c->st = S_SASL2;
	ok = true;
fail:
	pv_free(sf);
	pv_free(salt);
	pv_free(final_nop);
	pv_free(authmsg);
	pv_free(proof64);
	pv_free(resp);
	pv_free(b64);
	return ok;
}

static bool sasl_success(bconn *c)
{
	unsigned char *d = NULL, *v = NULL;
	size_t dl, vl;
	bool ok = false;
	if (!c->text.len)
		return false; /* SCRAM servers send v= with <success/> (RFC 6120 6.3.10) */
	if (pv_base64_decode(c->text.data, c->text.len, &d, &dl) < 0)
		goto fail;
	char *s = pv_strndup((char *)d, dl);
	size_t l;
	const char *vs = scram_attr(s, 'v', &l);
	ok = vs && pv_base64_decode(vs, l, &v, &vl) >= 0 && vl == c->sig_len &&
	     !memcmp(v, c->server_sig, vl);
	pv_free(s);
fail:
	pv_free(d);
	pv_free(v);
	return ok;
}

/* ---- the login sequence ------------------------------------------------------------- */

static void login_finished(bconn *c, bool ok);

static void send_bind(bconn *c)
{
	char b[256];
	snprintf(b, sizeof(b),
		"<iq type='set' id='bind1'><bind xmlns='" NS_BIND "'><resource>b%" PRIu64
		"</resource></bind></iq>",
		++W.conn_seq);
	conn_sends(c, b);
	c->st = S_BIND;
}

/* The resource is bound: with --sm, XEP-0198 is enabled next unless it is on already
 * (inline in Bind 2); a server without it fails the login. */
static void bound_done(bconn *c)
{
	if (!opt.sm || c->sm_on) {
		login_finished(c, true);
		return;
	}
	if (!c->feat_sm) {
		login_finished(c, false);
		return;
	}
	conn_sends(c, "<enable xmlns='" NS_SM "' resume='true'/>");
	c->st = S_SM_ENABLE;
}

static void send_register(bconn *c)
{
	pv_buf b;
	pv_buf_init(&b);
	pv_buf_puts(&b, "<iq type='set' id='reg1'><query xmlns='" NS_REGISTER "'><username>");
	buf_esc(&b, c->u->name);
	pv_buf_puts(&b, "</username><password>");
	buf_esc(&b, opt.password);
	pv_buf_puts(&b, "</password></query></iq>");
	conn_send(c, b.data, b.len);
	pv_buf_fini(&b);
	c->st = S_REGISTER;
}

static void tls_start(bconn *c)
{
	c->ssl = SSL_new(W.ssl_ctx);
	c->rbio = BIO_new(BIO_s_mem());
	c->wbio = BIO_new(BIO_s_mem());
	SSL_set_bio(c->ssl, c->rbio, c->wbio);
	SSL_set_connect_state(c->ssl);
	SSL_set_tlsext_host_name(c->ssl, opt.domain[c->u->dom]);
	if (opt.tls_resume && c->u->tls_sess)
		SSL_set_session(c->ssl, c->u->tls_sess);
	c->st = S_HANDSHAKE;
	SSL_do_handshake(c->ssl);
	tls_flush(c);
}

/* A complete top-level element arrived (depth 2). */
static void handle_top(bconn *c)
{
	if (c->sm_on) {
		/* XEP-0198: count what the server sent, answer its requests */
		if (c->top == T_MESSAGE || c->top == T_IQ || c->top == T_PRESENCE)
			c->sm_h++;
		if (c->top == T_SM_R) {
			char b[80];
			snprintf(b, sizeof(b), "<a xmlns='" NS_SM "' h='%" PRIu32 "'/>", c->sm_h);
			conn_sends(c, b);
			return;
		}
	}
	if (c->top == T_STREAMERR || c->top == T_FAILURE || c->top == T_TLSFAIL) {
		c->dead = true;
		if (c->st != S_ONLINE)
			login_finished(c, false);
		else
			W.res.dropped++;
		return;
	}
	switch (c->st) {
	case S_FEATURES1:
		if (c->top != T_FEATURES)
			return;
		if (!c->feat_tls) {
			c->dead = true;
			login_finished(c, false);
			return;
		}
		conn_sends(c, "<starttls xmlns='" NS_TLS "'/>");
		c->st = S_STARTTLS;
		return;
	case S_STARTTLS:
		if (c->top == T_PROCEED) {
			c->restart = true;
			tls_start(c);
		}
		return;
	case S_FEATURES2:
		if (c->top != T_FEATURES)
			return;
		if (c->purpose == P_REGISTER) {
			send_register(c);
			return;
		}
		if (!c->mech256 && !c->mech1) {
			c->dead = true;
			login_finished(c, false);
			return;
		}
		sasl_start(c);
		return;
	case S_REGISTER:
		if (c->top != T_IQ || strcmp(c->iq_id, "reg1"))
			return;
		/* a conflict means the account exists: what the caller wanted */
		login_finished(c, !strcmp(c->iq_type, "result") ||
			(c->text.len && strstr(c->text.data, "conflict")));
		c->dead = true;
		return;
	case S_SASL1:
		if (c->top == T_CHALLENGE && sasl_challenge(c))
			return;
		if (c->top == T_SUCCESS)
			break; /* success without a challenge: not SCRAM */
		if (c->top != T_CHALLENGE)
			return;
		break;
	case S_SASL2:
		if (c->top == T_SUCCESS && c->sasl2) {
			/* no restart: the features follow <success/>, the resource is bound */
			if (!sasl_success(c) || !(c->bound2 || c->sm_resumed))
				break;
			c->st = S_FEATURES3;
			return;
		}
		if (c->top == T_SUCCESS && sasl_success(c)) {
			c->restart = true;
			c->st = S_FEATURES3;
			send_stream_header(c);
			return;
		}
		if (c->top == T_CHALLENGE) {
			/* RFC 6120 allows the additional data as a final challenge */
			if (sasl_success(c)) {
				conn_sends(c, "<response xmlns='" NS_SASL "'/>");
				return;
			}
		}
		break;
	case S_FEATURES3:
		if (c->top != T_FEATURES)
			return;
		if (c->sasl2) {
			bound_done(c);
			return;
		}
		if (opt.sm_resume && c->u->sm_id[0] && c->feat_sm) {
			/* XEP-0198 5, the classic way: <resume/> in place of the binding */
			char *b = resume_xml(c->u);
			conn_sends(c, b);
			pv_free(b);
			c->st = S_SM_RESUME;
			return;
		}
		if (!c->feat_bind)
			break;
		send_bind(c);
		return;
	case S_SM_RESUME:
		if (c->top == T_SM_RESUMED) {
			c->sm_resumed = c->sm_on = true;
			login_finished(c, true);
			return;
		}
		if (c->top != T_SM_FAILED)
			return;
		c->u->sm_id[0] = '\0'; /* gone (expired, or the server restarted): a new one */
		send_bind(c);
		return;
	case S_SM_ENABLE:
		if (c->top == T_SM_ENABLED) {
			c->sm_on = true;
			login_finished(c, true);
			return;
		}
		if (c->top != T_SM_FAILED)
			return;
		break;
	case S_BIND:
		if (c->top != T_IQ || strcmp(c->iq_id, "bind1"))
			return;
		if (strcmp(c->iq_type, "result"))
			break;
		if (c->feat_session && !c->session_optional) {
			conn_sends(c, "<iq type='set' id='sess1'><session xmlns='" NS_SESSION
				      "'/></iq>");
			c->st = S_SESSION;
			return;
		}
		bound_done(c);
		return;
	case S_SESSION:
		if (c->top != T_IQ || strcmp(c->iq_id, "sess1"))
			return;
		if (strcmp(c->iq_type, "result"))
			break;
		bound_done(c);
		return;
	case S_ONLINE:
		if (c->top == T_IQ && (!strcmp(c->iq_type, "get") || !strcmp(c->iq_type, "set"))) {
			/* the server pings us (XEP-0199) or asks something: answer so it keeps us */
			pv_buf b;
			pv_buf_init(&b);
			pv_buf_puts(&b, "<iq type='result' id='");
			buf_esc(&b, c->iq_id);
			if (c->iq_from) {
				pv_buf_puts(&b, "' to='");
				buf_esc(&b, c->iq_from);
			}
			pv_buf_puts(&b, "'/>");
			conn_send(c, b.data, b.len);
			pv_buf_fini(&b);
			return;
		}
		if (c->top == T_IQ && c->ping_pending && !strncmp(c->iq_id, "pg", 2)) {
			c->ping_pending = 0;
			pump();
			return;
		}
		if (c->top == T_MESSAGE) {
			if (!strcmp(c->msg_type, "error")) {
				W.res.errors++;
				return;
			}
			const char *bt = c->text.len ? strstr(c->text.data, "bt=") : NULL;
			if (!bt)
				return;
			uint64_t t = strtoull(bt + 3, NULL, 10), now = now_ns();
			W.recv_total++;
			W.last_recv_ns = now;
			if (W.phase == PH_MEASURE && W.phase_active && now <= W.window_end)
				W.res.delivered++;
			else if (W.phase == PH_DELIVER || W.phase == PH_SETUP_RECV)
				W.res.delivered++;
			if (W.phase == PH_MEASURE && t >= W.measure_t0 && now >= t)
				hist_add(&W.res.lat, (now - t) / 1000);
			if (W.phase == PH_DELIVER && W.phase_active && W.recv_total >= W.expected)
				phase_done();
			else
				pump();
		}
		return;
	default:
		return;
	}
	/* anything else in the login sequence is a refusal */
	c->dead = true;
	login_finished(c, false);
}

/* ---- expat callbacks ---------------------------------------------------------------- */

static const char *attr(const XML_Char **atts, const char *name)
{
	for (; atts && *atts; atts += 2)
		if (!strcmp(atts[0], name))
			return atts[1];
	return NULL;
}

static void copy_attr(char *dst, size_t n, const char *v)
{
	snprintf(dst, n, "%s", v ? v : "");
}

static void on_start(void *ud, const XML_Char *name, const XML_Char **atts)
{
	bconn *c = ud;
	c->depth++;
	if (c->depth == 2) {
		c->capture = false;
		c->iq_has_error = false;
		pv_buf_reset(&c->text);
		if (!strcmp(name, NS_STREAM " features")) {
			c->top = T_FEATURES;
			c->feat_tls = c->feat_bind = c->feat_session = c->mech256 = c->mech1 = false;
			c->feat_sm = false;
			c->feat_sasl2 = c->feat_bind2 = false;
			c->session_optional = false;
		} else if (!strcmp(name, NS_CLIENT " message")) {
			c->top = T_MESSAGE;
			copy_attr(c->msg_type, sizeof(c->msg_type), attr(atts, "type"));
		} else if (!strcmp(name, NS_CLIENT " iq")) {
			c->top = T_IQ;
			copy_attr(c->iq_type, sizeof(c->iq_type), attr(atts, "type"));
			copy_attr(c->iq_id, sizeof(c->iq_id), attr(atts, "id"));
			pv_free(c->iq_from);
			c->iq_from = pv_strdup(attr(atts, "from"));
		} else if (!strcmp(name, NS_CLIENT " presence")) {
			c->top = T_PRESENCE;
		} else if (!strcmp(name, NS_TLS " proceed")) {
			c->top = T_PROCEED;
		} else if (!strcmp(name, NS_TLS " failure")) {
			c->top = T_TLSFAIL;
		} else if (!strcmp(name, NS_SASL " challenge") || !strcmp(name, NS_SASL2 " challenge")) {
			c->top = T_CHALLENGE;
			c->capture = true;
		} else if (!strcmp(name, NS_SASL " success")) {
			c->top = T_SUCCESS;
			c->capture = true;
		} else if (!strcmp(name, NS_SASL2 " success")) {
			c->top = T_SUCCESS; /* its data is in <additional-data/> */
			c->bound2 = c->sm_resumed = false;
		} else if (!strcmp(name, NS_SASL " failure") || !strcmp(name, NS_SASL2 " failure")) {
			c->top = T_FAILURE;
		} else if (!strcmp(name, NS_STREAM " error")) {
			c->top = T_STREAMERR;
		} else if (!strcmp(name, NS_SM " enabled")) {
			c->top = T_SM_ENABLED;
			copy_attr(c->u->sm_id, sizeof(c->u->sm_id), attr(atts, "id"));
		} else if (!strcmp(name, NS_SM " resumed")) {
			c->top = T_SM_RESUMED;
		} else if (!strcmp(name, NS_SM " failed")) {
			c->top = T_SM_FAILED;
		} else if (!strcmp(name, NS_SM " r")) {
			c->top = T_SM_R;
		} else {
			c->top = T_OTHER;
		}
	} else if (c->depth == 3) {
		if (c->top == T_FEATURES) {
			if (!strcmp(name, NS_TLS " starttls"))
				c->feat_tls = true;
			else if (!strcmp(name, NS_SASL " mechanisms"))
				c->in_mechs = true;
			else if (!strcmp(name, NS_BIND " bind"))
				c->feat_bind = true;
			else if (!strcmp(name, NS_SESSION " session"))
				c->feat_session = true;
			else if (!strcmp(name, NS_SASL2 " authentication"))
				c->feat_sasl2 = true;
			else if (!strcmp(name, NS_SM " sm"))
				c->feat_sm = true;
		} else if (c->top == T_SUCCESS && !strcmp(name, NS_SASL2 " additional-data")) {
			c->capture = true;
		} else if (c->top == T_SUCCESS && !strcmp(name, NS_BIND2 " bound")) {
			c->bound2 = true;
		} else if (c->top == T_SUCCESS && !strcmp(name, NS_SM " resumed")) {
			c->sm_resumed = c->sm_on = true;
		} else if (c->top == T_MESSAGE && !strcmp(name, NS_CLIENT " body")) {
			c->capture = true;
		} else if (c->top == T_IQ && !strcmp(name, NS_CLIENT " error")) {
			c->iq_has_error = true;
		}
	} else if (c->depth == 4 && c->top == T_SUCCESS && !strcmp(name, NS_SM " enabled")) {
		/* success > bound > enabled: the session the next login resumes */
		copy_attr(c->u->sm_id, sizeof(c->u->sm_id), attr(atts, "id"));
		c->sm_on = true;
	} else if (c->depth == 5) {
		/* features > authentication > inline > bind */
		if (c->top == T_FEATURES && c->feat_sasl2 && !strcmp(name, NS_BIND2 " bind"))
			c->feat_bind2 = true;
	} else if (c->depth == 4) {
		if (c->top == T_FEATURES && c->in_mechs) {
			pv_buf_reset(&c->text);
			c->capture = true;
		} else if (c->top == T_FEATURES && c->feat_session && !strcmp(name, NS_SESSION " optional")) {
			c->session_optional = true;
		} else if (c->top == T_IQ && c->iq_has_error) {
			/* keep the error condition's name (register: conflict) */
			const char *sp = strchr(name, ' ');
			pv_buf_puts(&c->text, sp ? sp + 1 : name);
			pv_buf_puts(&c->text, " ");
		}
	}
}

static void on_end(void *ud, const XML_Char *name)
{
	bconn *c = ud;
	if (c->depth == 4 && c->top == T_FEATURES && c->in_mechs) {
		if (c->text.len && !strcmp(c->text.data, "SCRAM-SHA-256"))
			c->mech256 = true;
		else if (c->text.len && !strcmp(c->text.data, "SCRAM-SHA-1"))
			c->mech1 = true;
		c->capture = false;
	} else if (c->depth == 3) {
		if (c->top == T_FEATURES)
			c->in_mechs = false;
		if (c->top == T_MESSAGE || c->top == T_SUCCESS)
			c->capture = false;
	} else if (c->depth == 2) {
		c->capture = false;
		handle_top(c);
		if (c->restart || c->dead)
			XML_StopParser(c->xp, XML_FALSE);
	} else if (c->depth == 1) {
		/* the server closed the stream */
		if (c->st == S_ONLINE)
			W.res.dropped++;
		else if (c->st != S_CLOSED)
			login_finished(c, false);
		c->dead = true;
		XML_StopParser(c->xp, XML_FALSE);
	}
	c->depth--;
}

static void on_chars(void *ud, const XML_Char *s, int len)
{
	bconn *c = ud;
	if (c->capture && c->text.len < 65536)
		pv_buf_append(&c->text, s, (size_t)len);
}

static void parser_reset(bconn *c)
{
	if (c->xp)
		XML_ParserReset(c->xp, NULL);
	else
		c->xp = XML_ParserCreateNS(NULL, ' ');
	XML_SetUserData(c->xp, c);
	XML_SetElementHandler(c->xp, on_start, on_end);
	XML_SetCharacterDataHandler(c->xp, on_chars);
	c->depth = 0;
	c->restart = false;
}

static void feed_xml(bconn *c, const char *p, size_t n)
{
	if (c->dead || c->closing)
		return;
	if (XML_Parse(c->xp, p, (int)n, 0) == XML_STATUS_ERROR && !c->restart && !c->dead) {
		if (c->st == S_ONLINE)
			W.res.dropped++;
		else
			login_finished(c, false);
		c->dead = true;
	}
	if (c->restart && !c->dead)
		parser_reset(c); /* servers send nothing after <proceed/> or <success/> */
}

/* ---- socket callbacks --------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t sugg, uv_buf_t *buf)
{
	static char rbuf[65536];
	*buf = uv_buf_init(rbuf, sizeof(rbuf));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	bconn *c = s->data;
	if (nread < 0) {
		if (c->st == S_ONLINE)
			W.res.dropped++;
		else if (c->st != S_CLOSED)
			login_finished(c, false);
		conn_close(c);
		return;
	}
	if (nread == 0)
		return;
	if (!c->ssl) {
		feed_xml(c, buf->base, (size_t)nread);
	} else {
		BIO_write(c->rbio, buf->base, (int)nread);
		if (c->st == S_HANDSHAKE) {
			int r = SSL_do_handshake(c->ssl);
			tls_flush(c);
			if (r == 1) {
				SSL_set_mode(c->ssl, SSL_MODE_RELEASE_BUFFERS);
				c->st = S_FEATURES2;
				send_stream_header(c);
			} else if (SSL_get_error(c->ssl, r) != SSL_ERROR_WANT_READ) {
				login_finished(c, false);
				c->dead = true;
			}
		}
		char pbuf[16384];
		while (!c->dead && c->st != S_HANDSHAKE) {
			int r = SSL_read(c->ssl, pbuf, sizeof(pbuf));
			if (r <= 0) {
				int e = SSL_get_error(c->ssl, r);
				if (e != SSL_ERROR_WANT_READ) {
					if (c->st == S_ONLINE)
						W.res.dropped++;
					else if (c->st != S_CLOSED)
						login_finished(c, false);
					c->dead = true;
				}
				break;
			}
			feed_xml(c, pbuf, (size_t)r);
		}
		if (!c->dead)
			tls_flush(c); /* TLS 1.3 tickets / key updates may need answers */
	}
	if (c->dead)
		conn_close(c);
}

static void on_connect(uv_connect_t *req, int status)
{
	bconn *c = req->data;
	if (c->closing)
		return;
	if (status < 0) {
		login_finished(c, false);
		conn_close(c);
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
	if (opt.direct_tls) {
		tls_start(c); /* the stream header follows the handshake */
	} else {
		c->st = S_FEATURES1;
		send_stream_header(c);
	}
	if (c->dead)
		conn_close(c);
}

static void on_closed(uv_handle_t *h)
{
	bconn *c = h->data;
	if (c->ssl)
		SSL_free(c->ssl); /* frees both BIOs */
	if (c->xp)
		XML_ParserFree(c->xp);
	pv_buf_fini(&c->text);
	pv_free(c->first_bare);
	pv_free(c->iq_from);
	if (c->prev)
		c->prev->next = c->next;
	else
		W.all = c->next;
	if (c->next)
		c->next->prev = c->prev;
	pv_free(c);
	W.live--;
}

static void conn_close(bconn *c)
{
	if (c->closing)
		return;
	if (c->st == S_ONLINE && c->ssl && !c->dead) {
		conn_sends(c, "</stream:stream>");
	}
	c->closing = true;
	if (c->u && c->u->conn == c)
		c->u->conn = NULL;
	c->st = S_CLOSED;
	uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static bconn *conn_start(user *u, enum purpose p, int slot, bool presence)
{
	bconn *c = pv_calloc(1, sizeof(*c));
	c->u = u;
	c->purpose = p;
	c->slot = slot;
	c->presence = presence;
	c->t0 = now_ns();
	c->st = S_CONNECTING;
	pv_buf_init(&c->text);
	parser_reset(c);
	uv_tcp_init(&W.loop, &c->tcp);
	c->tcp.data = c;
	c->creq.data = c;
	W.live++;
	c->next = W.all;
	if (W.all)
		W.all->prev = c;
	W.all = c;

	struct sockaddr_in dst;
	uv_ip4_addr(opt.host[u->dom], opt.port[u->dom], &dst);
	if (opt.src_ips) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		int one = 1;
		unsigned i = (unsigned)(W.conn_seq++ % opt.src_ips);
		struct sockaddr_in src = {.sin_family = AF_INET};
		/* 127.100.0.1 ...: loopback (127.0.0.0/8 is routed to lo) */
		src.sin_addr.s_addr = htonl((127u << 24) | (100u << 16) | ((i / 250) << 8) | (i % 250 + 1));
		if (fd < 0 || setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one)) ||
			bind(fd, (struct sockaddr *)&src, sizeof(src)) || uv_tcp_open(&c->tcp, fd)) {
			if (fd >= 0)
				close(fd);
			goto fail;
		}
	}
	if (uv_tcp_connect(&c->creq, &c->tcp, (struct sockaddr *)&dst, on_connect))
		goto fail;
	return c;
fail:
	c->closing = true;
	uv_close((uv_handle_t *)&c->tcp, on_closed);
	login_finished(c, false);
	return NULL;
}

/* ---- phases in a worker ------------------------------------------------------------- */

static uint64_t cpu_us(const struct rusage *r)
{
	return (uint64_t)r->ru_utime.tv_sec * 1000000 + (uint64_t)r->ru_utime.tv_usec +
	       (uint64_t)r->ru_stime.tv_sec * 1000000 + (uint64_t)r->ru_stime.tv_usec;
}

static void send_done(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	W.res.phase = W.phase;
	W.res.gen_cpu_us = cpu_us(&ru) - cpu_us(&W.ru0);
	if (W.res.elapsed == 0)
		W.res.elapsed = (double)(now_ns() - W.phase_t0) / 1e9;
	if (write_full(W.up_fd, &W.res, sizeof(W.res)) < 0)
		exit(3);
}

static void phase_done(void)
{
	if (!W.phase_active)
		return;
	W.phase_active = false;
	uv_timer_stop(&W.phase_timer);
	if (W.phase == PH_MEASURE && W.sending) {
		W.sending = false;
		W.res.sent = W.sent_total - W.sent0;
	}
	send_done();
}

/* A connection of the login sequence ended (ok or not). */
static void login_finished(bconn *c, bool ok)
{
	if (c->st == S_CLOSED || c->st == S_ONLINE)
		return;
	if (!ok && opt.verbose)
		fprintf(stderr, "peyvand-bench: %s: login failed in state %d (element %d)%s%s\n",
			c->u->name, (int)c->st, (int)c->top, c->text.len ? ": " : "",
			c->text.len ? c->text.data : "");
	c->st = ok ? S_ONLINE : S_CLOSED;
	if (ok)
		W.res.ok++;
	else
		W.res.failed++;
	if (ok && c->sasl2)
		W.res.sasl2++;
	if (ok && c->sm_resumed)
		W.res.sm_resumed++;
	if (ok && opt.tls_resume && c->ssl) {
		/* The ticket came before the bind result: the session is resumable now. */
		if (SSL_session_reused(c->ssl))
			W.res.resumed++;
		/* A copy: the connection closes without close_notify, and OpenSSL then
		 * marks its own session not resumable. */
		SSL_SESSION *live = SSL_get1_session(c->ssl);
		SSL_SESSION *sess = live && SSL_SESSION_is_resumable(live) ? SSL_SESSION_dup(live) : NULL;
		SSL_SESSION_free(live);
		if (sess) {
			SSL_SESSION_free(c->u->tls_sess);
			c->u->tls_sess = sess;
		}
	}
	if (c->purpose == P_STORM) {
		if (ok && W.phase == PH_MEASURE && W.phase_active)
			hist_add(&W.res.lat, (now_ns() - c->t0) / 1000);
		if (ok) {
			/* --sm-resume: no </stream:stream>, so the session waits to be resumed */
			if (!opt.sm_resume)
				conn_sends(c, "</stream:stream>");
			c->dead = true; /* close after this chunk; the slot goes on */
		}
		int slot = c->slot;
		c->slot = -1;
		/* next login of this slot, unless the window is over */
		bool go_on = W.phase_active && (W.phase == PH_WARM ? W.qpos < W.qlen
								      : now_ns() < W.window_end);
		/* a connect that fails at once (no fds, no address) calls back into here:
		 * bound the recursion by retiring the slot */
		static int depth;
		if (depth > 64)
			go_on = false;
		if (go_on) {
			user *u;
			if (W.phase == PH_WARM) {
				u = W.queue[W.qpos++];
			} else {
				/* slot s cycles through users s, s+n, s+2n: never two at once */
				size_t i = W.slot_next[slot];
				u = &W.users[i];
				i += W.nslots;
				W.slot_next[slot] = i < W.nusers ? i : (size_t)slot;
			}
			depth++;
			conn_start(u, P_STORM, slot, false);
			depth--;
		} else {
			W.slots_live--;
			if (!W.slots_live) {
				if (W.phase == PH_MEASURE)
					W.res.elapsed = opt.duration;
				phase_done();
			}
		}
		return;
	}
	if (ok && c->purpose == P_SETUP) {
		c->u->conn = c;
		if (c->presence)
			conn_sends(c, "<presence/>");
	}
	if (c->purpose == P_REGISTER)
		c->dead = true;
	if (W.active)
		W.active--;
	setup_next();
}

static void setup_next(void)
{
	if (!W.phase_active || (W.phase != PH_SETUP && W.phase != PH_SETUP_RECV))
		return;
	while (W.active < opt.concurrency && W.qpos < W.qlen) {
		user *u = W.queue[W.qpos++];
		W.active++;
		conn_start(u, opt.sc == SC_REGISTER ? P_REGISTER : P_SETUP,
			-1, W.presence_on_setup);
	}
	if (W.qpos >= W.qlen && W.active == 0)
		phase_done();
}

static void on_phase_timer(uv_timer_t *t)
{
	if (!W.phase_active)
		return;
	if (W.phase == PH_SETUP || W.phase == PH_SETUP_RECV) {
		/* bound reached: whatever is still logging in has failed */
		W.res.failed += W.active + (W.qlen - W.qpos);
		W.qpos = W.qlen;
		W.active = 0;
		for (size_t i = 0; i < W.nusers; i++) {
			/* nothing to do: unfinished connections close at END */
		}
		phase_done();
	} else if (W.phase == PH_WARM && opt.sc != SC_LOGIN) {
		phase_done(); /* chat warm-up over; sending goes on */
	} else if (W.phase == PH_MEASURE && opt.sc != SC_LOGIN && !W.draining) {
		/* end of the window: stop sending, let in-flight messages arrive (<= 2 s) */
		W.sending = false;
		W.res.sent = W.sent_total - W.sent0;
		W.res.elapsed = opt.duration;
		W.draining = true;
		uv_timer_start(&W.phase_timer, on_phase_timer, 2000, 0);
	} else if (W.phase == PH_MEASURE && W.draining) {
		W.draining = false;
		phase_done();
	} else {
		phase_done(); /* login storm overrun, store/deliver bound, hold */
	}
}

static user *pick(int dom, user *not)
{
	size_t n = W.nonline[dom];
	if (!n || (n == 1 && W.online[dom][0] == not))
		return NULL;
	for (int tries = 0; tries < 8; tries++) {
		user *u = W.online[dom][rnd() % n];
		if (u != not && u->conn)
			return u;
	}
	for (size_t i = 0; i < n; i++)
		if (W.online[dom][i] != not && W.online[dom][i]->conn)
			return W.online[dom][i];
	return NULL;
}

/* Messages sent and not yet seen (late arrivals after a stall can make it negative). */
static uint64_t inflight(void)
{
	return W.sent_total > W.recv_total ? W.sent_total - W.recv_total : 0;
}

static void send_chat(user *from, user *to, uint64_t now)
{
	char m[1024];
	int n = snprintf(m, sizeof(m),
		"<message to='%s@%s' type='chat' id='m%" PRIu64 "'><body>bt=%" PRIu64 ";%s</body></message>",
		to->name, opt.domain[to->dom], ++W.send_seq, now, W.pad);
	conn_send(from->conn, m, (size_t)n);
	if (from->conn->dead)
		conn_close(from->conn);
}

/* Send what is due: chat (offered rate or in-flight window) or offline batches. */
static void pump(void)
{
	if (W.phase == PH_STORE && W.phase_active) {
		bool all = true;
		uint64_t now = now_ns();
		for (size_t i = 0; i < W.nsenders; i++) {
			user *s = W.senders[i];
			if (s->sender_done)
				continue;
			if (!s->conn) {
				s->sender_done = true; /* lost its session: its rest is unsent */
				continue;
			}
			if (s->conn->ping_pending) {
				all = false;
				continue;
			}
			if (s->sent_off >= s->to_send) {
				s->sender_done = true;
				continue;
			}
			all = false;
			/* a batch of 50, then a ping: the answer paces us at the server's speed */
			for (int b = 0; b < 50 && s->sent_off < s->to_send; b++) {
				uint64_t k = s->sent_off++ * W.nsenders + i; /* global message number */
				send_chat(s, W.receivers[k % W.nreceivers], now);
				W.res.sent++;
				if (!s->conn)
					break;
			}
			if (s->conn) {
				char p[160];
				s->conn->ping_pending = ++W.send_seq;
				snprintf(p, sizeof(p),
					"<iq type='get' id='pg%" PRIu64 "' to='%s'><ping xmlns='urn:xmpp:ping'/></iq>",
					s->conn->ping_pending, opt.domain[s->dom]);
				conn_sends(s->conn, p);
			}
		}
		if (all)
			phase_done();
		return;
	}
	if (!W.sending)
		return;
	uint64_t now = now_ns();
	int dst = opt.ndomains == 2 ? 1 : 0;
	if (W.rate > 0) {
		uint64_t due = (uint64_t)((double)(now - W.send_t0) / 1e9 * W.rate);
		/* bound the backlog at 5 s of offered load: a server that cannot keep up shows
		 * as fewer sends and higher latency, not as a client that eats all memory */
		uint64_t cap = (uint64_t)(W.rate * 5) + 100;
		while (W.sent_total < due) {
			if (inflight() > cap) {
				W.res.stalls++;
				W.send_t0 += (uint64_t)(1e9 / W.rate);
				due--;
				continue;
			}
			int d = opt.ndomains == 2 ? (int)(rnd() & 1) : 0;
			user *from = pick(d, NULL), *to = from ? pick(dst == 1 ? 1 - d : d, from) : NULL;
			if (!to)
				return;
			send_chat(from, to, now);
			W.sent_total++;
		}
		return;
	}
	/* saturation: keep `window` messages in flight */
	if (inflight() >= W.window && now - W.last_recv_ns > 2000000000ULL) {
		/* nothing arrived for 2 s: count the window as lost and go on */
		W.res.stalls++;
		W.recv_total = W.sent_total;
		W.last_recv_ns = now;
	}
	while (inflight() < W.window) {
		int d = opt.ndomains == 2 ? (int)(rnd() & 1) : 0;
		user *from = pick(d, NULL), *to = from ? pick(dst == 1 ? 1 - d : d, from) : NULL;
		if (!to)
			return;
		send_chat(from, to, now);
		W.sent_total++;
	}
}

static void on_tick(uv_timer_t *t)
{
	pump();
}

static void build_online(void)
{
	for (int d = 0; d < 2; d++) {
		W.nonline[d] = 0;
		for (size_t i = 0; i < W.nusers; i++)
			if (W.users[i].conn && W.users[i].dom == d)
				W.online[d][W.nonline[d]++] = &W.users[i];
	}
}

static void close_all(void)
{
	for (bconn *c = W.all; c; c = c->next)
		conn_close(c);
}

/* Which users does a phase set up?  offline: receivers are (u / procs) odd. */
static bool is_receiver(const user *u)
{
	return opt.sc == SC_OFFLINE && (u->idx / opt.procs) % 2 == 1;
}

static void phase_begin(const go_rec *g)
{
	memset(&W.res, 0, sizeof(W.res));
	W.phase = g->phase;
	W.phase_dur = g->duration;
	W.phase_t0 = now_ns();
	W.phase_active = true;
	getrusage(RUSAGE_SELF, &W.ru0);
	uint64_t bound_ms = (uint64_t)(g->duration * 1000);
	switch (g->phase) {
	case PH_SETUP:
	case PH_SETUP_RECV:
		W.qlen = W.qpos = 0;
		W.active = 0;
		for (size_t i = 0; i < W.nusers; i++) {
			user *u = &W.users[i];
			bool want = opt.sc == SC_OFFLINE ? (is_receiver(u) == (g->phase == PH_SETUP_RECV))
							 : g->phase == PH_SETUP;
			if (want && !u->conn)
				W.queue[W.qlen++] = u;
		}
		W.presence_on_setup = opt.sc != SC_REGISTER && g->phase == PH_SETUP;
		uv_timer_start(&W.phase_timer, on_phase_timer, bound_ms, 0);
		setup_next();
		break;
	case PH_WARM:
		if (opt.sc == SC_LOGIN) {
			/* every user logs in once: the SCRAM keys get derived and cached */
			W.qlen = W.qpos = 0;
			for (size_t i = 0; i < W.nusers; i++)
				W.queue[W.qlen++] = &W.users[i];
			W.nslots = opt.concurrency < W.nusers ? opt.concurrency : (unsigned)W.nusers;
			W.slots_live = W.nslots;
			uv_timer_start(&W.phase_timer, on_phase_timer, bound_ms, 0);
			for (unsigned s = 0; s < W.nslots; s++)
				conn_start(W.queue[W.qpos++], P_STORM, (int)s, false);
			if (!W.nslots)
				phase_done();
		} else if (opt.sc == SC_CHAT || opt.sc == SC_INTERCONNECT) {
			build_online();
			W.sending = true;
			W.send_t0 = now_ns();
			W.sent_total = W.recv_total = 0;
			W.last_recv_ns = W.send_t0;
			uv_timer_start(&W.tick, on_tick, 1, 1);
			uv_timer_start(&W.phase_timer, on_phase_timer, bound_ms, 0);
			pump();
		} else {
			phase_done();
		}
		break;
	case PH_HOLD:
		uv_timer_start(&W.phase_timer, on_phase_timer, bound_ms, 0);
		break;
	case PH_MEASURE:
		W.window_end = W.phase_t0 + (uint64_t)(g->duration * 1e9);
		W.measure_t0 = W.phase_t0;
		if (opt.sc == SC_LOGIN) {
			W.slots_live = W.nslots;
			for (unsigned s = 0; s < W.nslots; s++) {
				W.slot_next[s] = s + W.nslots < W.nusers ? s + W.nslots : s;
				conn_start(&W.users[s], P_STORM, (int)s, false);
			}
			/* the bound: the window plus time for the last logins */
			uv_timer_start(&W.phase_timer, on_phase_timer, bound_ms + 30000, 0);
			if (!W.nslots)
				phase_done();
		} else {
			/* sending goes on from the warm-up; the window counts from here */
			W.sent0 = W.sent_total;
			uv_timer_start(&W.phase_timer, on_phase_timer, bound_ms, 0);
		}
		break;
	case PH_STORE:
		for (size_t i = 0; i < W.nsenders; i++) {
			user *s = W.senders[i];
			uint64_t total = (uint64_t)W.nreceivers * opt.per_user;
			s->to_send = total / W.nsenders + (i < total % W.nsenders ? 1 : 0);
			s->sent_off = 0;
			s->sender_done = false;
		}
		W.expected = (uint64_t)W.nreceivers * opt.per_user;
		uv_timer_start(&W.phase_timer, on_phase_timer, bound_ms, 0);
		uv_timer_start(&W.tick, on_tick, 5, 5);
		if (!W.nsenders || !W.nreceivers)
			phase_done();
		else
			pump();
		break;
	case PH_DELIVER:
		W.res.delivered = W.recv_total; /* anything that came at bind already */
		for (size_t i = 0; i < W.nreceivers; i++)
			if (W.receivers[i]->conn)
				conn_sends(W.receivers[i]->conn, "<presence/>");
		uv_timer_start(&W.phase_timer, on_phase_timer, bound_ms, 0);
		if (W.recv_total >= W.expected)
			phase_done();
		break;
	case PH_END:
		W.sending = false;
		uv_timer_stop(&W.tick);
		uv_timer_stop(&W.phase_timer);
		close_all();
		uv_close((uv_handle_t *)&W.ctl, NULL);
		uv_close((uv_handle_t *)&W.tick, NULL);
		uv_close((uv_handle_t *)&W.phase_timer, NULL);
		W.phase_active = false;
		break;
	}
	/* the store phase counts from its start: keep the receive counter for deliver */
	if (g->phase == PH_STORE || g->phase == PH_SETUP_RECV)
		W.recv_total = 0;
}

static void on_ctl_alloc(uv_handle_t *h, size_t sugg, uv_buf_t *buf)
{
	*buf = uv_buf_init(W.ctl_buf + W.ctl_len, (unsigned)(sizeof(W.ctl_buf) - W.ctl_len));
}

static void on_ctl(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	if (nread < 0) {
		/* the parent went away: stop everything */
		go_rec g = {.phase = PH_END};
		if (W.phase != PH_END)
			phase_begin(&g);
		return;
	}
	W.ctl_len += (size_t)nread;
	if (W.ctl_len == sizeof(go_rec)) {
		go_rec g;
		memcpy(&g, W.ctl_buf, sizeof(g));
		W.ctl_len = 0;
		phase_begin(&g);
	}
}

static int worker_main(unsigned id, int down_fd, int up_fd)
{
	memset(&W, 0, sizeof(W));
	W.id = id;
	W.up_fd = up_fd;
	rng_state = 0x9E3779B97F4A7C15ULL ^ ((uint64_t)getpid() << 17) ^ now_ns();
	uv_loop_init(&W.loop);
	W.ssl_ctx = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_min_proto_version(W.ssl_ctx, TLS1_3_VERSION);
	SSL_CTX_set_verify(W.ssl_ctx, SSL_VERIFY_NONE, NULL); /* self-signed loopback certs */
	/* Full handshakes, unless --tls-resume offers each user's last session itself. */
	SSL_CTX_set_session_cache_mode(W.ssl_ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_mode(W.ssl_ctx, SSL_MODE_RELEASE_BUFFERS);

	for (unsigned u = id; u < opt.users; u += opt.procs)
		W.nusers++;
	W.users = pv_calloc(W.nusers ? W.nusers : 1, sizeof(user));
	W.queue = pv_calloc(W.nusers ? W.nusers : 1, sizeof(user *));
	W.slot_next = pv_calloc(W.nusers ? W.nusers : 1, sizeof(size_t));
	W.online[0] = pv_calloc(W.nusers ? W.nusers : 1, sizeof(user *));
	W.online[1] = pv_calloc(W.nusers ? W.nusers : 1, sizeof(user *));
	W.senders = pv_calloc(W.nusers ? W.nusers : 1, sizeof(user *));
	W.receivers = pv_calloc(W.nusers ? W.nusers : 1, sizeof(user *));
	size_t k = 0;
	for (unsigned u = id; u < opt.users; u += opt.procs, k++) {
		user *x = &W.users[k];
		x->idx = u;
		x->dom = opt.ndomains == 2 ? (int)((u / opt.procs) % 2) : 0;
		snprintf(x->name, sizeof(x->name), "%s%u", opt.prefix, u);
		if (is_receiver(x))
			W.receivers[W.nreceivers++] = x;
		else
			W.senders[W.nsenders++] = x;
	}
	W.window = opt.window ? opt.window : (unsigned)(2 * W.nusers);
	W.rate = opt.rate / opt.procs;
	W.pad = pv_malloc(opt.body_size + 1);
	for (unsigned i = 0; i < opt.body_size; i++)
		W.pad[i] = (char)('a' + i % 26);
	W.pad[opt.body_size] = 0;

	uv_timer_init(&W.loop, &W.phase_timer);
	uv_timer_init(&W.loop, &W.tick);
	uv_pipe_init(&W.loop, &W.ctl, 0);
	uv_pipe_open(&W.ctl, down_fd);
	uv_read_start((uv_stream_t *)&W.ctl, on_ctl_alloc, on_ctl);
	uv_run(&W.loop, UV_RUN_DEFAULT);

	int rc = uv_loop_close(&W.loop);
	SSL_CTX_free(W.ssl_ctx);
	for (size_t i = 0; i < W.nusers; i++)
		SSL_SESSION_free(W.users[i].tls_sess);
	pv_free(W.users);
	pv_free(W.queue);
	pv_free(W.slot_next);
	pv_free(W.online[0]);
	pv_free(W.online[1]);
	pv_free(W.senders);
	pv_free(W.receivers);
	pv_free(W.pad);
	close(up_fd);
	return rc ? 1 : 0;
}

/* ---- the parent: server sampling, orchestration, output ----------------------------- */

typedef struct sample {
	uint64_t ticks;   /* utime + stime of every server pid */
	uint64_t rss_kb;
	uint64_t tcp_mem_pages;
	uint64_t tcp_inuse;
	uint64_t slab_bytes;   /* TCP + sock_inode_cache slab objects (root only) */
	uint64_t t_ns;
} sample;

static void take_sample(sample *s)
{
	memset(s, 0, sizeof(*s));
	s->t_ns = now_ns();
	char path[64], buf[4096];
	for (int i = 0; i < opt.npids; i++) {
		snprintf(path, sizeof(path), "/proc/%d/stat", (int)opt.pids[i]);
		FILE *f = fopen(path, "r");
		if (f) {
			size_t n = fread(buf, 1, sizeof(buf) - 1, f);
			buf[n] = 0;
			fclose(f);
			/* fields after the command name, which may hold spaces: skip to ')' */
			char *p = strrchr(buf, ')');
			unsigned long ut = 0, st = 0;
			if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
					 &ut, &st) == 2)
				s->ticks += ut + st;
		}
		snprintf(path, sizeof(path), "/proc/%d/status", (int)opt.pids[i]);
		f = fopen(path, "r");
		if (f) {
			while (fgets(buf, sizeof(buf), f)) {
				unsigned long kb;
				if (sscanf(buf, "VmRSS: %lu kB", &kb) == 1)
					s->rss_kb += kb;
			}
			fclose(f);
		}
	}
	FILE *f = fopen("/proc/net/sockstat", "r");
	if (f) {
		while (fgets(buf, sizeof(buf), f)) {
			unsigned long inuse, orphan, tw, alloc, mem;
			if (sscanf(buf, "TCP: inuse %lu orphan %lu tw %lu alloc %lu mem %lu", &inuse,
				    &orphan, &tw, &alloc, &mem) == 5) {
				s->tcp_mem_pages = mem;
				s->tcp_inuse = inuse;
			}
		}
		fclose(f);
	}
	/* the socket structures themselves are slab objects, not buffer memory */
	f = fopen("/proc/slabinfo", "r");
	if (f) {
		while (fgets(buf, sizeof(buf), f)) {
			char name[64];
			unsigned long active, total, size;
			if (sscanf(buf, "%63s %lu %lu %lu", name, &active, &total, &size) == 4 &&
				(!strcmp(name, "TCP") || !strcmp(name, "sock_inode_cache")))
				s->slab_bytes += (uint64_t)active * size;
		}
		fclose(f);
	}
}

static double cpu_s(const sample *a, const sample *b)
{
	return (double)(b->ticks - a->ticks) / (double)sysconf(_SC_CLK_TCK);
}

static pid_t *kids;
static int *down, *up;

static void kill_kids(void)
{
	for (unsigned i = 0; i < opt.procs; i++)
		if (kids[i] > 0)
			kill(kids[i], SIGKILL);
}

static void go_all(int phase, double duration)
{
	go_rec g = {.phase = phase, .duration = duration};
	for (unsigned i = 0; i < opt.procs; i++)
		if (write_full(down[i], &g, sizeof(g)) < 0) {
			kill_kids();
			die("worker %u went away", i);
		}
}

/* Wait for every worker's DONE of `phase` (bounded) and merge them. */
static void wait_all(int phase, double bound, done_rec *sum)
{
	memset(sum, 0, sizeof(*sum));
	for (unsigned i = 0; i < opt.procs; i++) {
		done_rec r;
		size_t got = 0;
		uint64_t deadline = now_ns() + (uint64_t)((bound + 60) * 1e9);
		while (got < sizeof(r)) {
			struct pollfd p = {.fd = up[i], .events = POLLIN};
			int left = (int)((deadline - now_ns()) / 1000000);
			if (now_ns() >= deadline || poll(&p, 1, left > 0 ? left : 0) == 0) {
				kill_kids();
				die("worker %u did not finish phase %s in time", i, phase_names[phase]);
			}
			ssize_t n = read(up[i], (char *)&r + got, sizeof(r) - got);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				kill_kids();
				die("worker %u died in phase %s", i, phase_names[phase]);
			}
			got += (size_t)n;
		}
		if (r.phase != phase) {
			kill_kids();
			die("worker %u answered phase %d, expected %d", i, r.phase, phase);
		}
		sum->ok += r.ok;
		sum->failed += r.failed;
		sum->sent += r.sent;
		sum->delivered += r.delivered;
		sum->errors += r.errors;
		sum->dropped += r.dropped;
		sum->stalls += r.stalls;
		sum->derivations += r.derivations;
		sum->resumed += r.resumed;
		sum->sasl2 += r.sasl2;
		sum->sm_resumed += r.sm_resumed;
		sum->gen_cpu_us += r.gen_cpu_us;
		if (r.elapsed > sum->elapsed)
			sum->elapsed = r.elapsed;
		if (r.mech[0])
			memcpy(sum->mech, r.mech, sizeof(sum->mech));
		hist_merge(&sum->lat, &r.lat);
	}
}

static void sleep_s(double s)
{
	struct timespec ts = {.tv_sec = (time_t)s, .tv_nsec = (long)((s - (double)(time_t)s) * 1e9)};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* The JSON result line (hand-written: numbers and fixed keys only, strings escaped). */
static pv_buf out;
static bool out_first;

static void j_begin(void)
{
	pv_buf_init(&out);
	pv_buf_puts(&out, "{");
	out_first = true;
}

static void j_key(const char *k)
{
	pv_buf_printf(&out, "%s\"%s\":", out_first ? "" : ",", k);
	out_first = false;
}

static void j_str(const char *k, const char *v)
{
	j_key(k);
	pv_buf_puts(&out, "\"");
	for (const char *p = v ? v : ""; *p; p++) {
		if (*p == '"' || *p == '\\')
			pv_buf_printf(&out, "\\%c", *p);
		else if ((unsigned char)*p < 0x20)
			pv_buf_printf(&out, "\\u%04x", *p);
		else
			pv_buf_append(&out, p, 1);
	}
	pv_buf_puts(&out, "\"");
}

static void j_num(const char *k, double v)
{
	j_key(k);
	if (!isfinite(v))
		pv_buf_puts(&out, "null");
	else if (v == floor(v) && fabs(v) < 1e15)
		pv_buf_printf(&out, "%.0f", v);
	else
		pv_buf_printf(&out, "%.3f", v);
}

static void j_lat(const char *k, const hist *h, double scale)
{
	j_key(k);
	pv_buf_printf(&out, "{\"count\":%" PRIu64 ",\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"max\":%.3f}",
		h->count, (double)hist_pct(h, 50) * scale, (double)hist_pct(h, 90) * scale,
		(double)hist_pct(h, 99) * scale, (double)h->max * scale);
}

static void j_server(const char *prefix, const sample *a, const sample *b)
{
	char k[64];
	if (!opt.npids)
		return;
	snprintf(k, sizeof(k), "%sserver_cpu_s", prefix);
	j_num(k, cpu_s(a, b));
	snprintf(k, sizeof(k), "%sserver_cpu_pct", prefix);
	double wall = (double)(b->t_ns - a->t_ns) / 1e9;
	j_num(k, wall > 0 ? 100.0 * cpu_s(a, b) / wall : 0);
}

static double gen_pct(const done_rec *d, double wall)
{
	return wall > 0 ? 100.0 * (double)d->gen_cpu_us / 1e6 / wall : 0;
}

static void parse_pids(const char *s)
{
	char *dup = pv_strdup(s), *save = NULL;
	for (char *t = strtok_r(dup, ",", &save); t && opt.npids < MAX_PIDS;
		t = strtok_r(NULL, ",", &save))
		opt.pids[opt.npids++] = (pid_t)atoi(t);
	pv_free(dup);
}

static void summary(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void summary(const char *fmt, ...)
{
	if (opt.quiet)
		return;
	va_list ap;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
}

static int run_parent(void)
{
	done_rec d, d2;
	sample s0, s1, s2, s3;
	j_begin();
	j_str("tool", "peyvand-bench");
	j_num("format", 1);
	j_str("scenario", scenario_names[opt.sc]);
	j_str("label", opt.label);
	j_num("users", opt.users);
	j_num("procs", opt.procs);
	j_str("domain", opt.domain[0]);
	if (opt.ndomains == 2)
		j_str("domain2", opt.domain[1]);

	switch (opt.sc) {
	case SC_REGISTER:
		go_all(PH_SETUP, opt.timeout);
		wait_all(PH_SETUP, opt.timeout, &d);
		j_num("registered", (double)d.ok);
		j_num("failed", (double)d.failed);
		summary("%s register: %" PRIu64 " accounts ok, %" PRIu64 " failed\n", opt.label, d.ok,
			d.failed);
		break;
	case SC_LOGIN:
		go_all(PH_WARM, opt.timeout);
		wait_all(PH_WARM, opt.timeout, &d);
		if (!d.ok) {
			kill_kids();
			die("no user could log in (%" PRIu64 " failed)", d.failed);
		}
		take_sample(&s0);
		go_all(PH_MEASURE, opt.duration);
		sleep_s(opt.duration);
		take_sample(&s1);
		wait_all(PH_MEASURE, opt.duration + 30, &d2);
		j_num("warmup_logins", (double)d.ok);
		j_num("logins", (double)d2.ok);
		j_num("failed", (double)d2.failed + (double)d.failed);
		j_num("duration_s", opt.duration);
		j_num("logins_per_s", (double)d2.ok / opt.duration);
		j_str("mech", d2.mech);
		j_num("key_derivations_in_window", (double)d2.derivations);
		if (opt.tls_resume)
			j_num("tls_resumed", (double)d2.resumed);
		if (opt.sasl2)
			j_num("sasl2_logins", (double)d2.sasl2);
		if (opt.sm_resume)
			j_num("sm_resumed", (double)d2.sm_resumed);
		if (opt.direct_tls)
			j_num("direct_tls", 1);
		j_lat("login_ms", &d2.lat, 0.001);
		j_server("", &s0, &s1);
		if (opt.npids)
			j_num("server_cpu_ms_per_login", d2.ok ? cpu_s(&s0, &s1) * 1e3 / (double)d2.ok : NAN);
		j_num("gen_cpu_pct", gen_pct(&d2, opt.duration));
		summary("%s login: %.0f logins/s (%" PRIu64 " in %g s, %" PRIu64 " failed), %s, "
			"login p50 %.1f ms p99 %.1f ms",
			opt.label, (double)d2.ok / opt.duration, d2.ok, opt.duration, d2.failed, d2.mech,
			(double)hist_pct(&d2.lat, 50) / 1e3, (double)hist_pct(&d2.lat, 99) / 1e3);
		if (opt.tls_resume)
			summary(", TLS resumed %" PRIu64, d2.resumed);
		if (opt.sasl2)
			summary(", SASL2+Bind2 %" PRIu64, d2.sasl2);
		if (opt.sm_resume)
			summary(", SM resumed %" PRIu64, d2.sm_resumed);
		if (opt.npids && d2.ok)
			summary(", server CPU %.3f ms/login", cpu_s(&s0, &s1) * 1e3 / (double)d2.ok);
		summary(", generator CPU %.0f%%\n", gen_pct(&d2, opt.duration));
		break;
	case SC_IDLE: {
		take_sample(&s0);
		go_all(PH_SETUP, opt.timeout);
		wait_all(PH_SETUP, opt.timeout, &d);
		sleep_s(opt.settle);
		take_sample(&s1);
		go_all(PH_HOLD, opt.duration); /* idle sessions, nothing sent */
		wait_all(PH_HOLD, opt.duration, &d2);
		take_sample(&s2);
		double n = (double)d.ok;
		j_num("sessions", n);
		j_num("failed", (double)d.failed);
		j_str("mech", d.mech);
		j_num("dropped_while_idle", (double)d2.dropped);
		if (opt.npids) {
			j_num("server_rss_before_kib", (double)s0.rss_kb);
			j_num("server_rss_after_kib", (double)s1.rss_kb);
			j_num("server_rss_per_session_kib",
				n ? ((double)s1.rss_kb - (double)s0.rss_kb) / n : NAN);
			j_num("idle_server_cpu_pct", 100.0 * cpu_s(&s1, &s2) /
							  ((double)(s2.t_ns - s1.t_ns) / 1e9));
		}
		/* both ends of every loopback connection are in this number */
		double kmem = ((double)s1.tcp_mem_pages - (double)s0.tcp_mem_pages) * 4.0;
		j_num("kernel_tcp_mem_delta_kib", kmem);
		j_num("kernel_tcp_mem_per_connection_kib", n ? kmem / n : NAN);
		j_num("kernel_tcp_sockets_delta", (double)s1.tcp_inuse - (double)s0.tcp_inuse);
		double slab = ((double)s1.slab_bytes - (double)s0.slab_bytes) / 1024.0;
		j_num("kernel_socket_slab_delta_kib", slab);
		j_num("kernel_socket_slab_per_connection_kib", n ? slab / n : NAN);
		summary("%s idle: %.0f sessions (%" PRIu64 " failed)", opt.label, n, d.failed);
		if (opt.npids && n)
			summary(", server RSS %.0f -> %.0f KiB = %.1f KiB/session", (double)s0.rss_kb,
				(double)s1.rss_kb, ((double)s1.rss_kb - (double)s0.rss_kb) / n);
		summary("; kernel (both ends): TCP buffers %+.0f KiB = %.1f KiB/connection, socket "
			"slabs %.1f KiB/connection\n", kmem, n ? kmem / n : 0, n ? slab / n : 0);
		break;
	}
	case SC_CHAT:
	case SC_INTERCONNECT:
		go_all(PH_SETUP, opt.timeout);
		wait_all(PH_SETUP, opt.timeout, &d);
		if (!d.ok) {
			kill_kids();
			die("no user could log in (%" PRIu64 " failed)", d.failed);
		}
		go_all(PH_WARM, opt.warmup);
		wait_all(PH_WARM, opt.warmup, &d2);
		take_sample(&s0);
		go_all(PH_MEASURE, opt.duration);
		sleep_s(opt.duration);
		take_sample(&s1);
		wait_all(PH_MEASURE, opt.duration + 5, &d2);
		j_num("online", (double)d.ok);
		j_num("login_failed", (double)d.failed);
		j_str("mech", d.mech);
		if (opt.sm)
			j_num("sm", 1);
		j_num("rate_offered", opt.rate);
		j_num("duration_s", opt.duration);
		j_num("sent", (double)d2.sent);
		j_num("delivered", (double)d2.delivered);
		j_num("delivered_per_s", (double)d2.delivered / opt.duration);
		j_num("errors", (double)d2.errors);
		j_num("dropped", (double)d2.dropped);
		/* paced: sends skipped because 5 s of backlog were in flight; saturation:
		 * windows written off after 2 s without any delivery */
		j_num("skipped_or_stalled", (double)d2.stalls);
		j_lat("latency_ms", &d2.lat, 0.001);
		j_server("", &s0, &s1);
		if (opt.npids)
			j_num("server_cpu_us_per_msg",
				d2.delivered ? cpu_s(&s0, &s1) * 1e6 / (double)d2.delivered : NAN);
		j_num("gen_cpu_pct", gen_pct(&d2, opt.duration + 2));
		summary("%s %s: %.0f msgs/s delivered (offered %s), latency p50 %.2f p90 %.2f p99 "
			"%.2f max %.2f ms",
			opt.label, scenario_names[opt.sc], (double)d2.delivered / opt.duration,
			opt.rate > 0 ? "paced" : "saturation", (double)hist_pct(&d2.lat, 50) / 1e3,
			(double)hist_pct(&d2.lat, 90) / 1e3, (double)hist_pct(&d2.lat, 99) / 1e3,
			(double)d2.lat.max / 1e3);
		if (opt.npids && d2.delivered)
			summary(", server CPU %.1f us/msg (%.0f%%)",
				cpu_s(&s0, &s1) * 1e6 / (double)d2.delivered,
				100 * cpu_s(&s0, &s1) / opt.duration);
		summary(", errors %" PRIu64 ", generator CPU %.0f%%\n", d2.errors,
			gen_pct(&d2, opt.duration + 2));
		break;
	case SC_OFFLINE: {
		go_all(PH_SETUP, opt.timeout);
		wait_all(PH_SETUP, opt.timeout, &d);
		if (!d.ok) {
			kill_kids();
			die("no sender could log in (%" PRIu64 " failed)", d.failed);
		}
		take_sample(&s0);
		go_all(PH_STORE, opt.duration);
		wait_all(PH_STORE, opt.duration, &d2);
		double store_s = (double)(now_ns() - s0.t_ns) / 1e9;
		sleep_s(1); /* storage that finishes after the pings is still the store's cost */
		take_sample(&s1);
		uint64_t stored = d2.sent;
		go_all(PH_SETUP_RECV, opt.timeout);
		done_rec dr;
		wait_all(PH_SETUP_RECV, opt.timeout, &dr);
		take_sample(&s2);
		go_all(PH_DELIVER, opt.duration);
		done_rec dd;
		wait_all(PH_DELIVER, opt.duration, &dd);
		double deliver_s = (double)(now_ns() - s2.t_ns) / 1e9;
		take_sample(&s3);
		j_num("senders_online", (double)d.ok);
		j_num("receivers_logged_in", (double)dr.ok);
		j_num("login_failed", (double)d.failed + (double)dr.failed);
		j_str("mech", d.mech);
		j_num("sent_to_offline", (double)stored);
		j_num("store_s", store_s);
		j_num("stored_per_s", store_s > 0 ? (double)stored / store_s : 0);
		j_server("store_", &s0, &s1);
		if (opt.npids)
			j_num("server_cpu_us_per_stored", stored ? cpu_s(&s0, &s1) * 1e6 / (double)stored : NAN);
		j_num("delivered", (double)dd.delivered);
		j_num("deliver_s", deliver_s);
		j_num("delivered_per_s", deliver_s > 0 ? (double)dd.delivered / deliver_s : 0);
		j_num("lost", (double)stored - (double)dd.delivered);
		j_num("errors", (double)d2.errors + (double)dd.errors);
		j_server("deliver_", &s2, &s3);
		if (opt.npids)
			j_num("server_cpu_us_per_delivered",
				dd.delivered ? cpu_s(&s2, &s3) * 1e6 / (double)dd.delivered : NAN);
		summary("%s offline: %" PRIu64 " stored in %.2f s (%.0f/s), %" PRIu64
			" delivered in %.2f s (%.0f/s), lost %.0f",
			opt.label, stored, store_s, store_s > 0 ? (double)stored / store_s : 0,
			dd.delivered, deliver_s, deliver_s > 0 ? (double)dd.delivered / deliver_s : 0,
			(double)stored - (double)dd.delivered);
		if (opt.npids && stored && dd.delivered)
			summary(", server CPU %.1f us/stored, %.1f us/delivered",
				cpu_s(&s0, &s1) * 1e6 / (double)stored,
				cpu_s(&s2, &s3) * 1e6 / (double)dd.delivered);
		summary("\n");
		break;
	}
	}
	go_all(PH_END, 0);
	int bad = 0;
	for (unsigned i = 0; i < opt.procs; i++) {
		int st;
		/* workers close their sessions and exit; bounded by the kill below */
		for (int t = 0; t < 300; t++) {
			pid_t r = waitpid(kids[i], &st, WNOHANG);
			if (r == kids[i])
				break;
			if (t == 299) {
				kill(kids[i], SIGKILL);
				waitpid(kids[i], &st, 0);
				bad = 1;
			}
			sleep_s(0.1);
		}
		if (!WIFEXITED(st) || WEXITSTATUS(st))
			bad = 1;
		kids[i] = 0;
	}
	struct rusage ru;
	getrusage(RUSAGE_CHILDREN, &ru);
	j_num("gen_cpu_total_s", (double)cpu_us(&ru) / 1e6);
	j_num("workers_ok", !bad);
	pv_buf_puts(&out, "}\n");
	fputs(out.data, stdout);
	fflush(stdout);
	pv_buf_fini(&out);
	return bad;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{"host", 1, 0, 'h'}, {"port", 1, 0, 'p'}, {"domain", 1, 0, 'd'},
		{"host2", 1, 0, 'H'}, {"port2", 1, 0, 'P'}, {"domain2", 1, 0, 'D'},
		{"users", 1, 0, 'u'}, {"prefix", 1, 0, 'x'}, {"password", 1, 0, 'w'},
		{"procs", 1, 0, 'n'}, {"duration", 1, 0, 't'}, {"warmup", 1, 0, 'W'},
		{"settle", 1, 0, 'S'}, {"rate", 1, 0, 'r'}, {"window", 1, 0, 'i'},
		{"concurrency", 1, 0, 'c'}, {"src-ips", 1, 0, 's'}, {"body-size", 1, 0, 'b'},
		{"per-user", 1, 0, 'o'}, {"timeout", 1, 0, 'T'}, {"server-pid", 1, 0, 'k'},
		{"label", 1, 0, 'l'}, {"quiet", 0, 0, 'q'}, {"verbose", 0, 0, 'v'},
		{"tls-resume", 0, 0, 'R'}, {"direct-tls", 0, 0, 'Z'}, {"sasl2", 0, 0, 'A'},
		{"sm-resume", 0, 0, 'M'}, {"sm", 0, 0, 'E'},
		{"help", 0, 0, '?'},
		{0, 0, 0, 0}};
	int ch;
	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (ch) {
		case 'h': opt.host[0] = optarg; break;
		case 'p': opt.port[0] = atoi(optarg); break;
		case 'd': opt.domain[0] = optarg; break;
		case 'H': opt.host[1] = optarg; break;
		case 'P': opt.port[1] = atoi(optarg); break;
		case 'D': opt.domain[1] = optarg; break;
		case 'u': opt.users = (unsigned)atoi(optarg); break;
		case 'x': opt.prefix = optarg; break;
		case 'w': opt.password = optarg; break;
		case 'n': opt.procs = (unsigned)atoi(optarg); break;
		case 't': opt.duration = atof(optarg); break;
		case 'W': opt.warmup = atof(optarg); break;
		case 'S': opt.settle = atof(optarg); break;
		case 'r': opt.rate = atof(optarg); break;
		case 'i': opt.window = (unsigned)atoi(optarg); break;
		case 'c': opt.concurrency = (unsigned)atoi(optarg); break;
		case 's': opt.src_ips = (unsigned)atoi(optarg); break;
		case 'b': opt.body_size = (unsigned)atoi(optarg); break;
		case 'o': opt.per_user = (unsigned)atoi(optarg); break;
		case 'T': opt.timeout = atof(optarg); break;
		case 'k': parse_pids(optarg); break;
		case 'l': opt.label = optarg; break;
		case 'q': opt.quiet = true; break;
		case 'v': opt.verbose = true; break;
		case 'R': opt.tls_resume = true; break;
		case 'Z': opt.direct_tls = true; break;
		case 'A': opt.sasl2 = true; break;
		case 'M': opt.sm_resume = opt.sm = true; break;
		case 'E': opt.sm = true; break;
		case '?':
		default: usage(ch == '?' && optopt == 0 ? stdout : stderr); return ch == '?' && optopt == 0 ? 0 : 2;
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		return 2;
	}
	int sc = -1;
	for (int i = 0; i < (int)PV_ARRAY_LEN(scenario_names); i++)
		if (!strcmp(argv[optind], scenario_names[i]))
			sc = i;
	if (sc < 0)
		die("unknown scenario %s", argv[optind]);
	opt.sc = (enum scenario)sc;
	if (opt.sm_resume && opt.sc != SC_LOGIN)
		die("--sm-resume is for the login scenario");
	if (opt.sm && opt.sc != SC_LOGIN && opt.sc != SC_CHAT)
		die("--sm is for the login and chat scenarios");
	if (opt.domain[1])
		opt.ndomains = 2;
	if (opt.sc == SC_INTERCONNECT && opt.ndomains != 2)
		die("interconnect needs --domain2 (and --port2/--host2)");
	if (opt.sc != SC_INTERCONNECT && opt.sc != SC_REGISTER)
		opt.ndomains = 1;
	if (opt.sc == SC_REGISTER && opt.ndomains == 2)
		die("register one server at a time");
	if (!opt.procs || opt.procs > 64 || !opt.users || opt.duration <= 0 || opt.duration > 3600 ||
		opt.timeout <= 0 || opt.timeout > 3600 || opt.warmup < 0 || opt.warmup > 600 ||
		opt.settle < 0 || opt.settle > 600 || opt.body_size > 512 || !opt.concurrency ||
		opt.src_ips > 250 * 250 || opt.rate < 0)
		die("an option is out of range (see --help)");
	if (opt.users < opt.procs)
		opt.procs = opt.users;
	if ((opt.sc == SC_CHAT || opt.sc == SC_INTERCONNECT) && opt.users < 2 * opt.procs * opt.ndomains)
		die("chat needs at least %u users for %u procs", 2 * opt.procs * opt.ndomains, opt.procs);
	if (opt.sc == SC_OFFLINE && opt.users < 2 * opt.procs)
		die("offline needs at least %u users", 2 * opt.procs);
	if (opt.warmup == 0)
		opt.warmup = 0.001;

	/* many sockets: raise the soft open-files limit to the hard one */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	signal(SIGPIPE, SIG_IGN);

	kids = pv_calloc(opt.procs, sizeof(pid_t));
	down = pv_calloc(opt.procs, sizeof(int));
	up = pv_calloc(opt.procs, sizeof(int));
	fflush(stdout);
	fflush(stderr);
	for (unsigned i = 0; i < opt.procs; i++) {
		int dp[2], upp[2];
		if (pipe2(dp, O_CLOEXEC) || pipe2(upp, O_CLOEXEC))
			die("pipe: %s", strerror(errno));
		pid_t pid = fork();
		if (pid < 0) {
			kill_kids();
			die("fork: %s", strerror(errno));
		}
		if (pid == 0) {
			close(dp[1]);
			close(upp[0]);
			for (unsigned j = 0; j < i; j++) {
				close(down[j]);
				close(up[j]);
			}
			int rc = worker_main(i, dp[0], upp[1]);
			pv_free(kids);
			pv_free(down);
			pv_free(up);
			exit(rc);
		}
		close(dp[0]);
		close(upp[1]);
		kids[i] = pid;
		down[i] = dp[1];
		up[i] = upp[0];
	}
	int rc = run_parent();
	for (unsigned i = 0; i < opt.procs; i++) {
		close(down[i]);
		close(up[i]);
	}
	pv_free(kids);
	pv_free(down);
	pv_free(up);
	return rc;
}
