"""The two binaries from the outside: peyvand's command line (--version, --help,
--check-config), peyvandctl user management with exit codes (online over the admin
socket and offline on the data dir), sessions/stats, and reload (peyvandctl reload and
SIGHUP) that keeps sessions."""
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

import pvserver
from helpers import list_users, login_raw
from rawxmpp import AuthFailed

NS_REGISTER_FEATURE = "http://jabber.org/features/iq-register"


def one_line_error(r):
    assert r.rc != 0, f"expected failure: {r}"
    lines = [l for l in r.err.strip().splitlines() if l.strip()]
    assert len(lines) == 1, f"expected a one-line error on stderr: {r}"


def ok(r):
    assert r.rc == 0, r
    return r


def users_of(srv, domain="localhost"):
    return list_users(srv, domain)


def can_login(srv, raw, user, password, domain="localhost"):
    c = raw(srv.port, domain=domain)
    c.start()
    c.starttls()
    try:
        c.auth_scram(user, password)
    except AuthFailed as e:
        assert e.condition == "not-authorized", e.condition
        return False
    finally:
        c.close()
    return True


# --- peyvand's own command line -------------------------------------------------------

def run_bin(*args, timeout=30):
    return subprocess.run([pvserver.find_binary("PEYVAND_BIN", "peyvand"), *args],
                          capture_output=True, text=True, timeout=timeout)


def test_version_and_help():
    r = run_bin("--version")
    assert r.returncode == 0, r
    assert "peyvand" in (r.stdout + r.stderr).lower()
    assert any(ch.isdigit() for ch in r.stdout + r.stderr)
    r = run_bin("--help")
    assert r.returncode == 0, r
    assert "--config" in r.stdout + r.stderr


def test_check_config(server_factory):
    srv = server_factory(start=False, users={})
    r = run_bin("--config", str(srv.config_path), "--check-config")
    assert r.returncode == 0, f"valid config rejected: {r.stderr}"
    bad = srv.dir / "bad.yaml"
    bad.write_text("c2s:\n  port: [unclosed\n")
    r = run_bin("--config", str(bad), "--check-config")
    assert r.returncode == 1, r
    assert r.stderr.strip(), "no message for a broken config"
    wrong = srv.dir / "wrong.yaml"
    wrong.write_text(pvserver.to_yaml(pvserver.deep_merge(srv.config, {"c2s": {"port": "many"}})))
    r = run_bin("--config", str(wrong), "--check-config")
    assert r.returncode == 1, f"port: many accepted: {r}"
    r = run_bin("--config", str(srv.dir / "missing.yaml"), "--check-config")
    assert r.returncode != 0
    assert not srv.running()


# --- peyvandctl user management -------------------------------------------------------

@pytest.mark.parametrize("online", [False, True], ids=["offline", "online"])
def test_user_lifecycle(server_factory, raw, online):
    srv = server_factory(users={}, start=online)
    ok(srv.ctl("user", "add", "erin@localhost", "erin-pw-1"))
    one_line_error(srv.ctl("user", "add", "erin@localhost", "again"))
    ok(srv.ctl("user", "add", "frank@localhost", input="frank-pw\n"))   # password on stdin
    assert users_of(srv) == ["erin@localhost", "frank@localhost"]
    ok(srv.ctl("user", "passwd", "erin@localhost", input="erin-pw-2\n"))
    one_line_error(srv.ctl("user", "passwd", "nobody@localhost", input="x\n"))
    one_line_error(srv.ctl("user", "add", "not a jid", "pw"))
    one_line_error(srv.ctl("user", "add", "gina@unknown.example", "pw"))
    one_line_error(srv.ctl("user", "list", "unknown.example"))
    if not online:
        srv.start()
    assert can_login(srv, raw, "frank", "frank-pw")
    assert can_login(srv, raw, "erin", "erin-pw-2")
    assert not can_login(srv, raw, "erin", "erin-pw-1"), "old password still works"
    if not online:
        srv.stop()
    ok(srv.ctl("user", "del", "erin@localhost"))
    one_line_error(srv.ctl("user", "del", "erin@localhost"))
    assert users_of(srv) == ["frank@localhost"]
    if not online:
        srv.start()
    assert not can_login(srv, raw, "erin", "erin-pw-2"), "deleted user can log in"


def test_credentials_are_not_stored_in_clear(server_factory):
    srv = server_factory(users={}, start=False)
    ok(srv.ctl("user", "add", "hank@localhost", "Very-Unique-Password-4711"))
    for f in srv.data_dir.rglob("*"):
        if f.is_file():
            assert b"Very-Unique-Password-4711" not in f.read_bytes(), f"password in clear in {f}"


def test_sessions_and_stats(server, raw):
    a = login_raw(raw, server, "alice", "laptop", presence=True)
    b = login_raw(raw, server, "bob", "phone", presence=True)
    r = ok(server.ctl("sessions"))
    assert a.jid in r.out and b.jid in r.out, r
    r = ok(server.ctl("stats"))
    assert r.out.strip(), "stats printed nothing"
    a.close()
    time.sleep(0.5)
    r = ok(server.ctl("sessions"))
    assert a.jid not in r.out and b.jid in r.out, r
    server.stop()
    one_line_error(server.ctl("sessions"))     # needs a running server


def test_reload_via_ctl_keeps_sessions_and_applies_config(server, raw):
    alice = login_raw(raw, server, "alice", "a", presence=True, sm=True)
    pre = raw(server.port)
    pre.start()
    f = pre.starttls()
    assert f.find(f"{{{NS_REGISTER_FEATURE}}}register") is None
    pre.close()
    # module settings change: in-band registration switched on
    cfg = pvserver.deep_merge(server.config, {"hosts": {"localhost": {"register": {"allow": True}}}})
    server.write_config(cfg)
    ok(server.ctl("reload"))
    time.sleep(0.5)
    assert alice.is_open(), "reload dropped a session"
    alice.ping()
    c = raw(server.port)
    c.start()
    f = c.starttls()
    assert f.find(f"{{{NS_REGISTER_FEATURE}}}register") is not None, "reload did not apply register.allow"
    r = c.iq("set", "<query xmlns='jabber:iq:register'><username>ivy</username>"
             "<password>ivy-pw</password></query>", to="")
    assert r.get("type") == "result", r
    c.close()
    assert can_login(server, raw, "ivy", "ivy-pw")
    alice.message("ivy@localhost", "welcome")     # alice's session still routes
    alice.ping()


def _cert_der(port):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with ctx.wrap_socket(s, server_hostname="localhost") as t:
            return t.getpeercert(binary_form=True)


def test_sighup_reloads_the_certificate(server, raw):
    alice = login_raw(raw, server, "alice", "a", presence=True)
    before = _cert_der(server.tls_port)
    crt = server.data_dir / "certs" / "localhost.crt"
    key = server.data_dir / "certs" / "localhost.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-days", "2", "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(crt)],
                   check=True, capture_output=True, timeout=30)
    new_der = ssl.PEM_cert_to_DER_cert(crt.read_text())
    assert new_der != before
    server.hup()
    deadline = time.monotonic() + 5
    while _cert_der(server.tls_port) != new_der:
        assert time.monotonic() < deadline, "SIGHUP did not load the new certificate"
        time.sleep(0.2)
    assert alice.is_open(), "SIGHUP dropped a session"
    alice.ping()
    login_raw(raw, server, "bob", "b").ping()     # STARTTLS with the new certificate


def test_sighup_keeps_sessions_and_survives_a_broken_config(server, raw):
    alice = login_raw(raw, server, "alice", "a", presence=True, sm=True)
    bob = login_raw(raw, server, "bob", "b", presence=True)
    server.hup()
    time.sleep(1.0)
    assert server.running()
    assert alice.is_open() and bob.is_open(), "SIGHUP dropped a session"
    alice.message(bob.jid, "after hup")
    bob.wait_message("after hup")
    # a broken config on reload: the server keeps the old one and keeps running
    good = server.config_path.read_text()
    server.config_path.write_text("hosts: [this is: not valid\n")
    server.hup()
    time.sleep(1.0)
    assert server.running(), "a broken config on SIGHUP killed the server"
    alice.ping()
    server.config_path.write_text(good)
    login_raw(raw, server, "carol", "c").ping()


def test_example_configs_check(tmp_path):
    """The shipped examples stay valid: --check-config accepts examples/peyvand.conf and
    examples/exchange.conf (with the exchange's certificates not yet made)."""
    root = Path(__file__).resolve().parents[2]
    for name in ("peyvand.conf", "exchange.conf"):
        text = (root / "examples" / name).read_text()
        conf = tmp_path / name
        conf.write_text(text.replace("/var/lib/peyvand-exchange", str(tmp_path / "x"))
                        .replace("/var/lib/peyvand", str(tmp_path / "p")))
        r = run_bin("--config", str(conf), "--check-config")
        assert r.returncode == 0, f"{name}: {r.stdout}{r.stderr}"
