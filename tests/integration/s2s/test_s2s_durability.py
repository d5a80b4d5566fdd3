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
  sender crash mid-transfer: bale is killed right after alice's last ack while its queue
                  is still draining (some stanzas sent, some acknowledged by eitaa
                  without bale having recorded it): bale resends, eitaa drops duplicates.

(bob is offline on purpose: with a recipient online, a crash between writing a message to
bob's socket and recording it is a client-side duplicate that only the client can drop
by id; what is tested here is the server-to-server chain.)"""
import pytest

from s2sharness import collect_bodies, links, login, send_acked

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


def queue_state(srv):
    """bale's link line just before a kill (for the failure message only)."""
    try:
        return [l.line for l in links(srv) if l.remote == EITAA]
    except AssertionError as e:
        return f"(links failed: {e})"


def start_pair(providers):
    # bob's offline store must hold all N (offline.max_per_user defaults to 1000)
    return providers([BALE, EITAA], log_level="info",
                     s2s={"retry_min": "1s", "retry_max": "1s"},
                     hosts={EITAA: {"offline": {"max_per_user": 10 * N}}})


@pytest.mark.pv_timeout(240)
def test_receiver_killed_halfway(providers, raw):
    servers = start_pair(providers)
    bale, eitaa = servers[BALE], servers[EITAA]
    alice = login(raw, bale, "alice", sm=True)
    prefix = "rk-"
    bodies = [f"{prefix}{i}" for i in range(N)]
    send_acked(alice, f"bob@{EITAA}", bodies[:N // 2], id_prefix="rk")
    at_kill = queue_state(bale)
    eitaa.kill9()
    print(f"eitaa killed; bale's link was: {at_kill}")
    # the second half goes into bale's queue while eitaa is down
    send_acked(alice, f"bob@{EITAA}", bodies[N // 2:], id_prefix="rk2-")
    eitaa.start()
    bob = login(raw, eitaa, "bob", presence=True)
    got = collect_bodies(bob, prefix, N, timeout=90)
    check_exactly_once_in_order(got, prefix, N,
                                f"receiver killed halfway (bale's link then: {at_kill})")


@pytest.mark.pv_timeout(240)
def test_sender_killed_with_full_queue(providers, raw):
    servers = start_pair(providers)
    bale, eitaa = servers[BALE], servers[EITAA]
    alice = login(raw, bale, "alice", sm=True)
    # open the link first, so the queue is the one of an existing link
    send_acked(alice, f"carol@{EITAA}", ["warm-up"], id_prefix="w")
    eitaa.stop()
    prefix = "sk-"
    bodies = [f"{prefix}{i}" for i in range(N)]
    send_acked(alice, f"bob@{EITAA}", bodies, id_prefix="sk")
    alice.abort()
    bale.kill9()
    eitaa.start()
    bale.start()
    bob = login(raw, eitaa, "bob", presence=True)
    got = collect_bodies(bob, prefix, N, timeout=90)
    check_exactly_once_in_order(got, prefix, N, "sender killed with a full queue")


@pytest.mark.pv_timeout(240)
def test_sender_killed_mid_transfer(providers, raw):
    servers = start_pair(providers)
    bale, eitaa = servers[BALE], servers[EITAA]
    alice = login(raw, bale, "alice", sm=True)
    prefix = "mt-"
    send_acked(alice, f"bob@{EITAA}", [f"{prefix}{i}" for i in range(N)], id_prefix="mt",
               window=100)
    at_kill = queue_state(bale)
    alice.abort()
    bale.kill9()
    print(f"bale killed; its link was: {at_kill}")
    bale.start()
    bob = login(raw, eitaa, "bob", presence=True)
    got = collect_bodies(bob, prefix, N, timeout=90)
    check_exactly_once_in_order(got, prefix, N,
                                f"sender killed mid-transfer (its link then: {at_kill})")
