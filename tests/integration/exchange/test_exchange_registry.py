"""The exchange's registry and role (issue 6, D): publish/withdraw, forged updates,
non-members, no c2s logins on the exchange, entries surviving a restart.  See README.md."""
import subprocess

import pytest

import rawxmpp
import s2sharness
from rawxmpp import AuthFailed

import exlib
from exlib import EXCHANGE


@pytest.mark.pv_timeout(120)
def test_exchange_refuses_c2s_logins(interconnect, raw):
    ic = interconnect("star")
    ex = ic.exchange
    # An account created offline for the exchange's domain still cannot log in: the
    # exchange hosts no people (SASL not-authorized, like an unknown account).
    ex.add_user(f"alice@{EXCHANGE}", "alice-secret")
    c = raw(ex.port, domain=EXCHANGE)
    c.start()
    c.starttls()
    with pytest.raises(AuthFailed) as e:
        c.auth_scram("alice", "alice-secret")
    assert e.value.condition == "not-authorized"
    # providers keep working
    a = ic.login(raw, "bale.localhost", "alice")
    a.ping()


BALE, EITAA, RUBIKA, SOROUSH = exlib.PROVIDERS
N = "+989121234567"
N2 = "+989127654321"
NS_CLIENT_SRV = "jabber:server"


def member(fake_peer, ic, domain):
    """A hand-written member server `domain` (certificate from the test CA, SASL
    EXTERNAL) connected to the exchange."""
    p = fake_peer(ic.exchange, domain)
    p.connect()
    return p


def error_back(ic, domain, id, timeout=15):
    """The error the exchange sent back for message `id` claiming to come from the
    member `domain`: it travels over the exchange's own link to the real `domain`
    server, whose mod_directory logs it.  Returns (defined condition, application
    condition or None)."""
    import re
    pat = re.compile(rf"registry update refused or undelivered from={re.escape(EXCHANGE)} "
                     rf"id={re.escape(id)} cond=(\S+) app=(\S+)")
    m = exlib.wait_for(lambda: pat.search(ic.providers[domain].log_text()), timeout, 0.2,
                       f"{domain} receiving the error for {id}")
    return m.group(1), (None if m.group(2) == "-" else m.group(2))


def looked_up(ic, client, number, want, timeout=15):
    """Repeat the lookup (answers are cached for cache_ttl) until its JIDs are `want`."""
    last = []

    def check():
        nonlocal last
        last = ic.lookup(client, number)
        return last.jids == sorted(want)
    try:
        exlib.wait_for(check, timeout, 0.5, f"lookup of the number giving {want}")
    except AssertionError:
        raise AssertionError(f"last answer: {last}") from None
    return last


@pytest.mark.pv_timeout(150)
def test_publish_and_withdraw(interconnect, raw, fake_peer):
    ic = interconnect("star")
    eitaa = member(fake_peer, ic, EITAA)
    alice = ic.login(raw, BALE, "alice")
    before = ic.lookup(alice, N, id="q")
    assert before.items == [] and before.number_address == ic.number_address(N), before
    eitaa.send(exlib.registry_xml("publish", EITAA, f"bob@{EITAA}", ic.blind(N),
                                  preferred=True))
    a = looked_up(ic, alice, N, [f"bob@{EITAA}"])
    assert a.preferred == f"bob@{EITAA}" and a.number_address == ic.number_address(N), a
    # a second account of the person, on another provider, newer and not preferred
    rubika = member(fake_peer, ic, RUBIKA)
    rubika.send(exlib.registry_xml("publish", RUBIKA, f"bob@{RUBIKA}", ic.blind(N)))
    a = looked_up(ic, alice, N, [f"bob@{EITAA}", f"bob@{RUBIKA}"])
    assert a.preferred == f"bob@{EITAA}", a
    # withdrawal removes the entry at once; after the cache the answer is exactly the
    # one for a number nobody ever published
    eitaa.send(exlib.registry_xml("withdraw", EITAA, f"bob@{EITAA}"))
    rubika.send(exlib.registry_xml("withdraw", RUBIKA, f"bob@{RUBIKA}"))
    looked_up(ic, alice, N, [])
    assert ic.lookup(alice, N, id="q").raw == before.raw
    # a new number for the same account replaces the old entry
    eitaa.send(exlib.registry_xml("publish", EITAA, f"bob@{EITAA}", ic.blind(N)))
    looked_up(ic, alice, N, [f"bob@{EITAA}"])
    eitaa.send(exlib.registry_xml("publish", EITAA, f"bob@{EITAA}", ic.blind(N2)))
    looked_up(ic, alice, N2, [f"bob@{EITAA}"])
    looked_up(ic, alice, N, [])


@pytest.mark.pv_timeout(150)
def test_forged_update_refused(interconnect, raw, fake_peer):
    ic = interconnect("star")
    eitaa = member(fake_peer, ic, EITAA)
    rubika = member(fake_peer, ic, RUBIKA)
    alice = ic.login(raw, BALE, "alice")
    # the legitimate entry
    rubika.send(exlib.registry_xml("publish", RUBIKA, f"carol@{RUBIKA}", ic.blind(N2)))
    looked_up(ic, alice, N2, [f"carol@{RUBIKA}"])
    # eitaa publishes an account of bale, and withdraws one of rubika: both refused
    eitaa.send(exlib.registry_xml("publish", EITAA, f"alice@{BALE}", ic.blind(N), id="f1"))
    assert error_back(ic, EITAA, "f1") == ("forbidden", "not-your-account")
    eitaa.send(exlib.registry_xml("withdraw", EITAA, f"carol@{RUBIKA}", id="f2"))
    assert error_back(ic, EITAA, "f2") == ("forbidden", "not-your-account")
    # an update sent as a user of the member, not by the member server itself
    eitaa.send(exlib.registry_xml("publish", f"bob@{EITAA}/x", f"bob@{EITAA}", ic.blind(N),
                                  id="f3"))
    # (the error goes to that full JID, which does not exist: the exchange's log says it)
    exlib.wait_for(lambda: f"registry update refused from bob@{EITAA}/x (not a member server)"
                   in ic.exchange.log_text(), 10, 0.2, "the exchange refusing f3")
    # a malformed blinded number
    eitaa.send(exlib.registry_xml("publish", EITAA, f"bob@{EITAA}", "not-blinded", id="f4"))
    assert error_back(ic, EITAA, "f4") == ("bad-request", "invalid-number")
    # nothing else disturbed: the forged entry does not exist, the real one does, the
    # forger's link still works for its own accounts
    assert ic.lookup(alice, N).items == []
    assert looked_up(ic, alice, N2, [f"carol@{RUBIKA}"])
    eitaa.send(exlib.registry_xml("publish", EITAA, f"bob@{EITAA}", ic.blind(N)))
    looked_up(ic, alice, N, [f"bob@{EITAA}"])
    log = ic.exchange.log_text()
    assert "forged registry update from eitaa.localhost for an account of bale.localhost" in log
    assert "refused_total=3" in log


@pytest.mark.pv_timeout(150)
def test_non_member_refused(interconnect, raw, fake_peer):
    ic = interconnect("star")
    p = fake_peer(ic.exchange, "mallory.localhost")   # valid certificate, not a member
    with pytest.raises(s2sharness.PeerRefused) as e:
        p.connect()
        p.send(exlib.registry_xml("publish", "mallory.localhost", "x@mallory.localhost",
                                  ic.blind(N)))
        p.refusal()
    assert e.value.condition == "policy-violation", e.value
    # a member whose certificate is signed by another CA is not authenticated either
    q = fake_peer(ic.exchange, EITAA, cert="other")
    with pytest.raises(AssertionError):
        q.connect()
    alice = ic.login(raw, BALE, "alice")
    assert ic.lookup(alice, N).items == []


@pytest.mark.pv_timeout(150)
def test_exchange_refuses_registration(interconnect, raw):
    ic = interconnect("star", exchange_modules=["disco", "ping", "directory", "register"],
                      exchange_host={"register": {"allow": True}})
    c = raw(ic.exchange.port, domain=EXCHANGE)
    c.start()
    f = c.starttls()
    assert f.find("{http://jabber.org/features/iq-register}register") is None, rawxmpp.to_str(f)
    el = c.iq("get", f"<query xmlns='{rawxmpp.NS_REGISTER}'/>", to=EXCHANGE)
    assert rawxmpp.stanza_error_condition(el) == "service-unavailable", rawxmpp.to_str(el)
    el = c.iq("set", f"<query xmlns='{rawxmpp.NS_REGISTER}'><username>eve</username>"
                     f"<password>eve-secret-1</password></query>", to=EXCHANGE)
    assert rawxmpp.stanza_error_condition(el) == "service-unavailable", rawxmpp.to_str(el)
    assert "eve" not in ic.exchange.ctl("user", "list", EXCHANGE).out


@pytest.mark.pv_timeout(150)
def test_exchange_needs_members_mode(interconnect, ca):
    ic = interconnect("star", start=False,
                      exchange_host={"interconnect": {"mode": "open"}})
    ex = ic.exchange
    p = subprocess.run([ex.bin, "--config", str(ex.config_path), "--check-config"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode != 0
    assert "role exchange requires interconnect.mode: members" in p.stderr, p.stderr
    with pytest.raises(RuntimeError):
        ex.start(timeout=10)
    assert "role exchange requires interconnect.mode: members" in ex.log_text()
    ex.expected_bad_exit = True


@pytest.mark.pv_timeout(180)
def test_entry_survives_exchange_restart(interconnect, raw, fake_peer):
    ic = interconnect("star")
    eitaa = member(fake_peer, ic, EITAA)
    eitaa.send(exlib.registry_xml("publish", EITAA, f"bob@{EITAA}", ic.blind(N),
                                  preferred=True))
    alice = ic.login(raw, BALE, "alice")
    looked_up(ic, alice, N, [f"bob@{EITAA}"])
    # acknowledged once committed: after kill -9 the entry is there
    ic.exchange.kill9()
    ic.exchange.start()
    a = looked_up(ic, alice, N, [f"bob@{EITAA}"], timeout=30)
    assert a.preferred == f"bob@{EITAA}"
    ic.exchange.restart()
    looked_up(ic, alice, N, [f"bob@{EITAA}"], timeout=30)


@pytest.mark.pv_timeout(180)
def test_publish_not_lost_while_exchange_down(interconnect, raw):
    """Real providers with mod_phone: changes made while the exchange is down reach it
    when it is back (they wait in the providers' durable s2s queues), in order."""
    ic = interconnect("star")
    if not exlib.module_available("phone"):
        pytest.fail("this peyvand has no phone module (mod_phone, issue 6 P)")
    ic.exchange.kill9()
    ic.set_phone(raw, EITAA, "bob", N, findable=True, preferred=True)
    c = ic.set_phone(raw, SOROUSH, "carol", N2, findable=True)
    ic.set_phone(raw, SOROUSH, "carol", N2, findable=False)     # published, then withdrawn
    ic.exchange.start()
    alice = ic.login(raw, BALE, "alice")
    a = looked_up(ic, alice, N, [f"bob@{EITAA}"], timeout=30)
    assert a.preferred == f"bob@{EITAA}"
    assert ic.lookup(alice, N2).items == []
    # each update was delivered once (one line per change of findability; attaching a
    # number that is not findable tells the exchange nothing)
    log = ic.exchange.log_text()
    assert log.count("published by eitaa.localhost") == 1
    assert log.count("withdrawn by eitaa.localhost") == 0
    assert log.count("published by soroush.localhost") == 1
    assert log.count("withdrawn by soroush.localhost") == 1
    assert c is not None


@pytest.mark.pv_timeout(150)
def test_exchange_refuses_dialback_member(interconnect, raw):
    """eitaa is a member but its certificate does not name it: providers may accept it
    by dialback (s2s.dialback on), the exchange never does."""
    ic = interconnect("both", certs={EITAA: "wrong"})
    if not exlib.module_available("phone"):
        pytest.fail("this peyvand has no phone module (mod_phone, issue 6 P)")
    ic.set_phone(raw, EITAA, "bob", N, findable=True)
    exlib.wait_for(lambda: "an exchange accepts certificate-authenticated members only"
                   in ic.exchange.log_text(), 20, 0.3, "the exchange refusing eitaa")
    alice = ic.login(raw, BALE, "alice")
    assert ic.lookup(alice, N).items == []
    # the others are not affected
    ic.set_phone(raw, RUBIKA, "bob", N, findable=True)
    looked_up(ic, alice, N, [f"bob@{RUBIKA}"], timeout=20)
