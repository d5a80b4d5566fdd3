"""A small XMPP client written by hand (socket + ssl + hashlib), for what a client
library cannot express: malformed input, exact stream-management counters, bytes
glued after <starttls/>, a client that stops reading.

Everything blocks with a timeout; nothing here can hang a test.  Elements read from
the server are xml.etree Elements (names in Clark notation, "{ns}name"), parsed
incrementally from the stream; the stream header itself is kept in `stream_attrs`.
"""
import base64
import hashlib
import hmac
import itertools
import os
import select
import socket
import ssl
import time
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape, quoteattr

NS_STREAM = "http://etherx.jabber.org/streams"
NS_CLIENT = "jabber:client"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_SASL2 = "urn:xmpp:sasl:2"
NS_BIND2 = "urn:xmpp:bind:0"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"
NS_SESSION = "urn:ietf:params:xml:ns:xmpp-session"
NS_SM = "urn:xmpp:sm:3"
NS_STREAMS = "urn:ietf:params:xml:ns:xmpp-streams"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_PING = "urn:xmpp:ping"
NS_DELAY = "urn:xmpp:delay"
NS_REGISTER = "jabber:iq:register"
NS_ROSTER = "jabber:iq:roster"

STANZA_TAGS = {f"{{{NS_CLIENT}}}{n}" for n in ("message", "presence", "iq")}

_ids = itertools.count(1)


def new_id(prefix="raw"):
    return f"{prefix}{next(_ids)}"


class StreamClosed(Exception):
    """The server closed the connection (or the stream) while we waited."""


class Timeout(AssertionError):
    pass


# --- element helpers (work on any ET element, also the slixmpp copies) --------------

def local(tag):
    return tag.rsplit("}", 1)[-1]


def ns_of(tag):
    return tag[1:].split("}", 1)[0] if tag.startswith("{") else ""


def stream_error_condition(el):
    """Defined condition of a <stream:error/>, or None if el is not one."""
    if el is None or el.tag != f"{{{NS_STREAM}}}error":
        return None
    for child in el:
        if ns_of(child.tag) == NS_STREAMS and local(child.tag) != "text":
            return local(child.tag)
    return "(no condition)"


def stanza_error_condition(el):
    """Defined condition of a stanza error (type='error'), or None."""
    if el is None or el.get("type") != "error":
        return None
    err = el.find(f"{{{NS_CLIENT}}}error")
    if err is None:
        return "(no error child)"
    for child in err:
        if ns_of(child.tag) == NS_STANZAS and local(child.tag) != "text":
            return local(child.tag)
    return "(no condition)"


def body_of(el):
    b = el.find(f"{{{NS_CLIENT}}}body")
    return b.text if b is not None else None


def is_message(el, body=None, frm=None):
    if el.tag != f"{{{NS_CLIENT}}}message":
        return False
    if body is not None and body_of(el) != body:
        return False
    if frm is not None and el.get("from") != frm:
        return False
    return True


def is_presence(el, frm=None, type=None):
    if el.tag != f"{{{NS_CLIENT}}}presence":
        return False
    if frm is not None and el.get("from") != frm and el.get("from", "").split("/")[0] != frm:
        return False
    if type is not None and (el.get("type") or "available") != type:
        return False
    return True


def to_str(el):
    return ET.tostring(el, encoding="unicode")


# --- SCRAM (RFC 5802 / RFC 7677) -----------------------------------------------------

SCRAM_HASHES = {"SCRAM-SHA-1": "sha1", "SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}


def _saslname(s):
    return s.replace("=", "=3D").replace(",", "=2C")


def _parse_scram(msg):
    out = {}
    for part in msg.split(","):
        if len(part) >= 2 and part[1] == "=":
            out[part[0]] = part[2:]
    return out


class Scram:
    def __init__(self, mech, user, password):
        self.hash = SCRAM_HASHES[mech]
        self.user, self.password = user, password
        self.cnonce = base64.b64encode(os.urandom(18)).decode()
        self.gs2 = "n,,"
        self.first_bare = f"n={_saslname(user)},r={self.cnonce}"

    def _hmac(self, key, msg):
        return hmac.new(key, msg, self.hash).digest()

    def first(self):
        return (self.gs2 + self.first_bare).encode()

    def final(self, server_first):
        server_first = server_first.decode()
        a = _parse_scram(server_first)
        assert a["r"].startswith(self.cnonce), f"server nonce does not extend ours: {server_first}"
        salt = base64.b64decode(a["s"])
        iters = int(a["i"])
        self.iterations = iters
        salted = hashlib.pbkdf2_hmac(self.hash, self.password.encode(), salt, iters)
        without_proof = f"c={base64.b64encode(self.gs2.encode()).decode()},r={a['r']}"
        auth_msg = f"{self.first_bare},{server_first},{without_proof}".encode()
        client_key = self._hmac(salted, b"Client Key")
        stored = hashlib.new(self.hash, client_key).digest()
        sig = self._hmac(stored, auth_msg)
        proof = bytes(x ^ y for x, y in zip(client_key, sig))
        self.server_sig = self._hmac(self._hmac(salted, b"Server Key"), auth_msg)
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def verify(self, server_final):
        a = _parse_scram(server_final.decode())
        assert "e" not in a, f"server-final carries an error: {server_final!r}"
        assert base64.b64decode(a["v"]) == self.server_sig, "server signature mismatch"


class AuthFailed(AssertionError):
    def __init__(self, condition, el=None):
        super().__init__(f"SASL failure: {condition}")
        self.condition = condition
        self.el = el


# --- the client ------------------------------------------------------------------------

# The ssl module resumes a session only through the context that made it.
session_contexts = {}

class RawClient:
    def __init__(self, port, domain="localhost", host="127.0.0.1", direct_tls=False,
                 timeout=10.0, rcvbuf=None):
        self.domain = domain
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.tls = False
        self.eof = False           # transport closed by the peer (FIN or RST)
        self.reset = False         # ... by RST
        self.peer_closed = False   # server sent </stream:stream>
        self.we_closed = False
        self.inbox = []            # top-level elements not consumed yet
        self.seen = []             # every top-level element received (for messages)
        self.raw_in = bytearray()  # every byte received after TLS decryption
        self.stream_attrs = None
        self.features = None
        self.jid = None
        self.sm_enabled = False
        self.sm_id = None
        self.sm_in = 0             # stanzas received since <enable/> (our 'h')
        self.sm_out = 0            # stanzas sent since <enable/>
        self.auto_ack = True       # answer the server's <r/> with our <a h/>
        self.auto_pong = True      # answer the server's XEP-0199 pings
        self.h_of = {}             # id(element) -> our h right after receiving it
        self.headerless_error = False
        self._reset_parser()
        if direct_tls:
            self.wrap_tls()

    # --- transport ------------------------------------------------------------
    def wrap_tls(self, server_hostname=None, max_version=None, session=None):
        """session: an ssl.SSLSession of an earlier connection to resume (its context
        is reused too, as the ssl module requires)."""
        ctx = session_contexts.get(id(session)) if session else None
        if ctx is None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            if max_version:
                ctx.maximum_version = max_version
        self.sock.settimeout(self.timeout)
        self.sock = ctx.wrap_socket(self.sock, server_hostname=server_hostname or self.domain,
                                    session=session)
        self.tls_context = ctx
        self.tls = True

    def tls_session(self):
        """This connection's TLS session, resumable by a later wrap_tls(session=...)."""
        sess = self.sock.session
        session_contexts[id(sess)] = self.tls_context
        return sess

    def send(self, data, ignore_errors=False):
        if isinstance(data, str):
            data = data.encode()
        try:
            self.sock.sendall(data)
        except (OSError, ssl.SSLError):
            if not ignore_errors:
                raise
            return False
        return True

    def send_chunked(self, data, chunk=8192):
        """Send in pieces, stopping early (without error) once the server answers
        or closes: a server that cuts us off mid-stanza must not turn the test into
        a broken-pipe error."""
        if isinstance(data, str):
            data = data.encode()
        for i in range(0, len(data), chunk):
            if not self.send(data[i:i + chunk], ignore_errors=True):
                return False
            if self._readable(0):
                self._pump(0.05)
                if self.eof or self.inbox:
                    return False
        return True

    def _readable(self, timeout):
        if self.eof:
            return False
        if self.tls and self.sock.pending():
            return True
        try:
            r, _, _ = select.select([self.sock], [], [], timeout)
        except (OSError, ValueError):
            return True
        return bool(r)

    def _pump(self, timeout):
        """Read once (waiting at most `timeout`) and parse.  Returns False on timeout."""
        if self.eof:
            return False
        if not self._readable(max(timeout, 0)):
            return False
        try:
            self.sock.settimeout(max(timeout, 0.01))
            data = self.sock.recv(65536)
        except (socket.timeout, ssl.SSLWantReadError):
            return False
        except ConnectionResetError:
            self.eof = self.reset = True
            return True
        except (OSError, ssl.SSLError):
            self.eof = True
            return True
        if not data:
            self.eof = True
            return True
        self.raw_in += data
        self._feed(data)
        return True

    # --- parsing --------------------------------------------------------------
    def _reset_parser(self):
        self.parser = ET.XMLPullParser(events=("start", "end"))
        self.depth = 0
        self.root = None

    def _feed(self, data):
        self.parser.feed(data)
        for event, el in self.parser.read_events():
            if event == "start":
                self.depth += 1
                if self.depth == 1:
                    self.root = el
                    self.stream_attrs = dict(el.attrib)
            else:
                self.depth -= 1
                if self.depth == 1:
                    self._element(el)
                    self.root.remove(el)
                elif self.depth == 0:
                    self.peer_closed = True
                    if el.tag == f"{{{NS_STREAM}}}error":
                        # a stream error sent as the document element, without a stream
                        # header first; kept so that tests can say what went wrong
                        self.headerless_error = True
                        self.inbox.append(el)

    def _element(self, el):
        self.seen.append(el)
        if self.sm_enabled and el.tag in STANZA_TAGS:
            self.sm_in += 1
        self.h_of[id(el)] = self.sm_in
        if el.tag == f"{{{NS_SM}}}r" and self.sm_enabled and self.auto_ack:
            self.send(f"<a xmlns='{NS_SM}' h='{self.sm_in}'/>", ignore_errors=True)
        if el.tag == f"{{{NS_STREAM}}}features":
            self.features = el
        if (self.auto_pong and el.tag == f"{{{NS_CLIENT}}}iq" and el.get("type") == "get"
                and el.find(f"{{{NS_PING}}}ping") is not None):
            # a real client answers the server's keepalive pings (XEP-0199)
            to = f" to={quoteattr(el.get('from'))}" if el.get("from") else ""
            self.send(f"<iq type='result' id={quoteattr(el.get('id', ''))}{to}/>", ignore_errors=True)
            if self.sm_enabled:
                self.sm_out += 1
            return
        self.inbox.append(el)

    # --- waiting --------------------------------------------------------------
    def next(self, pred=lambda el: True, timeout=None, what="element"):
        """Return (and consume) the first received element satisfying pred."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            for i, el in enumerate(self.inbox):
                if pred(el):
                    return self.inbox.pop(i)
            if self.eof:
                raise StreamClosed(f"connection closed while waiting for {what}; "
                                   f"unconsumed: {self.pending_summary()}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise Timeout(f"no {what} within {timeout}s; unconsumed: {self.pending_summary()}")
            self._pump(min(left, 0.5))

    def collect(self, pred, duration):
        """Everything matching pred that arrives within `duration` seconds (consumed)."""
        deadline = time.monotonic() + duration
        while not self.eof and time.monotonic() < deadline:
            self._pump(min(0.1, max(deadline - time.monotonic(), 0)))
        out = [el for el in self.inbox if pred(el)]
        self.inbox = [el for el in self.inbox if not pred(el)]
        return out

    def drain(self, duration=0.3):
        self.collect(lambda el: True, duration)

    def pending_summary(self, limit=600):
        s = " | ".join(to_str(e)[:200] for e in self.inbox)
        return (s[:limit] + "...") if len(s) > limit else (s or "(nothing)")

    def expect_stream_error(self, timeout=10):
        """Wait for a <stream:error/>; return its condition."""
        try:
            el = self.next(lambda e: e.tag == f"{{{NS_STREAM}}}error", timeout, "stream error")
        except StreamClosed as e:
            raise AssertionError(f"connection closed without a stream error ({e}); "
                                 f"raw tail: {bytes(self.raw_in[-400:])!r}") from None
        assert not self.headerless_error, (
            "stream error sent without the server's stream header (RFC 6120 4.9.1.2: the "
            f"opening <stream> tag must still be sent): {to_str(el)}")
        return stream_error_condition(el)

    def expect_closed(self, timeout=10):
        """The server must close the stream and the connection.  We answer its
        </stream:stream> with ours, as RFC 6120 4.4 asks, then wait for EOF."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            if self.peer_closed and not self.we_closed:
                self.we_closed = True
                self.send("</stream:stream>", ignore_errors=True)
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"server did not close the connection within {timeout}s "
                                     f"(stream closed by server: {self.peer_closed})")
            self._pump(min(left, 0.5))
        return True

    def is_open(self, wait=0.3):
        self.drain(wait)
        return not self.eof

    # --- stream set-up ----------------------------------------------------------
    def open_stream(self, to=None, version="1.0", xmlns=NS_CLIENT, stream_ns=NS_STREAM,
                    decl=True, extra=""):
        to = self.domain if to is None else to
        self._reset_parser()
        self.features = None
        attrs = f"xmlns='{xmlns}' xmlns:stream='{stream_ns}' version='{version}'"
        if to:
            attrs = f"to='{to}' " + attrs
        head = ("<?xml version='1.0'?>" if decl else "") + f"<stream:stream {attrs}{extra}>"
        self.send(head)

    def read_features(self, timeout=None):
        return self.next(lambda e: e.tag == f"{{{NS_STREAM}}}features", timeout, "stream features")

    def start(self, to=None):
        self.open_stream(to=to)
        return self.read_features()

    def mechanisms(self, features=None):
        f = features if features is not None else self.features
        if f is None:
            return []
        m = f.find(f"{{{NS_SASL}}}mechanisms")
        if m is None:
            return []
        return [x.text for x in m.findall(f"{{{NS_SASL}}}mechanism")]

    def has_feature(self, tag, features=None):
        f = features if features is not None else self.features
        return f is not None and f.find(tag) is not None

    def starttls(self, session=None):
        self.send(f"<starttls xmlns='{NS_TLS}'/>")
        el = self.next(lambda e: ns_of(e.tag) == NS_TLS, what="<proceed/>")
        assert local(el.tag) == "proceed", f"STARTTLS refused: {to_str(el)}"
        self.wrap_tls(session=session)
        return self.start()

    def auth_scram(self, user, password, mech="SCRAM-SHA-256"):
        """SCRAM exchange; raises AuthFailed(condition) on <failure/>, restarts the
        stream on success and returns the new features."""
        sc = Scram(mech, user, password)
        self.send(f"<auth xmlns='{NS_SASL}' mechanism='{mech}'>"
                  f"{base64.b64encode(sc.first()).decode()}</auth>")
        el = self._sasl_next()
        if local(el.tag) != "challenge":
            raise AssertionError(f"expected SASL challenge, got {to_str(el)}")
        server_first = base64.b64decode(el.text or "")
        self.send(f"<response xmlns='{NS_SASL}'>{base64.b64encode(sc.final(server_first)).decode()}"
                  f"</response>")
        el = self._sasl_next()
        if local(el.tag) == "challenge":   # server-final as a challenge (allowed by RFC 6120)
            sc.verify(base64.b64decode(el.text or ""))
            self.send(f"<response xmlns='{NS_SASL}'/>")
            el = self._sasl_next()
            assert local(el.tag) == "success", to_str(el)
        elif local(el.tag) == "success":
            assert el.text, "SCRAM <success/> must carry the server-final message (v=...)"
            sc.verify(base64.b64decode(el.text))
        self.scram = sc
        self.user = user
        return self.start()

    def auth_plain(self, user, password):
        blob = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        self.send(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{blob}</auth>")
        el = self._sasl_next()
        assert local(el.tag) == "success", to_str(el)
        self.user = user
        return self.start()

    def sasl2_mechanisms(self, features=None):
        f = features if features is not None else self.features
        a = f.find(f"{{{NS_SASL2}}}authentication") if f is not None else None
        return [] if a is None else [x.text for x in a.findall(f"{{{NS_SASL2}}}mechanism")]

    def auth_sasl2(self, user, password, mech="SCRAM-SHA-256", bind=False, tag=None,
                   extra="", bind_extra=""):
        """XEP-0388 SCRAM exchange, with a XEP-0386 binding when bind (and tag) are
        given; extra goes inside <authenticate/>, bind_extra inside <bind/>.  Checks the
        server signature, reads the features that follow <success/> (no stream restart)
        and returns the <success/> element; self.jid is its authorization identifier.
        Raises AuthFailed(condition) on <failure/>."""
        sc = Scram(mech, user, password)
        inner = f"<initial-response>{base64.b64encode(sc.first()).decode()}</initial-response>"
        if bind:
            inner += (f"<bind xmlns='{NS_BIND2}'>"
                      + (f"<tag>{escape(tag)}</tag>" if tag is not None else "")
                      + bind_extra + "</bind>")
        self.features = None
        self.send(f"<authenticate xmlns='{NS_SASL2}' mechanism='{mech}'>{inner}{extra}"
                  f"</authenticate>")
        el = self._sasl_next(NS_SASL2)
        assert local(el.tag) == "challenge", to_str(el)
        server_first = base64.b64decode(el.text or "")
        self.send(f"<response xmlns='{NS_SASL2}'>"
                  f"{base64.b64encode(sc.final(server_first)).decode()}</response>")
        el = self._sasl_next(NS_SASL2)
        assert local(el.tag) == "success", to_str(el)
        data = el.find(f"{{{NS_SASL2}}}additional-data")
        assert data is not None and data.text, "SCRAM success must carry the server-final message"
        sc.verify(base64.b64decode(data.text))
        self.scram = sc
        self.user = user
        self.jid = el.find(f"{{{NS_SASL2}}}authorization-identifier").text
        self.read_features()
        return el

    def _sasl_next(self, ns=NS_SASL):
        el = self.next(lambda e: ns_of(e.tag) == ns or e.tag == f"{{{NS_STREAM}}}error",
                       what="SASL answer")
        if el.tag == f"{{{NS_STREAM}}}error":
            raise AuthFailed("stream-error:" + stream_error_condition(el), el)
        if local(el.tag) == "failure":
            cond = next((local(c.tag) for c in el if local(c.tag) != "text"), "(none)")
            raise AuthFailed(cond, el)
        return el

    def bind(self, resource=None):
        inner = f"<resource>{escape(resource)}</resource>" if resource else ""
        res = self.iq("set", f"<bind xmlns='{NS_BIND}'>{inner}</bind>", to="")
        assert res.get("type") == "result", f"bind failed: {to_str(res)}"
        self.jid = res.find(f"{{{NS_BIND}}}bind/{{{NS_BIND}}}jid").text
        sess = self.features.find(f"{{{NS_SESSION}}}session") if self.features is not None else None
        if sess is not None and sess.find(f"{{{NS_SESSION}}}optional") is None:
            r = self.iq("set", f"<session xmlns='{NS_SESSION}'/>", to="")
            assert r.get("type") == "result", to_str(r)
        return self.jid

    def login(self, user, password, resource="raw", mech="SCRAM-SHA-256", sm=False,
              presence=False, priority=None):
        """STARTTLS (unless already on TLS), SCRAM, bind; optionally SM and presence."""
        if not self.tls:
            f = self.start()
            assert f.find(f"{{{NS_TLS}}}starttls") is not None, "server offers no STARTTLS"
            self.starttls()
        else:
            self.start()
        self.auth_scram(user, password, mech)
        self.bind(resource)
        if sm:
            self.sm_enable()
        if presence:
            self.presence(priority=priority)
        return self

    # --- stanzas ----------------------------------------------------------------
    def send_stanza(self, xml):
        self.send(xml)
        if self.sm_enabled:
            self.sm_out += 1

    def iq(self, type, payload="", to=None, timeout=None, id=None):
        """Send an iq and return its answer (result or error)."""
        id = id or new_id("iq")
        to = self.domain if to is None else to
        to_attr = f" to={quoteattr(to)}" if to else ""
        self.send_stanza(f"<iq type='{type}' id='{id}'{to_attr}>{payload}</iq>")
        return self.next(lambda e: e.tag == f"{{{NS_CLIENT}}}iq" and e.get("id") == id
                         and e.get("type") in ("result", "error"), timeout, f"answer to iq {id}")

    def ping(self, timeout=None, to=None):
        res = self.iq("get", f"<ping xmlns='{NS_PING}'/>", to=to, timeout=timeout)
        assert res.get("type") == "result", f"ping failed: {to_str(res)}"
        return res

    def message(self, to, body, type="chat", id=None, extra=""):
        id = id or new_id("m")
        self.send_stanza(f"<message to={quoteattr(to)} type='{type}' id='{id}'>"
                         f"<body>{escape(body)}</body>{extra}</message>")
        return id

    def presence(self, to=None, type=None, priority=None, show=None, status=None):
        attrs = ""
        if to:
            attrs += f" to={quoteattr(to)}"
        if type:
            attrs += f" type='{type}'"
        inner = ""
        if show:
            inner += f"<show>{show}</show>"
        if status:
            inner += f"<status>{escape(status)}</status>"
        if priority is not None:
            inner += f"<priority>{priority}</priority>"
        self.send_stanza(f"<presence{attrs}>{inner}</presence>")

    def wait_message(self, body=None, frm=None, timeout=None):
        return self.next(lambda e: is_message(e, body, frm), timeout,
                         f"message body={body!r} from={frm!r}")

    # --- XEP-0198 ---------------------------------------------------------------
    def sm_enable(self, resume=True):
        self.send(f"<enable xmlns='{NS_SM}'" + (" resume='true'" if resume else "") + "/>")
        el = self.next(lambda e: ns_of(e.tag) == NS_SM and local(e.tag) in ("enabled", "failed"),
                       what="<enabled/>")
        assert local(el.tag) == "enabled", f"SM enable failed: {to_str(el)}"
        self.sm_enabled = True
        self.sm_in = 0
        self.sm_out = 0
        self.sm_id = el.get("id")
        if resume:
            assert self.sm_id, f"<enabled resume='true'/> without id: {to_str(el)}"
        return el

    def sm_resume(self, previd, h):
        """Send <resume/>; returns the <resumed/> or <failed/> element.  On success the
        inbound counter continues from the h we sent (XEP-0198 5: counting resumes there)."""
        self.send(f"<resume xmlns='{NS_SM}' previd={quoteattr(previd)} h='{h}'/>")
        el = self.next(lambda e: (ns_of(e.tag) == NS_SM and local(e.tag) in ("resumed", "failed"))
                       or e.tag == f"{{{NS_STREAM}}}error", what="<resumed/> or <failed/>")
        if local(el.tag) == "resumed":
            self.sm_enabled = True
            self.sm_id = previd
            self.sm_in = int(h)
        return el

    def request_ack(self, timeout=None):
        self.send(f"<r xmlns='{NS_SM}'/>")
        el = self.next(lambda e: e.tag == f"{{{NS_SM}}}a", timeout, "<a/>")
        return int(el.get("h"))

    def ack(self, h=None):
        self.send(f"<a xmlns='{NS_SM}' h='{self.sm_in if h is None else h}'/>")

    # --- shutdown -----------------------------------------------------------------
    def close(self):
        """Clean close: </stream:stream>, wait briefly for the server's, close socket."""
        if not self.eof:
            self.send("</stream:stream>", ignore_errors=True)
            self.we_closed = True
            deadline = time.monotonic() + 2
            while not self.eof and time.monotonic() < deadline:
                self._pump(0.2)
        self.abort()

    def abort(self):
        """Drop the TCP connection without closing the stream (a dead client)."""
        try:
            self.sock.close()
        except OSError:
            pass
        self.eof = True

    def rst(self):
        """Drop the connection with a TCP RST (SO_LINGER 0)."""
        try:
            import struct
            raw = self.sock
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.abort()
