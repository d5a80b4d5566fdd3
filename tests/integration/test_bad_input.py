"""Bad input, one test each.  The offending connection gets the RFC 6120 4.9.3 stream
error (or, for a bad 'to' address, the stanza error of RFC 6120 8.3.3) and is
disconnected; a second client, logged in before, keeps working and is pinged
afterwards; the server stays up.  The server's log is checked for sanitizer reports
at teardown (conftest)."""
import base64
import os
import socket
import ssl
import threading
import time

import pytest

from helpers import USERS, jid, login_raw
from rawxmpp import (NS_PING, NS_SASL, NS_STREAM, NS_TLS, AuthFailed, StreamClosed, body_of,
                     is_message, is_presence, local, stanza_error_condition, to_str)

NS_COMPRESS = "http://jabber.org/protocol/compress"
NS_COMPRESS_FEATURE = "http://jabber.org/features/compress"
STREAM_HEAD = ("<stream:stream to='localhost' xmlns='jabber:client' "
               "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")


@pytest.fixture
def bystander(server, raw):
    """bob, logged in and available before the bad client shows up."""
    return login_raw(raw, server, "bob", "bystander", presence=True)


def still_fine(server, bystander):
    """The other session works and nothing bad reached it."""
    assert server.running(), "server died\n" + server.log_tail(60)
    bystander.ping(timeout=10)
    leaked = [e for e in bystander.inbox if is_message(e)]
    assert not leaked, f"bystander received: {to_str(leaked[0])}"


def offender(server, raw, stage, user="alice"):
    """A raw client brought to `stage`: 'tcp', 'stream' (plain stream open),
    'tls' (after STARTTLS, not authenticated), 'auth' (logged in, bound)."""
    c = raw(server.port)
    if stage == "tcp":
        return c
    c.start()
    if stage == "stream":
        return c
    c.starttls()
    if stage == "tls":
        return c
    c.auth_scram(user, USERS[user])
    c.bind("bad")
    return c


def tls_without_restart(c):
    """STARTTLS, but leave the stream restart to the caller."""
    c.start()
    c.send(f"<starttls xmlns='{NS_TLS}'/>")
    el = c.next(lambda e: e.tag.startswith(f"{{{NS_TLS}}}"), what="<proceed/>")
    assert local(el.tag) == "proceed", to_str(el)
    c.wrap_tls()


def expect_error(c, *conditions):
    cond = c.expect_stream_error()
    assert cond in conditions, f"stream error <{cond}/>, expected one of {conditions}"
    c.expect_closed()
    return cond


# --- XML --------------------------------------------------------------------------------

@pytest.mark.parametrize("stage,data", [
    ("auth", "<message to='bob@localhost'><body>x</bdy></message>"),
    ("auth", "<message to='bob@localhost' type='chat' type='normal'><body>x</body></message>"),
    ("auth", "<message to='bob@localhost'><body>a < b</body></message>"),
    ("auth", "<<<>>>"),
    ("stream", "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'></startls>"),
    ("tls", "</stream:features>"),
], ids=["mismatched-tag", "duplicate-attribute", "raw-lt", "junk", "pre-tls", "stray-end-tag"])
def test_malformed_xml(server, raw, bystander, stage, data):
    c = offender(server, raw, stage)
    c.send(data)
    expect_error(c, "not-well-formed")
    still_fine(server, bystander)


def test_unbound_prefix(server, raw, bystander):
    c = offender(server, raw, "auth")
    c.send("<foo:message to='bob@localhost'><body>x</body></foo:message>")
    expect_error(c, "not-well-formed", "bad-namespace-prefix")
    still_fine(server, bystander)


DOCTYPE = "<!DOCTYPE stream:stream [<!ENTITY x 'boom'>]>"
LAUGHS = ("<!DOCTYPE lolz [<!ENTITY lol 'lol'>"
          + "".join(f"<!ENTITY lol{i} '{('&lol' + (str(i - 1) if i > 1 else '') + ';') * 10}'>"
                    for i in range(1, 9))
          + "]>")


@pytest.mark.parametrize("where", ["initial-stream", "after-tls"])
@pytest.mark.parametrize("doctype", [DOCTYPE, LAUGHS], ids=["entity-decl", "billion-laughs"])
def test_doctype_is_restricted_xml(server, raw, bystander, where, doctype):
    c = raw(server.port)
    if where == "after-tls":
        tls_without_restart(c)
    c._reset_parser()
    c.send("<?xml version='1.0'?>" + doctype + STREAM_HEAD
           + "<message to='bob@localhost'><body>&x;&lol8;</body></message>")
    expect_error(c, "restricted-xml")
    still_fine(server, bystander)


@pytest.mark.parametrize("data", [
    "<!-- a comment -->",
    "<?evil processing instruction?>",
    "<message to='bob@localhost'><body>hi<!-- inside --></body></message>",
], ids=["comment", "processing-instruction", "comment-in-stanza"])
def test_comments_and_pis_are_restricted_xml(server, raw, bystander, data):
    c = offender(server, raw, "auth")
    c.send(data)
    expect_error(c, "restricted-xml")
    still_fine(server, bystander)


def test_undeclared_entity_reference(server, raw, bystander):
    c = offender(server, raw, "auth")
    c.send("<message to='bob@localhost'><body>&xxe;</body></message>")
    expect_error(c, "restricted-xml", "not-well-formed")
    still_fine(server, bystander)


def test_predefined_entities_and_char_refs_are_fine(server, raw, bystander):
    c = offender(server, raw, "auth")
    c.message(jid("bob"), "placeholder")   # make sure routing works first
    bystander.wait_message("placeholder")
    c.send("<message to='bob@localhost' type='chat'><body>&lt;&amp;&gt;&quot;&apos;&#x41;&#66;</body></message>")
    m = bystander.wait_message("<&>\"'AB")
    assert m is not None
    c.ping()


@pytest.mark.parametrize("data", [
    b"<message to='bob@localhost'><body>\xff\xfe</body></message>",
    b"<message to='bob@localhost'><body>\xc3</body></message>",
    b"<message to='bob@localhost'><body>\xc0\xaf</body></message>",
    b"<message to='bob@localhost'><body>\xed\xa0\x80</body></message>",
    b"<message to='bob@localhost' id='\xfe'><body>x</body></message>",
    b"<message to='bob@localhost'><body>\x01</body></message>",
], ids=["ff-fe", "truncated", "overlong", "surrogate", "in-attribute", "control-char"])
def test_invalid_utf8(server, raw, bystander, data):
    c = offender(server, raw, "auth")
    c.send(data)
    # RFC 6120 4.9.3.22 names <unsupported-encoding/> for UTF-8 violations; XML calls
    # them well-formedness errors (<not-well-formed/>).  Either is right.
    expect_error(c, "not-well-formed", "unsupported-encoding")
    still_fine(server, bystander)


# --- limits ----------------------------------------------------------------------------

def test_oversized_stanza(server, raw, bystander):
    c = offender(server, raw, "auth")
    # just under the 256 KiB default goes through
    c.message(jid("bob"), "y" * (200 * 1024))
    m = bystander.wait_message(timeout=20)
    assert len(body_of(m)) == 200 * 1024
    c.send_chunked(f"<message to='bob@localhost'><body>{'x' * (300 * 1024)}</body></message>")
    expect_error(c, "policy-violation")
    still_fine(server, bystander)


def test_oversized_before_auth(server, raw, bystander):
    c = offender(server, raw, "tls")
    c.send_chunked(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{'A' * (400 * 1024)}</auth>")
    expect_error(c, "policy-violation")
    still_fine(server, bystander)


def test_deep_nesting(server, raw, bystander):
    c = offender(server, raw, "auth")
    ok = "<x xmlns='urn:example:nest'>" * 10 + "</x>" * 10
    c.send(f"<message to='bob@localhost' type='chat'><body>nested ok</body>{ok}</message>")
    bystander.wait_message("nested ok")
    deep = "<x>" * 200 + "</x>" * 200
    c.send(f"<message to='bob@localhost'><body>too deep</body>{deep}</message>")
    expect_error(c, "policy-violation")
    still_fine(server, bystander)


@pytest.mark.pv_timeout(60)
def test_connections_per_ip(server_factory, raw):
    srv = server_factory({"limits": {"max_connections_per_ip": 4}})
    bystander = login_raw(raw, srv, "bob", "bystander", presence=True)
    others = [raw(srv.port) for _ in range(3)]
    for o in others:
        o.start()
    refused = False
    try:
        extra = raw(srv.port)
        extra.open_stream()
        el = extra.next(lambda e: e.tag in (f"{{{NS_STREAM}}}error", f"{{{NS_STREAM}}}features"),
                        timeout=10, what="features or error")
        assert el.tag == f"{{{NS_STREAM}}}error", "5th connection from one IP accepted (limit 4)"
        assert local(list(el)[0].tag) in ("policy-violation", "resource-constraint"), to_str(el)
        extra.expect_closed()
        refused = True
    except (StreamClosed, OSError):
        refused = True             # closed without opening a stream: also a refusal
    assert refused
    for o in others:
        o.close()
    time.sleep(0.5)
    again = raw(srv.port)
    again.start()                  # room again
    still_fine(srv, bystander)


# --- addresses ---------------------------------------------------------------------------

BAD_JIDS = ["a@b@c", "@localhost", "alice@", "alice@localhost/", "x" * 1100 + "@localhost",
            "ali ce@localhost", "al:ice@localhost", "alice@local host"]


@pytest.mark.parametrize("bad", BAD_JIDS, ids=[
    "two-at", "empty-local", "empty-domain", "empty-resource", "long-local", "space-local",
    "colon-local", "space-domain"])
def test_invalid_to_is_jid_malformed(server, raw, bystander, bad):
    c = offender(server, raw, "auth")
    c.message(bad, "to a bad address", id="badto")
    err = c.next(lambda e: e.get("id") == "badto", what="error for a malformed to")
    assert err.get("type") == "error", to_str(err)
    assert stanza_error_condition(err) == "jid-malformed", to_str(err)
    r = c.iq("get", f"<ping xmlns='{NS_PING}'/>", to=bad)
    assert stanza_error_condition(r) == "jid-malformed", to_str(r)
    c.ping()                       # a stanza error, not a stream error: still connected
    still_fine(server, bystander)


@pytest.mark.parametrize("frm", ["bob@localhost/bystander", "mallory@localhost/x", "a@b@c",
                                 "alice@localhost/other-resource"],
                         ids=["other-user", "unknown-user", "malformed", "own-other-resource"])
def test_invalid_from(server, raw, bystander, frm):
    c = offender(server, raw, "auth")
    # one's own full JID as 'from' is fine
    c.send(f"<message to='bob@localhost' from='{c.jid}' type='chat'><body>honest</body></message>")
    m = bystander.wait_message("honest")
    assert m.get("from") == c.jid
    c.send(f"<message to='bob@localhost' from='{frm}' type='chat'><body>spoofed</body></message>")
    expect_error(c, "invalid-from")
    still_fine(server, bystander)


def test_wrong_stream_namespace(server, raw, bystander):
    c = raw(server.port)
    c.open_stream(stream_ns="http://etherx.jabber.org/wrong")
    expect_error(c, "invalid-namespace")
    still_fine(server, bystander)


def test_wrong_content_namespace(server, raw, bystander):
    c = raw(server.port)
    c.open_stream(xmlns="jabber:server")
    expect_error(c, "invalid-namespace")
    still_fine(server, bystander)


def test_unsupported_version(server, raw, bystander):
    c = raw(server.port)
    c.open_stream(version="2.0")
    expect_error(c, "unsupported-version")
    still_fine(server, bystander)


@pytest.mark.parametrize("stage", ["initial", "after-tls"])
def test_wrong_to_domain(server, raw, bystander, stage):
    c = raw(server.port)
    if stage == "after-tls":
        tls_without_restart(c)
    c.open_stream(to="nonexistent.example")
    expect_error(c, "host-unknown")
    still_fine(server, bystander)


# --- authentication -------------------------------------------------------------------

@pytest.mark.parametrize("stanza", [
    "<message to='bob@localhost'><body>before auth</body></message>",
    "<presence/>",
    f"<iq type='get' id='p1' to='localhost'><ping xmlns='{NS_PING}'/></iq>",
], ids=["message", "presence", "iq"])
def test_stanzas_before_auth(server, raw, bystander, stanza):
    c = offender(server, raw, "tls")
    c.send(stanza)
    expect_error(c, "not-authorized")
    still_fine(server, bystander)


def test_stanza_before_tls(server, raw, bystander):
    c = offender(server, raw, "stream")
    c.send("<message to='bob@localhost'><body>in clear</body></message>")
    # RFC 6120 5.3.1 / 4.9.3.12: TLS is mandatory here; not-authorized (or
    # policy-violation, for a stream that must be encrypted first)
    expect_error(c, "not-authorized", "policy-violation")
    still_fine(server, bystander)


def _try_login(server, raw, user, password):
    c = raw(server.port)
    c.start()
    c.starttls()
    try:
        c.auth_scram(user, password)
    except AuthFailed as e:
        c.close()
        return e.condition
    c.close()
    return "success"


@pytest.mark.pv_timeout(90)
def test_wrong_passwords_per_account_throttled(server_factory, raw):
    server = server_factory({"limits": {"auth_failures_per_account": 5, "auth_failures_per_ip": 10}})
    bystander = login_raw(raw, server, "bob", "bystander", presence=True)
    results = [_try_login(server, raw, "alice", f"guess-{i}") for i in range(6)]
    assert results[:5] == ["not-authorized"] * 5, results
    assert results[5] == "temporary-auth-failure", \
        f"6th wrong password (auth_failures_per_account 5): {results[5]}"
    # while throttled, even the right password is refused: no oracle for guessing
    assert _try_login(server, raw, "alice", USERS["alice"]) == "temporary-auth-failure"
    # another account is not locked by alice's failures
    assert _try_login(server, raw, "carol", USERS["carol"]) == "success"
    still_fine(server, bystander)


@pytest.mark.pv_timeout(90)
def test_wrong_passwords_per_ip_throttled(server_factory, raw):
    srv = server_factory({"limits": {"auth_failures_per_ip": 10, "auth_failures_per_account": 100}})
    bystander = login_raw(raw, srv, "bob", "bystander", presence=True)
    users = ["alice", "carol", "nobody1", "nobody2", "nobody3"]
    results = [_try_login(srv, raw, users[i % len(users)], f"guess-{i}") for i in range(11)]
    assert results[:10] == ["not-authorized"] * 10, results
    assert results[10] == "temporary-auth-failure", f"11th failure from one IP: {results[10]}"
    still_fine(srv, bystander)


# --- slow peers ---------------------------------------------------------------------------

@pytest.mark.pv_timeout(60)
def test_slowloris(server_factory, raw):
    srv = server_factory({"limits": {"auth_timeout": "2s"}})
    bystander = login_raw(raw, srv, "bob", "bystander", presence=True)
    t0 = time.monotonic()
    header_only = raw(srv.port)
    header_only.start()
    after_tls = raw(srv.port)
    after_tls.start()
    after_tls.starttls()
    silent = raw(srv.port)
    dribbler = raw(srv.port)
    dribble = STREAM_HEAD.encode()
    for c in (header_only, after_tls):
        cond = c.expect_stream_error(timeout=10)
        assert cond == "connection-timeout", cond
        c.expect_closed()
    # a connection that never completes its stream header: closed (no stream to error on)
    i = 0
    while not dribbler.eof and time.monotonic() - t0 < 10:
        if i < len(dribble):
            dribbler.send(dribble[i:i + 1], ignore_errors=True)
            i += 1
        dribbler._pump(0.25)
    assert dribbler.eof, "a client dribbling one byte every 0.25 s was never cut off"
    silent.expect_closed(timeout=8)
    elapsed = time.monotonic() - t0
    assert elapsed < 12, f"auth_timeout 2s but connections lived {elapsed:.1f}s"
    # authenticated sessions are not subject to auth_timeout
    still_fine(srv, bystander)


@pytest.mark.pv_timeout(60)
@pytest.mark.parametrize("idle", [2, 9], ids=["before-trim", "after-trim"])
def test_idle_timeout(server_factory, raw, idle):
    """9 s: the session is trimmed after 5 s idle and its timer then sleeps until the
    idle timeout (c2s.c slow_tick): the timeout must still come on time."""
    srv = server_factory({"limits": {"idle_timeout": f"{idle}s"}})
    c = login_raw(raw, srv, "alice", "idle")
    c.auto_pong = False             # a dead client: not even keepalive answers
    t0 = time.monotonic()
    cond = c.expect_stream_error(timeout=idle + 15)
    assert cond == "connection-timeout", cond
    c.expect_closed()
    elapsed = time.monotonic() - t0
    assert idle - 0.5 <= elapsed < idle + 6, f"idle_timeout {idle}s, cut after {elapsed:.1f}s"


@pytest.mark.pv_timeout(120)
@pytest.mark.parametrize("idle_first", [False, True], ids=["busy", "idle-first"])
def test_slow_reader_is_cut_off(server_factory, raw, idle_first):
    """idle-first: bob was idle (trimmed, timer asleep until the idle timeout) when the
    backlog began; the output check must wake his timer for the grace period."""
    srv = server_factory({"limits": {"max_output_buffer": "64k"}, "log_level": "info"})
    alice = login_raw(raw, srv, "alice", "sender", presence=True)
    bob = raw(srv.port, rcvbuf=4096)
    bob.login("bob", USERS["bob"], resource="slow", presence=True)
    bob.presence(to=alice.jid)                   # so alice learns when bob's session ends
    alice.next(lambda e: is_presence(e, frm=bob.jid), what="bob's directed presence")
    if idle_first:
        time.sleep(7)
    payload = "z" * 16384
    # control: a client that keeps reading gets 640 KiB (sent 32 KiB per round trip,
    # never more than half the limit at once) without being cut off
    carol = raw(srv.port)
    carol.login("carol", USERS["carol"], resource="fast", presence=True)
    def read_all():
        deadline = time.monotonic() + 8
        while (not carol.eof and time.monotonic() < deadline
               and len([e for e in carol.seen if is_message(e)]) < 40):
            carol._pump(0.2)
    reader = threading.Thread(target=read_all, daemon=True)
    reader.start()
    for i in range(40):
        alice.message(carol.jid, f"{i}:{payload}")
        if i % 2:
            alice.ping(timeout=10)
    reader.join(10)
    got = [e for e in carol.seen if is_message(e)]
    assert len(got) == 40 and not carol.eof, \
        f"a reading client was cut off (got {len(got)} of 40, eof {carol.eof})"
    sent, cut = 0, False
    while sent < 800 and not cut:
        for _ in range(20):
            alice.message(bob.jid, f"{sent}:{payload}")
            sent += 1
        t = time.monotonic()
        alice.ping(timeout=10)
        assert time.monotonic() - t < 5, "the sender was slowed down by the slow reader"
        cut = bool(alice.collect(lambda e: is_presence(e, frm=bob.jid, type="unavailable"), 0))
    # bob finally reads: the connection must end before everything arrived
    deadline = time.monotonic() + 30
    while not bob.eof and time.monotonic() < deadline:
        bob._pump(0.5)
    got = len([e for e in bob.seen if is_message(e)])
    print(f"slow reader: sent {sent} x 16 KiB, cut noticed by sender: {cut}, reader got {got}")
    assert bob.eof, f"slow reader still connected after {sent} x 16 KiB (got {got})"
    assert got < sent, f"slow reader received all {sent} messages: not cut off"
    alice.ping()
    assert srv.running()


# --- TLS and compression ---------------------------------------------------------------

def test_bytes_after_starttls_are_discarded(server, raw, bystander):
    c = raw(server.port)
    c.start()
    c.send(f"<starttls xmlns='{NS_TLS}'/>"
           "<message to='bob@localhost' type='chat' id='inj1'><body>injected</body></message>"
           f"<iq type='get' id='inj2' to='localhost'><ping xmlns='{NS_PING}'/></iq>"
           f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>"
           + base64.b64encode(b"\0alice\0" + USERS["alice"].encode()).decode() + "</auth>")
    el = c.next(lambda e: local(e.tag) in ("proceed", "failure", "error"), what="<proceed/>")
    assert local(el.tag) == "proceed", to_str(el)
    c.wrap_tls()                     # the handshake must work: no junk fed into TLS
    f = c.start()
    assert "SCRAM-SHA-256" in c.mechanisms(f), \
        f"features after TLS say we are authenticated already? {to_str(f)}"
    c.auth_scram("alice", USERS["alice"])
    c.bind("after-injection")
    c.ping()
    late = c.collect(lambda e: e.get("id") in ("inj1", "inj2"), 1.0)
    assert not late, f"bytes sent before the TLS handshake were processed: {to_str(late[0])}"
    bystander.drain(0.3)
    assert not [e for e in bystander.inbox if is_message(e, body="injected")], "injected message delivered"
    still_fine(server, bystander)


def test_compression_is_refused(server, raw, bystander):
    c = offender(server, raw, "auth")
    for f in [e for e in c.seen if e.tag == f"{{{NS_STREAM}}}features"]:
        assert f.find(f"{{{NS_COMPRESS_FEATURE}}}compression") is None, \
            f"server offers stream compression: {to_str(f)}"
    c.send(f"<compress xmlns='{NS_COMPRESS}'><method>zlib</method></compress>")
    el = c.next(lambda e: e.tag in (f"{{{NS_COMPRESS}}}failure", f"{{{NS_COMPRESS}}}compressed",
                                    f"{{{NS_STREAM}}}error"), what="answer to <compress/>")
    assert el.tag != f"{{{NS_COMPRESS}}}compressed", "the server started compressing"
    if el.tag == f"{{{NS_STREAM}}}error":
        cond = local(list(el)[0].tag)
        assert cond in ("unsupported-stanza-type", "policy-violation"), to_str(el)
        c.expect_closed()
    else:
        assert local(list(el)[0].tag) in ("setup-failed", "unsupported-method"), to_str(el)
        c.ping()                     # still plain XML on the wire
    still_fine(server, bystander)


@pytest.mark.pv_timeout(60)
def test_read_rate_throttles_a_flooder(server_factory, raw):
    srv = server_factory({"limits": {"read_rate": "64k"}, "log_level": "info"})
    bystander = login_raw(raw, srv, "bob", "bystander", presence=True)
    flooder = login_raw(raw, srv, "alice", "flood")
    chunk = "f" * (60 * 1024)
    t0 = time.monotonic()
    data = "".join(f"<message to='{bystander.jid}' type='chat'><body>{i}:{chunk}</body></message>"
                   for i in range(6))
    threading.Thread(target=flooder.send, args=(data, True), daemon=True).start()
    rtts = []
    got = 0
    while got < 6 and time.monotonic() - t0 < 20:
        got += len(bystander.collect(lambda e: is_message(e), 0.3))
        t = time.monotonic()
        bystander.ping(timeout=5)
        rtts.append(time.monotonic() - t)
    elapsed = time.monotonic() - t0
    assert got == 6, f"only {got} of 6 messages arrived in {elapsed:.1f}s (throttle, do not drop)"
    assert elapsed >= 2.5, f"~360 KiB at read_rate 64k arrived in {elapsed:.2f}s: not throttled"
    assert max(rtts) < 2, f"the other session waited {max(rtts):.2f}s for a ping"
    flooder.ping(timeout=10)          # throttled, not disconnected


# --- TLS records (src/net/tlsrec.c does a server's TLS 1.3 records) -------------------

@pytest.mark.parametrize("record,alert", [
    (bytes([23, 3, 3, 0, 40]) + bytes(40), "BAD_RECORD_MAC"),        # not sealed by the key
    (bytes([20, 3, 3, 0, 1, 1]), "UNEXPECTED_MESSAGE"),              # change_cipher_spec now
    (bytes([21, 3, 3, 0, 2, 2, 40]), "UNEXPECTED_MESSAGE"),          # an unprotected alert
    (bytes([23, 3, 3, 0x41, 0x01]), "RECORD_OVERFLOW"),              # longer than 2^14 + 256
], ids=["bad-mac", "ccs", "plain-alert", "overflow"])
def test_bad_tls_record_gets_its_alert(server_factory, raw, record, alert):
    """A record the TLS 1.3 rules refuse, written under the client's TLS layer: the
    server answers with the RFC 8446 alert, closes that connection only, and logs it."""
    srv = server_factory({"log_level": "info"})
    bystander = login_raw(raw, srv, "bob", "bystander", presence=True)
    c = offender(srv, raw, "auth")
    assert c.sock.version() == "TLSv1.3"
    under = socket.socket(fileno=os.dup(c.sock.fileno()))
    under.sendall(record)
    under.close()
    with pytest.raises(ssl.SSLError, match=alert):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            c.sock.settimeout(1)
            try:
                if not c.sock.recv(65536):
                    break
            except socket.timeout:
                pass
    deadline = time.monotonic() + 5
    while "tls record refused" not in srv.log_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "tls record refused" in srv.log_text(), srv.log_tail(30)
    still_fine(srv, bystander)
