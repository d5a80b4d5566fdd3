"""Blocking (XEP-0191) and reports attached to a block (XEP-0377): alice keeps a block
list, her resources that asked for it hear every change, a blocked sender finds her
offline, what she sends to a blocked JID comes back refused, and a report lands in the
operators' store (seen here through the server log line, which carries no text)."""
import re
import sys
from pathlib import Path

import pytest

from helpers import USERS, jid, login_raw, wait_ack, wait_until
from pvserver import DEFAULT_MODULES, host_config
from rawxmpp import NS_CLIENT, is_message, is_presence, stanza_error_condition, to_str

NS_BLOCKING = "urn:xmpp:blocking"
NS_BLOCKING_ERRORS = "urn:xmpp:blocking:errors"
NS_REPORTING = "urn:xmpp:reporting:1"
DISCO_INFO = "http://jabber.org/protocol/disco#info"
IQ = f"{{{NS_CLIENT}}}iq"
MODULES = DEFAULT_MODULES + ["blocking"]


def blocking_server(factory, blocking=None, extra_hosts=(), users=USERS):
    hosts = {"localhost": host_config("localhost", modules=MODULES,
                                      **({"blocking": blocking} if blocking else {}))}
    for h in extra_hosts:
        hosts[h] = host_config(h, modules=MODULES)
    return factory({"hosts": hosts}, users=users)


# --- small protocol helpers ------------------------------------------------------------

def blocklist(c):
    """<blocklist/> get: the JIDs, in the server's order."""
    res = c.iq("get", f"<blocklist xmlns='{NS_BLOCKING}'/>", to="")
    assert res.get("type") == "result", to_str(res)
    bl = res.find(f"{{{NS_BLOCKING}}}blocklist")
    assert bl is not None, f"result without <blocklist/>: {to_str(res)}"
    return [i.get("jid") for i in bl.findall(f"{{{NS_BLOCKING}}}item")]


def items_xml(jids, inner=None):
    inner = inner or {}
    return "".join(f"<item jid='{j}'>{inner.get(j, '')}</item>" for j in jids)


def block(c, *jids, inner=None):
    return c.iq("set", f"<block xmlns='{NS_BLOCKING}'>{items_xml(jids, inner)}</block>", to="")


def unblock(c, *jids):
    return c.iq("set", f"<unblock xmlns='{NS_BLOCKING}'>{items_xml(jids)}</unblock>", to="")


def ok(res):
    assert res.get("type") == "result", to_str(res)
    assert len(list(res)) == 0, f"block/unblock result carries a payload: {to_str(res)}"
    return res


def is_push(what):
    def pred(el):
        return (el.tag == IQ and el.get("type") == "set"
                and el.find(f"{{{NS_BLOCKING}}}{what}") is not None)
    return pred


def push_items(push, what):
    return sorted(i.get("jid") for i in push.find(f"{{{NS_BLOCKING}}}{what}")
                  .findall(f"{{{NS_BLOCKING}}}item"))


def error_of(c, id_, what="error"):
    return c.next(lambda e: e.get("id") == id_ and e.get("type") == "error", what=what)


def nothing(c, pred, what, wait=0.8):
    got = c.collect(pred, wait)
    assert not got, f"{what}: {[to_str(e) for e in got]}"


def msg_from(body):
    return lambda e: is_message(e, body=body)


def befriend(a, b):
    """RFC 6121 3.1 both ways between two available raw clients."""
    A, B = a.jid.split("/")[0], b.jid.split("/")[0]
    a.presence(to=B, type="subscribe")
    b.next(lambda e: is_presence(e, frm=A, type="subscribe"), what="subscribe from a")
    b.presence(to=A, type="subscribed")
    a.next(lambda e: is_presence(e, frm=B, type="available"), what="b's presence after approval")
    b.presence(to=A, type="subscribe")
    a.next(lambda e: is_presence(e, frm=B, type="subscribe"), what="subscribe from b")
    a.presence(to=B, type="subscribed")
    b.next(lambda e: is_presence(e, frm=A, type="available"), what="a's presence after approval")
    a.drain()
    b.drain()


# --- tests ---------------------------------------------------------------------------------

def test_disco_features(server_factory, raw):
    srv = blocking_server(server_factory)
    a = login_raw(raw, srv, "alice")
    res = a.iq("get", f"<query xmlns='{DISCO_INFO}'/>", to="localhost")
    feats = {f.get("var") for f in res.findall(f"{{{DISCO_INFO}}}query/{{{DISCO_INFO}}}feature")}
    assert NS_BLOCKING in feats, sorted(feats)
    assert NS_REPORTING in feats, sorted(feats)


def test_blocklist_set_get_and_pushes(server_factory, raw):
    srv = blocking_server(server_factory)
    a1 = login_raw(raw, srv, "alice", resource="a1")
    a2 = login_raw(raw, srv, "alice", resource="a2")
    a3 = login_raw(raw, srv, "alice", resource="a3")   # never asks for the list
    assert blocklist(a1) == []
    assert blocklist(a2) == []

    # alice blocks two JIDs (one written un-normalised) and a domain
    ok(block(a1, "Bob@LocalHost", "spam.example", "carol@localhost/phone"))
    want = ["bob@localhost", "carol@localhost/phone", "spam.example"]
    for c in (a1, a2):      # 3.3: every resource that requested the list, the sender too
        p = c.next(is_push("block"), what="block push")
        assert push_items(p, "block") == want, to_str(p)
        assert p.get("to") == c.jid, to_str(p)
    nothing(a3, is_push("block"), "push to a resource that never requested the list")
    assert sorted(blocklist(a3)) == want

    # blocking again what is blocked changes nothing but is not an error
    ok(block(a2, "bob@localhost"))
    for c in (a1, a2, a3):   # a3 asked for the list above: it hears pushes now
        c.next(is_push("block"), what="push of the repeated block")
    assert sorted(blocklist(a1)) == want

    # 3.4: unblock one
    ok(unblock(a2, "bob@localhost"))
    for c in (a1, a2, a3):
        p = c.next(is_push("unblock"), what="unblock push")
        assert push_items(p, "unblock") == ["bob@localhost"], to_str(p)
    assert sorted(blocklist(a1)) == ["carol@localhost/phone", "spam.example"]

    # 3.5: unblock all is pushed as an empty <unblock/>
    ok(unblock(a1))
    for c in (a1, a2, a3):
        p = c.next(is_push("unblock"), what="unblock-all push")
        assert push_items(p, "unblock") == [], to_str(p)
    assert blocklist(a2) == []


def test_blocked_sender_finds_the_user_offline(server_factory, raw):
    srv = blocking_server(server_factory)
    alice = login_raw(raw, srv, "alice", resource="a", presence=True)
    bob = login_raw(raw, srv, "bob", resource="b", presence=True)
    carol = login_raw(raw, srv, "carol", resource="c", presence=True)
    ok(block(alice, "bob@localhost"))

    # messages: service-unavailable (3.3), to the bare or the full JID; nothing arrives
    for to in (jid("alice"), alice.jid):
        mid = bob.message(to, "let me in")
        e = error_of(bob, mid, "error for a message to a blocking user")
        assert stanza_error_condition(e) == "service-unavailable", to_str(e)
    nothing(alice, msg_from("let me in"), "message from a blocked sender delivered")

    # iq get/set: service-unavailable; results are dropped
    e = bob.iq("get", "<ping xmlns='urn:xmpp:ping'/>", to=alice.jid)
    assert stanza_error_condition(e) == "service-unavailable", to_str(e)
    bob.send_stanza(f"<iq type='result' id='stray' to='{alice.jid}'/>")

    # presence of every kind: no delivery and no answer
    bob.presence(to=jid("alice"), type="subscribe")
    bob.presence(to=alice.jid, status="directed")
    bob.presence(to=jid("alice"), type="probe")
    nothing(alice, lambda e: e.get("from", "").startswith("bob@"), "stanza from a blocked sender")
    nothing(bob, lambda e: e.get("from", "").startswith("alice@"), "answer for a blocked sender")

    # others still reach alice, and the block is one-sided for the offline store too
    carol.message(jid("alice"), "carol is fine")
    alice.wait_message("carol is fine")
    alice.close()
    mid = bob.message(jid("alice"), "while you were away")
    e = error_of(bob, mid)
    assert stanza_error_condition(e) == "service-unavailable", to_str(e)
    again = login_raw(raw, srv, "alice", resource="a", presence=True)
    nothing(again, msg_from("while you were away"), "blocked message kept offline")


def test_sending_to_a_blocked_jid_is_refused(server_factory, raw):
    srv = blocking_server(server_factory)
    alice = login_raw(raw, srv, "alice", resource="a", presence=True)
    bob = login_raw(raw, srv, "bob", resource="b", presence=True)
    ok(block(alice, "bob@localhost"))

    def refused(e):
        assert stanza_error_condition(e) == "not-acceptable", to_str(e)
        err = e.find(f"{{{NS_CLIENT}}}error")
        assert err.get("type") == "cancel", to_str(e)
        assert err.find(f"{{{NS_BLOCKING_ERRORS}}}blocked") is not None, to_str(e)

    for to in (jid("bob"), bob.jid):
        mid = alice.message(to, "can you hear me now?")
        e = error_of(alice, mid, "refusal of a message to a blocked JID")
        refused(e)
        assert e.get("from") == to, to_str(e)
    refused(alice.iq("get", "<ping xmlns='urn:xmpp:ping'/>", to=bob.jid))
    alice.send_stanza(f"<presence id='dp' to='{bob.jid}'><status>hi</status></presence>")
    refused(error_of(alice, "dp", "refusal of directed presence"))
    alice.send_stanza(f"<presence id='sub' to='{jid('bob')}' type='subscribe'/>")
    refused(error_of(alice, "sub", "refusal of a subscription request"))
    nothing(bob, lambda e: e.get("from", "").startswith("alice@"), "stanza to a blocked JID")

    # unblocking restores both directions (3.4)
    ok(unblock(alice, "bob@localhost"))
    alice.message(jid("bob"), "hello again")
    bob.wait_message("hello again")
    bob.message(jid("alice"), "welcome back")
    alice.wait_message("welcome back")


def test_domain_and_full_jid_entries(server_factory, raw):
    srv = blocking_server(server_factory, extra_hosts=["second.localhost"])
    srv.add_user("dave@second.localhost", "dave-secret")
    alice = login_raw(raw, srv, "alice", resource="a", presence=True)
    alice2 = login_raw(raw, srv, "alice", resource="a2", presence=True)
    bob_good = login_raw(raw, srv, "bob", resource="good", presence=True)
    bob_evil = login_raw(raw, srv, "bob", resource="evil", presence=True)
    dave = raw(srv.port, domain="second.localhost")
    dave.login("dave", "dave-secret", resource="d", presence=True)
    ok(block(alice, "second.localhost", "bob@localhost/evil"))

    # the domain entry covers every address at it
    mid = dave.message(jid("alice"), "from the blocked domain")
    assert stanza_error_condition(error_of(dave, mid)) == "service-unavailable"
    mid = alice.message("dave@second.localhost", "to the blocked domain")
    e = error_of(alice, mid)
    assert stanza_error_condition(e) == "not-acceptable", to_str(e)
    mid = alice.message("second.localhost", "to the domain itself")
    assert stanza_error_condition(error_of(alice, mid)) == "not-acceptable"

    # the full-JID entry covers that resource only
    mid = bob_evil.message(jid("alice"), "from the blocked resource")
    assert stanza_error_condition(error_of(bob_evil, mid)) == "service-unavailable"
    bob_good.message(jid("alice"), "from another resource")
    alice.wait_message("from another resource")
    nothing(alice, msg_from("from the blocked resource"), "message from a blocked resource")

    # the account's own resources and its server are never cut off (XEP-0191 5)
    ok(block(alice, "localhost"))
    alice2.message(alice.jid, "note to self")
    alice.wait_message("note to self")
    alice.ping(to="localhost")
    mid = bob_good.message(jid("alice"), "bob after the domain block")
    assert stanza_error_condition(error_of(bob_good, mid)) == "service-unavailable"


def test_presence_on_block_and_unblock(server_factory, raw):
    srv = blocking_server(server_factory)
    alice = login_raw(raw, srv, "alice", resource="a", presence=True)
    bob = login_raw(raw, srv, "bob", resource="b", presence=True)
    carol = login_raw(raw, srv, "carol", resource="c", presence=True)
    befriend(alice, bob)
    alice.presence(to=carol.jid, status="directed to carol")
    carol.next(lambda e: is_presence(e, frm=alice.jid, type="available"), what="directed presence")

    # 3.3: bob, subscribed to alice, and carol, who had her directed presence, see her
    # go offline
    ok(block(alice, "bob@localhost", "carol@localhost"))
    for c in (bob, carol):
        p = c.next(lambda e: is_presence(e, frm=alice.jid, type="unavailable"),
                   what="unavailable from alice on block")
        assert p.get("from") == alice.jid, to_str(p)
    ok(unblock(alice, "carol@localhost"))
    # carol is neither subscribed nor a directed-presence target any more: nothing
    nothing(carol, lambda e: is_presence(e, frm=jid("alice")), "presence at carol on unblock")

    # from now on neither side's broadcasts cross the block
    alice.presence(status="busy")
    bob.presence(status="lunch")
    nothing(bob, lambda e: is_presence(e, frm=jid("alice")), "alice's broadcast at bob")
    nothing(alice, lambda e: is_presence(e, frm=jid("bob")), "bob's broadcast at alice")

    # 3.4: unblocking sends alice's current presence to bob, and alice learns bob's
    ok(unblock(alice, "bob@localhost"))
    p = bob.next(lambda e: is_presence(e, frm=alice.jid, type="available"),
                 what="alice's presence on unblock")
    assert p.findtext(f"{{{NS_CLIENT}}}status") == "busy", to_str(p)
    p = alice.next(lambda e: is_presence(e, frm=bob.jid, type="available"),
                   what="bob's presence after the unblock")
    assert p.findtext(f"{{{NS_CLIENT}}}status") == "lunch", to_str(p)


def test_report_is_stored(server_factory, raw):
    srv = blocking_server(server_factory)
    alice = login_raw(raw, srv, "alice", resource="a", sm=True)
    bob = login_raw(raw, srv, "bob", resource="b", presence=True)
    secret = "Never came trouble to my house like this"
    report = (f"<report xmlns='{NS_REPORTING}' reason='urn:xmpp:reporting:spam'>"
              "<stanza-id xmlns='urn:xmpp:sid:0' by='alice@localhost' id='28482-98726'/>"
              "<stanza-id xmlns='urn:xmpp:sid:0' by='alice@localhost' id='38383-38018'/>"
              f"<text xml:lang='en'>{secret}</text><third-party/></report>")
    ok(block(alice, "bob@localhost", inner={"bob@localhost": report}))
    # the set is acknowledged (XEP-0198) only once the report is committed
    wait_ack(alice, alice.sm_out)
    assert re.search(r"report stored host=localhost user=alice sender=bob@localhost "
                     r"reason=urn:xmpp:reporting:spam held=0 stanza_ids=2",
                     srv.log_text()), "no report log line when the block was acknowledged"
    assert secret not in srv.log_text(), "report text in the server log"
    # the block itself happened
    assert blocklist(alice) == ["bob@localhost"]
    mid = bob.message(jid("alice"), "spam spam")
    assert stanza_error_condition(error_of(bob, mid)) == "service-unavailable"

    # a report without a reason we know: blocked all the same, nothing stored
    ok(block(alice, "carol@localhost", inner={
        "carol@localhost": f"<report xmlns='{NS_REPORTING}' reason='urn:example:meh'/>"}))
    assert sorted(blocklist(alice)) == ["bob@localhost", "carol@localhost"]
    wait_until(lambda: "report about carol@localhost ignored" in srv.log_text(),
               what="the ignored-report log line")
    assert "sender=carol@localhost" not in srv.log_text()


def test_errors(server_factory, raw):
    srv = blocking_server(server_factory, blocking={"max_items": 3})
    alice = login_raw(raw, srv, "alice", resource="a")
    bob = login_raw(raw, srv, "bob", resource="b")

    def cond(res):
        assert res.get("type") == "error", to_str(res)
        return stanza_error_condition(res)

    # 3.3: a block without items
    assert cond(alice.iq("set", f"<block xmlns='{NS_BLOCKING}'/>", to="")) == "bad-request"
    # an item without its jid; an unparsable jid -- and the valid items with them are
    # not applied either
    assert cond(alice.iq("set", f"<block xmlns='{NS_BLOCKING}'><item jid='x@localhost'/>"
                                "<item/></block>", to="")) == "bad-request"
    assert cond(block(alice, "y@localhost", "@localhost")) == "jid-malformed"
    assert cond(unblock(alice, "bad@@localhost")) == "jid-malformed"
    assert blocklist(alice) == []
    # the wrong element for the iq type
    assert cond(alice.iq("set", f"<blocklist xmlns='{NS_BLOCKING}'/>", to="")) == "bad-request"
    assert cond(alice.iq("get", f"<block xmlns='{NS_BLOCKING}'/>", to="")) == "bad-request"
    # only the account itself: others get what a blocked entity gets
    assert cond(bob.iq("get", f"<blocklist xmlns='{NS_BLOCKING}'/>",
                       to=jid("alice"))) == "service-unavailable"
    assert cond(bob.iq("set", f"<block xmlns='{NS_BLOCKING}'><item jid='carol@localhost'/>"
                              "</block>", to=jid("alice"))) == "service-unavailable"
    # the account addressing its own bare JID is the same as no 'to'
    res = alice.iq("get", f"<blocklist xmlns='{NS_BLOCKING}'/>", to=jid("alice"))
    assert res.get("type") == "result", to_str(res)

    # blocking.max_items
    ok(block(alice, "a@x.example", "b@x.example"))
    e = block(alice, "c@x.example", "d@x.example")
    assert cond(e) == "not-allowed", to_str(e)
    assert sorted(blocklist(alice)) == ["a@x.example", "b@x.example"]
    ok(block(alice, "c@x.example", "a@x.example"))   # one new: fits
    assert cond(block(alice, "d@x.example")) == "not-allowed"
    # unblocking what is not blocked is fine
    ok(unblock(alice, "nobody@x.example"))


@pytest.mark.pv_timeout(180)
def test_block_list_survives_restart(server_factory, raw):
    srv = blocking_server(server_factory)
    alice = login_raw(raw, srv, "alice", resource="a", sm=True)
    ok(block(alice, "bob@localhost", "spam.example"))
    wait_ack(alice, alice.sm_out)     # acknowledged = committed
    srv.restart(how="kill")
    alice = login_raw(raw, srv, "alice", resource="a", presence=True)
    bob = login_raw(raw, srv, "bob", resource="b", presence=True)
    assert sorted(blocklist(alice)) == ["bob@localhost", "spam.example"]
    mid = bob.message(jid("alice"), "after the restart")
    assert stanza_error_condition(error_of(bob, mid)) == "service-unavailable"
    ok(unblock(alice))
    srv.restart()       # a clean stop commits what is queued
    alice = login_raw(raw, srv, "alice", resource="a")
    assert blocklist(alice) == []


# --- across providers: a report carries the message requests held by consent ---------------

NS_CONSENT = "urn:peyvand:consent:0"


def held_requests(c):
    res = c.iq("get", f"<requests xmlns='{NS_CONSENT}'/>", to="", timeout=20)
    assert res.get("type") == "result", to_str(res)
    return {r.get("from"): int(r.get("count"))
            for r in res.findall(f"{{{NS_CONSENT}}}requests/{{{NS_CONSENT}}}request")}


@pytest.mark.pv_timeout(180)
def test_report_carries_and_drops_held_requests(server_factory, raw):
    sys.path.insert(0, str(Path(__file__).resolve().parent / "s2s"))
    import s2sharness
    bale, eitaa = "bale.localhost", "eitaa.localhost"
    ca = s2sharness.TestCA()
    try:
        hosts = {d: {"modules": MODULES + ["consent"]} for d in (bale, eitaa)}
        srv = s2sharness.make_providers(server_factory, ca, [bale, eitaa], hosts=hosts,
                                        users={"alice": "pw-alice", "mallory": "pw-mallory",
                                               "trudy": "pw-trudy"})
        alice = raw(srv[bale].port, domain=bale)
        alice.login("alice", "pw-alice", resource="a", presence=True)
        res = alice.iq("set", f"<consent xmlns='{NS_CONSENT}' policy='contacts'/>", to="")
        assert res.get("type") == "result", to_str(res)
        mallory = raw(srv[eitaa].port, domain=eitaa)
        mallory.login("mallory", "pw-mallory", resource="m", presence=True)
        spammer = f"mallory@{eitaa}"

        # a stranger from another provider: held as a message request, not delivered
        mallory.message(f"alice@{bale}", "cheap pills")
        mallory.message(f"alice@{bale}", "more cheap pills")
        wait_until(lambda: held_requests(alice).get(spammer) == 2, timeout=30,
                   what="two messages held from mallory")
        from_mallory = lambda e: is_message(e) and e.get("from", "").startswith(spammer)  # noqa: E731
        nothing(alice, from_mallory, "a held message delivered")

        # block + report: the held stanzas go into the report, then away
        report = f"<report xmlns='{NS_REPORTING}' reason='urn:xmpp:reporting:abuse'/>"
        ok(block(alice, spammer, inner={spammer: report}))
        wait_until(lambda: re.search(
            rf"report stored host={re.escape(bale)} user=alice sender={re.escape(spammer)} "
            r"reason=urn:xmpp:reporting:abuse held=2 stanza_ids=0", srv[bale].log_text()),
            what="the report log line with the held stanzas")
        assert held_requests(alice) == {}, "held requests of a reported sender kept"

        # and mallory stays out, held or not.  What she sees is what consent shows a
        # stranger: a message vanishes (no answer tells her the account exists), an iq
        # get is service-unavailable.  (Her own provider must let answers from bale in.)
        res = mallory.iq("set", f"<consent xmlns='{NS_CONSENT}' policy='everyone'/>", to="")
        assert res.get("type") == "result", to_str(res)
        mid = mallory.message(f"alice@{bale}", "still there?")
        e = mallory.iq("get", "<ping xmlns='urn:xmpp:ping'/>", to=alice.jid, timeout=30)
        assert stanza_error_condition(e) == "service-unavailable", to_str(e)
        nothing(mallory, lambda e: e.get("id") == mid, "answer to a blocked remote message")
        assert held_requests(alice) == {}
        nothing(alice, from_mallory, "message from a blocked remote sender")

        # a report through consent's own protocol blocks too: the list changes in storage
        # behind mod_blocking's back, and alice's resources still hear of it
        assert blocklist(alice) == [spammer]
        trudy = raw(srv[eitaa].port, domain=eitaa)
        trudy.login("trudy", "pw-trudy", resource="t", presence=True)
        trudy.message(f"alice@{bale}", "hello from trudy")
        wait_until(lambda: held_requests(alice).get(f"trudy@{eitaa}") == 1, timeout=30,
                   what="trudy's message held")
        res = alice.iq("set", f"<report xmlns='{NS_CONSENT}' jid='trudy@{eitaa}' "
                              "reason='urn:xmpp:reporting:spam'/>", to="")
        assert res.get("type") == "result", to_str(res)
        p = alice.next(is_push("block"), what="block push after a consent report")
        assert push_items(p, "block") == [f"trudy@{eitaa}"], to_str(p)
        assert sorted(blocklist(alice)) == [spammer, f"trudy@{eitaa}"]
        mid = alice.message(f"trudy@{eitaa}", "bye")
        e = error_of(alice, mid, "refusal of a message to a JID blocked by a consent report")
        assert stanza_error_condition(e) == "not-acceptable", to_str(e)
    finally:
        ca.cleanup()
