"""The decision table of issue 4 (docs/protocol/consent.md sections 5 and 7), one test
per row:

    recipient setting x sender kind x stanza kind -> delivered | held | dropped | refused
                                                     and what the sender sees

Four providers: bale.localhost hosts the recipients and is members-only (eitaa and
rubika are members, soroush is not); eitaa, rubika and soroush host the senders.  One
recipient account per setting:

  off        policy off (the default)
  contacts   policy contacts
  everyone   policy everyone
  provider   policy contacts, provider rules "everyone from eitaa, off from rubika"
  allow      policy off, a sender rule "allow" for every remote sender
  deny       policy everyone, a sender rule "deny" for every remote sender

Every recipient has a vCard (so that an iq that gets through is answered with it),
contact@eitaa, contact@rubika and blocked@eitaa in its roster, and blocked@eitaa on its
XEP-0191 block list.  Sender kinds: local@bale (same provider), stranger@eitaa (member
provider, not in the roster), contact@eitaa (member provider, roster contact), the same
two on rubika (to see the provider rule), blocked@eitaa (blocked via XEP-0191; also a
roster contact, so the block is the only reason to stop it) and stranger@soroush
(non-member: its provider's link is refused).  Stanza kinds: a chat message with a body,
a subscription request, a directed available presence, an iq get (vCard) to the bare JID.

Outcomes (the sender rule decides first, then the provider rule or the default;
blocking wins over everything; the same provider is not subject to consent):
  delivered  the recipient's client receives it (the iq is answered with the vCard)
  held       kept as a message request (chat messages with a body and subscription
             requests only), visible in <request from=.../>, not delivered
  dropped    neither delivered nor held
  refused    the non-member's link is refused (policy-violation); its provider bounces
             the stanza as remote-server-timeout once its queue expires
What the sender sees when not delivered: exactly what it sees for the same stanza to
ghost@bale.localhost, an account that does not exist -- the same bytes apart from the
stanza id and the recipient's address: nothing for messages and presence,
service-unavailable for the iq.  This is asserted for blocked senders too (issue 4: "the
sender learns nothing the recipient did not choose to reveal"; mod_blocking drops a
remote sender's message silently), although docs/protocol/consent.md sections 7, 12 and
15 still describe service-unavailable for a blocked sender's message.  The senders' own
providers run consent as well; the senders choose `everyone` there, so that whatever
bale answers reaches them and is seen by the test.

All stanzas of the table are sent once (module fixture `world`); barriers (a ping over
the same s2s link, then a ping on each recipient's stream) make "not delivered" and
"nothing came back" facts rather than timeouts.  Each row then checks its own stanza.
"""
import re
import time

import pytest

import s2sharness
from consentlib import (BALE, BLOCKING, EITAA, RUBIKA, SOROUSH, bare, block, errors_to, held,
                        host_overrides, local_barrier, login, remote_barrier, roster_add,
                        sender_view, set_consent, set_vcard, users, vcard_fn)
from rawxmpp import local, stanza_error_condition, to_str

SETTINGS = ["off", "contacts", "everyone", "provider", "allow", "deny"]
SENDERS = {
    "same-provider": ("local", BALE),
    "member-stranger": ("stranger", EITAA),
    "member-contact": ("contact", EITAA),
    "rubika-stranger": ("stranger", RUBIKA),
    "rubika-contact": ("contact", RUBIKA),
    "blocked": ("blocked", EITAA),
    "non-member": ("stranger", SOROUSH),
}
KINDS = ["message", "subscribe", "presence", "iq"]
GHOST = f"ghost@{BALE}"
REMOTE = [f"{u}@{d}" for k, (u, d) in SENDERS.items() if d != BALE]
CONTACTS = [f"contact@{EITAA}", f"contact@{RUBIKA}", f"blocked@{EITAA}"]
REFUSAL_WORDS = re.compile(r"refus|policy|member|denied|reject|not allowed", re.I)


def recipient(setting):
    return f"r{setting}@{BALE}"


def sender_jid(kind):
    u, d = SENDERS[kind]
    return f"{u}@{d}"


def consent_of(setting):
    return {
        "off": dict(policy="off"),
        "contacts": dict(policy="contacts"),
        "everyone": dict(policy="everyone"),
        "provider": dict(policy="contacts", providers={EITAA: "everyone", RUBIKA: "off"}),
        "allow": dict(policy="off", senders={j: "allow" for j in REMOTE}),
        "deny": dict(policy="everyone", senders={j: "deny" for j in REMOTE}),
    }[setting]


def decision(setting, sender):
    """deliver | hold | drop | refused for a (setting, sender kind)."""
    if sender == "same-provider":
        return "deliver"
    if sender == "non-member":
        return "refused"
    if sender == "blocked":
        return "drop"
    _, dom = SENDERS[sender]
    contact = sender.endswith("contact")
    return {
        "off": "drop",
        "contacts": "deliver" if contact else "hold",
        "everyone": "deliver",
        "provider": "deliver" if dom == EITAA else "drop",
        "allow": "deliver",
        "deny": "drop",
    }[setting]


def expected(setting, sender, kind):
    d = decision(setting, sender)
    if d == "deliver":
        return "delivered"
    if d == "hold":
        return "held" if kind in ("message", "subscribe") else "dropped"
    if d == "drop":
        return "dropped"
    return "refused"


def row_id(setting, sender, kind):
    return f"{kind[0]}-{setting}-{sender}"


ROWS = [(s, k, t) for s in SETTINGS for k in SENDERS for t in KINDS]


class World:
    pass


def send_probe(c, to, rid, kind):
    if kind == "message":
        c.send_stanza(f"<message to='{to}' type='chat' id='{rid}'><body>{rid}</body></message>")
    elif kind == "subscribe":
        c.send_stanza(f"<presence to='{to}' type='subscribe' id='{rid}'/>")
    elif kind == "presence":
        c.send_stanza(f"<presence to='{to}' id='{rid}'><status>{rid}</status></presence>")
    else:
        c.send_stanza(f"<iq to='{to}' type='get' id='{rid}'><vCard xmlns='vcard-temp'/></iq>")


@pytest.fixture(scope="module")
def world(module_servers, module_raw, ca):
    t0 = time.monotonic()
    names = ["local", "stranger", "contact", "blocked"] + [f"r{s}" for s in SETTINGS]
    domains = [BALE, EITAA, RUBIKA, SOROUSH]
    servers = s2sharness.make_providers(
        module_servers, ca, domains, users=users(*names),
        hosts=host_overrides(domains, members=[EITAA, RUBIKA]),
        per={SOROUSH: {"queue_expiry": "3s", "retry_min": "1s", "retry_max": "1s"}})
    w = World()
    w.servers = servers
    w.rcpt = {}
    # recipients: vCard, roster, block, consent
    for s in SETTINGS:
        c = login(module_raw, servers[BALE], f"r{s}")
        set_vcard(c, f"Recipient {s}")
        for j in CONTACTS:
            roster_add(c, j)
        if BLOCKING:
            block(c, f"blocked@{EITAA}")
        set_consent(c, **consent_of(s))
        w.rcpt[s] = c
    w.snd = {k: login(module_raw, servers[SENDERS[k][1]], SENDERS[k][0]) for k in SENDERS}
    for k, c in w.snd.items():
        # The senders' own providers apply consent too: "everyone" lets whatever bale
        # answers reach them, so the tests see exactly what bale sends.
        set_consent(c, policy="everyone")
    for c in list(w.rcpt.values()) + list(w.snd.values()):
        c.drain(0.1)
    mark = {k: len(c.seen) for k, c in w.rcpt.items()}
    # every probe of the table, and the same stanzas to an account that does not exist
    w.probe_ids = {k: set() for k in SENDERS}
    for k, c in w.snd.items():
        for s in SETTINGS:
            for t in KINDS:
                send_probe(c, recipient(s), row_id(s, k, t), t)
                w.probe_ids[k].add(row_id(s, k, t))
        if SENDERS[k][1] not in (BALE, SOROUSH):
            for t in KINDS:
                send_probe(c, GHOST, f"{t[0]}-ghost-{k}", t)
                w.probe_ids[k].add(f"{t[0]}-ghost-{k}")
    # barriers: bale has processed everything every member sent, answers are back
    for k, c in w.snd.items():
        if SENDERS[k][1] in (EITAA, RUBIKA):
            remote_barrier(c, BALE)
        elif SENDERS[k][1] == BALE:
            local_barrier(c)
    # the non-member's stanzas: its provider gives up after queue_expiry (3 s)
    soroush = w.snd["non-member"]
    want = {row_id(s, "non-member", t) for s in SETTINGS for t in ("message", "iq")}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and \
            not want <= {e.get("id") for e in errors_to(soroush, want)}:
        soroush.drain(0.3)
    soroush.drain(0.5)
    for c in w.rcpt.values():
        local_barrier(c)
    w.received = {s: c.seen[mark[s]:] for s, c in w.rcpt.items()}
    # what each recipient holds from each sender
    w.held = {(s, k): held(w.rcpt[s], sender_jid(k)) for s in SETTINGS for k in SENDERS}
    w.refusal_logged = any(SOROUSH in line and REFUSAL_WORDS.search(line)
                           for line in servers[BALE].log_text().splitlines())
    w.setup_seconds = time.monotonic() - t0
    return w


def delivered_to_recipient(w, setting, sender, kind):
    rid = row_id(setting, sender, kind)
    sj = sender_jid(sender)
    out = []
    for el in w.received[setting]:
        if bare(el.get("from")) != sj:
            continue
        tag = local(el.tag)
        if kind == "message" and tag == "message" and el.get("type") != "error" and \
                el.findtext("{jabber:client}body") == rid:
            out.append(el)
        elif kind == "subscribe" and tag == "presence" and el.get("type") == "subscribe":
            out.append(el)
        elif kind == "presence" and tag == "presence" and el.get("type") is None and \
                el.findtext("{jabber:client}status") == rid:
            out.append(el)
        elif kind == "iq" and tag == "iq":
            out.append(el)    # an iq to the bare JID is the server's to answer
    return out


def held_here(w, setting, sender, kind):
    stanzas = w.held[(setting, sender)] or []
    rid = row_id(setting, sender, kind)
    out = []
    for el in stanzas:
        tag = local(el.tag)
        if kind == "message" and tag == "message" and el.get("id") == rid:
            out.append(el)
        elif kind == "subscribe" and tag == "presence" and el.get("type") == "subscribe":
            out.append(el)
        elif kind == "presence" and tag == "presence" and el.get("type") is None:
            out.append(el)
        elif kind == "iq" and tag == "iq":
            out.append(el)
    return out


@pytest.mark.pv_timeout(150)
@pytest.mark.parametrize("setting,sender,kind", ROWS,
                         ids=[f"{s}-{k}-{t}" for s, k, t in ROWS])
def test_decision_table(world, setting, sender, kind):
    w = world
    want = expected(setting, sender, kind)
    rcpt = recipient(setting)
    rid = row_id(setting, sender, kind)
    row = f"[{setting} x {sender} ({sender_jid(sender)}) x {kind} -> {want}]"
    if sender == "blocked":
        assert BLOCKING, (f"{row}: cannot block: this peyvand has no 'blocking' module "
                          f"(XEP-0191)")
    got_rcpt = delivered_to_recipient(w, setting, sender, kind)
    got_held = held_here(w, setting, sender, kind)
    snd = w.snd[sender]
    answers = [el for el in snd.seen if el.get("id") == rid]

    # --- the recipient's side
    if want == "delivered":
        if kind == "iq":
            assert len(answers) == 1 and answers[0].get("type") == "result", (
                f"{row}: the iq to the bare JID must be answered by the recipient's account "
                f"(a vCard result); sender got {[to_str(a) for a in answers]}")
            assert vcard_fn(answers[0]) == f"Recipient {setting}", to_str(answers[0])
        else:
            assert len(got_rcpt) == 1, (f"{row}: the recipient must receive the {kind} "
                                        f"exactly once; got {[to_str(e) for e in got_rcpt]}")
    else:
        assert not got_rcpt, (f"{row}: must not reach the recipient's client, but it got "
                              f"{[to_str(e)[:300] for e in got_rcpt]}")
        if kind == "iq":
            assert not any(a.get("type") == "result" for a in answers), (
                f"{row}: the iq was answered with a result (the recipient's data reached "
                f"the sender): {[to_str(a) for a in answers]}")
    if want == "held":
        assert len(got_held) == 1, (
            f"{row}: must be held as a message request (<request from='{sender_jid(sender)}'/>"
            f" of {rcpt}); held stanzas: "
            f"{[to_str(e)[:200] for e in w.held[(setting, sender)] or []]}")
    else:
        assert not got_held, (f"{row}: must not be held; held: "
                              f"{[to_str(e)[:200] for e in got_held]}")

    # --- the sender's side
    if want == "refused":
        assert w.refusal_logged, (f"{row}: bale must refuse the non-member's link and log "
                                  f"the refusal naming {SOROUSH}")
        errs = [a for a in answers if a.get("type") == "error"]
        conds = {stanza_error_condition(e) for e in errs}
        assert conds <= {"remote-server-timeout"}, (
            f"{row}: the non-member's provider may only report that bale cannot be reached; "
            f"got {[to_str(e) for e in errs]}")
        if kind in ("message", "iq"):
            assert len(errs) == 1, (f"{row}: the sender's own provider must bounce the "
                                    f"{kind} once (remote-server-timeout after its queue "
                                    f"expired); got {[to_str(a) for a in answers]}")
        assert not [a for a in answers if a.get("type") != "error"], \
            f"{row}: {[to_str(a) for a in answers]}"
        return
    if want == "delivered":
        if kind != "iq":
            assert not answers, (f"{row}: a delivered {kind} is not answered by the server; "
                                 f"sender got {[to_str(a) for a in answers]}")
        return
    # not delivered: compare with the same stanza to an account that does not exist
    ghost_rid = f"{kind[0]}-ghost-{sender}"
    probes = w.probe_ids[sender]
    mine = sender_view(snd, rcpt, {rid}, probes)
    ghost = sender_view(snd, GHOST, {ghost_rid}, probes)
    if kind == "iq":
        assert len(answers) == 1 and stanza_error_condition(answers[0]) == \
            "service-unavailable", (f"{row}: the iq must be answered with "
                                    f"service-unavailable; got {[to_str(a) for a in answers]}")
    else:
        assert not answers, (f"{row}: a {kind} that is not delivered must vanish silently; "
                             f"sender got {[to_str(a) for a in answers]}")
    assert mine == ghost, (
        f"{row}: the sender must see exactly what it sees for a non-existent account "
        f"(bytes, apart from id and recipient address):\n  this recipient: {mine}\n"
        f"  non-existent:   {ghost}")
