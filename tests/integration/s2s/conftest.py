"""Fixtures for the server-to-server tests (the parent conftest's fixtures apply too:
server_factory, raw, slix, run, the SIGALRM bound and the log tails on failure).

  ca                session-wide TestCA (openssl CLI): good/wrong/other certificates
  providers(domains, **kw) -> {domain: Server}   peyvand providers with static routes
                    to each other (s2sharness.make_providers; stopped by server_factory)
  fake_peer(srv, from_domain, cert="good"|"wrong"|"other"|None, ...) -> FakePeer
                    a hand-written initiating server connected to srv's s2s port
  dns               a DnsServer on a free loopback port (stopped at teardown)
  silent            a listener that accepts and never answers
"""
import pytest

import s2sharness
from dnsserver import DnsServer


ca = pytest.fixture(scope="session", name="ca")(s2sharness.session_ca)


@pytest.fixture
def providers(server_factory, ca):
    def make(domains=None, **kw):
        return s2sharness.make_providers(server_factory, ca, domains or s2sharness.PROVIDERS,
                                         **kw)
    return make


@pytest.fixture
def fake_peer(ca):
    yield from s2sharness.fake_peers(ca)


@pytest.fixture
def dns():
    d = DnsServer().start()
    yield d
    d.stop()


@pytest.fixture
def silent():
    s = s2sharness.SilentListener()
    yield s
    s.stop()
