"""Queue expiry: messages for a domain whose server cannot be reached stay queued (and
retried) until s2s.queue_expiry, then each one comes back to its sender, once, as a
remote-server-timeout stanza error (RFC 6120 8.3.3.16), carrying the original id and
coming from the address it was sent to."""
import time

import pytest

from rawxmpp import stanza_error_condition, to_str
from s2sharness import bare, collect_errors, is_error_message, links, login

GONE = "gone.localhost"


@pytest.mark.pv_timeout(90)
@pytest.mark.parametrize("kind", ["refused", "silent"])
def test_unreachable_domain_bounces_after_expiry(providers, raw, silent, kind):
    """refused: the static route points at a closed port; silent: at a listener that
    accepts and never speaks (the connect timeout must cut it)."""
    if kind == "refused":
        from pvserver import free_ports
        port = free_ports(1)[0]
    else:
        port = silent.port
    servers = providers(["bale.localhost"],
                        extra_routes={GONE: f"127.0.0.1:{port}"},
                        s2s={"queue_expiry": "3s", "retry_min": "1s", "retry_max": "1s",
                             "connect_timeout": "1s"})
    bale = servers["bale.localhost"]
    a = login(raw, bale, "alice")
    sent = {a.message(f"user{i}@{GONE}", f"into the void {i}"): f"user{i}@{GONE}"
            for i in range(3)}
    early = a.collect(lambda e: is_error_message(e, sent), 2.0)
    assert not early, (f"bounced before the 3s queue_expiry: "
                       f"{[to_str(e)[:200] for e in early]}")
    got = collect_errors(a, sent, 30)
    missing = [i for i in sent if i not in got]
    assert not missing, (f"no remote-server-timeout for {missing} within 30s "
                         f"(got {sorted(got)}; links: {links(bale)})")
    for i, errs in got.items():
        e = errs[0]
        assert stanza_error_condition(e) == "remote-server-timeout", to_str(e)
        assert bare(e.get("from")) == sent[i], (
            f"the bounce must come from the address the message was sent to: {to_str(e)}")
        assert bare(e.get("to")) == "alice@bale.localhost", to_str(e)
    # exactly one bounce per message, and the queue is empty afterwards
    later = collect_errors(a, sent, 2.0)
    counts = {i: len(got.get(i, [])) + len(later.get(i, [])) for i in sent}
    assert all(n == 1 for n in counts.values()), f"bounces per message: {counts}"
    for l in links(bale):
        if l.remote == GONE:
            assert l.int("queue") == 0, f"queue not empty after expiry: {l}"


@pytest.mark.pv_timeout(90)
def test_expiry_survives_restart(providers, raw):
    """Queued messages keep their age across a crash: queued at t=0 with a 6s expiry,
    the server is killed (-9) at t=4s and restarted; the bounces must come at about
    t=6s, not 6s after the restart (and they are not lost)."""
    from helpers import wait_ack
    from pvserver import free_ports
    port = free_ports(1)[0]
    servers = providers(["bale.localhost"], extra_routes={GONE: f"127.0.0.1:{port}"},
                        s2s={"queue_expiry": "6s", "retry_min": "1s", "retry_max": "1s"})
    bale = servers["bale.localhost"]
    a = login(raw, bale, "alice", resource="keeper", sm=True)
    ids = [a.message(f"user@{GONE}", f"queued before the crash {i}") for i in range(2)]
    wait_ack(a, a.sm_out)             # queued durably (the count includes presence)
    t0 = time.monotonic()
    time.sleep(4)
    a.abort()
    bale.kill9()
    bale.start()
    # the bounce goes to the sender's full JID: come back with the same resource
    a2 = login(raw, bale, "alice", resource="keeper")
    got = collect_errors(a2, ids, 30)
    elapsed = time.monotonic() - t0
    missing = [i for i in ids if i not in got]
    assert not missing, f"queued messages never bounced after the restart (got {sorted(got)})"
    for errs in got.values():
        assert stanza_error_condition(errs[0]) == "remote-server-timeout", to_str(errs[0])
    assert elapsed < 9.5, (f"bounced {elapsed:.1f}s after queueing with a 6s expiry: the "
                           f"restart seems to have reset the messages' age")
