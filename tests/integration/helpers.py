"""Shared names for the integration tests (users, JIDs, small helpers)."""
import time

from rawxmpp import NS_CLIENT, NS_ROSTER, is_presence, to_str

USERS = {"alice": "alice-secret", "bob": "bob-secret", "carol": "carol-secret"}
DOMAIN = "localhost"


def jid(user, domain=DOMAIN):
    return f"{user}@{domain}"


def login_raw(raw_factory, server, user, resource="raw", password=None, **kw):
    """A logged-in raw client for `user` (password from USERS unless given)."""
    c = raw_factory(server.port)
    c.login(user, password or USERS[user], resource=resource, **kw)
    return c


def list_users(srv, domain=DOMAIN):
    """`peyvandctl user list DOMAIN` as sorted bare JIDs (lines may be JIDs or localparts)."""
    r = srv.ctl("user", "list", domain)
    assert r.rc == 0, r
    out = []
    for line in r.out.splitlines():
        line = line.strip()
        if line:
            out.append(line if "@" in line else f"{line}@{domain}")
    return sorted(out)


def wait_until(cond, timeout=10.0, interval=0.1, what="condition"):
    """Call cond until it returns a truthy value (returned) or the time is up."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s (last: {v!r})")
        time.sleep(interval)


# --- XEP-0198 -------------------------------------------------------------------------

def wait_ack(c, want, timeout=10):
    """Ask for acks until the server's h reaches `want` (it may lag while it commits)."""
    deadline = time.monotonic() + timeout
    hs = []
    while True:
        h = c.request_ack(timeout=5)
        hs.append(h)
        assert h <= want, f"server acked {h} stanzas but only {want} were sent (h history {hs})"
        assert hs == sorted(hs), f"h went backwards: {hs}"
        if h == want:
            return hs
        if time.monotonic() > deadline:
            raise AssertionError(f"h never reached {want}: {hs}")
        time.sleep(0.2)


# --- roster and subscriptions (RFC 6121 2-3) ---------------------------------------

IQ = f"{{{NS_CLIENT}}}iq"
Q = f"{{{NS_ROSTER}}}query"
ITEM = f"{{{NS_ROSTER}}}item"


def roster_push(about):
    def pred(el):
        if el.tag != IQ or el.get("type") != "set":
            return False
        item = el.find(f"{Q}/{ITEM}")
        return item is not None and item.get("jid") == about
    return pred


def item_of(push):
    return push.find(f"{Q}/{ITEM}")


def presence(frm, type=None, full=False):
    def pred(el):
        if not is_presence(el, frm=frm, type=type):
            return False
        return "/" in el.get("from", "") if full else True
    return pred


async def expect_push(client, about, subscription, ask=None):
    push = await client.wait_for(roster_push(about), 10, f"roster push about {about}")
    item = item_of(push)
    assert item.get("subscription", "none") == subscription, \
        f"push to {client.boundjid}: expected subscription={subscription}: {to_str(push)}"
    assert item.get("ask") == ask, f"push to {client.boundjid}: expected ask={ask}: {to_str(push)}"
    assert push.get("from") in (None, "", client.boundjid.bare), \
        f"roster push from a foreign JID: {to_str(push)}"
    return push


async def befriend(a, b):
    """RFC 6121 3.1 both ways: a subscribes to b, b approves, b subscribes to a, a approves.
    Both must be logged in and available."""
    A, B = a.boundjid.bare, b.boundjid.bare
    # a -> subscribe -> b
    a.send_presence(pto=B, ptype="subscribe")
    await expect_push(a, B, "none", ask="subscribe")
    sub = await b.wait_for(presence(A, "subscribe"), 10, "subscription request")
    assert sub.get("from") == A, f"subscribe must come from the bare JID: {to_str(sub)}"
    # b approves
    b.send_presence(pto=A, ptype="subscribed")
    await expect_push(b, A, "from")
    await expect_push(a, B, "to")
    await a.wait_for(presence(B, "subscribed"), 10, "subscribed")
    await a.wait_for(presence(B, "available", full=True), 10, "b's presence after approval")
    # b -> subscribe -> a
    b.send_presence(pto=A, ptype="subscribe")
    await expect_push(b, A, "from", ask="subscribe")
    await a.wait_for(presence(B, "subscribe"), 10, "subscription request")
    # a approves
    a.send_presence(pto=B, ptype="subscribed")
    await expect_push(a, B, "both")
    await expect_push(b, A, "both")
    await b.wait_for(presence(A, "subscribed"), 10, "subscribed")
    await b.wait_for(presence(A, "available", full=True), 10, "a's presence after approval")


async def roster_items(client, ver=None):
    q = f"<query xmlns='{NS_ROSTER}'" + (f" ver='{ver}'" if ver is not None else "") + "/>"
    res = await client.iq_get(q)
    assert res.get("type") == "result", to_str(res)
    return res
