"""Relay through the exchange (issue 6, R): providers with route_via_exchange keep one link
(to exchange.localhost) and reach every member through it; the exchange relays only
between members, keeps RFC 6120's from-check, and refuses relay to non-members with a
stanza error; mesh and star carry the same conversation.

  alice@bale  -- star -->  exchange.localhost  -->  bob@eitaa, and bob's answer back
"""
import pytest

import s2sharness
from exlib import EXCHANGE, wait_for
from rawxmpp import NS_STANZAS, local, ns_of, to_str
from s2sharness import is_chat, is_error_message, links, login, message_xml, wait_chat

BALE, EITAA, RUBIKA, SOROUSH = s2sharness.PROVIDERS
NS_RELAY = "urn:peyvand:relay:0"


def error_conditions(el):
    """(type, defined condition, relay condition or None) of a stanza error."""
    err = [c for c in el if local(c.tag) == "error"][0]
    cond = [local(c.tag) for c in err if ns_of(c.tag) == NS_STANZAS and local(c.tag) != "text"]
    app = [local(c.tag) for c in err if ns_of(c.tag) == NS_RELAY]
    return err.get("type"), cond[0] if cond else None, app[0] if app else None


def exchange_view(ex):
    """`peyvandctl exchange` as {provider: {field: value}}."""
    r = ex.ctl("exchange")
    assert r.rc == 0, f"peyvandctl exchange failed: {r}"
    out = {}
    for line in r.out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] == "<>":
            out[parts[2]] = dict(kv.split("=", 1) for kv in parts[3:] if "=" in kv)
    return out


def stats(srv):
    r = srv.ctl("stats")
    assert r.rc == 0, r
    return {k: int(v) for k, v in (l.split() for l in r.out.splitlines() if len(l.split()) == 2)
            if v.isdigit()}


def converse(ic, raw, tag):
    """alice@bale and bob@eitaa exchange one message each way."""
    alice = ic.login(raw, BALE, "alice")
    bob = ic.login(raw, EITAA, "bob")
    alice.send_stanza(message_xml(f"bob@{EITAA}", f"{tag} salam bob", f"{tag}-1"))
    m = wait_chat(bob, f"{tag} salam bob", frm=f"alice@{BALE}")
    assert m.find(f"{{{NS_RELAY}}}origin") is None, "the origin proof is not for clients"
    bob.send_stanza(message_xml(f"alice@{BALE}/raw", f"{tag} salam alice", f"{tag}-2"))
    wait_chat(alice, f"{tag} salam alice", frm=f"bob@{EITAA}")
    return alice, bob


def test_star_relays_both_ways(interconnect, raw):
    ic = interconnect("star", providers=[BALE, EITAA])
    converse(ic, raw, "star")
    bale, ex = ic[BALE], ic.exchange
    # bale keeps one link: to the exchange, none to eitaa
    remotes = {l.remote for l in links(bale)}
    assert EXCHANGE in remotes and EITAA not in remotes, remotes
    view = exchange_view(ex)
    assert int(view[BALE]["in"]) >= 1 and int(view[EITAA]["out"]) >= 1, view
    assert int(view[EITAA]["in"]) >= 1 and int(view[BALE]["out"]) >= 1, view
    assert int(view[BALE]["in_bytes"]) > 0, view
    # the recipient's provider verified the sender's origin proof
    assert stats(ic[EITAA])["s2s_relay_origin_ok"] >= 1
    assert stats(ex)["s2s_relay_forwarded"] >= 2


@pytest.mark.parametrize("layout", ["mesh", "star", "both"])
def test_same_conversation_mesh_or_star(interconnect, raw, layout):
    ic = interconnect(layout, providers=[BALE, EITAA])
    converse(ic, raw, layout)
    bale = ic[BALE]
    remotes = {l.remote for l in links(bale)}
    if layout == "star":
        assert EITAA not in remotes
    else:
        assert EITAA in remotes          # direct route: no relay
        if ic.exchange:
            assert int(exchange_view(ic.exchange).get(EITAA, {}).get("out", 0)) == 0


def test_relay_to_non_member_refused_with_stanza_error(interconnect, raw):
    # bale lets "stranger.localhost" through its own filter; the exchange does not
    ic = interconnect("star", providers=[BALE, EITAA],
                      hosts={BALE: {"interconnect": {"members": {"stranger.localhost": {}}}}})
    alice = ic.login(raw, BALE, "alice")
    alice.send_stanza(message_xml("x@stranger.localhost", "hello?", "nm-1"))
    e = alice.next(lambda el: is_error_message(el, {"nm-1"}), 20, "relay refusal")
    assert e.get("from") == EXCHANGE, to_str(e)
    assert error_conditions(e) == ("cancel", "remote-server-not-found", "not-member"), to_str(e)
    # an iq too
    el = alice.iq("get", "<ping xmlns='urn:xmpp:ping'/>", to="stranger.localhost", timeout=20)
    assert el.get("type") == "error" and error_conditions(el)[2] == "not-member", to_str(el)
    assert int(exchange_view(ic.exchange)[BALE]["refused_member"]) >= 2
    # and the link keeps working
    bob = ic.login(raw, EITAA, "bob")
    alice.send_stanza(message_xml(f"bob@{EITAA}", "still here", "nm-2"))
    wait_chat(bob, "still here", frm=f"alice@{BALE}")


def test_non_member_provider_cannot_link(interconnect, fake_peer):
    ic = interconnect("star", providers=[BALE, EITAA])
    p = fake_peer(ic.exchange, "stranger.localhost")
    try:
        p.connect()
        p.message(f"bob@{EITAA}", "let me in")
        cond = p.refusal()
    except s2sharness.PeerRefused as e:
        cond = e.condition
    assert cond == "policy-violation", cond


def test_exchange_keeps_the_from_check(interconnect, fake_peer, raw):
    ic = interconnect("star", providers=[BALE, EITAA])
    p = fake_peer(ic.exchange, BALE)
    p.connect()
    p.message(f"bob@{EITAA}", "from someone else", frm=f"alice@{RUBIKA}/x")
    assert p.refusal() == "invalid-from"
    # others unaffected
    alice = ic.login(raw, BALE, "alice")
    bob = ic.login(raw, EITAA, "bob")
    alice.send_stanza(message_xml(f"bob@{EITAA}", "after the forgery", "ff-1"))
    wait_chat(bob, "after the forgery", frm=f"alice@{BALE}")
