"""Logs never carry secrets: no passwords or SASL payloads at any level, no message
bodies at info level (STYLE.md, issue 2 "Logging")."""
import base64

from helpers import USERS, login_raw


def _exercise(srv, raw):
    srv.add_user("ivan@localhost", "Ctl-Password-4711")
    a = raw(srv.port)
    a.start()
    a.starttls()
    a.auth_plain("alice", USERS["alice"])
    a.bind("a")
    b = login_raw(raw, srv, "bob", "b", presence=True)
    a.message(b.jid, "Top-Secret-Body-0815")
    b.wait_message("Top-Secret-Body-0815")
    login_raw(raw, srv, "ivan", "i", password="Ctl-Password-4711").ping()
    return base64.b64encode(b"\0alice\0" + USERS["alice"].encode()).decode()


def test_no_secrets_in_debug_log(server_factory, raw):
    srv = server_factory({"log_level": "debug"})
    plain_blob = _exercise(srv, raw)
    srv.stop()
    log = srv.log_text()
    for secret in (USERS["alice"], USERS["bob"], "Ctl-Password-4711", plain_blob):
        assert secret not in log, f"{secret!r} appears in the debug log"


def test_no_bodies_at_info_level(server_factory, raw):
    srv = server_factory({"log_level": "info"})
    _exercise(srv, raw)
    srv.stop()
    log = srv.log_text()
    assert "Top-Secret-Body-0815" not in log, "message body logged at info level"
    assert USERS["alice"] not in log and "Ctl-Password-4711" not in log
