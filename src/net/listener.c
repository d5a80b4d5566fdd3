/* listener.c -- listening TCP sockets for the worker loops.
 *
 * We create the socket ourselves and hand it to libuv with uv_tcp_open before binding,
 * so socket options libuv 1.44 has no flag for can be set.  SO_REUSEPORT is NOT set
 * while there is one worker loop: with it, a second server started by mistake on the
 * same port binds silently and the kernel splits the connections between the two
 * (seen in testing).  When several workers share a port they will set it, together
 * with a check that the port is not already held by another process.
 *
 * Threading: call on the loop that will own the listener; the handle belongs to it. */
#include "net/conn.h"

#include "peyvand/pv_log.h"
#include "peyvand/pv_util.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define LISTEN_BACKLOG 1024

static void on_listener_closed(uv_handle_t *h)
{
	pv_free(h);
}

static int parse_addr(const char *ip, int port, struct sockaddr_storage *ss)
{
	char buf[INET6_ADDRSTRLEN];
	size_t n;

	memset(ss, 0, sizeof *ss);
	if (!ip || port < 0 || port > 65535)
		return PV_EINVAL;
	if (!strchr(ip, ':'))
		return uv_ip4_addr(ip, port, (struct sockaddr_in *)ss) == 0 ? 0 : PV_EINVAL;
	/* Accept the bracketed form used in URLs and config ("[::1]"). */
	n = strlen(ip);
	if (ip[0] == '[') {
		if (n < 3 || ip[n - 1] != ']' || n - 2 >= sizeof buf)
			return PV_EINVAL;
		memcpy(buf, ip + 1, n - 2);
		buf[n - 2] = '\0';
		ip = buf;
	}
	return uv_ip6_addr(ip, port, (struct sockaddr_in6 *)ss) == 0 ? 0 : PV_EINVAL;
}

int pv_listen_tcp(uv_loop_t *loop, const char *ip, int port, uv_connection_cb on_conn,
	void *data, uv_tcp_t **out)
{
	struct sockaddr_storage ss;
	uv_tcp_t *l = NULL;
	int fd = -1, one = 1, r;

	*out = NULL;
	if (parse_addr(ip, port, &ss) < 0) {
		pv_error("net", "listen: bad address ip=%s port=%d", ip ? ip : "(null)", port);
		return PV_EINVAL;
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		pv_error("net", "listen: socket failed ip=%s err=%s", ip, strerror(errno));
		return PV_EIO;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) {
		pv_error("net", "listen: setsockopt failed ip=%s err=%s", ip, strerror(errno));
		close(fd);
		return PV_EIO;
	}
	l = pv_calloc(1, sizeof *l);
	PV_ASSERT(uv_tcp_init(loop, l) == 0);
	l->data = data;
	r = uv_tcp_open(l, fd);
	if (r < 0) {
		/* libuv did not take the socket: it is still ours to close. */
		close(fd);
		goto fail;
	}
	r = uv_tcp_bind(l, (const struct sockaddr *)&ss, 0);
	if (r == 0)
		r = uv_listen((uv_stream_t *)l, LISTEN_BACKLOG, on_conn);
	if (r < 0)
		goto fail;
	*out = l;
	pv_info("net", "listening ip=%s port=%d", ip, pv_listen_port(l));
	return 0;
fail:
	pv_error("net", "listen failed ip=%s port=%d err=%s", ip, port, uv_strerror(r));
	uv_close((uv_handle_t *)l, on_listener_closed);
	return PV_EIO;
}

void pv_listen_close(uv_tcp_t *l)
{
	if (!l || uv_is_closing((uv_handle_t *)l))
		return;
	uv_close((uv_handle_t *)l, on_listener_closed);
}

int pv_listen_port(const uv_tcp_t *l)
{
	struct sockaddr_storage ss;
	int len = sizeof ss;

	if (uv_tcp_getsockname(l, (struct sockaddr *)&ss, &len) < 0)
		return PV_EIO;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return PV_EINVAL;
}
