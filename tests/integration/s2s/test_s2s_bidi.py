"""XEP-0288 bidirectional server-to-server streams: one TCP connection serves both
directions between two providers.

bale and eitaa talk; whichever connects first, the other sends its stanzas back on that
same connection (the receiving side's link is "carried" by the inbound stream:
`peyvandctl links` says bidi=carrier there, bidi=yes on the initiator's own link).
The number of connections is read from the kernel: the ESTABLISHED TCP sockets of the
two server processes (/proc/PID/fd and /proc/PID/net/tcp) that are two ends of the same
connection.  With s2s.bidi: false on either side there are two connections, as before.

  one connection      a message each way, then more: one connection, and the receiving
                      side never connected out (s2s_out_connects 0)
  both at once        both send first: two connections for a moment, then one (each
                      side keeps the one opened by the domain that sorts first)
  bidi off            on either side: two connections, messages flow both ways
  dialback            certificates that do not name the domains: bidi with dialback
  hand-written peer   bale offers <bidi/> before and after TLS and not after
                      authentication; once a peer asked for it, a message for the peer
                      goes out on the peer's own stream with its stanza-id, the peer's
                      <a h/> there acknowledges it, and what it did not acknowledge is
                      sent again on its next stream (same stanza-id)
  hand-written        bale asks for bidi after TLS, before SASL; the receiver's stanzas
  receiver            on bale's connection are delivered, counted (<a h/>), deduplicated
                      by stanza-id, and refused with invalid-from for another domain
  kill -9             of the initiator or of the receiver while messages flow both ways
                      over the one connection: every acknowledged message arrives once,
                      in order, in both directions; afterwards one connection again
"""
import os
import re
import socket
import ssl
import time

import pytest

from rawxmpp import NS_SASL, NS_SM, NS_STREAM, NS_TLS, RawClient, local, to_str
from s2sharness import (NS_SERVER, NS_SID, alloc_ports, collect_bodies, links,
                        links_between, login, send_acked, wait_chat, wait_link)
from test_s2s_durability import check_exactly_once_in_order

BALE, EITAA, FAKE = "bale.localhost", "eitaa.localhost", "fake.localhost"
NS_BIDI_FEATURE = "urn:xmpp:features:bidi"
NS_BIDI = "urn:xmpp:bidi"


# --- what the kernel says ------------------------------------------------------------

def _established(pid):
    """{(local, remote)} hex endpoints of the ESTABLISHED TCP sockets process pid holds."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue            # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    out = set()
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}") as f:
                rows = f.read().splitlines()[1:]
        except FileNotFoundError:
            continue
        for row in rows:
            cols = row.split()
            if cols[3] == "01" and cols[9] in inodes:        # 01 = ESTABLISHED
                out.add((cols[1], cols[2]))
    return out


def connections(a, b):
    """TCP connections between the processes of servers a and b (both ends seen)."""
    ea, eb = _established(a.pid), _established(b.pid)
    return sorted((l, r) for (l, r) in ea if (r, l) in eb)


def wait_connections(a, b, n, timeout=15):
    deadline = time.monotonic() + timeout
    while True:
        got = connections(a, b)
        if len(got) == n:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"expected {n} connection(s) between {a.domain} and "
                                 f"{b.domain}, found {len(got)}: {got}\n"
                                 f"{a.domain} links: {a.ctl('links').out}\n"
                                 f"{b.domain} links: {b.ctl('links').out}")
        time.sleep(0.2)


def stat(srv, name):
    r = srv.ctl("stats")
    assert r.rc == 0, r
    m = re.search(rf"^{name} (\d+)$", r.out, re.M)
    assert m, f"no {name} in stats: {r.out}"
    return int(m.group(1))


def the_link(srv, here, there):
    ls = links_between(srv, here, there)
    assert len(ls) == 1, f"{here} -> {there}: expected one link line: {ls or links(srv)}"
    return ls[0]


def pair(providers, raw, **kw):
    """bale and eitaa (providers(**kw)), alice logged in on bale, bob on eitaa."""
    servers = providers([BALE, EITAA], **kw)
    bale, eitaa = servers[BALE], servers[EITAA]
    return bale, eitaa, login(raw, bale, "alice"), login(raw, eitaa, "bob")


def exchange(a, b, tag, rounds=3):
    """alice@bale and bob@eitaa message each other, each message waited for."""
    for i in range(rounds):
        a.message(f"bob@{EITAA}", f"{tag} a->b {i}")
        wait_chat(b, f"{tag} a->b {i}", f"alice@{BALE}", timeout=30)
        b.message(f"alice@{BALE}", f"{tag} b->a {i}")
        wait_chat(a, f"{tag} b->a {i}", f"bob@{EITAA}", timeout=30)


# --- peyvand to peyvand ----------------------------------------------------------------

@pytest.mark.pv_timeout(90)
def test_one_connection_serves_both_directions(providers, raw):
    bale, eitaa, a, b = pair(providers, raw)
    # bale speaks first: its connection is the one
    a.message(f"bob@{EITAA}", "first")
    wait_chat(b, "first", f"alice@{BALE}", timeout=30)
    b.message(f"alice@{BALE}", "answer on the same connection")
    wait_chat(a, "answer on the same connection", f"bob@{EITAA}", timeout=30)
    exchange(a, b, "more")
    assert len(wait_connections(bale, eitaa, 1)) == 1
    assert stat(eitaa, "s2s_out_connects") == 0, "eitaa opened a connection of its own"
    assert stat(bale, "s2s_out_connects") == 1, "bale connected more than once"
    mine = the_link(bale, BALE, EITAA)
    assert mine.get("bidi") == "yes" and mine.get("auth") == "external", mine
    carried = the_link(eitaa, EITAA, BALE)
    assert carried.get("bidi") == "carrier", carried
    assert carried.get("state") == "connected" and carried.get("auth") == "external", carried
    assert carried.get("tls", "").startswith("TLSv1."), carried
    assert carried.int("sent") == 4 and carried.int("queue") == 0, carried
    # every stanza eitaa sent there was acknowledged by bale with XEP-0198 on that stream
    wait_link(eitaa, EITAA, BALE, lambda l: l.int("acked") == 4, timeout=10, what="acked=4")
    assert "link up on the peer's connection" in eitaa.log_text()


@pytest.mark.pv_timeout(120)
def test_both_connect_at_once_then_one_connection(providers, raw):
    bale, eitaa, a, b = pair(providers, raw)
    a.message(f"bob@{EITAA}", "at once 1")
    b.message(f"alice@{BALE}", "at once 2")
    wait_chat(b, "at once 1", f"alice@{BALE}", timeout=30)
    wait_chat(a, "at once 2", f"bob@{EITAA}", timeout=30)
    wait_connections(bale, eitaa, 1, timeout=20)
    exchange(a, b, "after")
    assert len(wait_connections(bale, eitaa, 1)) == 1
    # nothing arrived twice while the links moved to the one connection
    assert not a.collect(lambda e: "at once" in (e.findtext("{jabber:client}body") or ""), 1.0)
    assert not b.collect(lambda e: "at once" in (e.findtext("{jabber:client}body") or ""), 0.2)
    kinds = {the_link(bale, BALE, EITAA).get("bidi"), the_link(eitaa, EITAA, BALE).get("bidi")}
    assert kinds == {"yes", "carrier"}, kinds


@pytest.mark.parametrize("off", [BALE, EITAA])
def test_bidi_off_on_either_side_two_connections(providers, raw, off):
    bale, eitaa, a, b = pair(providers, raw, per={off: {"bidi": False}})
    exchange(a, b, "one-way links")
    assert len(wait_connections(bale, eitaa, 2)) == 2
    for srv, here, there in ((bale, BALE, EITAA), (eitaa, EITAA, BALE)):
        l = the_link(srv, here, there)
        assert l.get("bidi") == "no" and l.get("auth") == "external", l
        assert stat(srv, "s2s_out_connects") == 1, srv.ctl("links").out


def test_bidi_with_dialback(providers, raw):
    bale, eitaa, a, b = pair(providers, raw, certs={BALE: "wrong", EITAA: "wrong"})
    exchange(a, b, "dialback")
    carried = the_link(eitaa, EITAA, BALE)
    assert carried.get("bidi") == "carrier" and carried.get("auth") == "dialback", carried
    mine = the_link(bale, BALE, EITAA)
    assert mine.get("bidi") == "yes" and mine.get("auth") == "dialback", mine


# --- a hand-written peer -------------------------------------------------------------

def _has_bidi(features):
    return features.find(f"{{{NS_BIDI_FEATURE}}}bidi") is not None


def _message_to(peer, body, timeout=15):
    return peer.next(lambda e: e.tag == f"{{{NS_SERVER}}}message" and
                     e.findtext(f"{{{NS_SERVER}}}body") == body, timeout, f"message {body!r}")


def _bidi_peer(fake_peer, bale):
    """A FakePeer for fake.localhost that asks for bidi and enables XEP-0198."""
    p = fake_peer(bale, FAKE)
    f = p.start()
    assert _has_bidi(f), f"bidi not offered before TLS: {to_str(f)}"
    f = p.starttls()
    assert _has_bidi(f), f"bidi not offered after TLS: {to_str(f)}"
    p.send(f"<bidi xmlns='{NS_BIDI}'/>")
    f = p.auth_external()
    assert not _has_bidi(f), f"bidi offered after authentication: {to_str(f)}"
    p.send(f"<enable xmlns='{NS_SM}'/>")
    p.next(lambda e: e.tag == f"{{{NS_SM}}}enabled", what="<enabled/>")
    return p


@pytest.mark.pv_timeout(90)
def test_hand_written_peer_carries_our_messages(providers, raw, fake_peer):
    closed = alloc_ports(1)[0]          # bale's own way to fake.localhost goes nowhere
    servers = providers([BALE], extra_routes={FAKE: f"127.0.0.1:{closed}"},
                        s2s={"retry_min": "30s", "retry_max": "30s"})
    bale = servers[BALE]
    a = login(raw, bale, "alice")

    p = _bidi_peer(fake_peer, bale)
    a.message(f"x@{FAKE}", "carried 1")
    m = _message_to(p, "carried 1")
    assert m.get("from") == f"alice@{BALE}/raw" and m.get("to") == f"x@{FAKE}", to_str(m)
    sid = m.find(f"{{{NS_SID}}}stanza-id")
    assert sid is not None and sid.get("by") == BALE, to_str(m)
    epoch, seq = sid.get("id").rsplit(":", 1)
    # bale asks for an ack on our stream; we acknowledge the one message
    p.next(lambda e: e.tag == f"{{{NS_SM}}}r", what="<r/>")
    p.send(f"<a xmlns='{NS_SM}' h='1'/>")
    l = wait_link(bale, BALE, FAKE, lambda l: l.int("acked") == 1 and l.get("queue") == "0",
                  timeout=10, what="acked=1 queue=0")
    assert l.get("bidi") == "carrier" and l.get("auth") == "external", l
    assert stat(bale, "s2s_out_connects") == 0, "bale connected although the peer carries the link"

    # the peer may send on its stream as before, and acks of its own are separate
    p.message(f"alice@{BALE}", "from the peer", frm=f"y@{FAKE}/z")
    wait_chat(a, "from the peer", f"y@{FAKE}", timeout=15)
    p.send(f"<r xmlns='{NS_SM}'/>")
    ack = p.next(lambda e: e.tag == f"{{{NS_SM}}}a", what="<a/> for our stanza")
    assert ack.get("h") == "1", to_str(ack)

    # not acknowledged, then the stream goes: sent again on the next stream, same id
    a.message(f"x@{FAKE}", "carried 2")
    m2 = _message_to(p, "carried 2")
    id2 = m2.find(f"{{{NS_SID}}}stanza-id").get("id")
    assert id2 == f"{epoch}:{int(seq) + 1}", to_str(m2)
    p.close()
    wait_link(bale, BALE, FAKE, lambda l: l.get("bidi") != "carrier" and l.get("queue") == "1",
              timeout=10, what="no carrier, queue=1")
    p2 = _bidi_peer(fake_peer, bale)
    again = _message_to(p2, "carried 2")
    assert again.find(f"{{{NS_SID}}}stanza-id").get("id") == id2, to_str(again)
    p2.next(lambda e: e.tag == f"{{{NS_SM}}}r", what="<r/>")
    p2.send(f"<a xmlns='{NS_SM}' h='1'/>")
    wait_link(bale, BALE, FAKE, lambda l: l.get("queue") == "0", timeout=10, what="queue=0")
    assert not p2.collect(lambda e: e.tag == f"{{{NS_SERVER}}}message", 1.0)


def test_no_bidi_asked_no_stanzas_on_the_peer_stream(providers, raw, fake_peer, silent):
    servers = providers([BALE], extra_routes={FAKE: f"127.0.0.1:{silent.port}"})
    bale = servers[BALE]
    a = login(raw, bale, "alice")
    p = fake_peer(bale, FAKE)
    p.connect()                          # never sends <bidi/>
    p.send(f"<enable xmlns='{NS_SM}'/>")
    p.next(lambda e: e.tag == f"{{{NS_SM}}}enabled", what="<enabled/>")
    a.message(f"x@{FAKE}", "not on your stream")
    got = p.collect(lambda e: local(e.tag) == "message", 2.0)
    assert not got, [to_str(e) for e in got]
    l = the_link(bale, BALE, FAKE)
    assert l.get("bidi") != "carrier", l


def test_bidi_not_offered_when_off(providers, fake_peer):
    servers = providers([BALE], s2s={"bidi": False})
    p = fake_peer(servers[BALE], FAKE)
    f = p.start()
    assert not _has_bidi(f), to_str(f)
    f = p.starttls()
    assert not _has_bidi(f), to_str(f)


def test_spoofed_from_on_the_carrier_stream_refused(providers, raw, fake_peer):
    """The carrier is still the peer's stream: what the peer sends there is checked as
    always (RFC 6120 4.9.3.9)."""
    servers = providers([BALE], extra_routes={FAKE: f"127.0.0.1:{alloc_ports(1)[0]}"})
    bale = servers[BALE]
    a = login(raw, bale, "alice")
    p = _bidi_peer(fake_peer, bale)
    a.message(f"x@{FAKE}", "to be carried")
    _message_to(p, "to be carried")
    p.message(f"alice@{BALE}", "spoofed", frm=f"bob@{EITAA}/x")
    assert p.refusal() == "invalid-from"
    assert not a.collect(lambda e: local(e.tag) == "message" and
                         e.findtext("{jabber:client}body") == "spoofed", 1.0)


# --- a hand-written receiving server: bale's own connection, used both ways ------------

class FakeReceiver(RawClient):
    """The receiving end of bale's link to fake.localhost, written by hand: STARTTLS
    with a certificate for fake.localhost, SASL EXTERNAL, <bidi/> on offer, XEP-0198.
    (RawClient parses and sends; it connects to our own listener once, and that socket
    is swapped for the one bale opened.)"""

    def __init__(self, listener, cert, key, timeout=10.0):
        super().__init__(listener.getsockname()[1], domain=BALE, timeout=timeout)
        listener.settimeout(timeout)
        ours = self.sock.getsockname()
        first, peer = listener.accept()
        second, _ = listener.accept()
        mine, bales = (first, second) if peer == ours else (second, first)
        mine.close()
        self.sock.close()
        self.sock = bales
        self.sock.settimeout(timeout)
        self.cert, self.key = cert, key
        self.order = []                              # tags as they arrived

    def _element(self, el):
        self.order.append(el.tag)
        super()._element(el)

    def answer_stream(self, features):
        """Wait for bale's stream header, answer with ours and `features`."""
        self._reset_parser()
        self.stream_attrs = None
        deadline = time.monotonic() + self.timeout
        while self.stream_attrs is None:
            assert not self.eof and time.monotonic() < deadline, "no stream header from bale"
            self._pump(0.2)
        assert self.stream_attrs.get("from") == BALE and self.stream_attrs.get("to") == FAKE, \
            self.stream_attrs
        self.send(f"<?xml version='1.0'?><stream:stream xmlns='{NS_SERVER}' "
                  f"xmlns:stream='{NS_STREAM}' xmlns:db='jabber:server:dialback' id='f{time.time_ns()}' "
                  f"from='{FAKE}' to='{BALE}' version='1.0'>"
                  f"<stream:features>{features}</stream:features>")

    def expect(self, tag, what=None):
        return self.next(lambda e: e.tag == tag, what=what or tag)

    def negotiate(self):
        self.answer_stream(f"<starttls xmlns='{NS_TLS}'><required/></starttls>")
        self.expect(f"{{{NS_TLS}}}starttls")
        self.send(f"<proceed xmlns='{NS_TLS}'/>")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, self.key)
        self.sock = ctx.wrap_socket(self.sock, server_side=True)
        self.tls = True
        self.answer_stream(f"<mechanisms xmlns='{NS_SASL}'><mechanism>EXTERNAL</mechanism>"
                           f"</mechanisms><bidi xmlns='{NS_BIDI_FEATURE}'/>")
        self.expect(f"{{{NS_SASL}}}auth")
        # XEP-0288 2.2: <bidi/> came first, before authentication
        assert f"{{{NS_BIDI}}}bidi" in self.order, f"bale did not ask for bidi: {self.order}"
        assert self.order.index(f"{{{NS_BIDI}}}bidi") < self.order.index(f"{{{NS_SASL}}}auth")
        self.send(f"<success xmlns='{NS_SASL}'/>")
        self.answer_stream(f"<sm xmlns='{NS_SM}'/>")
        self.expect(f"{{{NS_SM}}}enable")
        self.send(f"<enabled xmlns='{NS_SM}'/>")


@pytest.fixture
def receiver(ca):
    made = []

    def make(listener):
        cert, key = ca.good(FAKE)
        r = FakeReceiver(listener, cert, key)
        made.append(r)
        return r

    yield make
    for r in made:
        r.abort()


@pytest.mark.pv_timeout(90)
def test_receiving_server_sends_on_our_connection(providers, raw, receiver):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    try:
        servers = providers([BALE], extra_routes={FAKE: f"127.0.0.1:{listener.getsockname()[1]}"})
        bale = servers[BALE]
        a = login(raw, bale, "alice")
        a.message(f"x@{FAKE}", "to the receiver")
        r = receiver(listener)
        r.negotiate()
        m = _message_to(r, "to the receiver")
        assert m.get("from") == f"alice@{BALE}/raw", to_str(m)
        r.expect(f"{{{NS_SM}}}r")
        r.send(f"<a xmlns='{NS_SM}' h='1'/>")
        wait_link(bale, BALE, FAKE, lambda l: l.get("queue") == "0" and l.get("bidi") == "yes",
                  timeout=10, what="queue=0 bidi=yes")

        # the receiver sends its own stanzas back on bale's connection
        sid = f"<stanza-id xmlns='{NS_SID}' by='{FAKE}' id='ep:1'/>"
        back = (f"<message from='y@{FAKE}/r' to='alice@{BALE}' type='chat' id='b1'>"
                f"<body>back on your connection</body>{sid}</message>")
        r.send(back)
        m = wait_chat(a, "back on your connection", f"y@{FAKE}", timeout=15)
        assert m.find(f"{{{NS_SID}}}stanza-id") is None or \
            m.find(f"{{{NS_SID}}}stanza-id").get("by") != FAKE, "the peer's dedup id leaked"
        r.send(f"<r xmlns='{NS_SM}'/>")
        assert r.expect(f"{{{NS_SM}}}a").get("h") == "1"
        # the same stanza-id again (a resend): counted and acknowledged, not delivered
        r.send(back)
        r.send(f"<r xmlns='{NS_SM}'/>")
        assert r.expect(f"{{{NS_SM}}}a").get("h") == "2"
        assert not a.collect(lambda e: local(e.tag) == "message", 1.0), "a resend was delivered"
        assert stat(bale, "s2s_in_duplicates") == 1
        assert stat(bale, "s2s_out_connects") == 1

        # the receiver is authenticated as fake.localhost only
        r.send(f"<message from='bob@{EITAA}/x' to='alice@{BALE}' type='chat' id='b2'>"
               f"<body>spoofed</body></message>")
        err = r.expect(f"{{{NS_STREAM}}}error", "stream error")
        assert err.find("{urn:ietf:params:xml:ns:xmpp-streams}invalid-from") is not None, to_str(err)
        assert not a.collect(lambda e: local(e.tag) == "message", 1.0)
    finally:
        listener.close()


# --- kill -9 during a bidi exchange ----------------------------------------------------

N = 400
CHUNK = 25


@pytest.mark.pv_timeout(300)
@pytest.mark.parametrize("victim", ["initiator", "receiver"])
def test_kill9_during_bidi_exchange(providers, raw, victim):
    """alice@bale -> carol@eitaa and bob@eitaa -> carol@bale (both carols offline, so
    each side's offline store shows what it kept), interleaved in chunks over the one
    connection that bale opened; halfway the victim gets SIGKILL right after its last
    acknowledgement, the survivor goes on sending into its queue, the victim restarts and
    its sender sends the rest.  Both carols then find each message exactly once, in
    order."""
    servers = providers([BALE, EITAA], log_level="info",
                        s2s={"retry_min": "1s", "retry_max": "1s"},
                        hosts={d: {"offline": {"max_per_user": 10 * N}} for d in (BALE, EITAA)})
    bale, eitaa = servers[BALE], servers[EITAA]
    alice = login(raw, bale, "alice", sm=True)
    send_acked(alice, f"carol@{EITAA}", ["warm-up"], id_prefix="w")      # bale connects
    wait_link(bale, BALE, EITAA, lambda l: l.get("queue") == "0" and l.get("bidi") == "yes",
              timeout=30, what="bale's own bidi link, queue=0")
    bob = login(raw, eitaa, "bob", sm=True)
    send_acked(bob, f"carol@{BALE}", ["warm-up"], id_prefix="w")
    wait_link(eitaa, EITAA, BALE, lambda l: l.get("queue") == "0" and l.get("bidi") == "carrier",
              timeout=30, what="eitaa's link on bale's connection, queue=0")
    wait_connections(bale, eitaa, 1)

    pa, pb = "ab-", "ba-"
    to_eitaa = [f"{pa}{i}" for i in range(N)]
    to_bale = [f"{pb}{i}" for i in range(N)]
    for k in range(0, N // 2, CHUNK):
        send_acked(alice, f"carol@{EITAA}", to_eitaa[k:k + CHUNK], id_prefix=f"a{k}-")
        send_acked(bob, f"carol@{BALE}", to_bale[k:k + CHUNK], id_prefix=f"b{k}-")
    dead, alive = (bale, eitaa) if victim == "initiator" else (eitaa, bale)
    at_kill = {s.domain: [l.line for l in links(s)] for s in (bale, eitaa)}
    dead.kill9()
    print(f"{dead.domain} killed; links then: {at_kill}")
    survivor = bob if dead is bale else alice
    rest_for = f"carol@{BALE}" if survivor is bob else f"carol@{EITAA}"
    rest = (to_bale if survivor is bob else to_eitaa)[N // 2:]
    send_acked(survivor, rest_for, rest, id_prefix="s2-")
    dead.start()
    if dead is bale:
        alice = login(raw, bale, "alice", sm=True, resource="again")
        send_acked(alice, f"carol@{EITAA}", to_eitaa[N // 2:], id_prefix="a2-")
    else:
        bob = login(raw, eitaa, "bob", sm=True, resource="again")
        send_acked(bob, f"carol@{BALE}", to_bale[N // 2:], id_prefix="b2-")

    carol_e = login(raw, eitaa, "carol", presence=True)
    got_e = collect_bodies(carol_e, pa, N, timeout=90)
    carol_b = login(raw, bale, "carol", presence=True)
    got_b = collect_bodies(carol_b, pb, N, timeout=90)
    ctx = f"{victim} ({dead.domain}) killed; links then: {at_kill}"
    check_exactly_once_in_order(got_e, pa, N, f"bale -> eitaa, {ctx}")
    check_exactly_once_in_order(got_b, pb, N, f"eitaa -> bale, {ctx}")
    # and the two went back to one connection
    wait_connections(bale, eitaa, 1, timeout=20)
