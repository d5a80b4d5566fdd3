"""Four providers -- bale, eitaa, rubika and soroush.localhost -- each a peyvand with a
certificate from the test CA and static routes to the other three: a user on each
messages a user on every other (12 directed pairs), the links authenticate with
certificates (SASL EXTERNAL, `peyvandctl links` says auth=external), and presence
subscriptions and iqs cross providers too (RFC 6120 8, RFC 6121 3)."""
import asyncio

import pytest

from helpers import USERS, befriend
from rawxmpp import is_message, to_str
from s2sharness import PROVIDERS, bare, links, login, wait_chat


@pytest.mark.pv_timeout(150)
def test_four_providers_message_each_other(providers, slix, run):
    servers = providers(PROVIDERS)
    clients = {d: slix(f"alice@{d}/mesh", USERS["alice"]) for d in PROVIDERS}

    async def exchange(round_):
        for d, c in clients.items():
            for other in PROVIDERS:
                if other != d:
                    c.send_message(mto=f"alice@{other}", mbody=f"{round_} {d} to {other}",
                                   mtype="chat")
        for d, c in clients.items():
            for other in PROVIDERS:
                if other == d:
                    continue
                body = f"{round_} {other} to {d}"
                m = await c.wait_for(lambda e: is_message(e, body) and e.get("type") != "error",
                                     30, f"{body!r}")
                assert bare(m.get("from")) == f"alice@{other}", to_str(m)
                assert m.get("from") == f"alice@{other}/mesh", \
                    f"the full JID of the sender must survive the s2s hop: {to_str(m)}"
        errors = [r[0] for c in clients.values() for r in c.received
                  if r[0].tag.endswith("}message") and r[0].get("type") == "error"]
        assert not errors, f"error bounces: {[to_str(e)[:300] for e in errors]}"

    async def main():
        await asyncio.gather(*(c.login(servers[d].port) for d, c in clients.items()))
        await exchange("first")        # opens the links
        await exchange("second")       # over the established links
    run(main(), 120)

    for d, srv in servers.items():
        ls = links(srv)
        for other in PROVIDERS:
            if other == d:
                continue
            mine = [l for l in ls if l.local == d and l.remote == other]
            assert mine, f"{d}: `peyvandctl links` has no line for {d} -> {other}: {ls}"
            auths = {l.get("auth") for l in mine}
            assert auths == {"external"}, (
                f"{d} -> {other}: links must be certificate-authenticated (auth=external) "
                f"between providers with CA-signed certificates: {mine}")
            assert all(l.get("tls", "").startswith("TLSv1.") for l in mine), mine


def test_offline_recipient_gets_remote_message(providers, raw):
    """A message from another provider to an offline user is stored and delivered at
    login, with the sender's provider in its from address."""
    servers = providers(PROVIDERS[:2])
    bale, eitaa = servers.values()
    a = login(raw, bale, "alice")
    a.message("bob@eitaa.localhost", "while you were away")
    a.message("bob@eitaa.localhost", "and another")
    b = login(raw, eitaa, "bob", presence=True)
    m1 = wait_chat(b, "while you were away", "alice@bale.localhost", timeout=30)
    m2 = wait_chat(b, "and another", "alice@bale.localhost", timeout=10)
    assert b.seen.index(m1) < b.seen.index(m2), "offline messages out of order"


def test_subscription_and_presence_across_providers(providers, slix, run):
    servers = providers(PROVIDERS[:2])
    a = slix("alice@bale.localhost/p", USERS["alice"])
    b = slix("bob@eitaa.localhost/p", USERS["bob"])

    async def main():
        await a.login(servers["bale.localhost"].port)
        await b.login(servers["eitaa.localhost"].port)
        await befriend(a, b)
    run(main(), 90)


def test_iq_ping_to_remote_server_and_user(providers, raw):
    """XEP-0199 across s2s: to the remote server itself and to a remote user's full JID
    (answered by the remote client), and an iq to a missing remote user comes back as an
    error rather than getting lost."""
    servers = providers(PROVIDERS[:2])
    bale, eitaa = servers.values()
    a = login(raw, bale, "alice")
    b = login(raw, eitaa, "bob", resource="pong")
    res = a.iq("get", "<ping xmlns='urn:xmpp:ping'/>", to="eitaa.localhost", timeout=30)
    assert res.get("type") == "result", f"server ping over s2s: {to_str(res)}"
    assert res.get("from") == "eitaa.localhost", to_str(res)
    # bob's client answers the ping itself (by hand, to see it arrive)
    b.auto_pong = False
    a.send_stanza("<iq type='get' id='cping' to='bob@eitaa.localhost/pong'>"
                  "<ping xmlns='urn:xmpp:ping'/></iq>")
    ping = b.next(lambda e: e.tag.endswith("}iq") and e.get("id") == "cping", 20,
                  "alice's ping at bob's client")
    assert ping.get("from") == "alice@bale.localhost/raw", to_str(ping)
    b.send_stanza("<iq type='result' id='cping' to='alice@bale.localhost/raw'/>")
    res = a.next(lambda e: e.tag.endswith("}iq") and e.get("id") == "cping", 20,
                 "bob's pong")
    assert res.get("type") == "result", f"client ping over s2s: {to_str(res)}"
    assert res.get("from") == "bob@eitaa.localhost/pong", to_str(res)
    res = a.iq("get", "<query xmlns='jabber:iq:version'/>", to="nobody@eitaa.localhost/x",
               timeout=20)
    assert res.get("type") == "error", to_str(res)
    # and the other way
    res = b.iq("get", "<ping xmlns='urn:xmpp:ping'/>", to="bale.localhost", timeout=30)
    assert res.get("type") == "result", to_str(res)
