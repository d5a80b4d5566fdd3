"""Message requests (issue 4): alice@bale.localhost (policy contacts) is written to by
strangers on eitaa.localhost.  Their first messages are held as requests -- listed
with count and bytes, announced to alice's resources, never to the sender -- and alice
accepts (the sender becomes allowed and the held stanzas are delivered in order),
declines (deleted) or reports (blocked, report stored for the operators, deleted).
The host's `consent:` limits are small here and must hold:

  max_held_per_sender 4      stanzas held per sender (more are dropped)
  max_held_bytes      3000   bytes held per sender (a stanza that does not fit is dropped)
  max_requests        2      senders with held requests per user (more are dropped)

Throughout, the senders see nothing at all from alice's address (their own providers
let everything through: policy everyone)."""
import re

import pytest

from consentlib import (BALE, EITAA, NS_CHATSTATES, REPORT_SPAM, accept, bare, blocklist,
                        child_text, decline, expect_error, held, held_bodies, login,
                        local_barrier, need_blocking, remote_barrier, report, request_action,
                        requests, roster_add, set_consent, settings, users)
from rawxmpp import local, to_str

LIMITS = {"max_held_per_sender": 4, "max_held_bytes": 3000, "max_requests": 2}
ALICE = f"alice@{BALE}"


@pytest.fixture
def world(consent_providers, raw):
    servers = consent_providers([BALE, EITAA], consent=LIMITS,
                                users=users("alice", "bob", "carol", "dave", "eve"))
    a = login(raw, servers[BALE], "alice")
    set_consent(a, policy="contacts")
    snd = {}
    for u in ("bob", "carol", "dave", "eve"):
        snd[u] = login(raw, servers[EITAA], u)
        set_consent(snd[u], policy="everyone")
    return servers, a, snd


def jid(u):
    return f"{u}@{EITAA}"


def chat(c, body, id_=None):
    return c.message(ALICE, body, id=id_)


def sync(a, *senders):
    """Everything the senders sent has been processed by bale, and everything bale
    routed to alice has reached her client."""
    for s in senders:
        remote_barrier(s, BALE)
    local_barrier(a)


def bodies_from(c, sender, since=0):
    return [child_text(e, "body") for e in c.seen[since:]
            if local(e.tag) == "message" and bare(e.get("from")) == sender
            and e.get("type") != "error" and child_text(e, "body") is not None]


def notifications(c, sender):
    return [e for e in c.seen if local(e.tag) == "message" and e.get("type") == "headline"
            and any(local(x.tag) == "request" and x.get("from") == sender for x in e)]


def nothing_from_alice(*senders):
    for s in senders:
        got = [to_str(e)[:300] for e in s.seen if bare(e.get("from")) == ALICE]
        assert not got, f"{s.jid} must learn nothing about alice's requests, but got {got}"


@pytest.mark.pv_timeout(120)
def test_hold_list_accept_decline_report(world):
    servers, a, snd = world
    bob, carol, dave = snd["bob"], snd["carol"], snd["dave"]

    # --- bob: four stanzas held (a chat state alone is not a request), the fifth dropped
    chat(bob, "b1")
    bob.send_stanza(f"<message to='{ALICE}' type='chat' id='cs1'>"
                    f"<composing xmlns='{NS_CHATSTATES}'/></message>")
    chat(bob, "b2")
    bob.send_stanza(f"<presence to='{ALICE}' type='subscribe' id='sub1'/>")
    chat(bob, "b3")
    chat(bob, "b4 (over max_held_per_sender)")
    sync(a, bob)
    reqs = requests(a)
    assert [r["from"] for r in reqs] == [jid("bob")], reqs
    assert reqs[0]["count"] == 4, f"max_held_per_sender=4: bob's request must hold 4: {reqs}"
    h = held(a, jid("bob"))
    assert [(local(e.tag), e.get("type")) for e in h] == [
        ("message", "chat"), ("message", "chat"), ("presence", "subscribe"),
        ("message", "chat")], [to_str(e) for e in h]
    assert held_bodies(h) == ["b1", "b2", "b3"], [to_str(e) for e in h]
    assert 0 < reqs[0]["bytes"] <= LIMITS["max_held_bytes"], reqs
    assert not bodies_from(a, jid("bob")), "held messages must not reach alice's client"
    assert len(notifications(a, jid("bob"))) == 1, (
        "alice's resources are told once that bob is waiting: "
        f"{[to_str(e) for e in notifications(a, jid('bob'))]}")

    # --- carol: a big message held, the next one does not fit in max_held_bytes
    big1, big2 = "c1 " + "x" * 1500, "c2 " + "y" * 1500
    chat(carol, big1)
    chat(carol, big2)
    sync(a, carol)
    by = {r["from"]: r for r in requests(a)}
    assert by[jid("carol")]["count"] == 1, by
    assert 1500 < by[jid("carol")]["bytes"] <= LIMITS["max_held_bytes"], by
    assert held_bodies(held(a, jid("carol"))) == [big1]

    # --- dave: a third sender is over max_requests
    chat(dave, "d1 (over max_requests)")
    sync(a, dave)
    assert [r["from"] for r in requests(a)] == [jid("bob"), jid("carol")], requests(a)
    assert held(a, jid("dave")) is None

    # --- accept bob: allowed, held stanzas delivered in order, then direct delivery
    mark = len(a.seen)
    accept(a, jid("bob"))
    local_barrier(a)
    got = [e for e in a.seen[mark:] if bare(e.get("from")) == jid("bob")]
    kinds = [(local(e.tag), e.get("type"), child_text(e, "body")) for e in got]
    assert kinds == [("message", "chat", "b1"), ("message", "chat", "b2"),
                     ("presence", "subscribe", None), ("message", "chat", "b3")], (
        f"accepting must deliver the held stanzas once, in order: {[to_str(e) for e in got]}")
    assert settings(a)["senders"].get(jid("bob")) == "allow", settings(a)
    assert [r["from"] for r in requests(a)] == [jid("carol")]
    assert held(a, jid("bob")) is None
    chat(bob, "b5 after accept")
    sync(a, bob)
    assert bodies_from(a, jid("bob"), mark)[-1] == "b5 after accept"

    # --- dave again: room for a second request now; then declined
    chat(dave, "d2")
    sync(a, dave)
    assert [r["from"] for r in requests(a)] == [jid("carol"), jid("dave")]
    decline(a, jid("dave"))
    assert [r["from"] for r in requests(a)] == [jid("carol")]
    assert held(a, jid("dave")) is None
    local_barrier(a)
    assert not bodies_from(a, jid("dave")), "declined messages must never be delivered"

    # --- report carol: blocked, report stored with the held message as evidence
    report(a, jid("carol"), REPORT_SPAM, "unsolicited advertising")
    assert requests(a) == []
    assert held(a, jid("carol")) is None
    assert settings(a)["senders"].get(jid("carol")) == "deny", settings(a)
    need_blocking("a report's block")
    assert jid("carol") in blocklist(a), "a reported sender must be on the XEP-0191 block list"
    r = servers[BALE].ctl("reports", BALE)
    assert r.rc == 0, r
    lines = [l for l in r.out.splitlines() if jid("carol") in l]
    assert len(lines) == 1, f"one stored report about carol expected: {r}"
    assert ALICE in lines[0] and f"reason={REPORT_SPAM}" in lines[0], lines[0]
    ev = re.search(r"evidence=(\d+) bytes", lines[0])
    assert ev and int(ev.group(1)) >= 1500, (
        f"the report must keep carol's held message as evidence: {lines[0]}")
    chat(carol, "c3 after the report")
    sync(a, carol)
    assert not bodies_from(a, jid("carol")), "a reported sender's messages must be dropped"
    assert held(a, jid("carol")) is None, "a reported sender must not be held again"

    # --- the operator's view agrees; the senders never heard a thing
    r = servers[BALE].ctl("requests", ALICE)
    assert r.rc == 0 and r.out.strip() == "", r
    nothing_from_alice(bob, carol, dave)


@pytest.mark.pv_timeout(60)
def test_first_message_larger_than_max_held_bytes_is_not_held(world):
    """max_held_bytes bounds what is held per sender, the first stanza included."""
    servers, a, snd = world
    eve = snd["eve"]
    huge = "e1 " + "z" * 4000
    chat(eve, huge)
    sync(a, eve)
    r = {x["from"]: x for x in requests(a)}
    if jid("eve") in r:
        assert r[jid("eve")]["bytes"] <= LIMITS["max_held_bytes"], (
            f"max_held_bytes={LIMITS['max_held_bytes']}, but eve's first message "
            f"({len(huge)}-character body) was held whole: {to_str(r[jid('eve')]['el'])}")
    nothing_from_alice(eve)


@pytest.mark.pv_timeout(60)
def test_request_actions_without_a_request(world):
    """accept/decline of a sender nothing is held from: item-not-found, nothing changes."""
    servers, a, snd = world
    before = settings(a)
    for action in ("accept", "decline"):
        expect_error(request_action(a, action, jid("bob")), "item-not-found",
                     what=f"{action} without a request")
    after = settings(a)
    assert after["senders"] == before["senders"] and after["head"] == before["head"], (
        f"a refused action must change nothing: before {before}, after {after}")


@pytest.mark.pv_timeout(60)
def test_provider_may_forbid_everyone(consent_providers, raw):
    """allow_everyone: false -- the provider is stricter than the user: a stored
    `everyone` acts as `contacts` (strangers held, roster contacts delivered)."""
    servers = consent_providers([BALE, EITAA], consent={"allow_everyone": False},
                                users=users("alice", "bob", "carol"))
    a = login(raw, servers[BALE], "alice")
    set_consent(a, policy="everyone")
    roster_add(a, jid("carol"))
    assert settings(a)["policy"] == "everyone", "the user's choice is stored as made"
    bob, carol = login(raw, servers[EITAA], "bob"), login(raw, servers[EITAA], "carol")
    for c in (bob, carol):
        set_consent(c, policy="everyone")
    chat(bob, "stranger")
    chat(carol, "contact")
    sync(a, bob, carol)
    assert bodies_from(a, jid("carol")) == ["contact"]
    assert not bodies_from(a, jid("bob"))
    assert held_bodies(held(a, jid("bob"))) == ["stranger"]
    nothing_from_alice(bob, carol)
