"""Stream management (XEP-0198, urn:xmpp:sm:3) with the raw client: exact ack counts,
resumption after a dropped connection and after a server restart (SIGTERM and
kill -9: the resumption state is on disk), resumption of another user's session,
h values that are too high, and what happens to unacknowledged stanzas when a
session dies for good."""
import time

import pytest

from helpers import USERS, jid, login_raw, wait_ack
from rawxmpp import (NS_SM, NS_STANZAS, NS_STREAM, body_of, is_message, local,
                     stream_error_condition, to_str)


def messages(els):
    return [body_of(e) for e in els if is_message(e) and body_of(e) is not None]


def resume(raw, port, user, previd, h):
    """A new connection that authenticates as `user` and resumes `previd` acking h:
    returns (client, the <resumed/> or <failed/> element)."""
    c = raw(port)
    c.start()
    c.starttls()
    c.auth_scram(user, USERS[user])
    return c, c.sm_resume(previd, h)


def test_enable_and_exact_ack_counts(server, raw):
    bob = login_raw(raw, server, "bob", "phone", sm=True, presence=True)
    alice = login_raw(raw, server, "alice", "a", sm=True)
    enabled_id = alice.sm_id
    assert enabled_id
    assert wait_ack(alice, 0)[-1] == 0
    for i in range(5):
        alice.message(jid("bob"), f"sm {i}")
    alice.ping()
    alice.ping()
    assert alice.sm_out == 7
    # bob acks what he received as it comes
    got = []
    while len(got) < 5:
        m = bob.wait_message(timeout=10)
        got.append(body_of(m))
        bob.ack()
    assert got == [f"sm {i}" for i in range(5)]
    wait_ack(alice, 7)
    # the server counts what it sent: answer its <r/> exactly, it must accept
    alice.send(f"<a xmlns='{NS_SM}' h='{alice.sm_in}'/>")
    alice.ping()


def test_enable_before_bind_is_refused(server, raw):
    c = raw(server.port)
    c.start()
    c.starttls()
    c.auth_scram("alice", USERS["alice"])
    c.send(f"<enable xmlns='{NS_SM}' resume='true'/>")
    el = c.next(lambda e: local(e.tag) in ("enabled", "failed") or e.tag == f"{{{NS_STREAM}}}error",
                what="answer to <enable/> before bind")
    # XEP-0198 3: the server SHALL enforce binding first and answer <failed/>
    assert local(el.tag) == "failed", to_str(el)
    c.bind("late")
    c.sm_enable()
    c.ping()


def test_resume_after_disconnect_gets_unacked(server, raw):
    bob = login_raw(raw, server, "bob", "phone", sm=True, presence=True)
    bob.auto_ack = False
    bob.drain(0.3)
    old_full, previd = bob.jid, bob.sm_id
    alice = login_raw(raw, server, "alice", "a")
    for i in (1, 2, 3):
        alice.message(jid("bob"), f"m{i}")
    els = [bob.wait_message(f"m{i}") for i in (1, 2, 3)]
    h_after_m1 = bob.h_of[id(els[0])]
    bob_sent = bob.sm_out
    bob.abort()                                    # no </stream:stream>, no final <a/>
    time.sleep(0.5)
    alice.message(jid("bob") + "/phone", "m4")    # while bob is detached
    alice.ping()

    bob2, el = resume(raw, server.port, "bob", previd, h_after_m1)
    assert local(el.tag) == "resumed", f"resume failed: {to_str(el)}"
    assert el.get("previd") == previd
    assert int(el.get("h")) == bob_sent, \
        f"<resumed h> must count bob's {bob_sent} stanzas: {to_str(el)}"
    got = messages(bob2.collect(lambda e: True, 2.0))
    assert got == ["m2", "m3", "m4"], f"retransmitted after resume: {got}"
    # the resumed session is the old one: same full JID, still routable
    alice.message(old_full, "m5")
    m = bob2.wait_message("m5")
    assert m.get("to") == old_full, to_str(m)
    bob2.ping()


@pytest.mark.parametrize("how", ["term", "kill"], ids=["sigterm", "kill-9"])
def test_resume_after_server_restart(server, raw, how):
    bob = login_raw(raw, server, "bob", "phone", sm=True, presence=True)
    bob.auto_ack = False
    bob.drain(0.3)
    previd, bob_sent, old_full = bob.sm_id, bob.sm_out, bob.jid
    alice = login_raw(raw, server, "alice", "a", sm=True)
    for i in (1, 2, 3):
        alice.message(jid("bob"), f"r{i}")
    for i in (1, 2, 3):
        bob.wait_message(f"r{i}")
    # once acked to alice, the three are delivered-and-acked or on disk (bob acked nothing)
    wait_ack(alice, 3)
    server.restart(how)
    bob.abort()
    alice.abort()

    bob2, el = resume(raw, server.port, "bob", previd, 0)
    assert local(el.tag) == "resumed", f"resume after {how} restart failed: {to_str(el)}"
    if how == "term":
        assert int(el.get("h")) == bob_sent, to_str(el)
    else:   # after a crash the server may know less (bob then resends), never more
        assert int(el.get("h")) <= bob_sent, to_str(el)
    got = messages(bob2.collect(lambda e: True, 2.0))
    assert got == ["r1", "r2", "r3"], f"retransmitted after restart: {got}"
    bob2.ping()
    alice2 = login_raw(raw, server, "alice", "a2")
    alice2.message(old_full, "after restart")
    bob2.wait_message("after restart")


def test_resume_someone_elses_session_fails(server, raw):
    alice = login_raw(raw, server, "alice", "a", sm=True, presence=True)
    carol = raw(server.port)
    carol.start()
    carol.starttls()
    carol.auth_scram("carol", USERS["carol"])
    el = carol.sm_resume(alice.sm_id, 0)
    assert local(el.tag) == "failed", f"carol resumed alice's session: {to_str(el)}"
    assert el.find(f"{{{NS_STANZAS}}}item-not-found") is not None, to_str(el)
    # carol's stream goes on: she may bind a fresh resource
    carol.bind("own")
    carol.ping()
    # an id that never existed
    c2 = raw(server.port)
    c2.start()
    c2.starttls()
    c2.auth_scram("bob", USERS["bob"])
    el = c2.sm_resume("no-such-session-id", 0)
    assert local(el.tag) == "failed" and el.find(f"{{{NS_STANZAS}}}item-not-found") is not None, \
        to_str(el)
    # alice was not disturbed
    alice.ping()
    alice.message(jid("alice") + "/a", "to myself")
    alice.wait_message("to myself")


def test_h_too_high_is_a_stream_error(server, raw):
    bystander = login_raw(raw, server, "bob", "b", presence=True)
    alice = login_raw(raw, server, "alice", "a", sm=True)
    alice.ping()                       # the server has sent exactly one stanza
    alice.send(f"<a xmlns='{NS_SM}' h='10'/>")
    err = alice.next(lambda e: e.tag == f"{{{NS_STREAM}}}error", what="stream error")
    assert stream_error_condition(err) == "undefined-condition", to_str(err)
    hc = err.find(f"{{{NS_SM}}}handled-count-too-high")
    assert hc is not None, f"no <handled-count-too-high/>: {to_str(err)}"
    assert hc.get("h") == "10" and hc.get("send-count") == "1", to_str(err)
    alice.expect_closed()
    bystander.ping()


def test_unacked_go_to_other_resource_when_session_dies(server, raw):
    desk = login_raw(raw, server, "bob", "desk", presence=True)
    alice = login_raw(raw, server, "alice", "a")
    # a non-resumable SM session: when it dies, nothing can come back for it
    phone2 = raw(server.port)
    phone2.login("bob", USERS["bob"], resource="phone2", presence=True)
    phone2.sm_enable(resume=False)
    phone2.auto_ack = False
    alice.message(phone2.jid, "do not lose me")
    phone2.wait_message("do not lose me")
    phone2.abort()
    # the unacked message goes to bob's other resources, or to offline storage
    try:
        desk.wait_message("do not lose me", timeout=5)
    except AssertionError:
        later = login_raw(raw, server, "bob", "later", presence=True)
        later.wait_message("do not lose me", timeout=5)


@pytest.mark.pv_timeout(60)
def test_unacked_go_offline_when_resumption_expires(server_factory, raw):
    srv = server_factory({"sm": {"resume_timeout": "2s"}})
    bob = login_raw(raw, srv, "bob", "phone", sm=True, presence=True)
    bob.auto_ack = False
    alice = login_raw(raw, srv, "alice", "a")
    alice.message(jid("bob"), "keep 1")
    alice.message(jid("bob"), "keep 2")
    bob.wait_message("keep 1")
    bob.wait_message("keep 2")
    previd = bob.sm_id
    bob.abort()
    time.sleep(4)                    # past resume_timeout
    late = raw(srv.port)
    late.start()
    late.starttls()
    late.auth_scram("bob", USERS["bob"])
    el = late.sm_resume(previd, 0)
    assert local(el.tag) == "failed", f"resumed after resume_timeout: {to_str(el)}"
    late.bind("back")
    late.presence()
    got = messages(late.collect(lambda e: True, 2.0))
    assert got == ["keep 1", "keep 2"], f"unacked messages after the session expired: {got}"


@pytest.mark.parametrize("how", ["term", "kill"], ids=["sigterm", "kill-9"])
def test_waiting_session_across_a_restart(server_factory, raw, how):
    """Waiting to be resumed costs no write (core/session.c, pv_session_hibernate).  A
    clean stop writes the deadline, so after it the session still expires on time and
    its messages go offline; after kill -9 no deadline was written and the session gets
    a full resume_timeout from the restart: longer than it had left, never shorter."""
    srv = server_factory({"sm": {"resume_timeout": "6s"}})
    bob = login_raw(raw, srv, "bob", "phone", sm=True, presence=True)
    bob.auto_ack = False
    alice = login_raw(raw, srv, "alice", "a")
    alice.message(jid("bob"), "held across the restart")
    bob.wait_message("held across the restart")
    alice.ping()
    previd = bob.sm_id
    bob.abort()
    t0 = time.monotonic()
    time.sleep(3)
    srv.restart(how)
    alice.abort()
    time.sleep(max(0.0, t0 + 7.5 - time.monotonic()))   # past the first deadline
    late = raw(srv.port)
    late.start()
    late.starttls()
    late.auth_scram("bob", USERS["bob"])
    el = late.sm_resume(previd, 0)
    if how == "term":
        assert local(el.tag) == "failed", f"resumed past the deadline kept over a clean stop: " \
                                          f"{to_str(el)}"
        late.bind("back")
        late.presence()
        got = messages(late.collect(lambda e: True, 2.0))
        assert got == ["held across the restart"], f"after the session expired: {got}"
    else:
        assert local(el.tag) == "resumed", f"a waiting session was lost with kill -9: {to_str(el)}"
        got = messages(late.collect(lambda e: True, 2.0))
        assert got == ["held across the restart"], f"retransmitted after resume: {got}"


# --- when a sender is acked (core/session.c: a client's message is not written to disk
# on its way to another client unless the recipient is slow to acknowledge it) --------

def test_sender_ack_waits_for_recipient_ack_or_storage(server_factory, raw):
    """bob (XEP-0198) does not ack: alice's <a/> comes only once the message is stored,
    after sm.store_after; after a kill -9 bob still gets it by resumption."""
    srv = server_factory({"sm": {"store_after": "3s"}})
    bob = login_raw(raw, srv, "bob", "phone", sm=True, presence=True)
    bob.auto_ack = False
    bob.drain(0.3)
    previd = bob.sm_id
    alice = login_raw(raw, srv, "alice", "a", sm=True)
    alice.message(jid("bob"), "slow")
    bob.wait_message("slow")
    t0 = time.monotonic()
    alice.send(f"<r xmlns='{NS_SM}'/>")
    early = alice.collect(lambda e: e.tag == f"{{{NS_SM}}}a", 1.5)
    assert early == [], "alice was acked before bob acked or the message was stored"
    el = alice.next(lambda e: e.tag == f"{{{NS_SM}}}a", 20, "<a/>")
    assert int(el.get("h")) == 1 and time.monotonic() - t0 >= 2.0, to_str(el)
    srv.restart("kill")
    bob.abort()
    alice.abort()
    bob2, el = resume(raw, srv.port, "bob", previd, 0)
    assert local(el.tag) == "resumed", to_str(el)
    assert messages(bob2.collect(lambda e: True, 2.0)) == ["slow"]


def test_a_message_waits_the_whole_store_after_before_it_is_stored(server_factory, raw):
    """sm.store_after counts from each message, not from the first of a burst: one sent
    just before the timer's tick is not stored (and its sender not acked) at that tick,
    but a whole period later or more."""
    srv = server_factory({"sm": {"store_after": "2s"}})
    bob = login_raw(raw, srv, "bob", "phone", sm=True, presence=True)
    bob.auto_ack = False
    bob.drain(0.3)
    alice = login_raw(raw, srv, "alice", "a", sm=True)
    alice.message(jid("bob"), "first")          # starts the 2 s timer
    bob.wait_message("first")
    time.sleep(1.6)
    alice.message(jid("bob"), "second")         # 0.4 s before its tick
    bob.wait_message("second")
    t0 = time.monotonic()
    alice.send(f"<r xmlns='{NS_SM}'/>")
    el = alice.next(lambda e: e.tag == f"{{{NS_SM}}}a" and e.get("h") == "2", 20,
                    "<a h='2'/>")
    waited = time.monotonic() - t0
    assert waited >= 1.5, f"'second' was stored {waited:.2f} s after it was sent: {to_str(el)}"


def test_recipient_ack_releases_sender_ack(server_factory, raw):
    """bob acks at once: alice is acked long before sm.store_after would store anything."""
    srv = server_factory({"sm": {"store_after": "60s"}})
    bob = login_raw(raw, srv, "bob", "phone", sm=True, presence=True)
    alice = login_raw(raw, srv, "alice", "a", sm=True)
    for i in range(5):
        alice.message(jid("bob"), f"quick {i}")
    for i in range(5):
        bob.wait_message(f"quick {i}")   # reading also answers the server's <r/>
    bob.drain(0.5)
    wait_ack(alice, 5, timeout=20)      # well before the 60 s store_after


def test_plain_recipient_write_releases_sender_ack(server_factory, raw):
    """bob has no XEP-0198: alice is acked once the kernel took the bytes for bob."""
    srv = server_factory({"sm": {"store_after": "60s"}})
    bob = login_raw(raw, srv, "bob", "pc", presence=True)
    alice = login_raw(raw, srv, "alice", "a", sm=True)
    for i in range(5):
        alice.message(jid("bob"), f"plain {i}")
    wait_ack(alice, 5, timeout=20)
    for i in range(5):
        bob.wait_message(f"plain {i}")


def test_store_after_zero_stores_before_sending(server_factory, raw):
    """sm.store_after: 0 -- every message is on disk before it is sent, so alice is
    acked without bob acking, and a kill -9 right then loses nothing."""
    srv = server_factory({"sm": {"store_after": 0}})
    bob = login_raw(raw, srv, "bob", "phone", sm=True, presence=True)
    bob.auto_ack = False
    bob.drain(0.3)
    previd = bob.sm_id
    alice = login_raw(raw, srv, "alice", "a", sm=True)
    alice.message(jid("bob"), "on disk first")
    bob.wait_message("on disk first")
    wait_ack(alice, 1)
    srv.restart("kill")
    bob.abort()
    alice.abort()
    bob2, el = resume(raw, srv.port, "bob", previd, 0)
    assert local(el.tag) == "resumed", to_str(el)
    assert messages(bob2.collect(lambda e: True, 2.0)) == ["on disk first"]
