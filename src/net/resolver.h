/* resolver.h -- where a remote XMPP server listens (RFC 6120 3.2, XEP-0368):
 * static routes from the config first, then DNS SRV records _xmpps-server._tcp (direct
 * TLS) and _xmpp-server._tcp (STARTTLS) via c-ares, then the domain's A/AAAA records on
 * port 5269.  Asynchronous on the caller's libuv loop; knows nothing else of XMPP.
 *
 * Threading: one pv_resolver per loop; callbacks on that loop's thread. */
#ifndef PV_NET_RESOLVER_H
#define PV_NET_RESOLVER_H

#include <stdbool.h>
#include <sys/socket.h>
#include <uv.h>

typedef struct pv_resolver pv_resolver;

typedef struct pv_target {
	struct sockaddr_storage addr;  /* resolved address with port */
	socklen_t addrlen;
	bool direct_tls;               /* from _xmpps-server (XEP-0368): TLS from the first byte */
	char host[256];                /* the SRV target (or the domain): TLS SNI/identity checks */
	unsigned short priority, weight;
} pv_target;

/* targets: in connection order (SRV priority, then weight-random; xmpps before xmpp at
 * equal priority).  n == 0 with err set when nothing was found.  Borrowed during the
 * call. */
typedef void (*pv_resolve_cb)(void *ud, const pv_target *targets, size_t n, const char *err);

/* dns_server: "ip:port" to query instead of /etc/resolv.conf (tests), or NULL.
 * Returns NULL when c-ares cannot start or dns_server is malformed. */
pv_resolver *pv_resolver_new(uv_loop_t *loop, const char *dns_server);
/* Pending lookups complete with err "cancelled" before this returns (so no callback
 * comes later).  The uv handles close asynchronously: the caller must run the loop
 * afterwards until they have closed (as for any libuv shutdown) before uv_loop_close.
 * Safe to call from inside a pv_resolve_cb. */
void pv_resolver_free(pv_resolver *r);
/* Static route: domain -> "host:port" or "[v6]:port", optionally prefixed "tls:" for
 * direct TLS.  Replaces DNS for that domain.  Returns 0 or PV_EINVAL. */
int pv_resolver_add_route(pv_resolver *r, const char *domain, const char *target);
void pv_resolver_clear_routes(pv_resolver *r);
/* Look up a domain. cb runs exactly once, never from inside this call. */
void pv_resolve_xmpp_server(pv_resolver *r, const char *domain, pv_resolve_cb cb, void *ud);

#endif
