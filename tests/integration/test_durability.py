"""Durability: whatever the server acknowledged is on disk.

Accounts, rosters, offline messages, private and vCard data survive a graceful
restart (SIGTERM) and a crash (kill -9); and every message the server acked with
XEP-0198 <a h/> before a kill -9 is delivered after the restart, in order."""
import random
import re
import time

import pytest

from helpers import ITEM, USERS, befriend, jid, login_raw, roster_items, wait_ack
from rawxmpp import NS_SM, NS_STREAM, body_of, is_message, stream_error_condition

NS_VCARD = "vcard-temp"
NS_PRIVATE = "jabber:iq:private"


def is_chat(e):
    return is_message(e) and body_of(e) is not None


@pytest.mark.pv_timeout(150)
@pytest.mark.parametrize("how", ["term", "kill"], ids=["sigterm", "kill-9"])
def test_data_survives_restart(server, slix, raw, run, how):
    alice = slix(jid("alice") + "/a", USERS["alice"])
    bob = slix(jid("bob") + "/b", USERS["bob"])

    async def before():
        await alice.login(server.port)
        await bob.login(server.port)
        await befriend(alice, bob)
        r = await alice.iq_set(f"<vCard xmlns='{NS_VCARD}'><FN>Alice Durable</FN></vCard>")
        assert r.get("type") == "result"
        r = await alice.iq_set(f"<query xmlns='{NS_PRIVATE}'><notes xmlns='urn:example:notes'>"
                               f"<note>remember the milk</note></notes></query>")
        assert r.get("type") == "result"
        await alice.quit()
        await bob.quit()
    run(before())
    # offline messages, acked by the server (so on disk, XEP-0198)
    sender = login_raw(raw, server, "alice", "sender", sm=True)
    for i in range(3):
        sender.message(jid("carol"), f"kept {i}")
    wait_ack(sender, 3)
    # an account created while the server runs
    r = server.ctl("user", "add", "dave@localhost", "dave-secret")
    assert r.rc == 0, r
    server.restart(how)

    alice2 = slix(jid("alice") + "/a2", USERS["alice"])
    carol = slix(jid("carol") + "/c", USERS["carol"])
    dave = slix("dave@localhost", "dave-secret")

    async def after():
        await alice2.login(server.port)
        res = await roster_items(alice2)
        items = {i.get("jid"): i.get("subscription") for i in res.iter(ITEM)}
        assert items == {jid("bob"): "both"}, f"roster after {how}: {items}"
        r = await alice2.iq_get(f"<vCard xmlns='{NS_VCARD}'/>")
        assert r.findtext(f"{{{NS_VCARD}}}vCard/{{{NS_VCARD}}}FN") == "Alice Durable"
        r = await alice2.iq_get(f"<query xmlns='{NS_PRIVATE}'><notes xmlns='urn:example:notes'/></query>")
        assert r.findtext(f".//{{urn:example:notes}}note") == "remember the milk"
        await carol.login(server.port)
        got = []
        for i in range(3):
            m = await carol.wait_for(lambda e: is_message(e) and body_of(e) is not None, 10,
                                     f"offline message {i} after {how}")
            got.append(body_of(m))
        assert got == [f"kept {i}" for i in range(3)]
        await dave.login(server.port)
    run(after())


def test_sigterm_closes_streams_gracefully(server, raw):
    c = login_raw(raw, server, "alice", "a", presence=True)
    server.stop()
    # RFC 6120 4.4: the stream is closed with </stream:stream> (a system-shutdown
    # stream error before it is welcome), not just a dropped TCP connection
    c.drain(2.0)
    errs = [e for e in c.seen if e.tag == f"{{{NS_STREAM}}}error"]
    if errs:
        assert stream_error_condition(errs[0]) == "system-shutdown", stream_error_condition(errs[0])
    assert c.peer_closed, f"no </stream:stream> before the server exited; got {bytes(c.raw_in[-200:])!r}"
    assert server.exits[-1] == ("SIGTERM", 0), server.exits
    server.start()
    login_raw(raw, server, "alice", "again").ping()


@pytest.mark.pv_timeout(240)
def test_acked_messages_survive_kill9(server_factory, raw):
    """alice sends up to 300 messages to offline bob, each followed by <r/>; the server
    is killed with SIGKILL at a random point; after the restart bob must get every
    message alice saw acknowledged, in order and once.  Three rounds."""
    srv = server_factory({"log_level": "info"})
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    total_acked = 0
    for rnd in range(3):
        alice = login_raw(raw, srv, "alice", f"round{rnd}", sm=True)
        kill_at = rng.randrange(20, 300)
        acked = 0
        sent = 0
        for i in range(300):
            alice.message(jid("bob"), f"k{rnd}-{i:03d}")
            alice.send(f"<r xmlns='{NS_SM}'/>")
            sent += 1
            if i == kill_at:
                srv.kill9()
                break
            alice._pump(0.002)  # paced a little so acks (one fsync away) come back
            for a in alice.collect(lambda e: e.tag == f"{{{NS_SM}}}a", 0):
                acked = max(acked, int(a.get("h")))
        # acks the server wrote before it died are still in our socket buffer
        alice.drain(1.0)
        for a in [e for e in alice.seen if e.tag == f"{{{NS_SM}}}a"]:
            acked = max(acked, int(a.get("h")))
        assert acked <= sent, f"round {rnd}: h={acked} but only {sent} sent"
        alice.abort()
        total_acked += acked
        if srv.running():
            srv.kill9()
        srv.start()

        bob = raw(srv.port)
        bob.login("bob", USERS["bob"], resource=f"check{rnd}", presence=True)
        want = {f"k{rnd}-{i:03d}" for i in range(acked)}
        got = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not want <= set(got):
            got += [body_of(m) for m in bob.collect(is_chat, 0.3)]
        got += [body_of(m) for m in bob.collect(is_chat, 0.5)]
        ours = [b for b in got if b.startswith(f"k{rnd}-")]
        idx = [int(re.match(r"k\d-(\d+)", b).group(1)) for b in ours]
        missing = sorted(want - set(ours))
        assert not missing, (f"round {rnd} (seed {seed}, killed after message {kill_at}): "
                             f"{len(missing)} acked messages lost, first {missing[:5]}; "
                             f"acked {acked}, delivered {len(ours)}")
        assert len(idx) == len(set(idx)), f"round {rnd}: duplicates delivered: {ours}"
        assert idx == sorted(idx), f"round {rnd}: offline messages out of order: {idx}"
        assert len(ours) >= acked and max(idx, default=-1) < sent
        print(f"round {rnd}: sent {sent}, acked {acked}, delivered {len(ours)} (seed {seed})")
        bob.close()
    assert total_acked > 0, f"the server acked nothing in three rounds (seed {seed})"
