"""Logging in with XEP-0388 (SASL2: no stream restart) and XEP-0386 (Bind 2: the
resource bound inside the authentication), beside RFC 6120's SASL and binding; and
XEP-0198 inline in both (enable inside the binding, resumption inside the
authentication: a reconnecting phone is back in one round trip after TLS)."""
import base64
import time

import pytest

from helpers import USERS, jid
from rawxmpp import (NS_BIND, NS_BIND2, NS_SASL, NS_SASL2, NS_SM, NS_STANZAS,
                     AuthFailed, body_of, is_message, local, stanza_error_condition, to_str)


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
    # XEP-0198 inline: resumption in the authentication, enable in the binding
    assert inline.find(f"{{{NS_SM}}}sm") is not None, to_str(f)
    feats = [x.get("var") for x in
             inline.findall(f"{{{NS_BIND2}}}bind/{{{NS_BIND2}}}inline/{{{NS_BIND2}}}feature")]
    assert feats == [NS_SM], to_str(f)


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


# --- XEP-0198 inline ------------------------------------------------------------------

ENABLE = f"<enable xmlns='{NS_SM}' resume='true'/>"


def resume_el(previd, h):
    return f"<resume xmlns='{NS_SM}' previd='{previd}' h='{h}'/>"


def sm_child(ok, name):
    return ok.find(f"{{{NS_SM}}}{name}")


def sm_phone(raw, server, user="bob", tag="phone"):
    """A SASL2 login that binds and enables resumable SM in the same round trip."""
    c = tls_stream(raw, server, direct_tls=True)
    ok = c.auth_sasl2(user, USERS[user], bind=True, tag=tag, bind_extra=ENABLE)
    enabled = ok.find(f"{{{NS_BIND2}}}bound/{{{NS_SM}}}enabled")
    assert enabled is not None and enabled.get("resume") == "true" and enabled.get("id"), \
        to_str(ok)
    c.sm_enabled, c.sm_in, c.sm_out, c.sm_id = True, 0, 0, enabled.get("id")
    return c, ok


def test_enable_inside_bind2_counts_from_the_first_stanza(server, raw):
    c, ok = sm_phone(raw, server)
    assert int(ok.find(f"{{{NS_BIND2}}}bound/{{{NS_SM}}}enabled").get("max")) > 0, to_str(ok)
    assert not c.has_feature(f"{{{NS_SM}}}sm"), "SM offered again after it was enabled inline"
    # enabling again on this stream is refused (XEP-0198 3: at most once)
    c.send(f"<enable xmlns='{NS_SM}'/>")
    el = c.next(lambda e: ns_is_sm(e) and local(e.tag) in ("enabled", "failed"),
                what="answer to a second <enable/>")
    assert local(el.tag) == "failed" and el.find(f"{{{NS_STANZAS}}}unexpected-request") \
        is not None, to_str(el)
    c.ping()
    c.message(c.jid, "to myself")
    c.wait_message("to myself")
    assert c.request_ack() == 2, "the server counts the ping and the message, nothing before"
    assert c.sm_in == 2, "the server sent two stanzas since the inline enable"


def ns_is_sm(el):
    return el.tag.startswith(f"{{{NS_SM}}}")


def test_resume_inside_authenticate_skips_bind2_and_retransmits(server, raw):
    bob, _ = sm_phone(raw, server)
    bob.auto_ack = False
    bob.presence()
    old_full, previd = bob.jid, bob.sm_id
    alice = tls_stream(raw, server)
    alice.auth_sasl2("alice", USERS["alice"], bind=True)
    for i in (1, 2):
        alice.message(old_full, f"m{i}")
    first = bob.wait_message("m1")
    h = bob.h_of[id(first)]
    bob.wait_message("m2")
    bob_sent = bob.sm_out
    bob.abort()
    time.sleep(0.3)
    alice.message(old_full, "m3")   # while bob is away
    alice.ping()

    bob2 = tls_stream(raw, server, direct_tls=True)
    # the binding beside the resumption must be ignored when the resumption works
    ok = bob2.auth_sasl2("bob", USERS["bob"], bind=True, tag="other", bind_extra=ENABLE,
                         extra=resume_el(previd, h))
    resumed = sm_child(ok, "resumed")
    assert resumed is not None, to_str(ok)
    assert resumed.get("previd") == previd and int(resumed.get("h")) == bob_sent, to_str(ok)
    assert ok.find(f"{{{NS_BIND2}}}bound") is None, "bound a resource on a resumed session"
    assert bob2.jid == old_full, "the authorization identifier is the resumed session's JID"
    assert not bob2.has_feature(f"{{{NS_SM}}}sm") and \
        not bob2.has_feature(f"{{{NS_BIND}}}bind"), to_str(bob2.features)
    got = [body_of(e) for e in bob2.collect(lambda e: is_message(e), 1.5)]
    assert got == ["m2", "m3"], f"retransmitted after the inline resumption: {got}"
    alice.message(old_full, "m4")
    bob2.wait_message("m4")
    bob2.ping()


def test_failed_inline_resume_still_binds(server, raw):
    c = tls_stream(raw, server)
    ok = c.auth_sasl2("bob", USERS["bob"], bind=True, tag="fresh", bind_extra=ENABLE,
                      extra=resume_el("no-such-session", 0))
    failed = sm_child(ok, "failed")
    assert failed is not None and failed.find(f"{{{NS_STANZAS}}}item-not-found") is not None, \
        to_str(ok)
    bound = ok.find(f"{{{NS_BIND2}}}bound")
    assert bound is not None and bound.find(f"{{{NS_SM}}}enabled") is not None, to_str(ok)
    assert c.jid.startswith(jid("bob") + "/fresh/"), c.jid
    c.ping()
    # a <resume/> without its attributes is a bad request, answered the same way
    d = tls_stream(raw, server)
    ok = d.auth_sasl2("bob", USERS["bob"], extra=f"<resume xmlns='{NS_SM}'/>")
    failed = sm_child(ok, "failed")
    assert failed is not None and failed.find(f"{{{NS_STANZAS}}}bad-request") is not None, \
        to_str(ok)
    assert d.has_feature(f"{{{NS_BIND}}}bind") and d.has_feature(f"{{{NS_SM}}}sm")


def test_inline_resume_of_someone_elses_session_fails(server, raw):
    alice, _ = sm_phone(raw, server, "alice")
    carol = tls_stream(raw, server)
    ok = carol.auth_sasl2("carol", USERS["carol"], bind=True, extra=resume_el(alice.sm_id, 0))
    failed = sm_child(ok, "failed")
    assert failed is not None and failed.find(f"{{{NS_STANZAS}}}item-not-found") is not None, \
        to_str(ok)
    assert carol.jid.startswith(jid("carol") + "/"), carol.jid
    carol.ping()
    alice.ping()    # not taken over


def test_inline_resume_with_h_too_high_is_a_stream_error(server, raw):
    bob, _ = sm_phone(raw, server)
    bob.ping()
    previd = bob.sm_id
    bob.abort()
    time.sleep(0.3)
    c = tls_stream(raw, server)
    with pytest.raises(AuthFailed) as e:
        c.auth_sasl2("bob", USERS["bob"], extra=resume_el(previd, 50))
    assert e.value.condition == "stream-error:undefined-condition", e.value.condition
    assert e.value.el.find(f"{{{NS_SM}}}handled-count-too-high") is not None, \
        to_str(e.value.el)
    # the session is still there to resume with a right h
    c2 = tls_stream(raw, server)
    ok = c2.auth_sasl2("bob", USERS["bob"], extra=resume_el(previd, 1))
    assert sm_child(ok, "resumed") is not None, to_str(ok)
    c2.ping()


def test_inline_resume_takes_over_a_live_connection(server, raw):
    bob, _ = sm_phone(raw, server)
    previd = bob.sm_id
    c = tls_stream(raw, server)
    ok = c.auth_sasl2("bob", USERS["bob"], extra=resume_el(previd, 0))
    assert sm_child(ok, "resumed") is not None, to_str(ok)
    assert bob.expect_stream_error() == "conflict"
    c.ping()


def test_failed_authentication_processes_nothing_inline(server, raw):
    bob, _ = sm_phone(raw, server)
    previd = bob.sm_id
    c = tls_stream(raw, server)
    with pytest.raises(AuthFailed):
        c.auth_sasl2("bob", "wrong", extra=resume_el(previd, 0))
    bob.ping()      # still connected: nothing was resumed
    # the next attempt on the stream carries only its own requests
    ok = c.auth_sasl2("bob", USERS["bob"])
    assert sm_child(ok, "resumed") is None and sm_child(ok, "failed") is None, to_str(ok)
    assert c.has_feature(f"{{{NS_BIND}}}bind"), to_str(c.features)


# --- stable resources (XEP-0386 "Resource identifier generation") ----------------------

def ua(id_):
    return (f"<user-agent xmlns='{NS_SASL2}' id='{id_}'><software>raw</software>"
            f"<device>test</device></user-agent>")


def test_user_agent_id_gives_a_stable_resource_and_replaces_the_old_session(server, raw):
    uid = "d4c5e0b2-7f4e-4a8e-9a51-3f0c8f1e2a77"
    a = tls_stream(raw, server)
    a.auth_sasl2("alice", USERS["alice"], bind=True, tag="Phone", extra=ua(uid))
    bare, _, res = a.jid.partition("/")
    assert bare == jid("alice") and res.startswith("Phone/"), a.jid
    assert uid not in a.jid and uid.replace("-", "") not in a.jid, "the id must not show"
    a.ping()
    b = tls_stream(raw, server)
    b.auth_sasl2("alice", USERS["alice"], bind=True, tag="Phone", extra=ua(uid))
    assert b.jid == a.jid, "the same client must get the same resource"
    assert a.expect_stream_error() == "conflict"
    b.ping()
    # another client of the account, or the same id on another account: other resources
    c = tls_stream(raw, server)
    c.auth_sasl2("alice", USERS["alice"], bind=True, tag="Phone", extra=ua(uid + "-2"))
    d = tls_stream(raw, server)
    d.auth_sasl2("bob", USERS["bob"], bind=True, tag="Phone", extra=ua(uid))
    assert c.jid != b.jid and d.jid.partition("/")[2] != b.jid.partition("/")[2], (c.jid, d.jid)
    b.ping()
    c.ping()


def test_the_same_client_under_another_tag_replaces_its_session(server, raw):
    uid = "5b0b9f3c-1111-4c1e-8d7e-0d9a3e6b4c21"
    a = tls_stream(raw, server)
    a.auth_sasl2("alice", USERS["alice"], bind=True, tag="Old", extra=ua(uid))
    other = tls_stream(raw, server)
    other.auth_sasl2("alice", USERS["alice"], bind=True, tag="Old")   # no id: not the same
    b = tls_stream(raw, server)
    b.auth_sasl2("alice", USERS["alice"], bind=True, tag="New", extra=ua(uid))
    assert b.jid.partition("/")[2].startswith("New/"), b.jid
    assert b.jid.rsplit("/", 1)[1] == a.jid.rsplit("/", 1)[1], (a.jid, b.jid)
    assert a.expect_stream_error() == "conflict"
    other.ping()
    b.ping()


def test_a_phone_that_could_not_resume_gets_its_messages_at_once(server, raw):
    """The phone's old session waits to be resumed; the phone logs in afresh instead
    (it lost its SM state).  The old session is replaced at the bind, so what it held
    is rerouted now, not when its resumption time runs out."""
    uid = "0f6a2c1e-2222-4b7a-b2c4-5e8d9f0a1b3c"
    bob = tls_stream(raw, server, direct_tls=True)
    bob.auth_sasl2("bob", USERS["bob"], bind=True, tag="phone", bind_extra=ENABLE,
                   extra=ua(uid))
    bob.sm_enabled, bob.sm_in, bob.sm_out = True, 0, 0
    bob.auto_ack = False
    bob.presence()
    alice = tls_stream(raw, server)
    alice.auth_sasl2("alice", USERS["alice"], bind=True)
    alice.message(bob.jid, "held by the old session")
    bob.wait_message("held by the old session")
    bob.abort()                      # never acked
    time.sleep(0.3)
    bob2 = tls_stream(raw, server, direct_tls=True)
    bob2.auth_sasl2("bob", USERS["bob"], bind=True, tag="phone", extra=ua(uid))
    assert bob2.jid == bob.jid
    bob2.presence()                  # offline storage delivers once the session is available
    m = bob2.wait_message("held by the old session", timeout=5)
    assert m.get("to") in (bob.jid, jid("bob")), to_str(m)
