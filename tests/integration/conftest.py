"""Fixtures for the integration suite.

  server_factory(overrides=None, users=USERS, start=True) -> pvserver.Server
      a fresh peyvand on free loopback ports with a temporary data dir; users are
      added with `peyvandctl user add` before start (offline, on the data dir).
      At teardown: SIGTERM (SIGKILL after 20s), then the test fails if the server
      did not exit 0 or if ASan/UBSan/LSan reported anything in its log; the
      temporary directory is removed either way (the log tail goes into the report).
  server          the default server (host localhost, users alice/bob/carol)
  raw(port=None, **kw) -> rawxmpp.RawClient   (closed at teardown)
  slix(jid, password, **kw) -> slixclient.Client   (disconnected at teardown)
  run(coro, timeout=60)   run a coroutine on this test's asyncio loop, bounded

Every test is bounded by SIGALRM (default 120 s, @pytest.mark.pv_timeout(seconds)).
When a test fails, the tail of each server log is attached to the report.
"""
import asyncio
import signal

import pytest

import pvserver
import rawxmpp
import slixclient
from helpers import DOMAIN, USERS, jid


# --- bounded tests ----------------------------------------------------------------

class TestTimedOut(Exception):
    pass


@pytest.fixture(autouse=True)
def _alarm(request):
    m = request.node.get_closest_marker("pv_timeout")
    # Under $PEYVAND_WRAPPER (valgrind) everything is slower: stretch the bound too.
    seconds = (int(m.args[0]) if m else 120) * pvserver.SLOW

    def on_alarm(signum, frame):
        raise TestTimedOut(f"test exceeded its {seconds}s bound")
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for s in getattr(item, "_pv_servers", []):
            rep.sections.append((f"peyvand log ({s.dir}, ports {s.port}/{s.tls_port})",
                                 s.log_tail(150)))


# --- servers ------------------------------------------------------------------------

@pytest.fixture
def server_factory(request):
    servers = []
    request.node._pv_servers = servers

    def make(overrides=None, users=USERS, start=True, domain=DOMAIN):
        s = pvserver.Server(overrides)
        servers.append(s)
        for user, pw in (users or {}).items():
            s.add_user(jid(user, domain), pw)
        if start:
            s.start()
        return s

    yield make
    problems, tails = [], []
    for s in servers:
        try:
            s.stop()
        finally:
            found = s.problems()
            problems += [f"[{s.dir}] {p}" for p in found]
            if found:
                tails.append(s.log_tail(80))
            s.cleanup()
    if problems:
        pytest.fail("server problems:\n" + "\n".join(problems) + "\n--- log tail\n"
                    + "\n".join(tails), pytrace=False)


@pytest.fixture
def server(server_factory):
    return server_factory()


# --- asyncio / slixmpp --------------------------------------------------------------

@pytest.fixture
def loop():
    lp = asyncio.new_event_loop()
    asyncio.set_event_loop(lp)
    yield lp
    pending = [t for t in asyncio.all_tasks(lp) if not t.done()]
    for t in pending:
        t.cancel()
    if pending:
        lp.run_until_complete(asyncio.wait(pending, timeout=5))
    lp.run_until_complete(lp.shutdown_asyncgens())
    lp.close()
    asyncio.set_event_loop(None)


@pytest.fixture
def run(loop):
    def _run(coro, timeout=60):
        return loop.run_until_complete(asyncio.wait_for(coro, timeout))
    return _run


@pytest.fixture
def slix(loop, run):
    made = []

    def make(jid_, password, **kw):
        c = slixclient.Client(jid_, password, **kw)
        made.append(c)
        return c

    yield make

    async def close_all():
        await asyncio.gather(*(c.quit(0.5) for c in made), return_exceptions=True)
    try:
        run(close_all(), 15)
    except Exception:
        for c in made:
            c.abort()


# --- raw clients --------------------------------------------------------------------

@pytest.fixture
def raw(request):
    made = []

    def make(port=None, **kw):
        if port is None:
            srv = request.getfixturevalue("server")
            port = srv.tls_port if kw.get("direct_tls") else srv.port
        c = rawxmpp.RawClient(port, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.abort()

