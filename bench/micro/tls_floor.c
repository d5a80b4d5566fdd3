/* tls_floor.c -- what one login's transport costs a server with nothing else to do
 * (issue 5, the CPU-per-login target).
 *
 * A blocking, single-threaded server with peyvand's own server context (src/net/tls.c:
 * the same suites, one TLS 1.3 ticket, released record buffers, a certificate from
 * pv_tls_make_selfsigned) accepts a connection, completes the TLS handshake, reads
 * one byte, answers one byte and closes.  Client processes (forked, OpenSSL defaults:
 * X25519, TLS 1.3, no resumption) connect from addresses spread over 127.0.0.0/8, so
 * no port runs out.  The server's CPU (getrusage, user + system) over the measured
 * handshakes, divided by their number, is the floor under any XMPP server's login on
 * this machine: an XMPP login adds the STARTTLS exchange, SASL, resource binding and
 * their round trips on top.  "tcp" mode does the same without TLS: the kernel's
 * share (connect, one byte each way, close).
 *
 *   tls_floor tls|tcp [HANDSHAKES] [CLIENTS]     (defaults 6000 and 2)
 *
 * TLS_FLOOR_CLIENT_CPU=N pins the clients to CPU N.  bench/micro/tls_floor.sh builds
 * it and pins the server and the clients apart. */
#include "net/conn.h"
#include "peyvand/pv_util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WARMUP 500
#define MAX_CLIENTS 16

static double cpu_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
	       ru.ru_stime.tv_usec / 1e6;
}

static double wall_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* One client process: connect, (handshake,) one byte out, one back, close; at most
 * `bound` times, or until the server stops answering. */
static void client(int port, bool tls, int id, long bound)
{
	const char *cpu = getenv("TLS_FLOOR_CLIENT_CPU");
	if (cpu && *cpu) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(atoi(cpu), &set);
		if (sched_setaffinity(0, sizeof set, &set) != 0)
			_exit(1);
	}
	SSL_CTX *ctx = tls ? SSL_CTX_new(TLS_client_method()) : NULL;
	if (tls && !ctx)
		_exit(1);
	if (ctx)
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	unsigned seq = (unsigned)id * 7919u;
	for (long i = 0; i < bound; i++) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in src = {.sin_family = AF_INET}, dst = {.sin_family = AF_INET};
		seq++;
		/* 127.1.0.1 .. 127.254.255.254: fresh source addresses, no TIME_WAIT reuse */
		src.sin_addr.s_addr = htonl(0x7f000000u | (1u + seq % 254u) << 16 |
					    ((seq / 254u) % 256u) << 8 | (1u + (seq / 65024u) % 254u));
		dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		dst.sin_port = htons((uint16_t)port);
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		if (bind(fd, (struct sockaddr *)&src, sizeof src) != 0 ||
		    connect(fd, (struct sockaddr *)&dst, sizeof dst) != 0)
			_exit(0); /* the server has gone: the run is over */
		char b = 'x';
		bool ok;
		if (tls) {
			SSL *s = SSL_new(ctx);
			SSL_set_fd(s, fd);
			ok = SSL_connect(s) == 1 && SSL_write(s, &b, 1) == 1 && SSL_read(s, &b, 1) == 1;
			SSL_free(s);
		} else {
			ok = write(fd, &b, 1) == 1 && read(fd, &b, 1) == 1;
		}
		close(fd);
		if (!ok)
			_exit(0);
	}
	_exit(0);
}

int main(int argc, char **argv)
{
	bool tls = argc > 1 && strcmp(argv[1], "tcp") != 0;
	long n = argc > 2 ? atol(argv[2]) : 6000;
	int nclients = argc > 3 ? atoi(argv[3]) : 2;
	if (n <= 0 || nclients <= 0 || nclients > MAX_CLIENTS) {
		fprintf(stderr, "usage: tls_floor tls|tcp [HANDSHAKES] [CLIENTS<=%d]\n", MAX_CLIENTS);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);

	SSL_CTX *ctx = NULL;
	if (tls) {
		char dir[] = "/tmp/pv-tls-floor-XXXXXX", crt[64], key[64];
		if (!mkdtemp(dir))
			return 1;
		snprintf(crt, sizeof crt, "%s/c.pem", dir);
		snprintf(key, sizeof key, "%s/k.pem", dir);
		if (pv_tls_make_selfsigned("localhost", crt, key) != 0 ||
		    !(ctx = pv_tls_server_ctx(crt, key)))
			return 1;
		unlink(crt);
		unlink(key);
		rmdir(dir);
	}

	int lfd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t al = sizeof a;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(lfd, 1024) != 0 ||
	    getsockname(lfd, (struct sockaddr *)&a, &al) != 0)
		return 1;
	int port = ntohs(a.sin_port);

	pid_t kids[MAX_CLIENTS];
	for (int i = 0; i < nclients; i++) {
		kids[i] = fork();
		if (kids[i] == 0) {
			close(lfd);
			client(port, tls, i, 4 * (n + WARMUP)); /* bounded */
		}
	}

	double c0 = 0, w0 = 0;
	long failed = 0;
	for (long i = 0; i < n + WARMUP; i++) {
		if (i == WARMUP) {
			c0 = cpu_s();
			w0 = wall_s();
		}
		int fd = accept(lfd, NULL, NULL);
		if (fd < 0)
			return 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		char b;
		bool ok;
		if (ctx) {
			SSL *s = SSL_new(ctx);
			SSL_set_fd(s, fd);
			ok = SSL_accept(s) == 1 && SSL_read(s, &b, 1) == 1 && SSL_write(s, &b, 1) == 1;
			SSL_free(s);
			ERR_clear_error();
		} else {
			ok = read(fd, &b, 1) == 1 && write(fd, &b, 1) == 1;
		}
		failed += !ok;
		close(fd);
	}
	double cpu = cpu_s() - c0, wall = wall_s() - w0;
	close(lfd);
	for (int i = 0; i < nclients; i++) {
		kill(kids[i], SIGTERM);
		waitpid(kids[i], NULL, 0);
	}
	printf("{\"mode\":\"%s\",\"handshakes\":%ld,\"failed\":%ld,\"per_s\":%.0f,"
	       "\"server_cpu_ms_per_conn\":%.4f,\"server_cpu_pct\":%.1f}\n",
		tls ? "tls" : "tcp", n, failed, n / wall, 1e3 * cpu / n, 100 * cpu / wall);
	SSL_CTX_free(ctx);
	return failed ? 1 : 0;
}
