"""Finding the peer (RFC 6120 3.2, XEP-0368): without a static route a provider asks DNS
(s2s.dns_server points it at the test's own DNS server) for _xmpps-server._tcp (direct
TLS) and _xmpp-server._tcp (STARTTLS) SRV records; a static route overrides DNS, and its
"tls:" prefix means direct TLS."""
import pytest

from s2sharness import links, login, wait_chat

BALE, EITAA = "bale.localhost", "eitaa.localhost"


def exchange(servers, raw, tag):
    a = login(raw, servers[BALE], "alice", resource=tag)
    b = login(raw, servers[EITAA], "bob", resource=tag)
    a.message(f"bob@{EITAA}", f"{tag} there")
    wait_chat(b, f"{tag} there", f"alice@{BALE}", timeout=30)
    b.message(f"alice@{BALE}", f"{tag} back")
    wait_chat(a, f"{tag} back", f"bob@{EITAA}", timeout=30)


def test_srv_starttls(providers, raw, dns):
    servers = providers([BALE, EITAA], routes=False, start=False,
                        s2s={"dns_server": dns.addr})
    for d, srv in servers.items():
        dns.add_srv(f"_xmpp-server._tcp.{d}", srv.s2s_port, f"xmpp.{d}")
        dns.add_a(f"xmpp.{d}", "127.0.0.1")
    for srv in servers.values():
        srv.start()
    exchange(servers, raw, "srv")
    assert dns.asked(f"_xmpp-server._tcp.{EITAA}", "SRV"), dns.queries
    assert dns.asked(f"xmpp.{EITAA}", "A"), f"SRV target not resolved: {dns.queries}"
    for l in links(servers[BALE]):
        if l.remote == EITAA:
            assert l.get("auth") == "external", (
                f"the certificate names the domain, not the SRV target: still external: {l}")


def test_srv_direct_tls_preferred(providers, raw, dns):
    """Both SRV records exist at the same priority; XEP-0368 says try xmpps first.  The
    STARTTLS record points at a closed port, so only the direct TLS one can work."""
    from pvserver import free_ports
    closed = free_ports(1)[0]
    servers = providers([BALE, EITAA], routes=False, start=False,
                        s2s={"dns_server": dns.addr})
    for d, srv in servers.items():
        dns.add_srv(f"_xmpps-server._tcp.{d}", srv.s2s_tls_port, f"xmpp.{d}")
        dns.add_srv(f"_xmpp-server._tcp.{d}", closed, f"xmpp.{d}")
        dns.add_a(f"xmpp.{d}", "127.0.0.1")
    for srv in servers.values():
        srv.start()
    exchange(servers, raw, "xmpps")
    assert dns.asked(f"_xmpps-server._tcp.{EITAA}", "SRV"), dns.queries


def test_static_route_direct_tls(providers, raw):
    servers = providers([BALE, EITAA], routes=False, start=False)
    bale, eitaa = servers[BALE], servers[EITAA]
    for srv, other in ((bale, eitaa), (eitaa, bale)):
        srv.config["s2s"]["routes"] = {other.domain: f"tls:127.0.0.1:{other.s2s_tls_port}"}
        srv.write_config()
    for srv in servers.values():
        srv.start()
    exchange(servers, raw, "tlsroute")


@pytest.mark.pv_timeout(60)
def test_static_route_overrides_dns(providers, raw, dns):
    """DNS says eitaa is at a closed port; the static route is right and wins."""
    from pvserver import free_ports
    closed = free_ports(1)[0]
    servers = providers([BALE, EITAA], s2s={"dns_server": dns.addr})
    for d in servers:
        dns.add_srv(f"_xmpp-server._tcp.{d}", closed, f"xmpp.{d}")
        dns.add_a(f"xmpp.{d}", "127.0.0.1")
    exchange(servers, raw, "override")
    assert not dns.asked(f"_xmpp-server._tcp.{EITAA}"), (
        f"a static route must replace DNS for that domain: {dns.queries}")
