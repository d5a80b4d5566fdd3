"""Helpers for the phone tests: config, pre-auth clients, codes from the log gateway,
requests of urn:peyvand:phone:0, and a recording webhook (docs/protocol/phone.md)."""
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape, quoteattr

import pvserver
from helpers import wait_until
from rawxmpp import NS_CLIENT, NS_STANZAS, local, to_str

NS_PHONE = "urn:peyvand:phone:0"

DEFAULT_PHONE = {
    "register": True,
    "gateway": "log",
    "code_length": 6,
    "code_ttl": "60s",
    "max_attempts": 3,
    "sends_per_number_per_hour": 5,
    "sends_per_client_per_hour": 50,
}


def phone_overrides(**phone):
    cfg = dict(DEFAULT_PHONE)
    cfg.update(phone)
    cfg = {k: v for k, v in cfg.items() if v is not None}
    return {"hosts": {"localhost": pvserver.host_config(
        "localhost", modules=pvserver.DEFAULT_MODULES + ["phone"], phone=cfg)}}


def mask(number):
    """The masked form mod_phone logs (pv_phone_mask)."""
    n = len(number)
    return "".join(c if (i <= 2 or i + 4 >= n) else "*" for i, c in enumerate(number))


_CODE_RE = re.compile(r"sms \(log gateway\) host=(\S+) to=(\S+) code=(\d+)")


def codes_in_log(srv, number):
    m = mask(number)
    return [c for (_h, to, c) in _CODE_RE.findall(srv.log_text()) if to == m]


def wait_code(srv, number, before, timeout=10):
    """The code logged for number after `before` codes were logged for it."""
    wait_until(lambda: len(codes_in_log(srv, number)) > before, timeout=timeout,
               what=f"a code for {number} in the log")
    return codes_in_log(srv, number)[-1]


def preauth_client(raw, srv):
    """A client on a TLS-protected stream that has not authenticated."""
    c = raw(srv.port)
    f = c.start()
    assert f.find("{urn:ietf:params:xml:ns:xmpp-tls}starttls") is not None
    c.starttls()
    return c


# --- requests ----------------------------------------------------------------

def request_code(c, number, to=None):
    return c.iq("set", f"<request-code xmlns='{NS_PHONE}' number={quoteattr(number)}/>", to=to)


def register(c, number, code, password="s3cret-pw"):
    pw = f"<password>{escape(password)}</password>" if password is not None else ""
    return c.iq("set", f"<register xmlns='{NS_PHONE}' number={quoteattr(number)} "
                       f"code={quoteattr(code)}>{pw}</register>")


def verify(c, number, code, to=None):
    return c.iq("set", f"<verify xmlns='{NS_PHONE}' number={quoteattr(number)} "
                       f"code={quoteattr(code)}/>", to=to)


def release(c):
    return c.iq("set", f"<release xmlns='{NS_PHONE}'/>")


def get_phone(c, to=None):
    res = c.iq("get", f"<phone xmlns='{NS_PHONE}'/>", to=to)
    assert res.get("type") == "result", to_str(res)
    return res.find(f"{{{NS_PHONE}}}phone")


def settings(c, **kw):
    attrs = "".join(f" {k}={quoteattr(v)}" for k, v in kw.items())
    return c.iq("set", f"<settings xmlns='{NS_PHONE}'{attrs}/>")


def error_of(res):
    """(type, defined condition, application condition or None) of an iq error."""
    assert res.get("type") == "error", f"expected an error, got {to_str(res)}"
    err = res.find(f"{{{NS_CLIENT}}}error")
    cond = app = None
    for ch in err:
        if ch.tag.startswith(f"{{{NS_STANZAS}}}") and local(ch.tag) != "text":
            cond = local(ch.tag)
        elif ch.tag.startswith(f"{{{NS_PHONE}}}"):
            app = local(ch.tag)
    return err.get("type"), cond, app


def assert_error(res, etype, cond, app=None):
    got = error_of(res)
    assert got == (etype, cond, app), f"expected {(etype, cond, app)}, got {got}: {to_str(res)}"


def assert_result(res):
    assert res.get("type") == "result", to_str(res)
    return res


def registered_jid(res):
    assert_result(res)
    return res.find(f"{{{NS_PHONE}}}registered").get("jid")


def register_by_phone(raw, srv, number, password="s3cret-pw"):
    """The whole registration conversation; returns the new JID."""
    c = preauth_client(raw, srv)
    before = len(codes_in_log(srv, number))
    assert_result(request_code(c, number))
    code = wait_code(srv, number, before)
    jid = registered_jid(register(c, number, code, password))
    c.close()
    return jid


def attach(c, srv, number):
    """Request and verify a code for number on a logged-in client; the answer of verify."""
    before = len(codes_in_log(srv, number))
    assert_result(request_code(c, number))
    return verify(c, number, wait_code(srv, number, before))


# --- the webhook -------------------------------------------------------------

class WebhookServer:
    """Records POSTs: (path, headers dict, body bytes).  Loopback only."""

    def __init__(self, status=200, delay=0.0):
        self.requests = []
        self.status = status
        self.delay = delay
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                outer.requests.append((self.path, dict(self.headers.items()), body))
                if outer.delay:
                    time.sleep(outer.delay)
                self.send_response(outer.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/sms"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def json_bodies(self):
        return [json.loads(b) for (_p, _h, b) in self.requests]

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


_EVENT_RE = re.compile(r"phone-changed host=(\S+) user=(\S+) number=(\S+) previous=(\S+) "
                       r"findable=(\d) preferred=(\d)")


def events(srv, user=None):
    """The "phone-changed" events mod_phone logged: dicts (numbers masked, '-' = none)."""
    out = []
    for h, u, n, p, f, pr in _EVENT_RE.findall(srv.log_text()):
        if user is None or u == user:
            out.append({"host": h, "user": u, "number": n, "previous": p,
                        "findable": f == "1", "preferred": pr == "1"})
    return out
