"""Nothing about a held request reaches the sender (issue 4): while bob@eitaa's first
message waits as a request of alice@bale (policy contacts, online, with a vCard), bob
gets no delivery receipt, no chat state, no presence, no profile: every stanza he sends
is answered exactly as the same stanza to ghost@bale.localhost, an account that does
not exist -- the same bytes apart from the stanza id and the recipient's address:
silence for messages and presence, service-unavailable for iq get (bare or full JID).
Alice's client receives none of it until she accepts."""
import pytest

from consentlib import (BALE, EITAA, NS_CHATSTATES, NS_DISCO_INFO, NS_MARKERS, NS_RECEIPTS,
                        NS_VCARD, accept, bare, child_text, held, local_barrier, login,
                        remote_barrier, requests, sender_view, set_consent, set_vcard, users,
                        vcard_fn)
from rawxmpp import local, stanza_error_condition, to_str

ALICE = f"alice@{BALE}"
GHOST = f"ghost@{BALE}"
BOB = f"bob@{EITAA}"

# (name, stanza template with {to} and {id}, address suffix, held?, answer)
PROBES = [
    ("message with receipt request, marker, chat state",
     "<message to='{to}' type='chat' id='{id}'><body>hello, it is bob</body>"
     f"<request xmlns='{NS_RECEIPTS}'/><markable xmlns='{NS_MARKERS}'/>"
     f"<active xmlns='{NS_CHATSTATES}'/></message>", "", True, None),
    ("chat state alone",
     f"<message to='{{to}}' type='chat' id='{{id}}'><composing xmlns='{NS_CHATSTATES}'/></message>",
     "", False, None),
    ("subscription request", "<presence to='{to}' type='subscribe' id='{id}'/>", "", True, None),
    ("presence probe", "<presence to='{to}' type='probe' id='{id}'/>", "", False, None),
    ("directed presence", "<presence to='{to}' id='{id}'><status>hi</status></presence>",
     "", False, None),
    ("vCard of the bare JID",
     f"<iq to='{{to}}' type='get' id='{{id}}'><vCard xmlns='{NS_VCARD}'/></iq>",
     "", False, "service-unavailable"),
    ("disco#info of the bare JID",
     f"<iq to='{{to}}' type='get' id='{{id}}'><query xmlns='{NS_DISCO_INFO}'/></iq>",
     "", False, "service-unavailable"),
    ("ping to a resource", "<iq to='{to}' type='get' id='{id}'><ping xmlns='urn:xmpp:ping'/></iq>",
     "/r1", False, "service-unavailable"),
    ("version of a resource",
     "<iq to='{to}' type='get' id='{id}'><query xmlns='jabber:iq:version'/></iq>",
     "/r1", False, "service-unavailable"),
    ("message to a resource",
     "<message to='{to}' type='chat' id='{id}'><body>are you there?</body></message>",
     "/r1", True, None),
]


@pytest.mark.pv_timeout(90)
def test_nothing_about_a_held_request_reaches_the_sender(consent_providers, raw):
    servers = consent_providers([BALE, EITAA], users=users("alice", "bob"))
    a = login(raw, servers[BALE], "alice", resource="r1")
    set_vcard(a, "Alice")
    set_consent(a, policy="contacts")
    bob = login(raw, servers[EITAA], "bob")
    set_consent(bob, policy="everyone")    # bob's provider lets through whatever bale says
    mark = len(a.seen)
    probe_ids = set()
    for i, (name, tpl, suffix, _, _) in enumerate(PROBES):
        for who, rcpt in (("a", ALICE), ("g", GHOST)):
            bob.send_stanza(tpl.format(to=rcpt + suffix, id=f"{who}{i}"))
            probe_ids.add(f"{who}{i}")
    # alice is around: she changes her presence meanwhile (bob is no contact of hers)
    a.presence(show="away", status="busy")
    remote_barrier(bob, BALE)
    local_barrier(a)

    leaked = [to_str(e)[:300] for e in a.seen[mark:] if bare(e.get("from")) == BOB]
    assert not leaked, f"nothing from bob may reach alice's client before she accepts: {leaked}"
    h = held(a, BOB) or []
    assert [e.get("id") for e in h] == [f"a{i}" for i, p in enumerate(PROBES) if p[3]], (
        f"held: {[to_str(e)[:200] for e in h]}")
    for i, (name, tpl, suffix, _, answer) in enumerate(PROBES):
        answers = [e for e in bob.seen if e.get("id") == f"a{i}"]
        if answer:
            assert len(answers) == 1 and stanza_error_condition(answers[0]) == answer, (
                f"{name}: expected <{answer}/>, got {[to_str(e) for e in answers]}")
        else:
            assert not answers, \
                f"{name}: must be answered by silence: {[to_str(e) for e in answers]}"
        mine = sender_view(bob, ALICE, {f"a{i}"}, probe_ids)
        ghost = sender_view(bob, GHOST, {f"g{i}"}, probe_ids)
        assert mine == ghost, (f"{name}: bob must see exactly what he sees for a non-existent "
                               f"account:\n  alice: {mine}\n  ghost: {ghost}")
    from_alice = [to_str(e)[:300] for e in bob.seen if bare(e.get("from")) == ALICE
                  and e.get("id") not in probe_ids]
    assert not from_alice, f"no receipt, marker, chat state or presence for bob: {from_alice}"

    # once alice accepts, the held stanzas arrive intact and bob may see her profile
    accept(a, BOB)
    local_barrier(a)
    got = [e for e in a.seen[mark:] if bare(e.get("from")) == BOB]
    assert [e.get("id") for e in got] == [f"a{i}" for i, p in enumerate(PROBES) if p[3]], \
        [to_str(e)[:200] for e in got]
    first = got[0]
    assert {local(x.tag) for x in first} >= {"body", "request", "markable", "active"}, \
        f"the held message must be delivered as sent: {to_str(first)}"
    assert child_text(first, "body") == "hello, it is bob"
    res = bob.iq("get", f"<vCard xmlns='{NS_VCARD}'/>", to=ALICE, timeout=20)
    assert res.get("type") == "result" and vcard_fn(res) == "Alice", to_str(res)
    assert requests(a) == []
