"""No message lost, none duplicated, across providers and crashes.

alice@bale sends 1,000 messages to bob@eitaa over an XEP-0198 raw client, paced by the
server's acks (an ack means: committed to bale's durable queue for eitaa).  bob stays
offline while they travel, so every message ends in eitaa's offline store and bob's
login at the end shows exactly what eitaa kept: all 1,000, once each, in order.

  receiver crash: eitaa is killed with SIGKILL halfway (stanzas in flight on the link,
                  some stored but not yet acknowledged to bale), then restarted; bale must
                  resend what eitaa did not acknowledge and eitaa must drop what it had
                  already stored (dedup by stanza id).
  sender crash:   eitaa is stopped first, so all 1,000 pile up in bale's queue; bale is
                  then killed with SIGKILL and both are restarted: the queue must have
                  survived on disk and drain in order.

(bob is offline on purpose: with a recipient online, a crash between writing a message to
bob's socket and recording it is a client-side duplicate that only the client can drop
by id; what is tested here is the server-to-server chain.)"""
import pytest

from s2sharness import collect_bodies, login, send_acked

N = 1000
BALE, EITAA = "bale.localhost", "eitaa.localhost"


def check_exactly_once_in_order(got, prefix, n, context):
    idx = [int(b[len(prefix):]) for b in got]
    missing = sorted(set(range(n)) - set(idx))
    dups = sorted({i for i in idx if idx.count(i) > 1}) if len(idx) != len(set(idx)) else []
    assert not missing, (f"{context}: {len(missing)} of {n} messages lost "
                         f"(first {missing[:10]}); {len(idx)} delivered")
    assert not dups, f"{context}: duplicates delivered: {dups[:20]} ({len(idx)} delivered)"
    out_of_order = [(a, b) for a, b in zip(idx, idx[1:]) if b < a]
    assert not out_of_order, f"{context}: out of order, first inversions {out_of_order[:5]}"
    assert len(idx) == n


@pytest.mark.pv_timeout(240)
def test_receiver_killed_halfway(providers, raw):
    servers = providers([BALE, EITAA], log_level="info",
                        s2s={"retry_min": "1s", "retry_max": "1s"})
    bale, eitaa = servers[BALE], servers[EITAA]
    alice = login(raw, bale, "alice", sm=True)
    prefix = "rk-"
    bodies = [f"{prefix}{i}" for i in range(N)]
    send_acked(alice, f"bob@{EITAA}", bodies[:N // 2], id_prefix="rk")
    eitaa.kill9()
    # the second half goes into bale's queue while eitaa is down
    send_acked(alice, f"bob@{EITAA}", bodies[N // 2:], id_prefix="rk2-")
    eitaa.start()
    bob = login(raw, eitaa, "bob", presence=True)
    got = collect_bodies(bob, prefix, N, timeout=90)
    check_exactly_once_in_order(got, prefix, N, "receiver killed halfway")


@pytest.mark.pv_timeout(240)
def test_sender_killed_with_full_queue(providers, raw):
    servers = providers([BALE, EITAA], log_level="info",
                        s2s={"retry_min": "1s", "retry_max": "1s"})
    bale, eitaa = servers[BALE], servers[EITAA]
    alice = login(raw, bale, "alice", sm=True)
    # open the link first, so the queue is the one of an existing link
    send_acked(alice, f"bob@{EITAA}", ["sk-warmup"], id_prefix="w")
    eitaa.stop()
    prefix = "sk-"
    bodies = [f"{prefix}{i}" for i in range(N)]
    send_acked(alice, f"bob@{EITAA}", bodies, id_prefix="sk")
    alice.abort()
    bale.kill9()
    eitaa.start()
    bale.start()
    bob = login(raw, eitaa, "bob", presence=True)
    got = [b for b in collect_bodies(bob, prefix, N + 1, timeout=90) if b != "sk-warmup"]
    check_exactly_once_in_order(got, prefix, N, "sender killed with a full queue")
