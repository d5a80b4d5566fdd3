"""Trust in relayed stanzas and the exchange's per-provider limits (issue 6, R).

Origin proofs: a "fake exchange" (a hand-written peer with a valid exchange.localhost
certificate from the interconnect CA, i.e. what a compromised exchange could do) sends
rubika stanzas claiming to come from alice@bale: without a proof, with bale's certificate
and a made-up signature, with eitaa's certificate.  rubika delivers none of them, counts
them, answers not-authorized + <origin-invalid/> (which reaches alice through the real
exchange) and keeps the stream: genuine relayed traffic goes on.  A relayed stanza that
claims rubika's own domain or a non-member's is the old invalid-from.

Limits at the exchange (hosts.exchange.localhost.exchange.*): a source provider's rate
and daily count, a destination's queue length; each refusal is a stanza error from the
exchange with a relay condition, and other providers keep working.
"""
import base64
import ssl
import time
from pathlib import Path
from xml.sax.saxutils import quoteattr

import s2sharness
from exlib import EXCHANGE, wait_for
from rawxmpp import to_str
from s2sharness import collect_errors, is_chat, message_xml, no_chat, wait_chat
from test_relay import NS_RELAY, error_conditions, exchange_view, stats

BALE, EITAA, RUBIKA, SOROUSH = s2sharness.PROVIDERS


def cert_b64(ca, domain):
    pem = Path(ca.good(domain)[0]).read_text()
    return base64.b64encode(ssl.PEM_cert_to_DER_cert(pem)).decode()


def origin(to, cert, sig=None):
    sig = sig or base64.b64encode(b"\x30\x06\x02\x01\x01\x02\x01\x01").decode()
    return (f"<origin xmlns='{NS_RELAY}' to={quoteattr(to)} ts='1700000000000' sig='{sig}'>"
            f"<cert>{cert}</cert></origin>")


def test_forged_origin_proofs_rejected(interconnect, fake_peer, raw, ca):
    ic = interconnect("star", providers=[BALE, EITAA, RUBIKA])
    rubika = ic[RUBIKA]
    alice = ic.login(raw, BALE, "alice")
    bob = ic.login(raw, RUBIKA, "bob")
    p = fake_peer(rubika, EXCHANGE)
    p.connect()
    to = f"bob@{RUBIKA}"
    ids = [
        p.message(to, "forged: no proof", frm=f"alice@{BALE}/raw", id="fo-1"),
        p.message(to, "forged: bad signature", frm=f"alice@{BALE}/raw", id="fo-2",
                  extra=origin(to, cert_b64(ca, BALE))),
        p.message(to, "forged: eitaa's certificate", frm=f"alice@{BALE}/raw", id="fo-3",
                  extra=origin(to, cert_b64(ca, EITAA))),
    ]
    no_chat(bob, lambda e: "forged" in (e.findtext("{jabber:client}body") or ""), 3)
    wait_for(lambda: stats(rubika).get("s2s_relay_origin_failed", 0) == 3, 10,
             what="three origin failures counted")
    # the claimed sender learns of it, through the real exchange
    got = collect_errors(alice, set(ids), 20)
    assert set(got) == set(ids), got
    for i in ids:
        assert error_conditions(got[i][0]) == ("cancel", "not-authorized", "origin-invalid")
    # the stream was not cut, and genuine relayed traffic is delivered
    cut = p.collect(lambda e: e.tag == "{http://etherx.jabber.org/streams}error", 1)
    assert not cut and not p.eof, "the stream was cut"
    alice.send_stanza(message_xml(to, "genuine", "g-1"))
    wait_chat(bob, "genuine", frm=f"alice@{BALE}")


def test_relayed_from_own_or_non_member_domain_is_invalid_from(interconnect, fake_peer, ca):
    ic = interconnect("star", providers=[BALE, RUBIKA])
    for frm in (f"mallory@{RUBIKA}/x", "mallory@stranger.localhost/x"):
        p = fake_peer(ic[RUBIKA], EXCHANGE)
        p.connect()
        p.message(f"bob@{RUBIKA}", "forged", frm=frm,
                  extra=origin(f"bob@{RUBIKA}", cert_b64(ca, BALE)))
        assert p.refusal() == "invalid-from", frm


def test_rate_limit_per_source_provider(interconnect, raw):
    ic = interconnect("star", providers=[BALE, EITAA, RUBIKA],
                      exchange_host={"exchange": {"rate": 2}})
    alice = ic.login(raw, BALE, "alice")
    bob = ic.login(raw, EITAA, "bob")
    ids = [f"rl-{i}" for i in range(12)]
    for i in ids:
        alice.send_stanza(message_xml(f"bob@{EITAA}", i, i))
    got = collect_errors(alice, set(ids), 8)
    assert got, "no message was refused above the rate"
    for errs in got.values():
        assert errs[0].get("from") == EXCHANGE
        assert error_conditions(errs[0]) == ("wait", "policy-violation", "rate-limited")
    # the others arrived
    delivered = bob.collect(lambda e: is_chat(e), 2)
    assert len(delivered) == len(ids) - len(got), (len(delivered), len(got))
    assert int(exchange_view(ic.exchange)[BALE]["refused_rate"]) == len(got)
    # another provider's budget is its own
    carol = ic.login(raw, RUBIKA, "carol")
    carol.send_stanza(message_xml(f"bob@{EITAA}", "from rubika", "rr-1"))
    wait_chat(bob, "from rubika", frm=f"carol@{RUBIKA}")


def test_daily_quota_per_source_provider(interconnect, raw):
    ic = interconnect("star", providers=[BALE, EITAA, RUBIKA],
                      exchange_host={"exchange": {"rate": 0, "daily": 3}})
    alice = ic.login(raw, BALE, "alice")
    bob = ic.login(raw, EITAA, "bob")
    for i in range(3):
        alice.send_stanza(message_xml(f"bob@{EITAA}", f"dq-{i}", f"dq-{i}"))
        wait_chat(bob, f"dq-{i}")
    alice.send_stanza(message_xml(f"bob@{EITAA}", "dq-3", "dq-3"))
    got = collect_errors(alice, {"dq-3"}, 10)
    assert error_conditions(got["dq-3"][0]) == ("wait", "policy-violation", "quota-exceeded")
    carol = ic.login(raw, RUBIKA, "carol")
    carol.send_stanza(message_xml(f"bob@{EITAA}", "rubika still", "dq-r"))
    wait_chat(bob, "rubika still", frm=f"carol@{RUBIKA}")


def test_queue_limit_per_destination(interconnect, raw):
    ic = interconnect("star", providers=[BALE, EITAA, RUBIKA],
                      exchange_host={"exchange": {"max_queue": 3}})
    ic[EITAA].stop()
    alice = ic.login(raw, BALE, "alice")
    ids = [f"q-{i}" for i in range(5)]
    for i in ids:
        alice.send_stanza(message_xml(f"bob@{EITAA}", i, i))
    got = collect_errors(alice, set(ids[3:]), 10)
    assert set(got) == set(ids[3:]), got
    for errs in got.values():
        assert error_conditions(errs[0]) == ("wait", "resource-constraint", "queue-full")
    view = exchange_view(ic.exchange)
    assert view[EITAA]["queue"] == "3" and view[BALE]["refused_queue"] == "2", view
    # traffic to other destinations is unaffected
    bob = ic.login(raw, RUBIKA, "bob")
    alice.send_stanza(message_xml(f"bob@{RUBIKA}", "to rubika", "q-r"))
    wait_chat(bob, "to rubika", frm=f"alice@{BALE}")


NS_BLOCKING = "urn:xmpp:blocking"
NS_REPORTING = "urn:xmpp:reporting:1"


def test_abuse_report_reaches_the_senders_provider(interconnect, raw):
    """alice@bale blocks and reports mallory@eitaa (XEP-0377); bale forwards
    urn:peyvand:abuse:0 through the exchange; eitaa stores it with its reports, with the
    stanza-id alice named and without her text or any body."""
    ic = interconnect("star", providers=[BALE, EITAA], users={"alice": "pw-alice-1",
                                                             "mallory": "pw-mallory-1"},
                      extra_modules=["blocking"])
    alice = ic[BALE]
    c = raw(alice.port, domain=BALE)
    c.login("alice", "pw-alice-1")
    secret = "my private explanation"
    item = (f"<item jid='mallory@{EITAA}'><report xmlns='{NS_REPORTING}' "
            f"reason='urn:xmpp:reporting:spam'><stanza-id xmlns='urn:xmpp:sid:0' "
            f"by='alice@{BALE}' id='sp-42'/><text>{secret}</text></report></item>")
    r = c.iq("set", f"<block xmlns='{NS_BLOCKING}'>{item}</block>", to="")
    assert r.get("type") == "result", to_str(r)

    def stored():
        out = ic[EITAA].ctl("reports").out
        return out if f"mallory@{EITAA}" in out else None
    out = wait_for(stored, 20, what="report stored at eitaa")
    assert f"{BALE}@{EITAA} reported mallory@{EITAA} reason=urn:xmpp:reporting:spam" in out, out
    # what crossed: ids, no text
    log = ic[EITAA].log_text()
    assert secret not in log
    assert int(exchange_view(ic.exchange)[EITAA]["out"]) >= 1
