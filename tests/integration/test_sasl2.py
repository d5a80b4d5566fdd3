"""Logging in with XEP-0388 (SASL2: no stream restart) and XEP-0386 (Bind 2: the
resource bound inside the authentication), beside RFC 6120's SASL and binding."""
import base64

import pytest

from helpers import USERS, jid
from rawxmpp import (NS_BIND, NS_BIND2, NS_SASL, NS_SASL2, NS_SM, AuthFailed, local,
                     stanza_error_condition, to_str)


def tls_stream(raw, server, direct_tls=False):
    c = raw(server.tls_port if direct_tls else server.port, direct_tls=direct_tls)
    c.start()
    if not direct_tls:
        c.starttls()
    return c


def failure_of(c):
    el = c.next(lambda e: local(e.tag) == "failure", what="SASL failure")
    conds = [local(x.tag) for x in el if local(x.tag) != "text"]
    return el, conds


# --- the stream feature ------------------------------------------------------------------

def test_offered_after_tls_with_the_same_mechanisms_and_bind2(server, raw):
    c = raw(server.port)
    f = c.start()
    assert c.sasl2_mechanisms(f) == [], "SASL2 offered before TLS, where SASL is refused"
    f = c.starttls()
    assert c.sasl2_mechanisms(f) == c.mechanisms(f), to_str(f)
    assert "SCRAM-SHA-256" in c.sasl2_mechanisms(f)
    inline = f.find(f"{{{NS_SASL2}}}authentication/{{{NS_SASL2}}}inline")
    assert inline is not None and inline.find(f"{{{NS_BIND2}}}bind") is not None, to_str(f)


def test_authenticate_before_tls_is_refused(server, raw):
    c = raw(server.port)
    c.start()
    blob = base64.b64encode(b"\0alice\0" + USERS["alice"].encode()).decode()
    c.send(f"<authenticate xmlns='{NS_SASL2}' mechanism='PLAIN'><initial-response>"
           f"{blob}</initial-response></authenticate>")
    el, conds = failure_of(c)
    assert el.tag == f"{{{NS_SASL2}}}failure" and conds == ["encryption-required"], to_str(el)
    assert el.find(f"{{{NS_SASL}}}encryption-required") is not None, to_str(el)


# --- SASL2 alone ----------------------------------------------------------------------

@pytest.mark.parametrize("mech", ["SCRAM-SHA-256", "SCRAM-SHA-1"])
def test_scram_without_restart_then_rfc6120_bind(server, raw, mech):
    c = tls_stream(raw, server)
    header = dict(c.stream_attrs)
    ok = c.auth_sasl2("alice", USERS["alice"], mech)
    assert c.jid == jid("alice"), "without Bind 2 the identifier is the bare JID"
    assert ok.find(f"{{{NS_BIND2}}}bound") is None
    assert c.stream_attrs == header, "SASL2 restarted the stream"
    assert c.has_feature(f"{{{NS_BIND}}}bind") and c.has_feature(f"{{{NS_SM}}}sm"), \
        to_str(c.features)
    assert c.mechanisms() == [] and c.sasl2_mechanisms() == [], "SASL offered again"
    assert c.bind("two") == jid("alice") + "/two"
    c.ping()


def test_plain_runs_in_the_thread_pool_and_needs_no_restart(server, raw):
    c = tls_stream(raw, server, direct_tls=True)
    blob = base64.b64encode(b"\0bob\0" + USERS["bob"].encode()).decode()
    c.send(f"<authenticate xmlns='{NS_SASL2}' mechanism='PLAIN'>"
           f"<initial-response>{blob}</initial-response>"
           f"<bind xmlns='{NS_BIND2}'><tag>plain</tag></bind></authenticate>")
    ok = c.next(lambda e: local(e.tag) in ("success", "failure"), what="SASL2 outcome")
    assert ok.tag == f"{{{NS_SASL2}}}success", to_str(ok)
    assert ok.find(f"{{{NS_SASL2}}}additional-data") is None, "PLAIN has no final data"
    c.read_features()
    full = ok.find(f"{{{NS_SASL2}}}authorization-identifier").text
    assert full.startswith(jid("bob") + "/plain/"), full
    c.jid = full
    c.ping()


def test_wrong_password_then_right_one_on_the_same_stream(server, raw):
    c = tls_stream(raw, server)
    with pytest.raises(AuthFailed) as e:
        c.auth_sasl2("alice", "wrong")
    assert e.value.condition == "not-authorized"
    assert e.value.el.tag == f"{{{NS_SASL2}}}failure", to_str(e.value.el)
    c.auth_sasl2("alice", USERS["alice"], bind=True)
    c.ping()


def test_unknown_mechanism(server, raw):
    c = tls_stream(raw, server)
    c.send(f"<authenticate xmlns='{NS_SASL2}' mechanism='NOPE'/>")
    _, conds = failure_of(c)
    assert conds == ["invalid-mechanism"]
    c.auth_sasl2("alice", USERS["alice"])


def test_abort_and_a_response_in_the_other_profile(server, raw):
    c = tls_stream(raw, server)

    def begin_scram():
        first = base64.b64encode(b"n,,n=alice,r=abcdefgh").decode()
        c.send(f"<authenticate xmlns='{NS_SASL2}' mechanism='SCRAM-SHA-256'>"
               f"<initial-response>{first}</initial-response></authenticate>")
        c.next(lambda e: e.tag == f"{{{NS_SASL2}}}challenge", what="challenge")

    begin_scram()
    # RFC 6120's <response/> does not continue a XEP-0388 exchange: it ends it
    c.send(f"<response xmlns='{NS_SASL}'>AAAA</response>")
    el, conds = failure_of(c)
    assert el.tag == f"{{{NS_SASL}}}failure" and conds == ["malformed-request"], to_str(el)
    begin_scram()
    c.send(f"<abort xmlns='{NS_SASL2}'/>")
    el, conds = failure_of(c)
    assert el.tag == f"{{{NS_SASL2}}}failure" and conds == ["aborted"], to_str(el)
    c.auth_sasl2("alice", USERS["alice"], bind=True)
    c.ping()


def test_second_authenticate_is_a_stream_error(server, raw):
    c = tls_stream(raw, server)
    c.auth_sasl2("alice", USERS["alice"], bind=True)
    c.send(f"<authenticate xmlns='{NS_SASL2}' mechanism='PLAIN'/>")
    assert c.expect_stream_error() == "policy-violation"


# --- Bind 2 ---------------------------------------------------------------------------

def test_bind2_binds_a_tagged_resource_and_the_session_works(server, raw):
    c = tls_stream(raw, server)
    ok = c.auth_sasl2("alice", USERS["alice"], bind=True, tag="Phone")
    assert ok.find(f"{{{NS_BIND2}}}bound") is not None, to_str(ok)
    bare, _, res = c.jid.partition("/")
    assert bare == jid("alice") and res.startswith("Phone/") and len(res) > len("Phone/"), c.jid
    assert not c.has_feature(f"{{{NS_BIND}}}bind"), "resource binding offered on a bound stream"
    assert c.has_feature(f"{{{NS_SM}}}sm"), to_str(c.features)
    # a bound session: a second binding is refused as on any bound stream; SM and
    # messages work
    res_iq = c.iq("set", f"<bind xmlns='{NS_BIND}'/>", to="")
    assert res_iq.get("type") == "error", to_str(res_iq)
    c.sm_enable()
    bob = raw(server.port)
    bob.login("bob", USERS["bob"], presence=True)
    c.message(jid("bob"), "hello over bind 2")
    got = bob.wait_message("hello over bind 2")
    assert got.get("from") == c.jid, to_str(got)
    bob.message(c.jid, "and back")
    c.wait_message("and back", frm=bob.jid)


def test_bind2_without_a_tag_or_with_a_bad_one_gets_a_random_resource(server, raw):
    a = tls_stream(raw, server)
    a.auth_sasl2("alice", USERS["alice"], bind=True)
    b = tls_stream(raw, server)
    # with our suffix this tag makes a resource past RFC 7622's 1023 bytes: ignored
    b.auth_sasl2("alice", USERS["alice"], bind=True, tag="x" * 1020)
    for c in (a, b):
        bare, _, res = c.jid.partition("/")
        assert bare == jid("alice") and res and "/" not in res, c.jid
    assert a.jid != b.jid
    a.ping()
    b.ping()


def test_same_tag_twice_makes_two_sessions(server, raw):
    one = tls_stream(raw, server)
    one.auth_sasl2("alice", USERS["alice"], bind=True, tag="desk")
    two = tls_stream(raw, server)
    two.auth_sasl2("alice", USERS["alice"], bind=True, tag="desk")
    assert one.jid != two.jid
    one.ping()
    two.ping()


def test_bind2_over_the_resource_limit_leaves_the_stream_unbound(server_factory, raw):
    srv = server_factory({"limits": {"max_resources": 1}})
    first = raw(srv.port)
    first.login("alice", USERS["alice"], resource="only")
    c = tls_stream(raw, srv)
    ok = c.auth_sasl2("alice", USERS["alice"], bind=True, tag="more")
    assert ok.find(f"{{{NS_BIND2}}}bound") is None, to_str(ok)
    assert c.jid == jid("alice"), "the identifier names a resource that was not bound"
    assert c.has_feature(f"{{{NS_BIND}}}bind"), to_str(c.features)
    res = c.iq("set", f"<bind xmlns='{NS_BIND}'/>", to="")
    assert stanza_error_condition(res) == "resource-constraint", to_str(res)
    first.ping()
