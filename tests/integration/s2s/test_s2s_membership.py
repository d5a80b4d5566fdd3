"""Interconnect membership (hosts.<d>.interconnect): a members-only provider accepts the
listed domains only -- each optionally pinned to its leaf certificate (fingerprint) or
to a CA of its own (ca_file) -- and refuses everyone else; the refused provider's users
get their messages back as remote-server-timeout once its queue expires, and the
refusal is logged with the peer's domain."""
import re

import pytest

from rawxmpp import stanza_error_condition, to_str
from s2sharness import TestCA, collect_errors, links, login, no_chat, wait_chat

BALE, EITAA, RUBIKA, SOROUSH = ("bale.localhost", "eitaa.localhost", "rubika.localhost",
                                "soroush.localhost")
SHORT = {"queue_expiry": "3s", "retry_min": "1s", "retry_max": "1s"}
REFUSAL_WORDS = re.compile(r"refus|policy|member|denied|reject|not allowed", re.I)


def assert_bounced(client, ids, timeout=30):
    got = collect_errors(client, ids, timeout)
    missing = [i for i in ids if i not in got]
    assert not missing, f"{client.jid}: no error bounce for {missing} (got {sorted(got)})"
    for i, errs in got.items():
        assert stanza_error_condition(errs[0]) == "remote-server-timeout", to_str(errs[0])
        assert len(errs) == 1, f"message {i} bounced {len(errs)} times"


def assert_refusal_logged(srv, domain):
    lines = [l for l in srv.log_text().splitlines()
             if domain in l and REFUSAL_WORDS.search(l)]
    assert lines, (f"{srv.domain} refused {domain} but logged no line naming it with a "
                   f"reason")


@pytest.mark.pv_timeout(90)
def test_members_only_refuses_non_member(providers, raw):
    servers = providers([BALE, EITAA, RUBIKA],
                        hosts={BALE: {"interconnect": {"mode": "members",
                                                       "members": {EITAA: {}}}}},
                        per={RUBIKA: SHORT})
    bale, eitaa, rubika = servers[BALE], servers[EITAA], servers[RUBIKA]
    a = login(raw, bale, "alice")
    e = login(raw, eitaa, "bob")
    r = login(raw, rubika, "carol")
    # the member gets through, both ways
    e.message(f"alice@{BALE}", "member to members-only")
    wait_chat(a, "member to members-only", f"bob@{EITAA}", timeout=30)
    a.message(f"bob@{EITAA}", "members-only to member")
    wait_chat(e, "members-only to member", f"alice@{BALE}", timeout=30)
    # the non-member does not; its user's messages come back after rubika's expiry
    ids = [r.message(f"alice@{BALE}", f"knock {i}") for i in range(2)]
    assert_bounced(r, ids)
    no_chat(a, lambda el: el.get("from", "").startswith(f"carol@{RUBIKA}"), 0.5)
    assert_refusal_logged(bale, RUBIKA)
    # rubika's other links are unaffected: it still reaches eitaa (an open provider)
    r.message(f"bob@{EITAA}", "open providers still talk")
    wait_chat(e, "open providers still talk", f"carol@{RUBIKA}", timeout=30)


@pytest.mark.pv_timeout(120)
def test_pinned_fingerprints_and_member_ca(providers, raw, ca):
    """bale lists eitaa pinned to its real certificate (accepted), soroush pinned to a
    fingerprint that is not its certificate's (refused), and rubika with a CA of its own
    (rubika's certificate comes from the "other" CA, which only that member entry
    trusts: accepted, by certificate)."""
    eitaa_fp = TestCA.fingerprint(ca.good(EITAA)[0])
    wrong_fp = TestCA.fingerprint(ca.good(BALE)[0])     # a real fingerprint, not soroush's
    members = {EITAA: {"fingerprint": eitaa_fp},
               SOROUSH: {"fingerprint": wrong_fp},
               RUBIKA: {"ca_file": ca.other_ca_file}}
    servers = providers([BALE, EITAA, RUBIKA, SOROUSH],
                        certs={RUBIKA: "other"},
                        hosts={BALE: {"interconnect": {"mode": "members", "members": members}}},
                        per={SOROUSH: SHORT})
    bale = servers[BALE]
    a = login(raw, bale, "alice")
    e = login(raw, servers[EITAA], "bob")
    r = login(raw, servers[RUBIKA], "carol")
    s = login(raw, servers[SOROUSH], "bob")
    # pinned and matching
    e.message(f"alice@{BALE}", "pinned eitaa")
    wait_chat(a, "pinned eitaa", f"bob@{EITAA}", timeout=30)
    a.message(f"bob@{EITAA}", "to pinned eitaa")
    wait_chat(e, "to pinned eitaa", f"alice@{BALE}", timeout=30)
    # member with its own CA
    r.message(f"alice@{BALE}", "rubika via its own CA")
    wait_chat(a, "rubika via its own CA", f"carol@{RUBIKA}", timeout=30)
    a.message(f"carol@{RUBIKA}", "to rubika via its own CA")
    wait_chat(r, "to rubika via its own CA", f"alice@{BALE}", timeout=30)
    # pinned to another certificate: refused
    ids = [s.message(f"alice@{BALE}", f"mismatched pin {i}") for i in range(2)]
    assert_bounced(s, ids)
    no_chat(a, lambda el: el.get("from", "").startswith(f"bob@{SOROUSH}"), 0.5)
    assert_refusal_logged(bale, SOROUSH)
    # the accepted members authenticated by certificate
    for remote in (EITAA, RUBIKA):
        mine = [l for l in links(bale) if l.local == BALE and l.remote == remote]
        assert mine and all(l.get("auth") == "external" for l in mine), (
            f"{BALE} -> {remote}: expected auth=external: {mine or links(bale)}")
