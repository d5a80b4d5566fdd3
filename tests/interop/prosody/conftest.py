"""Fixtures for the Prosody interop tests.

Reuses tests/integration: its conftest (server_factory, raw, slix, run, the SIGALRM
bound) and the s2s conftest (ca, providers, dns), loaded here under their own module
names and re-exported, plus

  prosody_factory(domain="prosody.localhost", cert="good"|"wrong", secure_auth=True,
                  dialback=True, users=USERS, start=True) -> prosodyproc.Prosody
      a Prosody on free loopback ports whose resolver asks the test's DNS server (the
      `dns` fixture); stopped by PID at teardown.

Prosody and lua-unbound are Debian packages (scripts/install-deps.sh); when missing and
running as root, the fixture installs them with apt-get once, and skips (saying which
package) only if that fails.
"""
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
INTEGRATION = HERE.parents[1] / "integration"
for p in (str(INTEGRATION / "s2s"), str(INTEGRATION), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


_base = _load("pv_integration_conftest", INTEGRATION / "conftest.py")
_s2s = _load("pv_integration_s2s_conftest", INTEGRATION / "s2s" / "conftest.py")

# re-exported fixtures (pytest finds them by attribute name)
_alarm = _base._alarm
server_factory = _base.server_factory
loop = _base.loop
run = _base.run
slix = _base.slix
raw = _base.raw
ca = _s2s.ca
providers = _s2s.providers
dns = _s2s.dns

import prosodyproc  # noqa: E402
import s2sharness  # noqa: E402
from helpers import USERS  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "pv_timeout(seconds): bound for one test (SIGALRM)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for s in getattr(item, "_pv_servers", []):
            rep.sections.append((f"peyvand log ({s.dir}, ports {s.port}/{s.tls_port})",
                                 s.log_tail(150)))
        for p in getattr(item, "_prosodies", []):
            rep.sections.append((f"prosody log ({p.dir}, c2s {p.c2s_port}, s2s {p.s2s_port})",
                                 p.log_tail(150)))


_install_tried = []


def ensure_prosody():
    missing = prosodyproc.missing_parts()
    if missing and not _install_tried and os.geteuid() == 0 and shutil.which("apt-get"):
        _install_tried.append(True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        try:
            subprocess.run(["apt-get", "install", "-y", "-q", *missing], env=env,
                           capture_output=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired):
            pass
        missing = prosodyproc.missing_parts()
    if missing:
        pytest.skip(f"Debian package(s) {' '.join(missing)} not installed and could not be "
                    f"installed (scripts/install-deps.sh should install them)")


@pytest.fixture
def prosody_factory(request, ca, dns):
    made = []
    request.node._prosodies = made

    def make(domain="prosody.localhost", cert="good", secure_auth=True, dialback=True,
             users=USERS, start=True):
        ensure_prosody()
        p = prosodyproc.Prosody(domain, ca, cert_kind=cert, secure_auth=secure_auth,
                                dns_addr=dns.addr, dialback=dialback,
                                ports=s2sharness.alloc_ports(2))
        made.append(p)
        for user, pw in (users or {}).items():
            p.add_user(user, pw)
        if start:
            p.start()
        return p

    yield make
    problems = []
    for p in made:
        try:
            p.stop()
        finally:
            problems += p.problems()
            p.cleanup()
    if problems:
        pytest.fail("prosody problems: " + "; ".join(problems), pytrace=False)
