"""Consent changes (issue 4): a change applies to the very next stanza on every resource
of the user, revoking is silent, and every change is recorded in the user's
append-only, hash-chained log, which the user can export (<history/>) and verify:

  hash = SHA-256( prev "\\n" seq "\\n" stamp "\\n" action )   (include/peyvand/pv_store.h)

with prev the previous entry's hash (64 zeros for entry 1), seq and stamp in decimal.
The export must say verified='true', list the entries in order, and each hash must
recompute.  An operator can show which entry a delivered message rested on
(`peyvandctl consent why`)."""
import time

import pytest

from consentlib import (BALE, EITAA, RUBIKA, ZERO_HASH, accept, bare, check_chain, child_text,
                        decline, history, local_barrier, login, remote_barrier, requests,
                        set_consent, settings, stamp_seconds, users)
from rawxmpp import local, to_str

ALICE = f"alice@{BALE}"
BOB = f"bob@{EITAA}"


def probe(bob, phase):
    """bob writes to alice's bare JID and to her resource r2, and sends her a directed
    presence; returns the bodies/status it used."""
    bob.message(ALICE, f"{phase} to bare", id=f"{phase}-bare")
    bob.message(f"{ALICE}/r2", f"{phase} to r2", id=f"{phase}-r2")
    bob.send_stanza(f"<presence to='{ALICE}' id='{phase}-p'><status>{phase}</status></presence>")


def got(c, phase, since):
    out = set()
    for e in c.seen[since:]:
        if bare(e.get("from")) != BOB:
            continue
        if local(e.tag) == "message" and e.get("type") != "error":
            out.add(child_text(e, "body"))
        elif local(e.tag) == "presence" and e.get("type") is None:
            out.add("presence " + (child_text(e, "status") or ""))
    return {x for x in out if x and phase in x}


@pytest.mark.pv_timeout(90)
def test_change_takes_effect_at_once_on_every_resource(consent_providers, raw):
    servers = consent_providers([BALE, EITAA], users=users("alice", "bob"))
    r1 = login(raw, servers[BALE], "alice", resource="r1")
    r2 = login(raw, servers[BALE], "alice", resource="r2")
    bob = login(raw, servers[EITAA], "bob")
    set_consent(bob, policy="everyone")

    def phase(name, deliver):
        marks = (len(r1.seen), len(r2.seen))
        probe(bob, name)
        remote_barrier(bob, BALE)
        local_barrier(r1)
        local_barrier(r2)
        g1, g2 = got(r1, name, marks[0]), got(r2, name, marks[1])
        if deliver:
            assert g1 == {f"{name} to bare", f"presence {name}"}, \
                f"phase {name}: r1 must get the bare-JID message and the presence: {g1}"
            assert g2 == {f"{name} to bare", f"{name} to r2", f"presence {name}"}, \
                f"phase {name}: r2 must get both messages and the presence: {g2}"
        else:
            assert not g1 and not g2, (f"phase {name}: nothing may be delivered to any "
                                       f"resource, but r1 got {g1}, r2 got {g2}")

    set_consent(r1, policy="everyone")
    phase("open", True)
    set_consent(r1, policy="off")                      # closed from r1 ...
    phase("closed", False)                             # ... at once for r2 too
    assert requests(r2) == [], "policy off holds nothing"
    set_consent(r2, senders={BOB: "allow"})            # opened for bob from r2
    phase("allowed", True)
    set_consent(r1, senders={BOB: "deny"})             # revoked from r1
    phase("revoked", False)
    from_alice = [to_str(e)[:300] for e in bob.seen if bare(e.get("from")) == ALICE]
    assert not from_alice, f"the revoked sender must see nothing at all: {from_alice}"


@pytest.mark.pv_timeout(90)
def test_history_export_is_ordered_and_hash_chained(consent_providers, raw):
    servers = consent_providers([BALE, EITAA], users=users("alice", "bob", "carol"))
    bale = servers[BALE]
    a = login(raw, bale, "alice")
    bob, carol = login(raw, servers[EITAA], "bob"), login(raw, servers[EITAA], "carol")
    for c in (bob, carol):
        set_consent(c, policy="everyone")
    t0 = int(time.time()) - 1
    x = f"x@{RUBIKA}"

    set_consent(a, policy="contacts")
    bob.message(ALICE, "hi", id="held-hi")
    carol.message(ALICE, "yo", id="held-yo")
    remote_barrier(bob, BALE)
    remote_barrier(carol, BALE)
    assert {r["from"] for r in requests(a)} == {BOB, f"carol@{EITAA}"}, requests(a)
    accept(a, BOB)
    decline(a, f"carol@{EITAA}")
    # one request, several changes: logged one entry each, in document order
    set_consent(a, policy="everyone", providers={RUBIKA: "off", EITAA: "everyone"},
                senders={x: "allow"})
    set_consent(a, providers={RUBIKA: "remove", EITAA: "remove"}, senders={x: "remove"})
    want = ["policy contacts", f"accept {BOB}", f"decline carol@{EITAA}", "policy everyone",
            f"provider {RUBIKA} off", f"provider {EITAA} everyone", f"sender {x} allow",
            f"provider {RUBIKA} remove", f"provider {EITAA} remove", f"sender {x} remove"]
    t1 = int(time.time()) + 1

    verified, entries = history(a)
    assert verified == "true", f"an untouched chain must verify: verified={verified!r}"
    assert [e["seq"] for e in entries] == list(range(1, len(want) + 1)), \
        f"entries must be numbered 1..n in order: {[e['seq'] for e in entries]}"
    assert [e["action"] for e in entries] == want, [e["action"] for e in entries]
    stamps = [stamp_seconds(e["stamp"]) for e in entries]
    assert stamps == sorted(stamps) and t0 <= stamps[0] and stamps[-1] <= t1, \
        f"stamps must be the times of the changes, in order: {[e['stamp'] for e in entries]}"
    assert entries[0]["prev"] == ZERO_HASH
    check_chain(entries)
    assert settings(a)["head"] == len(want), settings(a)

    # a partial export continues the chain
    verified, tail = history(a, after=4)
    assert verified == "true"
    assert [e["seq"] for e in tail] == list(range(5, len(want) + 1))
    assert [(e["hash"], e["action"]) for e in tail] == \
        [(e["hash"], e["action"]) for e in entries[4:]]
    check_chain(tail, first_prev=entries[3]["hash"])

    # the operator's view: same chain, verified
    r = bale.ctl("consent", "log", ALICE)
    assert r.rc == 0 and "chain ok" in r.out, r
    for e in entries:
        assert f"hash={e['hash']}" in r.out, f"entry {e['seq']} missing from `consent log`: {r}"

    # which entry a delivered cross-provider message rested on
    local_barrier(a)
    delivered = [e for e in a.seen if local(e.tag) == "message" and e.get("id") == "held-hi"]
    assert len(delivered) == 1, "the accepted request's message must be delivered once"
    bob.message(ALICE, "after everything", id="direct-1")
    remote_barrier(bob, BALE)
    for stanza_id, seq in (("held-hi", 2), ("direct-1", len(want))):
        r = bale.ctl("consent", "why", ALICE, stanza_id)
        assert r.rc == 0, r
        assert f"from {BOB}" in r.out and f"under log entry {seq}:" in r.out, (
            f"message {stanza_id} was delivered under entry {seq} ({want[seq - 1]!r}): {r}")
        assert entries[seq - 1]["hash"] in r.out, r
    r = bale.ctl("consent", "why", ALICE, "held-yo")
    assert r.rc != 0, f"a declined message was never delivered: {r}"

    # an operator's change is logged as such, extends the chain and applies at once
    # (carol, declined earlier, has no sender rule, and no provider rule is left: the
    # default policy decides for her)
    carol.message(ALICE, "before the operator", id="direct-2")
    remote_barrier(carol, BALE)
    r = bale.ctl("consent", "set", ALICE, "off")
    assert r.rc == 0, r
    carol.message(ALICE, "after the operator", id="direct-3")
    remote_barrier(carol, BALE)
    local_barrier(a)
    assert [e.get("id") for e in a.seen if e.get("id") in ("direct-2", "direct-3")] == \
        ["direct-2"], "an operator's change must apply to the very next stanza"
    verified, entries = history(a)
    assert verified == "true" and entries[-1]["action"] == "policy off (operator)", \
        [e["action"] for e in entries[-2:]]
    check_chain(entries)


@pytest.mark.pv_timeout(60)
def test_writing_first_allows_the_answer(consent_providers, raw):
    """docs/protocol/consent.md 5: alice (default off) writes to bob@eitaa first: that
    adds `sender bob allow (wrote first)` and his answer is delivered; a stranger who was
    not written to stays out; an existing deny rule is left as it is.  Answers to her own
    iqs (to her resource) pass whatever her settings."""
    servers = consent_providers([BALE, EITAA], users=users("alice", "bob", "carol"))
    a = login(raw, servers[BALE], "alice")
    bob, carol = login(raw, servers[EITAA], "bob"), login(raw, servers[EITAA], "carol")
    for c in (bob, carol):
        set_consent(c, policy="everyone")
    assert settings(a)["policy"] == "off", "the default policy is off"
    remote_barrier(a, EITAA)     # an iq answer from another provider reaches policy off

    a.message(BOB, "hello bob", id="w1")
    bob.next(lambda e: child_text(e, "body") == "hello bob", 30, "alice's first message")
    bob.message(ALICE, "hi alice", id="w2")
    carol.message(ALICE, "me too", id="w3")
    remote_barrier(bob, BALE)
    remote_barrier(carol, BALE)
    local_barrier(a)
    bodies = [child_text(e, "body") for e in a.seen if local(e.tag) == "message"]
    assert "hi alice" in bodies, "the answer of someone alice wrote to first must be delivered"
    assert "me too" not in bodies, "a stranger alice did not write to stays out (policy off)"
    assert settings(a)["senders"] == {BOB: "allow"}, settings(a)
    _, entries = history(a)
    assert entries[-1]["action"] == f"sender {BOB} allow (wrote first)", entries[-1]["action"]
    check_chain(entries)

    set_consent(a, senders={BOB: "deny"})
    a.message(BOB, "one more thing", id="w4")
    bob.next(lambda e: child_text(e, "body") == "one more thing", 30, "alice's message")
    bob.message(ALICE, "yes?", id="w5")
    remote_barrier(bob, BALE)
    local_barrier(a)
    assert "yes?" not in [child_text(e, "body") for e in a.seen], \
        "writing to a denied sender must not lift the deny"
    assert settings(a)["senders"] == {BOB: "deny"}, settings(a)


@pytest.mark.pv_timeout(90)
def test_settings_stay_right_through_a_tiny_cache(consent_providers, raw):
    """consent.cache_users bounds the settings held in memory (two generations, see
    mod_consent.c).  With room for two users, three recipients with different settings
    are read again over and over; every decision must still follow each one's own
    settings, also after a change made while the user's settings were out of the cache."""
    servers = consent_providers([BALE, EITAA], consent={"cache_users": 2},
                                users=users("alice", "carol", "dave", "bob"))
    rcpt = {u: login(raw, servers[BALE], u) for u in ("alice", "carol", "dave")}
    bob = login(raw, servers[EITAA], "bob")
    set_consent(bob, policy="everyone")
    set_consent(rcpt["alice"], policy="everyone")
    set_consent(rcpt["dave"], senders={BOB: "allow"})   # carol stays off

    def round_(name, open_to):
        marks = {u: len(c.seen) for u, c in rcpt.items()}
        for u in ("alice", "carol", "dave", "alice", "dave", "carol"):
            bob.message(f"{u}@{BALE}", f"{name} {u}", id=f"{name}-{u}-{len(bob.seen)}")
        remote_barrier(bob, BALE)
        for u, c in rcpt.items():
            local_barrier(c)
            bodies = [child_text(e, "body") for e in c.seen[marks[u]:]
                      if local(e.tag) == "message" and bare(e.get("from")) == BOB]
            want = [f"{name} {u}"] * 2 if u in open_to else []
            assert bodies == want, f"round {name}: {u} got {bodies}, expected {want}"

    def reads():
        r = servers[BALE].ctl("stats")
        assert r.rc == 0, r
        return int(dict(ln.split() for ln in r.out.splitlines())["store_reads"])

    round_("one", {"alice", "dave"})
    before = reads()
    round_("two", {"alice", "dave"})
    # One read per message asks whether the account exists; more mean that settings
    # really left the cache and were read again (with room for 200 users: exactly 6).
    assert reads() - before > 6, "the settings of three users fitted a cache for two"
    set_consent(rcpt["carol"], policy="everyone")     # carol's settings were evicted
    set_consent(rcpt["alice"], senders={BOB: "deny"})
    round_("three", {"carol", "dave"})
