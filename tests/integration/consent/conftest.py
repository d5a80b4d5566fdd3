"""Fixtures for the consent tests (issue 4).  They reuse the s2s harness
(../s2s/s2sharness.py: test CA, providers with static routes, FakePeer) and the parent
conftest (server_factory, raw, the SIGALRM bound, log tails on failure).

  ca                  session-wide TestCA
  consent_providers(domains, consent=None, members=None, users=..., per_host=None)
                      -> {domain: Server}: peyvand providers with the default modules
                      plus "consent" and "blocking"; `consent` is the hosts.<d>.consent
                      section of every host, `members` makes bale.localhost members-only
  fake_peer(srv, from_domain)  a hand-written s2s initiator (STARTTLS, EXTERNAL)
  module_servers      like server_factory, but module-scoped (the decision table runs
                      one set of providers for all its rows); same teardown checks
(consentlib.BLOCKING says whether this peyvand has the "blocking" module, XEP-0191; the
providers are configured without it when it does not, and the tests that need it fail
saying so.)
"""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "s2s"))

import pvserver      # noqa: E402
import s2sharness    # noqa: E402

from consentlib import host_overrides  # noqa: E402


ca = pytest.fixture(scope="session", name="ca")(s2sharness.session_ca)


@pytest.fixture
def consent_providers(server_factory, ca):
    def make(domains, consent=None, members=None, users=None, per_host=None, **kw):
        return s2sharness.make_providers(
            server_factory, ca, domains, users=users,
            hosts=host_overrides(domains, consent, members, per_host), **kw)
    return make


@pytest.fixture
def fake_peer(ca):
    yield from s2sharness.fake_peers(ca)


class ModuleServers:
    """A module-scoped server_factory (same contract and teardown checks)."""

    def __init__(self):
        self.servers = []

    def __call__(self, overrides=None, users=None, start=True, domain="localhost"):
        s = pvserver.Server(overrides)
        self.servers.append(s)
        for user, pw in (users or {}).items():
            s.add_user(f"{user}@{domain}", pw)
        if start:
            s.start()
        return s

    def finish(self):
        problems, tails = [], []
        for s in self.servers:
            try:
                s.stop()
            finally:
                found = s.problems()
                problems += [f"[{s.dir}] {p}" for p in found]
                if found:
                    tails.append(s.log_tail(80))
                s.cleanup()
        return problems, tails


@pytest.fixture(scope="module")
def module_servers():
    ms = ModuleServers()
    yield ms
    problems, tails = ms.finish()
    if problems:
        pytest.fail("server problems:\n" + "\n".join(problems) + "\n--- log tail\n"
                    + "\n".join(tails), pytrace=False)


class ModuleRaw:
    """Raw clients that live as long as the module's servers."""

    def __init__(self):
        self.made = []

    def __call__(self, port, **kw):
        import rawxmpp
        c = rawxmpp.RawClient(port, **kw)
        self.made.append(c)
        return c

    def close(self):
        for c in self.made:
            c.abort()


@pytest.fixture(scope="module")
def module_raw():
    r = ModuleRaw()
    yield r
    r.close()
