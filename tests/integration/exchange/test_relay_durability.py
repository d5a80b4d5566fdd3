"""Store and forward at the exchange with the guarantees of a direct link (issue 6, R;
docs/s2s.md "Relay"): nothing acknowledged is lost, nothing delivered twice, one bounce
at expiry, through the exchange.

  link down:   eitaa is stopped; alice@bale's messages for bob@eitaa wait in the
               exchange's queue for eitaa; eitaa returns; bob gets each exactly once.
  kill -9:     1,000 messages, acked to alice only once durable at bale; the exchange is
               killed with SIGKILL while its queue for eitaa (down) is non-empty and bale's
               queue for the exchange still draining; after restarts bob gets all 1,000,
               once each, in order.
  expiry:      with a short s2s.queue_expiry at the exchange, a message for a provider
               that stays down bounces once, from the exchange, as remote-server-timeout.
(bob is offline while messages travel, as in tests/integration/s2s/test_s2s_durability.py.)
"""
import time

import pytest

import s2sharness
from exlib import EXCHANGE, wait_for
from s2sharness import collect_bodies, collect_errors, links, message_xml, send_acked
from test_relay import error_conditions, exchange_view
from test_s2s_durability import check_exactly_once_in_order

BALE, EITAA = s2sharness.PROVIDERS[:2]


def ex_queue(ic, dom):
    return int(exchange_view(ic.exchange).get(dom, {}).get("queue", 0))


def test_link_down_exchange_queues_then_delivers_once(interconnect, raw):
    ic = interconnect("star", providers=[BALE, EITAA], log_level="info")
    bale, eitaa = ic[BALE], ic[EITAA]
    eitaa.stop()
    alice = ic.login(raw, BALE, "alice", sm=True)
    n = 50
    send_acked(alice, f"bob@{EITAA}", [f"ld-{i}" for i in range(n)], id_prefix="ld")
    wait_for(lambda: ex_queue(ic, EITAA) == n, 30, what="exchange queue for eitaa = 50")
    # bale's own queue drained into the exchange
    wait_for(lambda: all(l.int("queue") == 0 for l in links(bale) if l.remote == EXCHANGE), 15,
             what=f"bale's queue to the exchange drained ({links(bale)})")
    eitaa.start()
    bob = ic.login(raw, EITAA, "bob")
    got = collect_bodies(bob, "ld-", n, timeout=60)
    check_exactly_once_in_order(got, "ld-", n, "link down at the exchange")
    wait_for(lambda: ex_queue(ic, EITAA) == 0, 15, what="exchange queue empty")


N = 1000


@pytest.mark.pv_timeout(300)
def test_exchange_killed_with_non_empty_queue_loses_nothing(interconnect, raw):
    ic = interconnect("star", providers=[BALE, EITAA], log_level="info",
                      s2s={"retry_min": "1s", "retry_max": "1s"},
                      hosts={EITAA: {"offline": {"max_per_user": 10 * N}}})
    bale, eitaa, ex = ic[BALE], ic[EITAA], ic.exchange
    eitaa.stop()
    alice = ic.login(raw, BALE, "alice", sm=True)
    prefix = "xk-"
    bodies = [f"{prefix}{i}" for i in range(N)]
    send_acked(alice, f"bob@{EITAA}", bodies[:N // 2], id_prefix="xk")
    wait_for(lambda: ex_queue(ic, EITAA) > 0, 30, what="exchange queue non-empty")
    # the second half: bale is still pushing into the exchange when it dies
    send_acked(alice, f"bob@{EITAA}", bodies[N // 2:], id_prefix="xk2-")
    at_kill = ex_queue(ic, EITAA)
    ex.kill9()
    time.sleep(0.5)
    ex.start()
    eitaa.start()
    bob = ic.login(raw, EITAA, "bob")
    got = collect_bodies(bob, prefix, N, timeout=120)
    check_exactly_once_in_order(got, prefix, N,
                                f"exchange killed (its queue for eitaa held {at_kill})")


def test_expiry_bounces_once_through_the_exchange(interconnect, raw):
    ic = interconnect("star", providers=[BALE, EITAA],
                      exchange_host={}, s2s=None)
    # a short expiry at the exchange only (the providers keep 72 h)
    ex = ic.exchange
    ex.config["s2s"]["queue_expiry"] = "3s"
    ex.write_config()
    ex.restart()
    ic[EITAA].stop()
    alice = ic.login(raw, BALE, "alice")
    alice.send_stanza(message_xml(f"bob@{EITAA}", "will expire", "ex-1"))
    got = collect_errors(alice, {"ex-1"}, 30)
    assert "ex-1" in got, "no bounce at expiry"
    time.sleep(3)
    got2 = collect_errors(alice, {"ex-1"}, 1)
    errs = got["ex-1"] + got2.get("ex-1", [])
    assert len(errs) == 1, f"bounced {len(errs)} times"
    e = errs[0]
    assert e.get("from") == EXCHANGE
    assert error_conditions(e)[:2] == ("wait", "remote-server-timeout")
    assert int(exchange_view(ex)[EITAA]["bounced"]) == 1
