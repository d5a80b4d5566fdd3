"""Fixtures for the exchange tests (issue 6): four providers and one exchange on
loopback.  They reuse the s2s harness (../s2s/s2sharness.py: test CA, provider config,
static routes, FakePeer) and the parent conftest (server_factory, raw, slix, run, the
SIGALRM bound, log tails and sanitizer checks at teardown).  See README.md here.

  ca                   session-wide TestCA (one CA for every provider and the exchange)
  interconnect(layout="mesh"|"star"|"both", ...) -> exlib.Interconnect
                       bale, eitaa, rubika, soroush.localhost + exchange.localhost,
                       started and stopped by server_factory (by PID)
  fake_peer(srv, from_domain, cert="good"|"wrong"|"other"|None)  a hand-written s2s
                       initiator (STARTTLS, client certificate, SASL EXTERNAL)
"""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "s2s"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import s2sharness  # noqa: E402
import exlib       # noqa: E402


ca = pytest.fixture(scope="session", name="ca")(s2sharness.session_ca)


@pytest.fixture
def interconnect(server_factory, ca):
    """interconnect(layout="mesh", **kw) -> exlib.Interconnect (see exlib.make_interconnect
    for the keywords).  Everything it starts is stopped by server_factory."""
    def make(layout="mesh", **kw):
        return exlib.make_interconnect(server_factory, ca, layout=layout, **kw)
    return make


@pytest.fixture
def fake_peer(ca):
    yield from s2sharness.fake_peers(ca)
