"""Interop with a real peer: Debian's Prosody 0.12 and a peyvand provider exchange
messages both ways over s2s.

  peyvand bale.localhost  --static route-->  prosody.localhost (its s2s port)
  prosody.localhost       --DNS SRV------->  bale.localhost (the test's DNS server answers
                                             _xmpp-server._tcp / _xmpps-server._tcp)

Certificates: both certificates from the test CA, Prosody with s2s_secure_auth = true
and peyvand with dialback: false, so only certificate authentication (SASL EXTERNAL) can
work.  Dialback: both certificates name other domains, Prosody with s2s_secure_auth =
false and peyvand with dialback: true."""
import pytest

from helpers import USERS, befriend
from rawxmpp import RawClient, to_str
from s2sharness import links, login, wait_chat

BALE, PROS = "bale.localhost", "prosody.localhost"


def start_pair(providers, prosody_factory, dns, cert, dialback, secure_auth,
               prosody_to_peyvand="starttls"):
    p = prosody_factory(PROS, cert=cert, secure_auth=secure_auth, start=False)
    servers = providers([BALE], start=False, certs={BALE: cert},
                        extra_routes={PROS: f"127.0.0.1:{p.s2s_port}"},
                        s2s={"dialback": dialback})
    bale = servers[BALE]
    if prosody_to_peyvand == "direct-tls":
        dns.add_srv(f"_xmpps-server._tcp.{BALE}", bale.s2s_tls_port, f"xmpp.{BALE}")
    else:
        dns.add_srv(f"_xmpp-server._tcp.{BALE}", bale.s2s_port, f"xmpp.{BALE}")
    dns.add_a(f"xmpp.{BALE}", "127.0.0.1")
    bale.start()
    p.start()
    return bale, p


def prosody_login(p, user, resource="raw"):
    c = RawClient(p.c2s_port, domain=p.domain)
    # Prosody 0.12 offers SCRAM-SHA-1 (and PLAIN); SCRAM-SHA-256 only from 0.13
    c.login(user, USERS[user], resource=resource, mech="SCRAM-SHA-1", presence=True)
    return c


def exchange(raw, bale, p, rounds=3):
    a = login(raw, bale, "alice")
    b = prosody_login(p, "bob")
    try:
        for i in range(rounds):
            a.message(f"bob@{PROS}", f"peyvand to prosody {i}")
            m = wait_chat(b, f"peyvand to prosody {i}", f"alice@{BALE}", timeout=40)
            assert m.get("from") == f"alice@{BALE}/raw", to_str(m)
            b.message(f"alice@{BALE}", f"prosody to peyvand {i}")
            m = wait_chat(a, f"prosody to peyvand {i}", f"bob@{PROS}", timeout=40)
            assert m.get("from") == f"bob@{PROS}/raw", to_str(m)
    finally:
        b.close()


@pytest.mark.pv_timeout(150)
@pytest.mark.parametrize("prosody_to_peyvand", ["starttls", "direct-tls"])
def test_prosody_certificates(providers, prosody_factory, dns, raw, prosody_to_peyvand):
    bale, p = start_pair(providers, prosody_factory, dns, cert="good", dialback=False,
                         secure_auth=True, prosody_to_peyvand=prosody_to_peyvand)
    exchange(raw, bale, p)
    mine = [l for l in links(bale) if l.local == BALE and l.remote == PROS]
    assert mine, f"no link line bale -> prosody: {links(bale)}"
    assert all(l.get("auth") == "external" for l in mine), mine
    log = p.log_text()
    assert "Accepting SASL EXTERNAL identity from bale.localhost" in log, (
        "prosody did not authenticate peyvand by SASL EXTERNAL")
    if prosody_to_peyvand == "direct-tls":
        assert dns.asked(f"_xmpps-server._tcp.{BALE}", "SRV"), dns.queries


@pytest.mark.pv_timeout(150)
def test_prosody_dialback(providers, prosody_factory, dns, raw):
    bale, p = start_pair(providers, prosody_factory, dns, cert="wrong", dialback=True,
                         secure_auth=False)
    exchange(raw, bale, p)
    mine = [l for l in links(bale) if l.local == BALE and l.remote == PROS]
    assert mine, f"no link line bale -> prosody: {links(bale)}"
    assert all(l.get("auth") == "dialback" for l in mine), mine
    assert "Accepting SASL EXTERNAL" not in p.log_text()


@pytest.mark.pv_timeout(150)
def test_prosody_presence_subscription(providers, prosody_factory, dns, slix, run):
    """RFC 6121 subscription handshake across the two servers (roster pushes on each
    side, presence after approval) -- the befriend() conversation of the c2s tests."""
    bale, p = start_pair(providers, prosody_factory, dns, cert="good", dialback=False,
                         secure_auth=True)
    a = slix(f"alice@{BALE}/s", USERS["alice"])
    b = slix(f"bob@{PROS}/s", USERS["bob"], mech="SCRAM-SHA-1")

    async def main():
        await a.login(bale.port)
        await b.login(p.c2s_port)
        await befriend(a, b)
    run(main(), 120)


@pytest.mark.pv_timeout(150)
def test_prosody_refuses_bad_certificate_without_dialback(providers, prosody_factory, dns,
                                                          raw):
    """Prosody with s2s_secure_auth = true and peyvand presenting a certificate for
    another name: no link comes up; peyvand's user gets remote-server-timeout after the
    (short) queue expiry instead of silence."""
    p = prosody_factory(PROS, cert="good", secure_auth=True, start=False)
    servers = providers([BALE], start=False, certs={BALE: "wrong"},
                        extra_routes={PROS: f"127.0.0.1:{p.s2s_port}"},
                        s2s={"dialback": True, "queue_expiry": "4s", "retry_min": "1s",
                             "retry_max": "1s"})
    bale = servers[BALE]
    dns.add_srv(f"_xmpp-server._tcp.{BALE}", bale.s2s_port, f"xmpp.{BALE}")
    dns.add_a(f"xmpp.{BALE}", "127.0.0.1")
    bale.start()
    p.start()
    a = login(raw, bale, "alice")
    from s2sharness import collect_errors
    from rawxmpp import stanza_error_condition
    ids = [a.message(f"bob@{PROS}", "should not pass")]
    got = collect_errors(a, ids, 40)
    assert ids[0] in got, f"no bounce; links: {links(bale)}"
    assert stanza_error_condition(got[ids[0]][0]) in ("remote-server-timeout",
                                                      "remote-server-not-found"), \
        to_str(got[ids[0]][0])
