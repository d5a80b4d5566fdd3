"""Number addressing at the exchange (issue 6, R; docs/protocol/exchange.md "Number
addresses").

bob has accounts on bale and eitaa, the same number on both, findable on both, eitaa
preferred (P's urn:peyvand:phone:0 settings, codes from the log SMS gateway; D's
directory publishes to the exchange's registry).  alice on rubika writes to the number
address <blinded>@exchange.localhost:
  - it arrives at bob@eitaa, from alice@rubika (and bob's reply reaches alice);
  - bob makes bale preferred: the next message arrives at bob@bale;
  - bob withdraws (findable off everywhere): alice sees exactly what an unknown number
    gives -- nothing for a message, the same service-unavailable bytes for an iq.
Run in the star (route_via_exchange) and in "both" (direct routes, exchange configured).
"""
import sys
from pathlib import Path

import pytest

import s2sharness
from exlib import EXCHANGE, wait_for
from rawxmpp import to_str
from s2sharness import is_chat, is_error_message, message_xml, wait_chat

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "phone"))
import phonelib  # noqa: E402

BALE, EITAA, RUBIKA = s2sharness.PROVIDERS[:3]
NUMBER = "+989121234567"
UNKNOWN = "+989350000000"


def give_number(ic, c, domain, number):
    r = phonelib.attach(c, ic[domain], number)
    assert r.get("type") == "result", to_str(r)


def set_flags(c, **kw):
    r = phonelib.settings(c, **{k: "true" if v else "false" for k, v in kw.items()})
    assert r.get("type") == "result", to_str(r)


def preferred_seen(ic, who, want):
    """Wait until a lookup from `who` names `want` as preferred (None: nothing found)."""
    def check():
        a = ic.lookup(who, NUMBER)
        return a.preferred == want and (want is not None or not a.items)
    wait_for(check, 30, interval=1.0, what=f"lookup preferred = {want}")


@pytest.mark.pv_timeout(180)
@pytest.mark.parametrize("layout", ["star", "both"])
def test_number_address_follows_preference_and_withdrawal(interconnect, raw, layout):
    ic = interconnect(layout, providers=[BALE, EITAA, RUBIKA])
    addr = ic.number_address(NUMBER)
    bob_b = ic.login(raw, BALE, "bob")
    bob_e = ic.login(raw, EITAA, "bob")
    alice = ic.login(raw, RUBIKA, "alice")
    give_number(ic, bob_b, BALE, NUMBER)
    give_number(ic, bob_e, EITAA, NUMBER)
    set_flags(bob_b, findable=True, preferred=False)
    set_flags(bob_e, findable=True, preferred=True)
    preferred_seen(ic, alice, f"bob@{EITAA}")

    # 1. to the number: arrives at the preferred account, from the real sender
    alice.send_stanza(message_xml(addr, "to your number", "n-1"))
    m = wait_chat(bob_e, "to your number", frm=f"alice@{RUBIKA}")
    assert m.get("to").split("/")[0] == f"bob@{EITAA}"
    assert not bob_b.collect(lambda e: is_chat(e, "to your number"), 1)
    # ...and the reply finds its way back
    bob_e.send_stanza(message_xml(f"alice@{RUBIKA}/raw", "got it", "n-2"))
    wait_chat(alice, "got it", frm=f"bob@{EITAA}")
    # an iq to the number address is answered by the account's server
    r = alice.iq("get", "<ping xmlns='urn:xmpp:ping'/>", to=addr, timeout=20)
    assert r.get("type") in ("result", "error"), to_str(r)

    # 2. bob switches preference: the next message follows
    set_flags(bob_e, preferred=False)
    set_flags(bob_b, preferred=True)
    preferred_seen(ic, alice, f"bob@{BALE}")
    alice.send_stanza(message_xml(addr, "now on bale", "n-3"))
    wait_chat(bob_b, "now on bale", frm=f"alice@{RUBIKA}")
    assert not bob_e.collect(lambda e: is_chat(e, "now on bale"), 1)

    # 3. withdrawal: indistinguishable from an unknown number
    set_flags(bob_b, findable=False)
    set_flags(bob_e, findable=False)
    preferred_seen(ic, alice, None)
    unknown = ic.number_address(UNKNOWN)
    answers = {}
    for name, to in (("withdrawn", addr), ("unknown", unknown)):
        start = len(alice.raw_in)
        alice.send_stanza(message_xml(to, f"hello {name}", f"w-msg"))
        quiet = alice.collect(lambda e: is_error_message(e) or is_chat(e), 2)
        assert not quiet, f"{name}: {[to_str(e) for e in quiet]}"
        el = alice.iq("get", "<ping xmlns='urn:xmpp:ping'/>", to=to, timeout=20, id="w-iq")
        assert el.get("type") == "error", to_str(el)
        answers[name] = bytes(alice.raw_in[start:]).replace(
            (addr if name == "withdrawn" else unknown).encode(), b"NUMBER@EXCHANGE")
    assert answers["withdrawn"] == answers["unknown"], answers
    assert not bob_b.collect(lambda e: is_chat(e), 1) and not bob_e.collect(lambda e: is_chat(e), 0.5)
    view = {l.split()[2]: l for l in ic.exchange.ctl("exchange").out.splitlines() if " <> " in l}
    assert "numbers=" in view[RUBIKA]


def test_number_address_on_a_provider_is_just_an_account(interconnect, raw):
    """A blinded-looking localpart on a provider (not an exchange) is an ordinary missing
    account there: the provider answers as always (no lookup, no relay)."""
    ic = interconnect("star", providers=[BALE, EITAA])
    alice = ic.login(raw, BALE, "alice")
    to = f"{ic.blind(NUMBER)}@{EITAA}"
    el = alice.iq("get", "<ping xmlns='urn:xmpp:ping'/>", to=to, timeout=20)
    assert el.get("type") == "error" and el.get("from") == to, to_str(el)
