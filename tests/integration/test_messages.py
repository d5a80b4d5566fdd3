"""Messages (RFC 6121 8): chat both ways, routing to bare/full JIDs by priority and
type, offline storage and delivery in order with a delay stamp (XEP-0160, XEP-0203),
two virtual hosts in one process."""
import asyncio
import re
import time

from helpers import USERS, jid, login_raw
from pvserver import host_config
from rawxmpp import NS_DELAY, body_of, is_message, stanza_error_condition, to_str

STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def msg(body, frm=None):
    return lambda e: is_message(e, body=body) and (frm is None or e.get("from") == frm)


def test_chat_both_ways(server, slix, run):
    alice = slix(jid("alice") + "/a", USERS["alice"])
    bob = slix(jid("bob") + "/b", USERS["bob"])

    async def scenario():
        await alice.login(server.port)
        await bob.login(server.port)
        alice.send_message(mto=jid("bob"), mbody="hi bob", mtype="chat")
        m = await bob.wait_for(msg("hi bob"), 10, "alice's message")
        assert m.get("from") == str(alice.boundjid), to_str(m)
        assert m.get("type") == "chat"
        assert m.get("to") in (str(bob.boundjid), jid("bob")), to_str(m)
        bob.send_message(mto=str(alice.boundjid), mbody="hi alice", mtype="chat")
        m = await alice.wait_for(msg("hi alice"), 10, "bob's reply")
        assert m.get("from") == str(bob.boundjid)
        # a burst keeps its order
        for i in range(20):
            alice.send_message(mto=jid("bob"), mbody=f"burst {i}", mtype="chat")
        got = []
        for i in range(20):
            m = await bob.wait_for(lambda e: is_message(e) and (body_of(e) or "").startswith("burst"),
                                   10, f"burst message {i}")
            got.append(body_of(m))
        assert got == [f"burst {i}" for i in range(20)]
    run(scenario())


def test_bare_jid_goes_to_highest_priority(server, slix, run):
    high = slix(jid("alice") + "/high", USERS["alice"])
    low = slix(jid("alice") + "/low", USERS["alice"])
    bob = slix(jid("bob") + "/b", USERS["bob"])

    async def scenario():
        await high.login(server.port, priority=5)
        await low.login(server.port, priority=1)
        await bob.login(server.port)
        await asyncio.sleep(0.2)
        bob.send_message(mto=jid("alice"), mbody="to the bare jid", mtype="chat")
        await high.wait_for(msg("to the bare jid"), 10, "message at the priority-5 resource")
        await low.none_for(msg("to the bare jid"), 0.7, "message at the lower-priority resource")
        # to a full JID: only that resource, whatever its priority
        bob.send_message(mto=str(low.boundjid), mbody="to low only", mtype="chat")
        await low.wait_for(msg("to low only"), 10)
        await high.none_for(msg("to low only"), 0.7, "full-JID message at another resource")
        # priorities change: now low wins
        low.send_presence(ppriority=10)
        await asyncio.sleep(0.3)
        bob.send_message(mto=jid("alice"), mbody="after the change", mtype="chat")
        await low.wait_for(msg("after the change"), 10)
        await high.none_for(msg("after the change"), 0.7)
    run(scenario())


def test_equal_priorities_and_headline(server, slix, run):
    r1 = slix(jid("alice") + "/r1", USERS["alice"])
    r2 = slix(jid("alice") + "/r2", USERS["alice"])
    neg = slix(jid("alice") + "/neg", USERS["alice"])
    bob = slix(jid("bob") + "/b", USERS["bob"])

    async def scenario():
        await r1.login(server.port, priority=3)
        await r2.login(server.port, priority=3)
        await neg.login(server.port, priority=-1)
        await bob.login(server.port)
        await asyncio.sleep(0.2)
        bob.send_message(mto=jid("alice"), mbody="tie", mtype="chat")
        await asyncio.sleep(1.0)
        n1 = len([1 for e, _ in r1.received if is_message(e, body="tie")])
        n2 = len([1 for e, _ in r2.received if is_message(e, body="tie")])
        assert (n1, n2) in ((1, 0), (0, 1), (1, 1)), f"chat to tied resources: r1 {n1}, r2 {n2}"
        assert not [e for e, _ in neg.received if is_message(e, body="tie")], \
            "negative-priority resource got a bare-JID message"
        # headline to the bare JID: every resource with non-negative priority (RFC 6121 8.5.2.1.1)
        bob.send_message(mto=jid("alice"), mbody="news", mtype="headline")
        await r1.wait_for(msg("news"), 10)
        await r2.wait_for(msg("news"), 10)
        await neg.none_for(msg("news"), 0.5, "headline at a negative-priority resource")
    run(scenario())


def test_groupchat_to_bare_jid_is_an_error(server, slix, run):
    alice = slix(jid("alice") + "/a", USERS["alice"])
    bob = slix(jid("bob") + "/b", USERS["bob"])

    async def scenario():
        await alice.login(server.port)
        await bob.login(server.port)
        bob.send_message(mto=jid("alice"), mbody="not a room", mtype="groupchat")
        err = await bob.wait_for(lambda e: is_message(e) and e.get("type") == "error", 10,
                                 "error for groupchat to a user")
        assert stanza_error_condition(err) == "service-unavailable", to_str(err)
        await alice.none_for(msg("not a room"), 0.3)
    run(scenario())


def test_full_jid_of_gone_resource_falls_back_to_bare(server, slix, run):
    bob = slix(jid("bob") + "/phone", USERS["bob"])
    alice = slix(jid("alice") + "/a", USERS["alice"])

    async def scenario():
        await bob.login(server.port)
        await alice.login(server.port)
        alice.send_message(mto=jid("bob") + "/gone", mbody="where are you", mtype="chat")
        # RFC 6121 8.5.3.2.1: chat to a full JID without that resource -> as if bare
        await bob.wait_for(msg("where are you"), 10)
    run(scenario())


def _check_delay(m, domain="localhost"):
    d = m.find(f"{{{NS_DELAY}}}delay")
    assert d is not None, f"offline message without <delay xmlns='urn:xmpp:delay'/>: {to_str(m)}"
    assert STAMP.match(d.get("stamp", "")), f"bad XEP-0082 stamp: {to_str(d)}"
    assert d.get("from") in (domain, None) or d.get("from", "").endswith(domain), to_str(d)


def test_offline_messages_in_order_with_delay(server, slix, run):
    alice = slix(jid("alice") + "/a", USERS["alice"])

    async def scenario():
        await alice.login(server.port)
        for i in range(10):
            alice.send_message(mto=jid("bob"), mbody=f"offline {i}", mtype="chat")
        alice.send_message(mto=jid("bob"), mbody="a normal one", mtype="normal")
        alice.send_message(mto=jid("bob"), mbody="headlines are not stored", mtype="headline")
        # give the server time to store them (no ack in plain slixmpp use)
        await alice["xep_0199"].ping(jid="localhost", timeout=10)
        await asyncio.sleep(0.5)
        bob = slix(jid("bob") + "/b", USERS["bob"])
        await bob.login(server.port)
        got = []
        for i in range(11):
            m = await bob.wait_for(lambda e: is_message(e) and body_of(e) is not None, 10,
                                   f"offline message {i}")
            got.append(body_of(m))
            _check_delay(m)
            assert m.get("from") == str(alice.boundjid), to_str(m)
        assert got == [f"offline {i}" for i in range(10)] + ["a normal one"], got
        await bob.none_for(msg("headlines are not stored"), 0.5, "stored headline")
        await bob.quit()
        # delivered once: not again at the next login
        bob2 = slix(jid("bob") + "/b2", USERS["bob"])
        await bob2.login(server.port)
        await bob2.none_for(lambda e: is_message(e) and body_of(e) is not None, 1.0,
                            "offline message delivered twice")
    run(scenario())


def test_full_offline_queue_refuses_with_service_unavailable(server_factory, raw):
    """XEP-0160 section 2: past offline.max_per_user the sender gets service-unavailable
    for each refused message (its id, from the recipient's bare JID), nothing else is
    lost, and the stream goes on; the queue has room again once delivered."""
    srv = server_factory({"hosts": {"localhost": host_config(
        "localhost", offline={"max_per_user": 2})}})
    alice = login_raw(raw, srv, "alice")
    for i in range(4):
        alice.message(jid("bob"), f"queued {i}", id=f"q{i}")
    for i in (2, 3):
        e = alice.next(lambda el: el.get("id") == f"q{i}", 10, f"the error for q{i}")
        assert stanza_error_condition(e) == "service-unavailable", to_str(e)
        assert e.get("from") == jid("bob"), to_str(e)
        assert e.find("{jabber:client}error").get("type") == "cancel", to_str(e)
    assert alice.collect(lambda el: el.get("id") in ("q0", "q1"), 0.5) == []
    alice.ping(timeout=10)  # the stream still works

    bob = login_raw(raw, srv, "bob", resource="b")
    bob.presence()
    assert [body_of(bob.wait_message(timeout=10)) for _ in range(2)] == ["queued 0", "queued 1"]
    assert bob.collect(lambda el: is_message(el) and body_of(el), 0.5) == []
    bob.send("</stream:stream>")
    bob.expect_closed()
    alice.message(jid("bob"), "room again", id="q4")
    alice.ping(timeout=10)
    assert alice.collect(lambda el: el.get("id") == "q4", 0.3) == []
    bob2 = login_raw(raw, srv, "bob", resource="b2")
    bob2.presence()
    assert body_of(bob2.wait_message(timeout=10)) == "room again"


def test_negative_priority_only_goes_offline(server, slix, run):
    hidden = slix(jid("alice") + "/hidden", USERS["alice"])
    bob = slix(jid("bob") + "/b", USERS["bob"])

    async def scenario():
        await hidden.login(server.port, priority=-5)
        await bob.login(server.port)
        bob.send_message(mto=jid("alice"), mbody="for later", mtype="chat")
        await hidden.none_for(msg("for later"), 0.7, "bare-JID message at priority -5")
        visible = slix(jid("alice") + "/visible", USERS["alice"])
        await visible.login(server.port, priority=0)
        m = await visible.wait_for(msg("for later"), 10, "the stored message")
        _check_delay(m)
    run(scenario())


def test_two_virtual_hosts(server_factory, slix, run):
    srv = server_factory({"hosts": {"second.localhost": host_config("second.localhost")}})
    srv.add_user("dave@second.localhost", "dave-secret")
    alice = slix(jid("alice") + "/a", USERS["alice"])
    dave = slix("dave@second.localhost/d", "dave-secret")

    async def scenario():
        await alice.login(srv.port)
        await dave.login(srv.port)
        assert dave.used_mechanism() == "SCRAM-SHA-256"
        alice.send_message(mto="dave@second.localhost", mbody="across hosts", mtype="chat")
        m = await dave.wait_for(msg("across hosts"), 10)
        assert m.get("from") == str(alice.boundjid)
        dave.send_message(mto=jid("alice"), mbody="back", mtype="chat")
        await alice.wait_for(msg("back", frm=str(dave.boundjid)), 10)
        # accounts are per host: alice@second.localhost does not exist
        ghost = slix("alice@second.localhost", USERS["alice"])
        try:
            await ghost.login(srv.port, timeout=10)
        except AssertionError as e:
            assert "not-authorized" in str(e), str(e)
        else:
            raise AssertionError("alice logged in on a host where she has no account")
    run(scenario())


def test_idle_sessions_wake_up(server, raw):
    """After 5 s without input a session frees its XML parser and TLS buffers
    (c2s.c IDLE_TRIM_MS); the next stanza in either direction must not notice."""
    alice = login_raw(raw, server, "alice", "idle", presence=True)
    bob = login_raw(raw, server, "bob", "idle", sm=True, presence=True)
    alice.drain(0.3)
    bob.drain(0.3)
    time.sleep(7)                       # both trimmed now
    bob.message(jid("alice"), "wake up")
    alice.wait_message("wake up")
    alice.message(jid("bob"), "awake")  # alice's parser was rebuilt for this
    bob.wait_message("awake")
    time.sleep(7)                       # trimmed again, with SM state on top
    assert bob.request_ack(timeout=10) >= 0
    alice.ping()
    alice.close()
    bob.close()
