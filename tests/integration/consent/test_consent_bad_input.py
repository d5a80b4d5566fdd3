"""Bad input to consent (issue 4).

Malformed consent IQs get the stanza error docs/protocol/consent.md section 11 names
and change nothing (no setting, no log entry): unknown policy / rule, invalid or missing
JIDs and domains, a rule about the user's own provider -> bad-request; an element the
namespace does not define (or not for that iq type) -> feature-not-implemented; another
account's consent (a local user, a remote sender it allows or not) -> service-unavailable,
the same bytes as for an account that does not exist (the protocol answers no one but the
account itself, and must not reveal that the account exists); more than 100 rules ->
resource-constraint.

A remote provider flooding first contacts from many distinct senders: at most
new_requests_per_domain new requests per minute are held; the flooding stream is not
cut, and other senders, providers, users and links keep working."""
import pytest

from consentlib import (BALE, EITAA, NS_CONSENT, RUBIKA, bare, child_text, consent_iq,
                        consent_xml, expect_error, expect_result, held, history,
                        local_barrier, login, remote_barrier, requests, roster_add,
                        sender_view, set_consent, settings, t, users)
from rawxmpp import local, to_str

ALICE = f"alice@{BALE}"
GHOST = f"ghost@{BALE}"

BAD_SETS = [
    ("unknown policy", "<consent xmlns='{ns}' policy='sometimes'/>", "bad-request"),
    ("empty policy", "<consent xmlns='{ns}' policy=''/>", "bad-request"),
    ("provider: invalid domain", "<consent xmlns='{ns}'><provider domain='not a domain!' "
     "policy='everyone'/></consent>", "bad-request"),
    ("provider: empty domain", "<consent xmlns='{ns}'><provider domain='' policy='everyone'/>"
     "</consent>", "bad-request"),
    ("provider: no domain", "<consent xmlns='{ns}'><provider policy='everyone'/></consent>",
     "bad-request"),
    ("provider: a JID, not a domain", "<consent xmlns='{ns}'><provider "
     f"domain='bob@{EITAA}' policy='everyone'/></consent>", "bad-request"),
    ("provider: unknown policy", f"<consent xmlns='{{ns}}'><provider domain='{EITAA}' "
     "policy='sometimes'/></consent>", "bad-request"),
    ("provider: no policy", f"<consent xmlns='{{ns}}'><provider domain='{EITAA}'/></consent>",
     "bad-request"),
    ("provider: the user's own provider", f"<consent xmlns='{{ns}}'><provider domain='{BALE}' "
     "policy='off'/></consent>", "bad-request"),
    ("sender: invalid JID", "<consent xmlns='{ns}'><sender jid='@@' rule='allow'/></consent>",
     "bad-request"),
    ("sender: a domain, not an account", f"<consent xmlns='{{ns}}'><sender jid='{EITAA}' "
     "rule='allow'/></consent>", "bad-request"),
    ("sender: a full JID", f"<consent xmlns='{{ns}}'><sender jid='bob@{EITAA}/phone' "
     "rule='allow'/></consent>", "bad-request"),
    ("sender: unknown rule", f"<consent xmlns='{{ns}}'><sender jid='bob@{EITAA}' "
     "rule='maybe'/></consent>", "bad-request"),
    ("sender: no jid", "<consent xmlns='{ns}'><sender rule='allow'/></consent>", "bad-request"),
    ("unknown child", "<consent xmlns='{ns}' policy='everyone'><frob/></consent>", "bad-request"),
    ("valid rule, then an invalid one", f"<consent xmlns='{{ns}}' policy='everyone'><provider "
     f"domain='{RUBIKA}' policy='everyone'/><sender jid='x@@y' rule='allow'/></consent>",
     "bad-request"),
    ("unknown element (set)", "<frobnicate xmlns='{ns}'/>", "feature-not-implemented"),
    ("a get-only element in a set", "<requests xmlns='{ns}'/>", "feature-not-implemented"),
    ("two payload elements", "<consent xmlns='{ns}' policy='off'/><consent xmlns='{ns}'/>",
     "bad-request"),
    ("accept: no jid", "<accept xmlns='{ns}'/>", "bad-request"),
    ("accept: invalid jid", "<accept xmlns='{ns}' jid='@@'/>", "bad-request"),
    ("report: unknown reason", f"<report xmlns='{{ns}}' jid='bob@{EITAA}' reason='because'/>",
     "bad-request"),
    ("decline: no jid", "<decline xmlns='{ns}'/>", "bad-request"),
    ("report: no jid", "<report xmlns='{ns}' reason='urn:xmpp:reporting:spam'/>", "bad-request"),
    ("report: no localpart", f"<report xmlns='{{ns}}' jid='{EITAA}' "
     "reason='urn:xmpp:reporting:spam'/>", "bad-request"),
]
BAD_GETS = [
    ("unknown element (get)", "<frobnicate xmlns='{ns}'/>", "feature-not-implemented"),
    ("a set-only element in a get", f"<accept xmlns='{{ns}}' jid='bob@{EITAA}'/>",
     "feature-not-implemented"),
    ("request: no from", "<request xmlns='{ns}'/>", "bad-request"),
    ("request: invalid from", "<request xmlns='{ns}' from='@@'/>", "bad-request"),
    ("history: after not a number", "<history xmlns='{ns}' after='abc'/>", "bad-request"),
    ("history: empty after", "<history xmlns='{ns}' after=''/>", "bad-request"),
    ("history: negative after", "<history xmlns='{ns}' after='-1'/>", "bad-request"),
    ("history: signed after", "<history xmlns='{ns}' after='+2'/>", "bad-request"),
    ("history: after with spaces", "<history xmlns='{ns}' after=' 2'/>", "bad-request"),
]


@pytest.mark.pv_timeout(90)
def test_malformed_consent_iqs(consent_providers, raw):
    servers = consent_providers([BALE], users=users("alice"))
    a = login(raw, servers[BALE], "alice")
    set_consent(a, policy="contacts", providers={EITAA: "everyone"},
                senders={f"carol@{EITAA}": "allow"})
    before = settings(a)
    head = before["head"]
    failures = []
    for type_, cases in (("set", BAD_SETS), ("get", BAD_GETS)):
        for name, payload, cond in cases:
            res = consent_iq(a, type_, payload.format(ns=NS_CONSENT))
            try:
                expect_error(res, cond, what=f"{type_} {name}")
            except AssertionError as e:
                failures.append(str(e))
    assert not failures, "\n".join(failures)
    after = settings(a)
    assert (after["policy"], after["providers"], after["senders"], after["head"]) == \
        (before["policy"], before["providers"], before["senders"], head), (
        f"rejected requests must change nothing: before {before}, after {after}")
    verified, entries = history(a)
    assert verified == "true" and len(entries) == head, (verified, entries)


@pytest.mark.pv_timeout(90)
def test_someone_elses_account(consent_providers, raw):
    """A local user, a remote sender alice allows (carol) or not (bob), and a request to
    the server's domain: service-unavailable, exactly as for an account that does not
    exist; alice's settings stay as they were."""
    servers = consent_providers([BALE, EITAA], users=users("alice", "bob", "carol"))
    a = login(raw, servers[BALE], "alice")
    b_local = login(raw, servers[BALE], "bob")
    set_consent(a, policy="contacts", senders={f"carol@{EITAA}": "allow"})
    before = settings(a)
    head = before["head"]
    carol = login(raw, servers[EITAA], "carol")
    bob = login(raw, servers[EITAA], "bob")
    for c in (carol, bob):
        set_consent(c, policy="everyone")   # see whatever bale answers
    asks = [("set", consent_xml(policy="everyone")), ("get", f"<consent xmlns='{NS_CONSENT}'/>"),
            ("get", f"<requests xmlns='{NS_CONSENT}'/>"),
            ("get", f"<history xmlns='{NS_CONSENT}'/>"),
            ("set", f"<accept xmlns='{NS_CONSENT}' jid='x@{EITAA}'/>")]
    n = 0
    for who, c in (("bob@bale", b_local), ("carol@eitaa (allowed)", carol),
                   ("bob@eitaa (stranger)", bob)):
        for type_, payload in asks:
            n += 1
            res = c.iq(type_, payload, to=ALICE, timeout=t(20), id=f"other{n}")
            c.iq(type_, payload, to=GHOST, timeout=t(20), id=f"ghost{n}")
            expect_error(res, "service-unavailable", "cancel",
                         what=f"{who}: {type_} {payload} to alice's account")
            mine = sender_view(c, ALICE, {f"other{n}"})
            ghost = sender_view(c, GHOST, {f"ghost{n}"})
            assert mine == ghost, (f"{who}: the answer must be the same as for an account that "
                                   f"does not exist:\n  alice: {mine}\n  ghost: {ghost}")
    expect_error(a.iq("get", f"<consent xmlns='{NS_CONSENT}'/>", to=BALE, timeout=t(20)),
                 "service-unavailable", what="consent get addressed to the server's domain")
    after = settings(a)
    assert (after["policy"], after["senders"], after["head"]) == \
        (before["policy"], before["senders"], head), after


@pytest.mark.pv_timeout(60)
def test_too_many_rules_in_one_request(consent_providers, raw):
    servers = consent_providers([BALE], users=users("alice"))
    a = login(raw, servers[BALE], "alice")
    many = {f"s{i}@{EITAA}": "allow" for i in range(101)}
    res = consent_iq(a, "set", consent_xml(policy="everyone", senders=many))
    expect_error(res, "resource-constraint", what="101 rules in one request")
    s = settings(a)
    assert s["policy"] == "off" and not s["senders"] and s["head"] == 0, \
        f"a refused request must change nothing: {s}"
    hundred = dict(list(many.items())[:100])
    expect_result(consent_iq(a, "set", consent_xml(senders=hundred)), "100 rules")
    s = settings(a)
    assert len(s["senders"]) == 100 and s["head"] == 100, \
        f"100 rules, one log entry each: {len(s['senders'])} rules, head {s['head']}"
    expect_result(consent_iq(a, "set", consent_xml()), "an empty <consent/>")
    assert settings(a)["head"] == 100, "an empty <consent/> changes and logs nothing"


@pytest.mark.pv_timeout(60)
def test_rules_per_user_are_bounded(consent_providers, raw):
    """The rule limit is per user, not per request: rules are read (and cached) for every
    cross-provider stanza, so a user must not be able to grow them without bound by
    sending many small requests."""
    servers = consent_providers([BALE], users=users("alice"), consent={"max_rules": 150})
    a = login(raw, servers[BALE], "alice")
    last = None
    for batch in range(3):
        rules = {f"s{batch}-{i}@{EITAA}": "deny" for i in range(100)}
        last = consent_iq(a, "set", consent_xml(senders=rules))
        if last.get("type") == "error":
            break
    n = len(settings(a)["senders"])
    assert n <= 150, (f"{n} sender rules stored for one user after three requests of 100 "
                      f"(the last answered {to_str(last)}): consent.max_rules is 150")
    expect_error(last, "resource-constraint", what="rules beyond the per-user limit")


def first_contact(peer, sender, to, body, id_):
    peer.send(f"<message from='{sender}/f' to='{to}' type='chat' id='{id_}'>"
              f"<body>{body}</body></message>")


@pytest.mark.pv_timeout(120)
def test_remote_provider_flooding_first_contacts(consent_providers, raw, fake_peer):
    per_domain = 5
    servers = consent_providers(
        [BALE, EITAA, RUBIKA], consent={"new_requests_per_domain": per_domain},
        users=users("alice", "bob", "carol", "friend", "pal", "newbie"))
    bale = servers[BALE]
    a = login(raw, bale, "alice")
    set_consent(a, policy="contacts")
    roster_add(a, f"friend@{EITAA}")
    b = login(raw, bale, "bob")
    set_consent(b, policy="everyone")
    c = login(raw, bale, "carol")
    set_consent(c, policy="contacts")
    pal = login(raw, servers[EITAA], "pal")
    friend = login(raw, servers[EITAA], "friend")
    newbie = login(raw, servers[RUBIKA], "newbie")
    for x in (pal, friend, newbie):
        set_consent(x, policy="everyone")
    # the real link works before
    friend.message(ALICE, "before the flood")
    remote_barrier(friend, BALE)
    local_barrier(a)

    # a second stream from eitaa.localhost (its certificate) floods alice: 40 strangers
    f = fake_peer(bale, EITAA)
    f.connect()
    for i in range(40):
        first_contact(f, f"x{i}@{EITAA}", ALICE, f"flood {i}", f"fl{i}")
    # same stream, last stanza: a roster contact's message marks the end
    first_contact(f, f"friend@{EITAA}", ALICE, "after the flood (fake stream)", "fl-end")
    a.next(lambda e: local(e.tag) == "message" and child_text(e, "body") ==
           "after the flood (fake stream)", 30, "the contact's message after the flood")
    flooders = [r for r in requests(a) if r["from"].startswith("x")]
    assert per_domain <= len(flooders) <= per_domain + 1, (
        f"new_requests_per_domain={per_domain}: {len(flooders)} of 40 first contacts from "
        f"{EITAA} were held: {[r['from'] for r in flooders]}")
    local_barrier(a)
    assert not [e for e in a.seen if child_text(e, "body") and
                child_text(e, "body").startswith("flood ")], "no flood message may be delivered"
    assert f.is_open(), "rate-limited first contacts are dropped, the stream is not cut"

    # the limit is the sending provider's: eitaa's next stranger waits a minute ...
    pal.message(f"carol@{BALE}", "pal's first contact", id="pal1")
    remote_barrier(pal, BALE)
    assert held(c, f"pal@{EITAA}") is None, "eitaa's budget of new requests is spent"
    # ... while another provider's strangers, eitaa's allowed senders, other users and
    # the links in both directions are unaffected
    newbie.message(ALICE, "newbie's first contact", id="nb1")
    remote_barrier(newbie, BALE)
    assert [child_text(e, "body") for e in held(a, f"newbie@{RUBIKA}") or []] == \
        ["newbie's first contact"], "rubika's first contact must still be held as a request"
    friend.message(ALICE, "after the flood (real link)")
    pal.message(f"bob@{BALE}", "pal to bob")
    a.next(lambda e: child_text(e, "body") == "after the flood (real link)", 30, "friend's message")
    b.next(lambda e: child_text(e, "body") == "pal to bob", 30, "pal's message to bob")
    b.message(f"pal@{EITAA}", "bob to pal")
    pal.next(lambda e: child_text(e, "body") == "bob to pal", 30, "bob's message to pal")
    from_alice = [to_str(e)[:200] for x in (pal, friend, newbie) for e in x.seen
                  if bare(e.get("from")) == ALICE]
    assert not from_alice, from_alice


@pytest.mark.pv_timeout(90)
def test_one_senders_refused_requests_do_not_spend_its_providers_budget(consent_providers,
                                                                         raw):
    """new_requests_per_sender stops one sender writing to many strangers; the attempts it
    refuses are not new requests, so they must not use up new_requests_per_domain for
    every other user of that provider."""
    recipients = [f"u{i}" for i in range(6)]
    servers = consent_providers(
        [BALE, RUBIKA], consent={"new_requests_per_domain": 5, "new_requests_per_sender": 2},
        users=users("alice", "spammer", "newbie", *recipients))
    bale = servers[BALE]
    rc = {}
    for u in recipients + ["alice"]:
        rc[u] = login(raw, bale, u)
        set_consent(rc[u], policy="contacts")
    spammer = login(raw, servers[RUBIKA], "spammer")
    newbie = login(raw, servers[RUBIKA], "newbie")
    for x in (spammer, newbie):
        set_consent(x, policy="everyone")
    for u in recipients:
        spammer.message(f"{u}@{BALE}", f"hi {u}")
    remote_barrier(spammer, BALE)
    held_by = [u for u in recipients if held(rc[u], f"spammer@{RUBIKA}")]
    assert len(held_by) == 2, f"new_requests_per_sender=2: spammer's requests held by {held_by}"
    newbie.message(ALICE, "hello from newbie")
    remote_barrier(newbie, BALE)
    assert held(rc["alice"], f"newbie@{RUBIKA}"), (
        "rubika has made 2 new requests (new_requests_per_domain=5), yet newbie's first "
        "contact was refused: the spammer's 4 attempts refused by new_requests_per_sender "
        "used up rubika's per-domain budget")
