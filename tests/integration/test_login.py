"""Logging in: STARTTLS and direct TLS (XEP-0368), SCRAM (RFC 5802/7677), PLAIN only
over TLS (RFC 6120 6.4), resource binding (RFC 6120 7), in-band registration (XEP-0077)."""
import base64
import socket
import ssl

import pytest

from helpers import USERS, jid, list_users
from pvserver import host_config
from rawxmpp import (NS_BIND, NS_SASL, NS_STREAM, NS_TLS, AuthFailed, RawClient, local,
                     stanza_error_condition, to_str)
from slixclient import LoginFailed

NS_REGISTER_FEATURE = "http://jabber.org/features/iq-register"
NS_REGISTER = "jabber:iq:register"


# --- alice logs in ------------------------------------------------------------------

@pytest.mark.parametrize("direct_tls", [False, True], ids=["starttls", "direct-tls"])
def test_alice_logs_in_with_scram_sha256(server, slix, run, direct_tls):
    alice = slix(jid("alice"), USERS["alice"])

    async def scenario():
        await alice.login(server.tls_port if direct_tls else server.port, direct_tls=direct_tls)
        assert "SCRAM-SHA-256" in alice.mechanisms_offered, alice.mechanisms_offered
        assert alice.used_mechanism() == "SCRAM-SHA-256"
        assert alice.boundjid.bare == jid("alice")
        assert alice.boundjid.resource, "server bound no resource"
        # the session works: the server answers a ping
        await alice["xep_0199"].ping(jid=alice.boundjid.domain, timeout=10)
    run(scenario())


@pytest.mark.parametrize("mech", ["SCRAM-SHA-256", "SCRAM-SHA-1"])
def test_scram_exchange_is_exact(server, raw, mech):
    """The raw client checks the server signature (mutual auth) and the iteration count."""
    c = raw(server.port)
    f = c.start()
    assert f.find(f"{{{NS_TLS}}}starttls") is not None
    c.starttls()
    assert mech in c.mechanisms(), c.mechanisms()
    c.auth_scram("alice", USERS["alice"], mech)
    assert c.scram.iterations == 4096, "scram_iterations from the config not used"
    assert c.bind("r1") == jid("alice") + "/r1"
    c.ping()


def test_scram_with_direct_tls_raw(server, raw):
    c = raw(server.tls_port, direct_tls=True)
    c.start()
    assert c.has_feature(f"{{{NS_TLS}}}starttls") is False, \
        "STARTTLS offered on a stream that is already TLS"
    c.auth_scram("bob", USERS["bob"])
    c.bind("direct")
    c.ping()


@pytest.mark.parametrize("who", ["alice", "nosuchuser"])
def test_wrong_password_is_not_authorized(server, slix, run, who):
    c = slix(jid(who), "wrong-password")

    async def scenario():
        with pytest.raises(LoginFailed) as ei:
            await c.login(server.port)
        assert ei.value.condition == "not-authorized", str(ei.value)
    run(scenario())


def test_wrong_password_raw_and_retry_with_right_one(server, raw):
    c = raw(server.port)
    c.start()
    c.starttls()
    with pytest.raises(AuthFailed) as ei:
        c.auth_scram("alice", "not-her-password")
    assert ei.value.condition == "not-authorized"
    # RFC 6120 6.4.5: the server SHOULD allow a few retries on the same stream
    c2 = raw(server.port)
    c2.login("alice", USERS["alice"])
    c2.ping()


def test_plain_not_offered_before_tls(server, raw):
    c = raw(server.port)
    f = c.start()
    tls = f.find(f"{{{NS_TLS}}}starttls")
    assert tls is not None, f"no STARTTLS offered: {to_str(f)}"
    assert tls.find(f"{{{NS_TLS}}}required") is not None, \
        "require_encryption: true but <starttls/> is not marked <required/>"
    assert "PLAIN" not in c.mechanisms(f), f"PLAIN offered before TLS: {to_str(f)}"
    # Trying it anyway must not authenticate.
    blob = base64.b64encode(b"\0alice\0" + USERS["alice"].encode()).decode()
    c.send(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{blob}</auth>")
    el = c.next(lambda e: ns_ok(e), what="SASL failure or stream error")
    assert local(el.tag) != "success", "PLAIN succeeded over an unencrypted stream"
    if el.tag == f"{{{NS_STREAM}}}error":
        c.expect_closed()
    else:
        assert local(el.tag) == "failure", to_str(el)


def ns_ok(e):
    return e.tag.startswith(f"{{{NS_SASL}}}") or e.tag == f"{{{NS_STREAM}}}error"


def test_plain_works_over_tls(server, raw):
    c = raw(server.port)
    c.start()
    c.starttls()
    assert "PLAIN" in c.mechanisms(), f"PLAIN not offered over TLS: {c.mechanisms()}"
    c.auth_plain("carol", USERS["carol"])
    c.bind("plain")
    c.ping()


def test_mechanisms_after_tls(server, raw):
    c = raw(server.port)
    c.start()
    c.starttls()
    mechs = c.mechanisms()
    for m in ("SCRAM-SHA-256", "SCRAM-SHA-1"):
        assert m in mechs, mechs
    assert not c.has_feature(f"{{{NS_TLS}}}starttls"), "STARTTLS offered twice"


def test_channel_binding_offered_per_tls_version(server, raw):
    """SCRAM-*-PLUS is offered with the binding types this connection can verify
    (XEP-0440): tls-exporter (RFC 9266) and, for older clients, tls-unique on TLS 1.3;
    tls-unique (RFC 5929) on TLS 1.2."""
    cases = ((None, {"tls-exporter", "tls-unique"}), (ssl.TLSVersion.TLSv1_2, {"tls-unique"}))
    for max_v, want in cases:
        c = raw(server.tls_port)
        c.wrap_tls(max_version=max_v)
        f = c.start()
        assert "SCRAM-SHA-256-PLUS" in c.mechanisms(f), (max_v, c.mechanisms(f))
        cb = f.find("{urn:xmpp:sasl-cb:0}sasl-channel-binding")
        assert cb is not None, to_str(f)
        got = {x.get("type") for x in cb.findall("{urn:xmpp:sasl-cb:0}channel-binding")}
        assert got == want, (max_v, got)
        c.close()


# --- resources ------------------------------------------------------------------------

def test_server_generates_resource(server, raw):
    c = raw(server.port)
    c.start()
    c.starttls()
    c.auth_scram("alice", USERS["alice"])
    full = c.bind(None)
    bare, _, res = full.partition("/")
    assert bare == jid("alice") and res, full


def test_several_resources_and_conflict(server, raw):
    r1 = raw(server.port)
    r1.login("alice", USERS["alice"], resource="home")
    r2 = raw(server.port)
    r2.login("alice", USERS["alice"], resource="work")
    r1.ping()
    r2.ping()
    # Same resource a third time: RFC 6120 7.7.2.2 allows refusing the new one
    # (<conflict/>), disconnecting the old one (stream error <conflict/>) or
    # assigning another resource.  Whatever it does must be consistent.
    r3 = raw(server.port)
    r3.start()
    r3.starttls()
    r3.auth_scram("alice", USERS["alice"])
    res = r3.iq("set", f"<bind xmlns='{NS_BIND}'><resource>home</resource></bind>", to="")
    if res.get("type") == "error":
        assert stanza_error_condition(res) == "conflict", to_str(res)
        r1.ping()
    else:
        bound = res.find(f"{{{NS_BIND}}}bind/{{{NS_BIND}}}jid").text
        if bound == jid("alice") + "/home":
            cond = r1.expect_stream_error()
            assert cond == "conflict", cond
            r1.expect_closed()
        else:
            assert bound.startswith(jid("alice") + "/"), bound
            r1.ping()
    r2.ping()


# --- in-band registration (XEP-0077) -----------------------------------------------

REG_ON = {"hosts": {"localhost": {"register": {"allow": True, "rate_per_ip": "5/1m"}}}}


def test_register_then_login(server_factory, slix, run):
    srv = server_factory(REG_ON, users={})
    newbie = slix(jid("dave"), "dave-secret-1", register=True)
    registered = []

    async def on_register(form):
        iq = newbie.Iq()
        iq["type"] = "set"
        iq["register"]["username"] = "dave"
        iq["register"]["password"] = "dave-secret-1"
        await iq.send(timeout=10)
        registered.append(True)
    newbie.add_event_handler("register", on_register)

    async def scenario():
        await newbie.login(srv.port)
        assert registered, "slixmpp saw no iq-register stream feature"
        assert newbie.used_mechanism() == "SCRAM-SHA-256"
        await newbie.quit()
        # and the account persists: log in again, without registering
        again = slix(jid("dave"), "dave-secret-1")
        await again.login(srv.port)
    run(scenario())
    assert "dave@localhost" in list_users(srv)


def _pre_auth(raw, port):
    c = raw(port)
    c.start()
    f = c.starttls()
    return c, f


def test_register_raw_form_and_conflict(server_factory, raw):
    srv = server_factory(REG_ON)
    c, f = _pre_auth(raw, srv.port)
    assert f.find(f"{{{NS_REGISTER_FEATURE}}}register") is not None, \
        f"register allow: true but no iq-register feature: {to_str(f)}"
    form = c.iq("get", f"<query xmlns='{NS_REGISTER}'/>", to="")
    assert form.get("type") == "result", to_str(form)
    q = form.find(f"{{{NS_REGISTER}}}query")
    assert q.find(f"{{{NS_REGISTER}}}username") is not None
    assert q.find(f"{{{NS_REGISTER}}}password") is not None
    taken = c.iq("set", f"<query xmlns='{NS_REGISTER}'><username>alice</username>"
                 f"<password>x-new</password></query>", to="")
    assert stanza_error_condition(taken) == "conflict", to_str(taken)
    # alice's password did not change
    a = raw(srv.port)
    a.login("alice", USERS["alice"])


def test_register_is_off_by_default(server, raw):
    c, f = _pre_auth(raw, server.port)
    assert f.find(f"{{{NS_REGISTER_FEATURE}}}register") is None, \
        "iq-register feature offered although registration is off by default"
    res = c.iq("set", f"<query xmlns='{NS_REGISTER}'><username>eve</username>"
               f"<password>eve-pw</password></query>", to="")
    assert res.get("type") == "error", to_str(res)
    assert "eve@localhost" not in list_users(server)


@pytest.mark.pv_timeout(90)
def test_register_rate_limited_per_ip(server_factory, raw):
    srv = server_factory(REG_ON, users={})
    answers = []
    for i in range(6):
        c, _ = _pre_auth(raw, srv.port)
        res = c.iq("set", f"<query xmlns='{NS_REGISTER}'><username>user{i}</username>"
                   f"<password>pw{i}</password></query>", to="")
        answers.append(res)
        c.close()
    for i in range(5):
        assert answers[i].get("type") == "result", f"registration {i}: {to_str(answers[i])}"
    assert answers[5].get("type") == "error", \
        f"6th registration from one IP within a minute accepted (rate_per_ip 5/1m)"
    users = list_users(srv)
    assert "user4@localhost" in users and "user5@localhost" not in users, users


# --- TLS ---------------------------------------------------------------------------------

def _tls(port, server_hostname="localhost", min_v=None, max_v=None, ciphers=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if min_v:
        ctx.minimum_version = min_v
    if max_v:
        ctx.maximum_version = max_v
    if ciphers:
        ctx.set_ciphers(ciphers)
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        t = ctx.wrap_socket(s, server_hostname=server_hostname)
    except (ssl.SSLError, OSError):
        s.close()
        raise
    info = (t.version(), t.cipher()[0], t.getpeercert(binary_form=True))
    t.close()
    return info


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_tls_versions_and_ciphers(server):
    version, cipher, _ = _tls(server.tls_port)
    assert version == "TLSv1.3", version
    version, cipher, _ = _tls(server.tls_port, max_v=ssl.TLSVersion.TLSv1_2)
    assert version == "TLSv1.2"
    assert ("GCM" in cipher or "CHACHA20" in cipher) and "ECDHE" in cipher, \
        f"TLS 1.2 negotiated {cipher}: not a modern (ECDHE + AEAD) suite"
    # old protocol versions are refused (the client side is opened up with SECLEVEL=0)
    for old in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        with pytest.raises((ssl.SSLError, OSError)):
            _tls(server.tls_port, min_v=old, max_v=old, ciphers="DEFAULT:@SECLEVEL=0")
    # and so are suites without forward secrecy or AEAD
    with pytest.raises((ssl.SSLError, OSError)):
        _tls(server.tls_port, max_v=ssl.TLSVersion.TLSv1_2,
             ciphers="AES128-SHA:AES256-SHA:AES128-SHA256:DES-CBC3-SHA:@SECLEVEL=0")
    # the server is still fine
    c = RawClient(server.port)
    c.login("alice", USERS["alice"])
    c.ping()
    c.close()


@pytest.mark.parametrize("direct_tls", [False, True], ids=["starttls", "direct-tls"])
def test_tls13_session_ticket_resumes(server, raw, direct_tls):
    """The server's one TLS 1.3 ticket (sent with its first reply after the handshake,
    src/net/conn.c) lets the client resume: no certificate, no signature."""
    port = server.tls_port if direct_tls else server.port
    first = raw(port, direct_tls=direct_tls)
    first.start()
    if not direct_tls:
        first.starttls()
    assert first.sock.version() == "TLSv1.3"
    sess = first.tls_session()
    assert sess.has_ticket, "no session ticket came with the stream features"
    assert not first.sock.session_reused
    first.auth_scram("alice", USERS["alice"])
    first.bind("one")
    first.ping()

    again = RawClient(port)
    if direct_tls:
        again.wrap_tls(session=sess)
        again.start()
    else:
        again.start()
        again.starttls(session=sess)
    assert again.sock.session_reused, "the ticket was not accepted"
    again.auth_scram("alice", USERS["alice"])
    again.bind("two")
    again.ping()
    again.close()


def test_sni_selects_the_host_certificate(server_factory, raw):
    srv = server_factory({"hosts": {"second.localhost": host_config("second.localhost")}})
    first = _tls(srv.tls_port, "localhost")[2]
    second = _tls(srv.tls_port, "second.localhost")[2]
    certs = srv.data_dir / "certs"
    assert first == ssl.PEM_cert_to_DER_cert((certs / "localhost.crt").read_text())
    assert second == ssl.PEM_cert_to_DER_cert((certs / "second.localhost.crt").read_text())
    assert first != second


def test_jids_are_normalised(server, raw):
    bob = raw(server.port)
    bob.login("bob", USERS["bob"], resource="Phone", presence=True)
    alice = raw(server.port)
    alice.login("alice", USERS["alice"], resource="a")
    # RFC 7622: localpart and domainpart are case-insensitive, the resource is not
    alice.message("BOB@LocalHost", "to the upper-case bare jid")
    m = bob.wait_message("to the upper-case bare jid")
    assert m.get("from") == jid("alice") + "/a"
    alice.message("Bob@LOCALHOST/Phone", "to the upper-case full jid")
    bob.wait_message("to the upper-case full jid")
    alice.ping(to="LOCALHOST")
    # a SCRAM username in another case is the same account
    c = raw(server.port)
    c.login("ALICE", USERS["alice"], resource="upper")
    assert c.jid == jid("alice") + "/upper", c.jid
