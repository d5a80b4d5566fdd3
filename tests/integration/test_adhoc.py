"""Ad-hoc commands (XEP-0050, src/modules/mod_adhoc.c) for consent (issue 4,
docs/protocol/consent.md): the account owner lists the commands, runs each through its
stages with XEP-0004 forms, and gets the XEP-0050 errors for misuse.

One provider, bale.localhost (consent, blocking and adhoc enabled, s2s configured with
the test CA); a hand-written peer server (s2sharness.FakePeer) authenticated as
eitaa.localhost delivers the first-contact messages that become message requests.
alice drives the commands with slixmpp's xep_0050/xep_0004 plugins; what a command did
is checked independently through the urn:peyvand:consent:0 IQ protocol (consentlib).
"""
import sys
from pathlib import Path

import pytest
from slixmpp.exceptions import IqError

sys.path.insert(0, str(Path(__file__).resolve().parent / "s2s"))
sys.path.insert(0, str(Path(__file__).resolve().parent / "consent"))

import pvserver      # noqa: E402
import s2sharness    # noqa: E402
from consentlib import (check_chain, history as consent_history,  # noqa: E402
                        requests as consent_requests, settings as consent_settings)
from helpers import wait_until  # noqa: E402
from rawxmpp import local, stanza_error_condition, to_str  # noqa: E402

BALE, EITAA = "bale.localhost", "eitaa.localhost"
NS_COMMANDS = "http://jabber.org/protocol/commands"
NS_DATA = "jabber:x:data"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_CLIENT = "jabber:client"
NS_CONSENT = "urn:peyvand:consent:0"
SETTINGS, REQUESTS, HISTORY = (NS_CONSENT + "#settings", NS_CONSENT + "#requests",
                               NS_CONSENT + "#history")
USERS = {"alice": "alice-secret", "bob": "bob-secret"}
PLUGINS = ("xep_0030", "xep_0199", "xep_0004", "xep_0050")
MODULES = pvserver.DEFAULT_MODULES + ["consent", "blocking", "adhoc"]


@pytest.fixture(scope="module")
def ca():
    c = s2sharness.TestCA()
    yield c
    c.cleanup()


@pytest.fixture
def bale(server_factory, ca):
    return s2sharness.make_providers(server_factory, ca, [BALE], users=USERS,
                                     hosts={BALE: {"modules": MODULES}})[BALE]


@pytest.fixture
def client(bale, slix, run):
    def make(user, resource="adhoc"):
        c = slix(f"{user}@{BALE}/{resource}", USERS[user], plugins=PLUGINS)
        run(c.login(bale.port))
        return c
    return make


@pytest.fixture
def raw_alice(bale, raw):
    """alice on a raw client too, for the consent IQ protocol (consentlib)."""
    c = raw(bale.port, domain=BALE)
    c.login("alice", USERS["alice"], resource="raw")
    return c


# --- helpers --------------------------------------------------------------------------

def q(tag, ns=NS_COMMANDS):
    return f"{{{ns}}}{tag}"


async def command(c, node, action="execute", sessionid=None, form=None):
    """One XEP-0050 request to the server; returns the answer element (result or error)."""
    try:
        iq = await c["xep_0050"].send_command(BALE, node, action=action, sessionid=sessionid,
                                              payload=form, timeout=20)
    except IqError as e:
        iq = e.iq
    return iq.xml


def cmd_el(res):
    assert res.get("type") == "result", f"expected a result: {to_str(res)}"
    el = res.find(q("command"))
    assert el is not None, f"no <command/> in {to_str(res)}"
    return el


def form_of(res):
    x = cmd_el(res).find(q("x", NS_DATA))
    assert x is not None, f"no data form in {to_str(res)}"
    return x


def fields(x):
    """{var: (type, [values])} of a data form."""
    out = {}
    for f in x.findall(q("field", NS_DATA)):
        out[f.get("var")] = (f.get("type"), [v.text or "" for v in f.findall(q("value", NS_DATA))])
    return out


def options(x, var):
    for f in x.findall(q("field", NS_DATA)):
        if f.get("var") == var:
            return [o.findtext(q("value", NS_DATA)) for o in f.findall(q("option", NS_DATA))]
    raise AssertionError(f"no field {var} in {to_str(x)}")


def actions(res):
    a = cmd_el(res).find(q("actions"))
    if a is None:
        return None
    return a.get("execute"), sorted(local(c.tag) for c in a)


def notes(res):
    return [(n.get("type", "info"), n.text or "") for n in cmd_el(res).findall(q("note"))]


def submit(c, values):
    """A submit form with the given {var: value or [values]}."""
    form = c["xep_0004"].make_form(ftype="submit")
    for var, v in values.items():
        if isinstance(v, list):
            form.add_field(var=var, ftype="text-multi", value="\n".join(v))
        else:
            form.add_field(var=var, value=v)
    return form


def expect_error(res, cond, app=None, etype=None):
    assert res.get("type") == "error", f"expected error {cond}: {to_str(res)}"
    assert stanza_error_condition(res) == cond, to_str(res)
    err = res.find(f"{{{NS_CLIENT}}}error")
    specific = [local(e.tag) for e in err if e.tag.startswith(f"{{{NS_COMMANDS}}}")]
    assert specific == ([app] if app else []), f"specific condition {app}: {to_str(res)}"
    if etype:
        assert err.get("type") == etype, to_str(res)


def first_contact(bale, ca, sender, bodies):
    """A peer server authenticated as eitaa.localhost delivers messages from `sender`
    to alice; returns the peer (kept open so the stream is not cut before processing)."""
    crt, key = ca.good(EITAA)
    p = s2sharness.FakePeer(bale.s2s_port, EITAA, BALE, crt, key)
    p.connect()
    for i, b in enumerate(bodies):
        p.message(f"alice@{BALE}", b, frm=f"{sender}/phone", id=f"fc-{i}")
    return p


def wait_held(raw_alice, sender, count):
    """Until the server holds `count` stanzas from sender as a request for alice."""
    def held():
        return {r["from"]: r["count"] for r in consent_requests(raw_alice)}.get(sender) == count
    wait_until(held, timeout=20, what=f"{count} stanza(s) held from {sender}")


# --- discovery --------------------------------------------------------------------------

def test_commands_are_listed_for_the_account_owner(client, run):
    alice = client("alice")

    async def scenario():
        info = await alice["xep_0030"].get_info(jid=BALE, timeout=20)
        assert NS_COMMANDS in info["disco_info"]["features"], info
        items = await alice["xep_0050"].get_commands(BALE, timeout=20)
        got = sorted((i[0], i[1]) for i in items["disco_items"]["items"])  # slixmpp: a set
        assert got == sorted([(BALE, SETTINGS), (BALE, REQUESTS), (BALE, HISTORY)]), got
        assert all(i[2] for i in items["disco_items"]["items"]), "every command has a name"
        node = await alice["xep_0030"].get_info(jid=BALE, node=SETTINGS, timeout=20)
        ids = node["disco_info"]["identities"]
        assert any(i[0] == "automation" and i[1] == "command-node" for i in ids), ids
        feats = node["disco_info"]["features"]
        assert NS_COMMANDS in feats and NS_DATA in feats, feats
        # mod_disco still answers everything else
        plain = await alice["xep_0030"].get_items(jid=BALE, timeout=20)
        assert not plain["disco_items"]["items"], plain
        try:
            await alice["xep_0030"].get_info(jid=BALE, node="urn:example:nothing", timeout=20)
            raise AssertionError("an unknown node must be item-not-found")
        except IqError as e:
            assert e.iq["error"]["condition"] == "item-not-found", e.iq
    run(scenario())


# --- #settings ----------------------------------------------------------------------------

def test_settings_command_round_trip(client, raw_alice, run):
    alice = client("alice")

    async def scenario():
        res = await command(alice, SETTINGS)
        el = cmd_el(res)
        assert el.get("status") == "executing" and el.get("node") == SETTINGS, to_str(res)
        sid = el.get("sessionid")
        assert sid
        assert actions(res) == ("complete", ["complete"]), to_str(res)
        f = fields(form_of(res))
        assert f["policy"] == ("list-single", ["off"]), f  # the default
        assert options(form_of(res), "policy") == ["off", "contacts", "everyone"]
        assert f["providers"] == ("text-multi", []) and f["allowed"][1] == [] \
            and f["denied"][1] == [], f

        form = submit(alice, {"policy": "contacts",
                              "providers": [f"{EITAA} everyone", "rubika.localhost off"],
                              "allowed": ["Friend@soroush.localhost"],
                              "denied": [f"spam@{EITAA}"]})
        res = await command(alice, SETTINGS, "complete", sid, form)
        el = cmd_el(res)
        assert el.get("status") == "completed" and el.get("sessionid") == sid, to_str(res)
        assert notes(res) == [("info", "Saved 5 changes.")], to_str(res)
        return sid
    sid = run(scenario())

    # what the command did, seen through the IQ protocol
    s = consent_settings(raw_alice)
    assert s["policy"] == "contacts", s
    assert s["providers"] == {EITAA: "everyone", "rubika.localhost": "off"}, s
    assert s["senders"] == {"friend@soroush.localhost": "allow", f"spam@{EITAA}": "deny"}, s
    verified, entries = consent_history(raw_alice)
    assert verified == "true" and len(entries) == 5, entries
    check_chain(entries)

    async def again():
        # the completed session is gone
        res = await command(alice, SETTINGS, "complete", sid, submit(alice, {"policy": "off"}))
        expect_error(res, "bad-request", "bad-sessionid", "modify")
        # the form shows the rules now; an unchanged submission changes nothing
        res = await command(alice, SETTINGS)
        f = fields(form_of(res))
        assert f["policy"][1] == ["contacts"], f
        assert sorted(f["providers"][1]) == [f"{EITAA} everyone", "rubika.localhost off"], f
        assert f["allowed"][1] == ["friend@soroush.localhost"], f
        assert f["denied"][1] == [f"spam@{EITAA}"], f
        sid2 = cmd_el(res).get("sessionid")
        assert sid2 != sid
        same = {k: (v[1] if k != "policy" else v[1][0]) for k, v in f.items() if k != "FORM_TYPE"}
        res = await command(alice, SETTINGS, "complete", sid2, submit(alice, same))
        assert notes(res) == [("info", "Nothing changed.")], to_str(res)
        # bad input is refused and the session stays, so the user can fix it
        res = await command(alice, SETTINGS)
        sid3 = cmd_el(res).get("sessionid")
        for bad in ({"policy": "sometimes"}, {"providers": ["eitaa.localhost"]},
                    {"providers": [f"{BALE} everyone"]},  # this server itself
                    {"allowed": ["x@eitaa.localhost/res"]},
                    {"allowed": ["x@eitaa.localhost"], "denied": ["x@eitaa.localhost"]}):
            res = await command(alice, SETTINGS, "complete", sid3, submit(alice, bad))
            expect_error(res, "bad-request", "bad-payload", "modify")
        res = await command(alice, SETTINGS, "complete", sid3,
                            submit(alice, {"providers": [], "denied": []}))
        assert notes(res) == [("info", "Saved 3 changes.")], to_str(res)
    run(again())
    s = consent_settings(raw_alice)
    assert s["providers"] == {} and s["senders"] == {"friend@soroush.localhost": "allow"}, s


# --- #requests ----------------------------------------------------------------------------

def test_requests_command_accept_delivers_in_order(bale, ca, client, raw_alice, run):
    alice = client("alice")
    consent = "<consent xmlns='urn:peyvand:consent:0' policy='contacts'/>"
    assert raw_alice.iq("set", consent, to="", timeout=20).get("type") == "result"

    async def nothing_yet():
        res = await command(alice, REQUESTS)
        assert cmd_el(res).get("status") == "completed", to_str(res)
        assert notes(res) == [("info", "No message requests.")], to_str(res)
    run(nothing_yet())

    peer = first_contact(bale, ca, f"ali@{EITAA}", ["salam", "are you there?\nplease"])
    wait_held(raw_alice, f"ali@{EITAA}", 2)
    peer2 = first_contact(bale, ca, f"reza@{EITAA}", ["hi"])
    wait_held(raw_alice, f"reza@{EITAA}", 1)

    async def scenario():
        res = await command(alice, REQUESTS)
        el = cmd_el(res)
        assert el.get("status") == "executing", to_str(res)
        sid = el.get("sessionid")
        assert actions(res) == ("next", ["next"]), to_str(res)
        assert options(form_of(res), "sender") == [f"ali@{EITAA}", f"reza@{EITAA}"]
        # stage 1 has no "complete"
        expect_error(await command(alice, REQUESTS, "complete", sid), "bad-request", "bad-action")
        res = await command(alice, REQUESTS, "next", sid, submit(alice, {"sender": f"ali@{EITAA}"}))
        assert actions(res) == ("complete", ["complete", "prev"]), to_str(res)
        f = fields(form_of(res))
        shown = [v[1][0] for k, v in sorted(f.items()) if k.startswith("held-")]
        assert len(shown) == 2 and shown[0].endswith(": salam") \
            and shown[1].endswith(": are you there? please"), shown
        assert f["held-1"][0] == "fixed", f
        assert options(form_of(res), "action") == ["accept", "decline", "report"]
        # back and forth
        res = await command(alice, REQUESTS, "prev", sid)
        assert fields(form_of(res))["sender"][1] == [f"ali@{EITAA}"], to_str(res)
        res = await command(alice, REQUESTS, "next", sid, submit(alice, {"sender": f"ali@{EITAA}"}))
        assert cmd_el(res).get("status") == "executing"
        res = await command(alice, REQUESTS, "complete", sid, submit(alice, {"action": "accept"}))
        assert cmd_el(res).get("status") == "completed", to_str(res)
        assert notes(res)[0][0] == "info" and "Accepted" in notes(res)[0][1], to_str(res)
        # the held messages arrive, in order
        got = []
        for _ in range(2):
            m = await alice.wait_for(lambda e: local(e.tag) == "message"
                                     and (e.get("from") or "").startswith(f"ali@{EITAA}"),
                                     20, "a held message")
            got.append(m.findtext(f"{{{NS_CLIENT}}}body"))
        assert got == ["salam", "are you there?\nplease"], got
    run(scenario())
    assert [r["from"] for r in consent_requests(raw_alice)] == [f"reza@{EITAA}"]
    assert consent_settings(raw_alice)["senders"] == {f"ali@{EITAA}": "allow"}
    _, entries = consent_history(raw_alice)
    assert entries[-1]["action"] == f"accept ali@{EITAA}", entries
    peer.close()
    peer2.close()


@pytest.mark.parametrize("decision", ["decline", "report"])
def test_requests_command_decline_and_report(bale, ca, client, raw_alice, run, decision):
    alice = client("alice")
    consent = "<consent xmlns='urn:peyvand:consent:0' policy='contacts'/>"
    assert raw_alice.iq("set", consent, to="", timeout=20).get("type") == "result"
    peer = first_contact(bale, ca, f"spammer@{EITAA}", ["buy now"])
    wait_held(raw_alice, f"spammer@{EITAA}", 1)

    async def scenario():
        res = await command(alice, REQUESTS)
        sid = cmd_el(res).get("sessionid")
        await command(alice, REQUESTS, "next", sid, submit(alice, {"sender": f"spammer@{EITAA}"}))
        values = {"action": decision}
        if decision == "report":
            values.update({"reason": "urn:xmpp:reporting:abuse", "text": "unsolicited ads"})
        res = await command(alice, REQUESTS, "complete", sid, submit(alice, values))
        assert cmd_el(res).get("status") == "completed", to_str(res)
        assert notes(res)[0][0] == "info", to_str(res)
        # nothing is delivered
        await alice.none_for(lambda e: local(e.tag) == "message"
                             and "spammer" in (e.get("from") or ""), 1.0, "a declined message")
    run(scenario())
    assert consent_requests(raw_alice) == []
    _, entries = consent_history(raw_alice)
    if decision == "decline":
        assert entries[-1]["action"] == f"decline spammer@{EITAA}", entries
        assert consent_settings(raw_alice)["senders"] == {}
    else:
        assert entries[-1]["action"] == f"report spammer@{EITAA} urn:xmpp:reporting:abuse", entries
        assert consent_settings(raw_alice)["senders"] == {f"spammer@{EITAA}": "deny"}
        res = raw_alice.iq("get", "<blocklist xmlns='urn:xmpp:blocking'/>", to="", timeout=20)
        items = [i.get("jid") for i in res.iter("{urn:xmpp:blocking}item")]
        assert items == [f"spammer@{EITAA}"], to_str(res)
    peer.close()


# --- #history -------------------------------------------------------------------------------

def test_history_command(client, raw_alice, run):
    alice = client("alice")
    for p in ("contacts", "everyone", "off"):
        res = raw_alice.iq("set", f"<consent xmlns='{NS_CONSENT}' policy='{p}'/>", to="",
                           timeout=20)
        assert res.get("type") == "result", to_str(res)
    _, entries = consent_history(raw_alice)

    async def scenario():
        res = await command(alice, HISTORY)
        el = cmd_el(res)
        assert el.get("status") == "completed" and el.get("sessionid"), to_str(res)
        assert actions(res) is None
        x = form_of(res)
        assert x.get("type") == "result"
        f = fields(x)
        assert f["verified"] == ("boolean", ["1"]) and f["count"][1] == ["3"], f
        rows = []
        for item in x.findall(q("item", NS_DATA)):
            row = {fl.get("var"): fl.findtext(q("value", NS_DATA)) for fl in item}
            rows.append(row)
        assert [r["action"] for r in rows] == ["policy contacts", "policy everyone", "policy off"]
        assert [(r["seq"], r["stamp"], r["hash"]) for r in rows] == \
            [(str(e["seq"]), e["stamp"], e["hash"]) for e in entries]
        assert notes(res) == [("info", "The history verifies: no entry was changed or removed.")]
    run(scenario())


# --- errors ------------------------------------------------------------------------------------

def test_command_errors(client, run):
    alice, bob = client("alice"), client("bob")

    async def scenario():
        res = await command(alice, SETTINGS)
        sid = cmd_el(res).get("sessionid")
        expect_error(await command(alice, "urn:example:no-such-command"), "item-not-found",
                     etype="cancel")
        expect_error(await command(alice, SETTINGS, "next", "not-a-session"), "bad-request",
                     "bad-sessionid", "modify")
        expect_error(await command(alice, HISTORY, "execute", sid), "bad-request", "bad-sessionid")
        expect_error(await command(bob, SETTINGS, "execute", sid), "bad-request", "bad-sessionid")
        expect_error(await command(alice, SETTINGS, "next"), "bad-request", "bad-action")
        expect_error(await command(alice, SETTINGS, "complete", sid), "bad-request", "bad-payload")
        # a malformed action (slixmpp would refuse to send it: a raw iq)
        res = await alice.iq_set(f"<command xmlns='{NS_COMMANDS}' node='{SETTINGS}' "
                                 f"action='jump' sessionid='{sid}'/>", to=BALE)
        expect_error(res, "bad-request", "malformed-action")
        # none of that ended alice's session; cancel does
        res = await command(alice, SETTINGS, "cancel", sid)
        el = cmd_el(res)
        assert el.get("status") == "canceled" and el.get("sessionid") == sid, to_str(res)
        expect_error(await command(alice, SETTINGS, "complete", sid,
                                   submit(alice, {"policy": "everyone"})),
                     "bad-request", "bad-sessionid")
        # commands go to the server, not to the account
        res = await alice.iq_set(f"<command xmlns='{NS_COMMANDS}' node='{SETTINGS}'/>",
                                 to=f"alice@{BALE}")
        assert res.get("type") == "error", to_str(res)
    run(scenario())
