"""Server Dialback (XEP-0220) as the fallback when certificates do not authenticate:
two providers whose certificates name other domains (valid chains from the test CA,
wrong names) still exchange messages when dialback is allowed, and `peyvandctl links`
says auth=dialback; with dialback: false the link is refused and every queued message
comes back to its sender as remote-server-timeout once the (short) queue_expiry ends."""
import pytest

from rawxmpp import stanza_error_condition, to_str
from s2sharness import (collect_errors, is_error_message, links, login, no_chat,
                        wait_chat)

BALE, EITAA = "bale.localhost", "eitaa.localhost"


def test_dialback_when_certificates_do_not_match(providers, raw):
    servers = providers([BALE, EITAA], certs={BALE: "wrong", EITAA: "wrong"},
                        s2s={"dialback": True})
    bale, eitaa = servers[BALE], servers[EITAA]
    a = login(raw, bale, "alice")
    b = login(raw, eitaa, "bob")
    a.message(f"bob@{EITAA}", "dialback hello")
    wait_chat(b, "dialback hello", f"alice@{BALE}", timeout=30)
    b.message(f"alice@{BALE}", "dialback reply")
    wait_chat(a, "dialback reply", f"bob@{EITAA}", timeout=30)
    for _ in range(3):          # and again over the established links
        a.message(f"bob@{EITAA}", "again")
        wait_chat(b, "again", f"alice@{BALE}", timeout=10)
    for srv, here, there in ((bale, BALE, EITAA), (eitaa, EITAA, BALE)):
        mine = [l for l in links(srv) if l.local == here and l.remote == there]
        assert mine, f"{here}: no link line for {here} -> {there}: {links(srv)}"
        assert {l.get("auth") for l in mine} == {"dialback"}, (
            f"{here} -> {there}: certificates name other domains, so the link must be "
            f"authenticated by dialback: {mine}")


def test_dialback_mixed_one_side_has_a_good_certificate(providers, raw):
    """bale's certificate is good, eitaa's names another domain: eitaa is authenticated
    by dialback, bale by its certificate (or dialback); messages flow both ways."""
    servers = providers([BALE, EITAA], certs={BALE: "good", EITAA: "wrong"})
    a = login(raw, servers[BALE], "alice")
    b = login(raw, servers[EITAA], "bob")
    b.message(f"alice@{BALE}", "from the wrong certificate")
    wait_chat(a, "from the wrong certificate", f"bob@{EITAA}", timeout=30)
    a.message(f"bob@{EITAA}", "to the wrong certificate")
    wait_chat(b, "to the wrong certificate", f"alice@{BALE}", timeout=30)
    # which end a link line describes is the server's business; eitaa cannot have
    # authenticated by certificate, so some line between the two must say dialback
    pair = [l for srv in servers.values() for l in links(srv)
            if {l.local, l.remote} == {BALE, EITAA}]
    assert pair, "no link lines between bale and eitaa"
    assert all(l.get("auth") in ("external", "dialback") for l in pair), pair
    assert any(l.get("auth") == "dialback" for l in pair), (
        f"eitaa's certificate names another domain: without dialback it cannot have "
        f"authenticated: {pair}")


@pytest.mark.pv_timeout(90)
def test_dialback_disabled_refuses_and_bounces(providers, raw):
    servers = providers([BALE, EITAA], certs={BALE: "wrong", EITAA: "wrong"},
                        s2s={"dialback": False, "queue_expiry": "3s", "retry_min": "1s",
                             "retry_max": "1s"})
    bale, eitaa = servers[BALE], servers[EITAA]
    a = login(raw, bale, "alice")
    b = login(raw, eitaa, "bob")
    ids_a = [a.message(f"bob@{EITAA}", f"never {i}") for i in range(3)]
    ids_b = [b.message(f"alice@{BALE}", f"never back {i}") for i in range(2)]
    # a refused link is retried until the 3s expiry: no bounce in the first 2s
    early = a.collect(lambda e: is_error_message(e, ids_a), 2.0)
    assert not early, (f"bounced before the 3s queue_expiry: "
                       f"{[to_str(e)[:200] for e in early]}")
    got_a = collect_errors(a, ids_a, 30)
    got_b = collect_errors(b, ids_b, 10)
    for who, ids, got in (("alice", ids_a, got_a), ("bob", ids_b, got_b)):
        missing = [i for i in ids if i not in got]
        assert not missing, (f"{who}: no error bounce for {missing} after the 3s queue "
                             f"expiry (got {sorted(got)})")
        for i, errs in got.items():
            conds = [stanza_error_condition(e) for e in errs]
            assert conds[0] == "remote-server-timeout", (
                f"{who}'s message {i} must bounce as remote-server-timeout: "
                f"{to_str(errs[0])}")
    # one bounce per message, and nothing delivered
    late = collect_errors(a, ids_a, 1.5)
    dups = {i: len(got_a.get(i, [])) + len(late.get(i, [])) for i in ids_a}
    assert all(n == 1 for n in dups.values()), f"bounces per message: {dups}"
    no_chat(b, lambda e: e.get("from", "").startswith("alice@"), 0.5)
    no_chat(a, lambda e: e.get("from", "").startswith("bob@"), 0.5)
    for srv, here, there in ((bale, BALE, EITAA), (eitaa, EITAA, BALE)):
        for l in links(srv):
            if l.local == here and l.remote == there:
                assert l.get("auth") not in ("dialback", "external"), (
                    f"a link authenticated although neither certificates nor dialback "
                    f"may: {l}")
