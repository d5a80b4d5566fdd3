"""Server-to-server test harness: a test CA, peyvand providers linked by static routes,
a hand-written peer server ("fake server") and small helpers shared by the s2s tests
and the Prosody interop tests (tests/interop/prosody/).

  TestCA            CA + per-domain certificates made with the `openssl` CLI:
                      good(d)   SAN DNS:d, signed by the CA (authenticates as d)
                      wrong(d)  SAN DNS:d.wrong.invalid, signed by the same CA: a valid
                                chain that does not name d (so only dialback can help)
                      other(d)  SAN DNS:d, signed by a second CA ("other CA") that the
                                providers do not trust unless a member entry says so
  provider_overrides()  the YAML overrides that turn a pvserver.Server into a provider
  make_providers()      start several providers, each with static routes to the others
  FakePeer          a raw s2s initiating server (STARTTLS, client certificate, SASL
                    EXTERNAL) speaking by hand, for the bad-input cases
  links()           `peyvandctl links` parsed into Link records
  send_acked()      send many messages over an XEP-0198 raw client, paced by acks

Config contract: see tests/integration/s2s/README.md.
"""
import base64
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import pvserver
import rawxmpp
from rawxmpp import (NS_SASL, NS_SM, NS_STREAM, NS_TLS, RawClient, StreamClosed, local,
                     ns_of, stream_error_condition, to_str)

NS_SERVER = "jabber:server"
NS_DIALBACK = "jabber:server:dialback"
NS_SID = "urn:xmpp:sid:0"

PROVIDERS = ["bale.localhost", "eitaa.localhost", "rubika.localhost", "soroush.localhost"]

# s2s settings every test provider starts from (short timers: tests must be quick)
S2S_DEFAULTS = {
    "listen": ["127.0.0.1"],
    "require_encryption": True,
    "dialback": True,
    "queue_expiry": "72h",
    "retry_min": "1s",
    "retry_max": "2s",
    "connect_timeout": "5s",
    "idle_timeout": "10m",
    "max_connections_per_domain": 4,
    "stanza_rate": 500,
    "max_stanza_size": "256k",
}


# --- certificates ----------------------------------------------------------------------

def _openssl(*args, cwd=None):
    p = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60, cwd=cwd)
    if p.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed:\n{p.stderr}")
    return p.stdout


class TestCA:
    """A throw-away PKI in a temporary directory (removed by cleanup())."""
    __test__ = False     # not a pytest test class

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="pv-ca-", dir="/tmp"))
        self._lock = threading.Lock()
        self.ca_file, self.ca_key = self._make_ca("ca", "peyvand test CA")
        self.other_ca_file, self.other_ca_key = self._make_ca("other-ca", "some other CA")

    def _make_ca(self, stem, cn):
        crt, key = self.dir / f"{stem}.crt", self.dir / f"{stem}.key"
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                 "-nodes", "-keyout", str(key), "-out", str(crt), "-days", "30",
                 "-subj", f"/CN={cn}",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                 "-addext", "subjectKeyIdentifier=hash")
        return str(crt), str(key)

    def _leaf(self, stem, cn, sans, ca_crt, ca_key):
        crt, key = self.dir / f"{stem}.crt", self.dir / f"{stem}.key"
        with self._lock:
            if crt.exists():
                return str(crt), str(key)
            csr, ext = self.dir / f"{stem}.csr", self.dir / f"{stem}.ext"
            ext.write_text(
                "basicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature,keyAgreement\n"
                # s2s certificates are used as server and as client certificates
                "extendedKeyUsage=serverAuth,clientAuth\n"
                "subjectKeyIdentifier=hash\n"
                "authorityKeyIdentifier=keyid,issuer\n"
                "subjectAltName=" + ",".join(f"DNS:{s}" for s in sans) + "\n")
            _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                     "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={cn}")
            _openssl("x509", "-req", "-in", str(csr), "-CA", ca_crt, "-CAkey", ca_key,
                     "-set_serial", str(int.from_bytes(__import__("os").urandom(8), "big")),
                     "-days", "30", "-sha256", "-extfile", str(ext), "-out", str(crt))
            return str(crt), str(key)

    def good(self, domain):
        """(cert, key) naming `domain`, signed by the test CA."""
        return self._leaf(domain, domain, [domain], self.ca_file, self.ca_key)

    def wrong(self, domain):
        """(cert, key) signed by the test CA for another name (SAN and CN)."""
        other = f"{domain}.wrong.invalid"
        return self._leaf(f"wrong-{domain}", other, [other], self.ca_file, self.ca_key)

    def other(self, domain):
        """(cert, key) naming `domain`, signed by the other CA."""
        return self._leaf(f"other-{domain}", domain, [domain], self.other_ca_file,
                          self.other_ca_key)

    def pair(self, kind, domain):
        return {"good": self.good, "wrong": self.wrong, "other": self.other}[kind](domain)

    @staticmethod
    def fingerprint(cert_file):
        """"sha256:AB:CD:..." of a PEM certificate (the config's pin format)."""
        out = _openssl("x509", "-in", str(cert_file), "-noout", "-fingerprint", "-sha256")
        return "sha256:" + out.strip().split("=", 1)[1].upper()

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


# --- providers -------------------------------------------------------------------------

def alloc_ports(n, taken=()):
    """n free loopback ports, distinct from each other and from `taken`."""
    taken = set(taken)
    for _ in range(50):
        ports = pvserver.free_ports(n)
        if not taken.intersection(ports):
            return ports
    raise RuntimeError("could not find free ports")


def provider_overrides(domain, ca, s2s_port, s2s_tls_port, routes, cert="good",
                       s2s=None, host=None, log_level=None):
    """Overrides (for pvserver.Server) making a single-host provider `domain`."""
    crt, key = ca.pair(cert, domain)
    s2s_cfg = dict(S2S_DEFAULTS)
    s2s_cfg.update({"port": s2s_port, "direct_tls_port": s2s_tls_port,
                    "ca_file": ca.ca_file, "routes": dict(routes)})
    s2s_cfg.update(s2s or {})
    if not s2s_cfg.get("routes"):
        s2s_cfg.pop("routes", None)
    h = pvserver.host_config(domain, certificate=crt, key=key)
    h.update(host or {})
    out = {"hosts": {"localhost": None, domain: h}, "s2s": s2s_cfg}
    if log_level:
        out["log_level"] = log_level
    return out


def route_to(srv, direct_tls=False):
    return (f"tls:127.0.0.1:{srv.s2s_tls_port}" if direct_tls
            else f"127.0.0.1:{srv.s2s_port}")


def make_providers(server_factory, ca, domains, certs=None, s2s=None, per=None,
                   hosts=None, extra_routes=None, users=None, start=True, log_level=None,
                   routes=True):
    """Start one peyvand per domain, each with static routes to all the others.

    certs: {domain: "good" | "wrong" | "other"}   (default good)
    s2s:   s2s overrides for every provider;  per: {domain: s2s overrides}
    hosts: {domain: host-config overrides (e.g. interconnect)}
    extra_routes: routes added to every provider (e.g. to a closed port)
    Returns {domain: pvserver.Server} with .domain, .s2s_port, .s2s_tls_port set."""
    from helpers import USERS
    users = USERS if users is None else users
    certs, per, hosts = certs or {}, per or {}, hosts or {}
    servers = {}
    for d in domains:
        servers[d] = server_factory(None, users={}, domain=d, start=False)
    taken = set()
    for srv in servers.values():
        taken.update((srv.port, srv.tls_port))
    ports = alloc_ports(2 * len(domains), taken)
    for i, (d, srv) in enumerate(servers.items()):
        srv.domain = d
        srv.s2s_port, srv.s2s_tls_port = ports[2 * i], ports[2 * i + 1]
    for d, srv in servers.items():
        r = {o: route_to(s) for o, s in servers.items() if o != d} if routes else {}
        r.update(extra_routes or {})
        s2s_over = dict(s2s or {})
        s2s_over.update(per.get(d, {}))
        over = provider_overrides(d, ca, srv.s2s_port, srv.s2s_tls_port, r,
                                  cert=certs.get(d, "good"), s2s=s2s_over,
                                  host=hosts.get(d), log_level=log_level)
        srv.write_config(pvserver.deep_merge(srv.config, over))
        srv.extra_ports = [p for p in (srv.s2s_port, srv.s2s_tls_port) if p]
        # users are added offline once the config names the provider's host
        for user, pw in users.items():
            srv.add_user(f"{user}@{d}", pw)
    if start:
        for srv in servers.values():
            srv.start()
    return servers


# --- peyvandctl links ------------------------------------------------------------------

class Link:
    def __init__(self, line, local_, remote, fields):
        self.line, self.local, self.remote, self.fields = line, local_, remote, fields

    def get(self, k, default=None):
        return self.fields.get(k, default)

    def int(self, k):
        v = self.fields.get(k)
        try:
            return int(float(v))
        except (TypeError, ValueError):
            raise AssertionError(f"link field {k}={v!r} is not a number: {self.line}") from None

    def __repr__(self):
        return self.line


_LINK = re.compile(r"^\s*(\S+)\s+->\s+(\S+)\s*(.*)$")


def links(srv):
    """`peyvandctl links` as a list of Link (asserting the command works)."""
    r = srv.ctl("links")
    assert r.rc == 0, f"peyvandctl links failed: {r}"
    out = []
    for line in r.out.splitlines():
        m = _LINK.match(line)
        if not m:
            continue
        fields = dict(kv.split("=", 1) for kv in m.group(3).split() if "=" in kv)
        out.append(Link(line.strip(), m.group(1), m.group(2), fields))
    return out


def links_between(srv, local_, remote):
    return [l for l in links(srv) if l.local == local_ and l.remote == remote]


def wait_link(srv, local_, remote, pred, timeout=15, what="link state"):
    """Poll `links` until some line local -> remote satisfies pred; returns it."""
    deadline = time.monotonic() + timeout
    seen = []
    while True:
        ls = links_between(srv, local_, remote)
        seen = ls or seen
        for l in ls:
            if pred(l):
                return l
        if time.monotonic() > deadline:
            raise AssertionError(f"{srv.domain}: no link {local_} -> {remote} with {what} "
                                 f"within {timeout}s; lines: {seen or '(none)'}\nall: "
                                 f"{srv.ctl('links').out!r}")
        time.sleep(0.2)


# --- raw clients ------------------------------------------------------------------------

def login(raw_factory, srv, user, resource="raw", sm=False, presence=True, password=None):
    """A raw c2s client logged in as user@srv.domain."""
    from helpers import USERS
    c = raw_factory(srv.port, domain=srv.domain)
    c.login(user, password or USERS[user], resource=resource, sm=sm, presence=presence)
    return c


def bare(j):
    return (j or "").split("/", 1)[0]


def is_chat(el, body=None, frm=None):
    """A message with a body (not an error), optionally with that body / from (bare)."""
    if local(el.tag) != "message" or el.get("type") == "error":
        return False
    b = rawxmpp.body_of(el) if ns_of(el.tag) == rawxmpp.NS_CLIENT else None
    if b is None:
        return False
    if body is not None and b != body:
        return False
    if frm is not None and bare(el.get("from")) != bare(frm):
        return False
    return True


def wait_chat(c, body, frm=None, timeout=20):
    return c.next(lambda e: is_chat(e, body, frm), timeout, f"message {body!r} from {frm}")


def no_chat(c, pred, duration):
    got = c.collect(lambda e: is_chat(e) and pred(e), duration)
    assert not got, f"{c.jid}: unexpected messages: {[to_str(e)[:200] for e in got]}"


def is_error_message(el, ids=None):
    return (local(el.tag) == "message" and el.get("type") == "error"
            and (ids is None or el.get("id") in ids))


def collect_errors(c, ids, timeout):
    """Wait until an error message has come back for every id (or timeout); returns
    {id: [error elements]} including any duplicates seen meanwhile."""
    ids = set(ids)
    got = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and set(got) != ids:
        for e in c.collect(lambda e: is_error_message(e, ids), 0.3):
            got.setdefault(e.get("id"), []).append(e)
    return got


def message_xml(to, body, id, frm=None, origin_id=True, type="chat"):
    f = f" from={quoteattr(frm)}" if frm else ""
    oid = f"<origin-id xmlns='{NS_SID}' id={quoteattr(id)}/>" if origin_id else ""
    return (f"<message to={quoteattr(to)}{f} type='{type}' id={quoteattr(id)}>"
            f"<body>{escape(body)}</body>{oid}</message>")


def send_acked(c, to, bodies, id_prefix="m", window=40, timeout=120):
    """Send each body to `to` over an SM-enabled raw client, an <r/> every 10 stanzas,
    never more than `window` unacknowledged; returns the final h (all acked)."""
    assert c.sm_enabled, "send_acked needs XEP-0198 enabled"
    acked = 0
    deadline = time.monotonic() + timeout

    def take_acks(wait):
        nonlocal acked
        for a in c.collect(lambda e: e.tag == f"{{{NS_SM}}}a", wait):
            acked = max(acked, int(a.get("h")))

    for i, body in enumerate(bodies):
        c.send_stanza(message_xml(to, body, f"{id_prefix}{i}"))
        if (i + 1) % 10 == 0:
            c.send(f"<r xmlns='{NS_SM}'/>")
        take_acks(0)
        while c.sm_out - acked > window:
            if time.monotonic() > deadline:
                raise AssertionError(f"acks stalled at h={acked} after {c.sm_out} stanzas")
            if c.eof:
                raise StreamClosed(f"stream closed at h={acked}: {c.pending_summary()}")
            c.send(f"<r xmlns='{NS_SM}'/>")
            take_acks(0.3)
    while acked < c.sm_out:
        if time.monotonic() > deadline:
            raise AssertionError(f"acks stalled at h={acked} of {c.sm_out}")
        c.send(f"<r xmlns='{NS_SM}'/>")
        take_acks(0.3)
    return acked


def collect_bodies(c, prefix, want, timeout=60):
    """Chat bodies starting with prefix, in arrival order, until `want` of them arrived
    (or timeout) plus a short grace period to catch duplicates."""
    got = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(got) < want:
        got += [rawxmpp.body_of(e) for e in
                c.collect(lambda e: is_chat(e) and rawxmpp.body_of(e).startswith(prefix), 0.3)]
    got += [rawxmpp.body_of(e) for e in
            c.collect(lambda e: is_chat(e) and rawxmpp.body_of(e).startswith(prefix), 1.0)]
    return got


# --- a hand-written peer server ------------------------------------------------------------

class PeerRefused(AssertionError):
    """The server under test answered with a stream error (or closed the connection)."""

    def __init__(self, condition, step, detail=""):
        super().__init__(f"refused at {step}: {condition} {detail}")
        self.condition = condition
        self.step = step


class FakePeer(RawClient):
    """An initiating server written by hand: opens a jabber:server stream from
    `from_domain` to `to_domain`, negotiates STARTTLS presenting (cert, key) as its client
    certificate, authenticates with SASL EXTERNAL (RFC 6120 6, XEP-0178), then sends
    whatever the test wants.  Every wait is bounded; a stream error at any step raises
    PeerRefused(condition)."""

    def __init__(self, port, from_domain, to_domain, cert=None, key=None, direct_tls=False,
                 timeout=10.0):
        self.from_domain = from_domain
        self.cert, self.key = cert, key
        super().__init__(port, domain=to_domain, direct_tls=direct_tls, timeout=timeout)

    def wrap_tls(self, server_hostname=None):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        if self.cert:
            ctx.load_cert_chain(self.cert, self.key)
        self.sock.settimeout(self.timeout)
        self.sock = ctx.wrap_socket(self.sock, server_hostname=server_hostname or self.domain)
        self.tls = True

    def open_stream(self, to=None, version="1.0", xmlns=NS_SERVER, stream_ns=NS_STREAM,
                    decl=True, extra=None):
        if extra is None:
            extra = f" from={quoteattr(self.from_domain)} xmlns:db='{NS_DIALBACK}'"
        return super().open_stream(to=to, version=version, xmlns=xmlns, stream_ns=stream_ns,
                                   decl=decl, extra=extra)

    def read_features(self, timeout=None, step="stream features"):
        try:
            el = self.next(lambda e: e.tag in (f"{{{NS_STREAM}}}features",
                                               f"{{{NS_STREAM}}}error"), timeout, step)
        except StreamClosed as e:
            raise PeerRefused("(closed without stream error)", step, str(e)) from None
        if el.tag == f"{{{NS_STREAM}}}error":
            raise PeerRefused(stream_error_condition(el), step, to_str(el))
        self.features = el
        return el

    def starttls(self):
        self.send(f"<starttls xmlns='{NS_TLS}'/>")
        try:
            el = self.next(lambda e: ns_of(e.tag) == NS_TLS or e.tag == f"{{{NS_STREAM}}}error",
                           what="<proceed/>")
        except StreamClosed as e:
            raise PeerRefused("(closed without stream error)", "starttls", str(e)) from None
        if el.tag == f"{{{NS_STREAM}}}error":
            raise PeerRefused(stream_error_condition(el), "starttls", to_str(el))
        assert local(el.tag) == "proceed", f"STARTTLS refused: {to_str(el)}"
        self.wrap_tls()
        return self.start()

    def auth_external(self, authzid=None):
        """SASL EXTERNAL; authzid defaults to our domain ("=" sends an empty one)."""
        authzid = self.from_domain if authzid is None else authzid
        payload = "=" if authzid in ("", "=") else base64.b64encode(authzid.encode()).decode()
        self.send(f"<auth xmlns='{NS_SASL}' mechanism='EXTERNAL'>{payload}</auth>")
        try:
            el = self.next(lambda e: ns_of(e.tag) == NS_SASL or e.tag == f"{{{NS_STREAM}}}error",
                           what="SASL answer")
        except StreamClosed as e:
            raise PeerRefused("(closed without stream error)", "sasl", str(e)) from None
        if el.tag == f"{{{NS_STREAM}}}error":
            raise PeerRefused(stream_error_condition(el), "sasl", to_str(el))
        if local(el.tag) == "failure":
            cond = next((local(c.tag) for c in el if local(c.tag) != "text"), "(none)")
            raise PeerRefused("sasl-failure:" + cond, "sasl", to_str(el))
        assert local(el.tag) == "success", to_str(el)
        return self.start()

    def connect(self, auth=True):
        """Stream header, STARTTLS, and (auth=True) SASL EXTERNAL; returns the features
        of the last stream."""
        f = self.start()
        if not self.tls:
            assert f.find(f"{{{NS_TLS}}}starttls") is not None, \
                f"server offers no STARTTLS on s2s: {to_str(f)}"
            f = self.starttls()
        if auth:
            mechs = self.mechanisms(f)
            assert "EXTERNAL" in mechs, (f"SASL EXTERNAL not offered to a peer with a valid "
                                         f"certificate for {self.from_domain}: {to_str(f)}")
            f = self.auth_external()
        return f

    def message(self, to, body, frm=None, id=None, type="chat", extra=""):
        id = id or rawxmpp.new_id("fake")
        frm = frm or f"mallory@{self.from_domain}/fake"
        self.send(f"<message from={quoteattr(frm)} to={quoteattr(to)} type='{type}' "
                  f"id={quoteattr(id)}><body>{escape(body)}</body>{extra}</message>")
        return id

    def refusal(self, timeout=10):
        """The stream error condition the server sends next (or '(closed ...)')."""
        deadline = time.monotonic() + timeout
        while True:
            for i, el in enumerate(self.inbox):
                if el.tag == f"{{{NS_STREAM}}}error":
                    self.inbox.pop(i)
                    return stream_error_condition(el)
            if self.eof:
                return "(closed without stream error)"
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no stream error within {timeout}s; "
                                     f"unconsumed: {self.pending_summary()}")
            self._pump(min(left, 0.3))


class SilentListener:
    """A TCP listener that accepts connections and never says a word (a black hole for
    connect/handshake timeouts).  stop() closes everything."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                c, _ = self.sock.accept()
                self.accepted.append(c)
            except (socket.timeout, OSError):
                continue

    def stop(self):
        self._stop.set()
        self._t.join(5)
        for c in self.accepted:
            c.close()
        self.sock.close()


def fake_peers(ca):
    """The generator behind the `fake_peer` fixtures: yields make(srv, from_domain, cert,
    to_domain, direct_tls, timeout) -> FakePeer connected to srv's s2s port, with a
    certificate of `ca` (cert=None: none); every peer made is aborted afterwards."""
    made = []

    def make(srv, from_domain, cert="good", to_domain=None, direct_tls=False, timeout=10.0):
        crt, key = ca.pair(cert, from_domain) if cert else (None, None)
        port = srv.s2s_tls_port if direct_tls else srv.s2s_port
        p = FakePeer(port, from_domain, to_domain or srv.domain, crt, key,
                     direct_tls=direct_tls, timeout=timeout)
        made.append(p)
        return p

    yield make
    for p in made:
        p.abort()


def session_ca():
    """The generator behind the session-wide `ca` fixtures: one TestCA, removed after."""
    c = TestCA()
    yield c
    c.cleanup()
