"""peyvandctl for s2s links and queues:
  links                              one line per link:
      "LOCAL -> REMOTE state=... auth=external|dialback tls=TLSv1.3 queue=N oldest=SECONDS
       retries=N paused=yes|no"
  queue pause|resume|flush|drop DOMAIN
pause keeps messages queued, resume lets them go, flush retries a backed-off link at once,
drop empties the queue."""
import time

import pytest

from s2sharness import collect_bodies, links, login, no_chat, wait_chat, wait_link

BALE, EITAA = "bale.localhost", "eitaa.localhost"


def ok(r):
    assert r.rc == 0, r
    return r


@pytest.mark.pv_timeout(120)
def test_links_and_queue_control(providers, raw):
    # a long retry interval, so that only `queue flush` can explain a quick resend
    servers = providers([BALE, EITAA], s2s={"retry_min": "30s", "retry_max": "30s"})
    bale, eitaa = servers[BALE], servers[EITAA]
    a = login(raw, bale, "alice")
    b = login(raw, eitaa, "bob")

    # --- links: an established, certificate-authenticated TLS 1.3 link, empty queue
    a.message(f"bob@{EITAA}", "hello")
    wait_chat(b, "hello", f"alice@{BALE}", timeout=30)
    l = wait_link(bale, BALE, EITAA, lambda l: l.get("queue") == "0", what="queue=0")
    for key in ("state", "auth", "tls", "queue", "oldest", "retries", "paused"):
        assert key in l.fields, f"`links` line lacks {key}=: {l}"
    assert l.get("auth") == "external", l
    assert l.get("tls") == "TLSv1.3", l
    assert l.get("paused") == "no", l
    assert l.int("retries") == 0, l

    # --- pause: messages stay queued
    ok(bale.ctl("queue", "pause", EITAA))
    for i in range(3):
        a.message(f"bob@{EITAA}", f"paused {i}")
    no_chat(b, lambda e: "paused" in (e.findtext("{jabber:client}body") or ""), 2.0)
    l = wait_link(bale, BALE, EITAA, lambda l: l.get("queue") == "3", what="queue=3")
    assert l.get("paused") == "yes", l
    assert l.int("oldest") >= 1, f"oldest queued message is 2s old: {l}"

    # --- resume: they go, in order
    ok(bale.ctl("queue", "resume", EITAA))
    got = collect_bodies(b, "paused ", 3, timeout=15)
    assert got == [f"paused {i}" for i in range(3)], got
    l = wait_link(bale, BALE, EITAA, lambda l: l.get("queue") == "0", what="queue=0")
    assert l.get("paused") == "no", l

    # --- drop: the queue is emptied and nothing of it is delivered
    ok(bale.ctl("queue", "pause", EITAA))
    for i in range(2):
        a.message(f"bob@{EITAA}", f"dropped {i}")
    wait_link(bale, BALE, EITAA, lambda l: l.get("queue") == "2", what="queue=2")
    ok(bale.ctl("queue", "drop", EITAA))
    wait_link(bale, BALE, EITAA, lambda l: l.get("queue") == "0", timeout=5,
              what="queue=0 after drop")
    ok(bale.ctl("queue", "resume", EITAA))
    no_chat(b, lambda e: "dropped" in (e.findtext("{jabber:client}body") or ""), 2.0)
    a.message(f"bob@{EITAA}", "after the drop")
    wait_chat(b, "after the drop", f"alice@{BALE}", timeout=15)

    # --- flush: eitaa goes away, bale fails to reach it and backs off for 30s; eitaa
    # comes back; `queue flush` sends at once.  ("after the drop" may still wait for
    # eitaa's ack in the queue: it is resent then, and eitaa must drop the duplicate.)
    b.close()
    eitaa.stop()
    for i in range(2):
        a.message(f"bob@{EITAA}", f"flushed {i}")
    l = wait_link(bale, BALE, EITAA, lambda l: l.int("queue") >= 2 and l.int("retries") >= 1,
                  timeout=20, what="queue>=2 and a failed attempt")
    eitaa.start()
    time.sleep(1)
    t0 = time.monotonic()
    ok(bale.ctl("queue", "flush", EITAA))
    wait_link(bale, BALE, EITAA, lambda l: l.get("queue") == "0", timeout=10,
              what="queue=0 soon after flush")
    assert time.monotonic() - t0 < 10
    b2 = login(raw, eitaa, "bob", resource="back")
    got = collect_bodies(b2, "flushed ", 2, timeout=15)
    assert got == ["flushed 0", "flushed 1"], got
    dup = b2.collect(lambda e: e.findtext("{jabber:client}body") == "after the drop", 0.5)
    assert not dup, "a message delivered before eitaa's restart was delivered again"


def test_queue_commands_on_unknown_domain_fail_cleanly(providers):
    servers = providers([BALE])
    bale = servers[BALE]
    for cmd in ("pause", "resume", "flush", "drop"):
        r = bale.ctl("queue", cmd, "nowhere.localhost")
        # either a no-op success or a one-line error, but never a crash or a hang
        if r.rc != 0:
            lines = [x for x in r.err.strip().splitlines() if x.strip()]
            assert len(lines) == 1, f"expected a one-line error: {r}"
    r = bale.ctl("queue", "explode", "nowhere.localhost")
    assert r.rc != 0, r
    assert bale.running()
    assert links(bale) is not None
