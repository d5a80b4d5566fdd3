"""Roster and presence (RFC 6121 2-4, XEP-0237 roster versioning), driven by slixmpp.

alice and bob subscribe to each other step by step; every roster push and presence
the RFC requires is waited for and its subscription state checked."""
import asyncio

from helpers import (ITEM, Q, USERS, befriend, expect_push, item_of, jid, presence, roster_items,
                     roster_push)
from rawxmpp import NS_CLIENT, NS_ROSTER, is_presence, to_str

def test_subscription_handshake_and_roster(server, slix, run):
    alice = slix(jid("alice"), USERS["alice"])
    bob = slix(jid("bob"), USERS["bob"])

    async def scenario():
        await alice.login(server.port)
        await bob.login(server.port)
        await befriend(alice, bob)
        res = await roster_items(alice)
        items = {i.get("jid"): i.get("subscription") for i in res.iter(ITEM)}
        assert items == {jid("bob"): "both"}, to_str(res)
        res = await roster_items(bob)
        items = {i.get("jid"): i.get("subscription") for i in res.iter(ITEM)}
        assert items == {jid("alice"): "both"}, to_str(res)
    run(scenario())


def test_roster_versioning(server, slix, run):
    alice = slix(jid("alice"), USERS["alice"])

    async def scenario():
        await alice.login(server.port)
        assert "rosterver" in alice.features, "no urn:xmpp:features:rosterver stream feature"
        res = await roster_items(alice, ver="")
        q = res.find(Q)
        assert q is not None and q.get("ver") is not None, \
            f"roster result without ver (XEP-0237): {to_str(res)}"
        v1 = q.get("ver")
        # the current version: an empty result (RFC 6121 2.6.3)
        res = await roster_items(alice, ver=v1)
        assert res.find(Q) is None, f"get with current ver must return an empty result: {to_str(res)}"
        # a change: roster set -> push with a new ver
        await alice.iq_set(f"<query xmlns='{NS_ROSTER}'><item jid='{jid('carol')}' name='Carol'>"
                           f"<group>Friends</group></item></query>")
        push = await alice.wait_for(roster_push(jid("carol")), 10, "roster push")
        v2 = push.find(Q).get("ver")
        assert v2 and v2 != v1, f"push must carry a new version: {to_str(push)}"
        res = await roster_items(alice, ver=v2)
        assert res.find(Q) is None, to_str(res)
        # an old version: either the full roster or an empty result plus pushes
        res = await roster_items(alice, ver=v1)
        q = res.find(Q)
        if q is not None:
            assert q.get("ver") == v2
            assert [i.get("jid") for i in q.iter(ITEM)] == [jid("carol")], to_str(res)
    run(scenario())


def test_roster_set_and_remove(server, slix, run):
    alice = slix(jid("alice"), USERS["alice"])
    alice2 = slix(jid("alice") + "/second", USERS["alice"])

    async def scenario():
        await alice.login(server.port)
        await alice2.login(server.port)
        r = await alice.iq_set(f"<query xmlns='{NS_ROSTER}'><item jid='{jid('carol')}' "
                               f"name='Carol C'><group>Work</group></item></query>")
        assert r.get("type") == "result", to_str(r)
        # every interested resource gets the push (RFC 6121 2.1.6)
        for c in (alice, alice2):
            push = await c.wait_for(roster_push(jid("carol")), 10, "roster push")
            item = item_of(push)
            assert item.get("name") == "Carol C"
            assert item.get("subscription", "none") == "none"
            assert [g.text for g in item.iter(f"{{{NS_ROSTER}}}group")] == ["Work"]
        res = await roster_items(alice)
        assert [i.get("jid") for i in res.iter(ITEM)] == [jid("carol")]
        r = await alice.iq_set(f"<query xmlns='{NS_ROSTER}'><item jid='{jid('carol')}' "
                               f"subscription='remove'/></query>")
        assert r.get("type") == "result", to_str(r)
        push = await alice2.wait_for(roster_push(jid("carol")), 10, "remove push")
        assert item_of(push).get("subscription") == "remove", to_str(push)
        res = await roster_items(alice)
        assert list(res.iter(ITEM)) == [], to_str(res)
    run(scenario())


def test_presence_broadcast_and_probe(server, slix, run):
    alice = slix(jid("alice") + "/desk", USERS["alice"])
    bob = slix(jid("bob") + "/phone", USERS["bob"])
    carol = slix(jid("carol"), USERS["carol"])

    async def scenario():
        await alice.login(server.port)
        await bob.login(server.port)
        await carol.login(server.port)
        await befriend(alice, bob)
        # alice changes her presence: bob (subscribed) sees it, carol (stranger) does not
        alice.send_presence(pshow="away", pstatus="lunch")
        p = await bob.wait_for(lambda e: is_presence(e, frm=str(alice.boundjid))
                               and e.findtext(f"{{{NS_CLIENT}}}status") == "lunch", 10,
                               "alice's away presence")
        assert p.findtext(f"{{{NS_CLIENT}}}show") == "away"
        assert p.get("from") == str(alice.boundjid)
        await carol.none_for(lambda e: is_presence(e, frm=jid("alice")), 0.5, "presence leak")
        # bob sets a status; a new resource of alice gets it at login (probe, RFC 6121 4.3)
        bob.send_presence(pstatus="on the train")
        await alice.wait_for(lambda e: is_presence(e, frm=str(bob.boundjid))
                             and e.findtext(f"{{{NS_CLIENT}}}status") == "on the train", 10)
        alice2 = slix(jid("alice") + "/laptop", USERS["alice"])
        await alice2.login(server.port)
        p = await alice2.wait_for(lambda e: is_presence(e, frm=str(bob.boundjid), type="available"),
                                  10, "bob's presence after login (probe)")
        assert p.findtext(f"{{{NS_CLIENT}}}status") == "on the train", to_str(p)
        # and bob learns about the new resource
        await bob.wait_for(lambda e: is_presence(e, frm=str(alice2.boundjid), type="available"), 10)
    run(scenario())


def test_unavailable_on_disconnect(server, slix, run):
    alice = slix(jid("alice") + "/a", USERS["alice"])
    bob = slix(jid("bob") + "/b", USERS["bob"])

    async def scenario():
        await alice.login(server.port)
        await bob.login(server.port)
        await befriend(alice, bob)
        full = str(alice.boundjid)
        # a clean logout
        await alice.quit()
        p = await bob.wait_for(lambda e: is_presence(e, frm=full, type="unavailable"), 10,
                               "unavailable after clean logout")
        assert p.get("from") == full
        # a dead connection (no </stream:stream>): the server notices the TCP close
        alice2 = slix(jid("alice") + "/a2", USERS["alice"])
        await alice2.login(server.port)
        full2 = str(alice2.boundjid)
        await bob.wait_for(lambda e: is_presence(e, frm=full2, type="available"), 10)
        alice2.abort()
        await bob.wait_for(lambda e: is_presence(e, frm=full2, type="unavailable"), 15,
                           "unavailable after the connection dropped")
    run(scenario())


def test_directed_presence(server, slix, run):
    alice = slix(jid("alice") + "/a", USERS["alice"])
    carol = slix(jid("carol") + "/c", USERS["carol"])

    async def scenario():
        await alice.login(server.port)
        await carol.login(server.port)
        # no subscription between them: directed presence only (RFC 6121 4.6)
        alice.send_presence(pto=str(carol.boundjid), pstatus="hello carol")
        p = await carol.wait_for(lambda e: is_presence(e, frm=str(alice.boundjid)), 10,
                                 "directed presence")
        assert p.findtext(f"{{{NS_CLIENT}}}status") == "hello carol"
        # a broadcast presence does not reach carol
        alice.send_presence(pstatus="for subscribers only")
        await carol.none_for(lambda e: is_presence(e, frm=jid("alice"))
                             and e.findtext(f"{{{NS_CLIENT}}}status") == "for subscribers only",
                             0.7, "broadcast presence to a non-subscriber")
        # when alice goes offline, carol is told (RFC 6121 4.6.3)
        full = str(alice.boundjid)
        await alice.quit()
        await carol.wait_for(lambda e: is_presence(e, frm=full, type="unavailable"), 10,
                             "unavailable after directed presence")
    run(scenario())


def test_subscription_request_to_offline_user_is_delivered_later(server, slix, run):
    alice = slix(jid("alice"), USERS["alice"])

    async def scenario():
        await alice.login(server.port)
        alice.send_presence(pto=jid("bob"), ptype="subscribe")
        await expect_push(alice, jid("bob"), "none", ask="subscribe")
        await asyncio.sleep(0.3)
        bob = slix(jid("bob"), USERS["bob"])
        await bob.login(server.port)
        # RFC 6121 3.1.3: the request is stored and delivered at the contact's next login
        await bob.wait_for(presence(jid("alice"), "subscribe"), 10, "stored subscribe")
    run(scenario())


def test_unsubscribe_and_cancel(server, slix, run):
    alice = slix(jid("alice") + "/a", USERS["alice"])
    bob = slix(jid("bob") + "/b", USERS["bob"])

    async def scenario():
        await alice.login(server.port)
        await bob.login(server.port)
        await befriend(alice, bob)
        A, B = jid("alice"), jid("bob")
        # alice stops watching bob (RFC 6121 3.3)
        alice.send_presence(pto=B, ptype="unsubscribe")
        await expect_push(alice, B, "from")
        await expect_push(bob, A, "to")
        await bob.wait_for(presence(A, "unsubscribe"), 10, "unsubscribe")
        await alice.wait_for(lambda e: is_presence(e, frm=str(bob.boundjid), type="unavailable"), 10,
                             "bob's unavailable presence after unsubscribing")
        # alice stops bob watching her (RFC 6121 3.2)
        alice.send_presence(pto=B, ptype="unsubscribed")
        await expect_push(alice, B, "none")
        await expect_push(bob, A, "none")
        await bob.wait_for(presence(A, "unsubscribed"), 10, "unsubscribed")
        await bob.wait_for(lambda e: is_presence(e, frm=str(alice.boundjid), type="unavailable"), 10,
                           "alice's unavailable presence after cancelling")
        # no presence flows any more
        alice.send_presence(pstatus="private now")
        await bob.none_for(lambda e: is_presence(e, frm=A)
                           and e.findtext(f"{{{NS_CLIENT}}}status") == "private now", 0.7,
                           "presence after the subscription was cancelled")
        res = await roster_items(alice)
        assert [(i.get("jid"), i.get("subscription")) for i in res.iter(ITEM)] == [(B, "none")]
    run(scenario())


def test_unsolicited_subscribed_changes_nothing(server, slix, run):
    alice = slix(jid("alice") + "/a", USERS["alice"])
    bob = slix(jid("bob") + "/b", USERS["bob"])

    async def scenario():
        await alice.login(server.port)
        await bob.login(server.port)
        # bob "approves" a request alice never made (RFC 6121 3.1.5 / 3.4: at most a
        # pre-approval on bob's side); alice's subscription must not change
        bob.send_presence(pto=jid("alice"), ptype="subscribed")
        await alice.none_for(lambda e: roster_push(jid("bob"))(e) or is_presence(e, frm=jid("bob")),
                             0.7, "roster push or presence from an unsolicited 'subscribed'")
        res = await roster_items(alice)
        assert list(res.iter(ITEM)) == [], to_str(res)
        alice.send_presence(pstatus="still private")
        await bob.none_for(lambda e: is_presence(e, frm=jid("alice"))
                           and e.findtext(f"{{{NS_CLIENT}}}status") == "still private", 0.5)
    run(scenario())
