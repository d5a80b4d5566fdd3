"""Discovery by phone number (issue 6, D; docs/protocol/directory.md): a user asks their
own server "where can I reach +98...?" and gets the findable accounts on the four
providers, the preferred one marked -- in a mesh (the server asks each member) and via
the exchange.  Unknown and unfindable numbers are indistinguishable on the wire; bad
numbers, rate limits and floods get clear errors and disturb nobody else."""
import os
import time
from pathlib import Path

import pytest

import exlib
from exlib import EXCHANGE, seed_phone

BALE, EITAA, RUBIKA, SOROUSH = exlib.PROVIDERS

N_TWO = "+989121111111"       # bob@eitaa (findable), bob@rubika (findable, preferred)
N_HIDDEN = "+989122222222"    # carol@soroush, not findable
N_UNKNOWN = "+989123333333"   # nobody
N_LOCAL = "+989124444444"     # alice@bale (findable, preferred)
N_TWO_PREF = "+989125555555"  # carol@bale preferred (older), carol@eitaa preferred (newer)


def seed_all(ic):
    p = ic.providers
    seed_phone(p[EITAA], EITAA, "bob", N_TWO, findable=True, preferred=False,
               updated_ms=1_700_000_000_000)
    seed_phone(p[RUBIKA], RUBIKA, "bob", N_TWO, findable=True, preferred=True,
               updated_ms=1_700_000_000_500)
    seed_phone(p[SOROUSH], SOROUSH, "carol", N_HIDDEN, findable=False)
    seed_phone(p[BALE], BALE, "alice", N_LOCAL, findable=True, preferred=True)
    seed_phone(p[BALE], BALE, "carol", N_TWO_PREF, findable=True, preferred=True,
               updated_ms=1_700_000_001_000)
    seed_phone(p[EITAA], EITAA, "carol", N_TWO_PREF, findable=True, preferred=True,
               updated_ms=1_700_000_002_000)


def start_all(ic):
    if ic.exchange:
        ic.exchange.start()
    for srv in ic.providers.values():
        srv.start()


@pytest.fixture
def mesh(interconnect):
    ic = interconnect("mesh", start=False)
    seed_all(ic)
    start_all(ic)
    return ic


@pytest.mark.pv_timeout(150)
def test_mesh_findable_and_preferred(mesh, raw):
    ic = mesh
    alice = ic.login(raw, BALE, "alice")
    a = ic.lookup(alice, N_TWO)
    assert a.type == "result", a
    assert a.jids == [f"bob@{EITAA}", f"bob@{RUBIKA}"], a
    assert a.preferred == f"bob@{RUBIKA}", a
    assert a.number_address is None, "no exchange configured in this mesh"
    # the local account is listed too, and other providers find it
    b = ic.lookup(ic.login(raw, SOROUSH, "bob"), N_LOCAL)
    assert b.jids == [f"alice@{BALE}"] and b.preferred == f"alice@{BALE}", b
    # two accounts marked preferred on different providers: the newest `updated` wins,
    # and exactly one item carries the mark
    c = ic.lookup(ic.login(raw, RUBIKA, "alice"), N_TWO_PREF)
    assert c.jids == [f"carol@{BALE}", f"carol@{EITAA}"], c
    assert c.preferred == f"carol@{EITAA}", c
    assert sum(1 for _, p in c.items if p) == 1, c


@pytest.mark.pv_timeout(150)
def test_unknown_and_unfindable_are_byte_identical(mesh, raw):
    ic = mesh
    alice = ic.login(raw, BALE, "alice")
    hidden = ic.lookup(alice, N_HIDDEN, id="same-id")
    unknown = ic.lookup(alice, N_UNKNOWN, id="same-id")
    assert hidden.type == unknown.type == "result"
    assert hidden.items == unknown.items == []
    assert hidden.raw == unknown.raw, (hidden.raw, unknown.raw)
    # and the owner of the hidden number is really there (the test is not vacuous)
    carol = ic.login(raw, SOROUSH, "carol")
    carol.ping()


BAD_NUMBERS = ["989121234567", "+0989121234567", "+98 9121234567", "+1234567",
               "+1234567890123456", "", "+98912123456a", "00989121234567", "+98-912-123-4567",
               "\u06f9\u06f8\u06f9\u06f1\u06f2\u06f1\u06f2\u06f3\u06f4\u06f5\u06f6\u06f7"]


@pytest.mark.pv_timeout(150)
def test_bad_numbers(interconnect, raw):
    ic = interconnect("mesh", directory={"lookups_per_minute": 100})
    alice = ic.login(raw, BALE, "alice")
    bob = ic.login(raw, BALE, "bob")
    for n in BAD_NUMBERS:
        a = ic.lookup(alice, n)
        assert (a.type, a.error, a.app_error) == ("error", "bad-request", "invalid-number"), \
            f"{n!r}: {a}"
        assert a.el.find(f"{{{exlib.NS_CLIENT}}}error").get("type") == "modify", a
    # no <number/> at all
    el = alice.iq("get", f"<lookup xmlns='{exlib.NS_DIRECTORY}'/>", to=BALE)
    assert exlib.iq_error(el) == ("bad-request", "invalid-number"), exlib.to_str(el)
    # an unknown child of the namespace
    el = alice.iq("get", f"<nonsense xmlns='{exlib.NS_DIRECTORY}'/>", to=BALE)
    assert exlib.iq_error(el)[0] == "bad-request", exlib.to_str(el)
    # the asker and everyone else keep working
    assert ic.lookup(alice, N_UNKNOWN).type == "result"
    assert ic.lookup(bob, N_UNKNOWN).type == "result"


@pytest.mark.pv_timeout(150)
def test_rate_limit_per_minute_and_per_day(interconnect, raw):
    ic = interconnect("mesh", providers=[BALE, EITAA],
                      directory={"lookups_per_minute": 5, "lookups_per_day": 8})
    alice = ic.login(raw, BALE, "alice")
    bob = ic.login(raw, BALE, "bob")
    for i in range(5):
        assert ic.lookup(alice, f"+98912000000{i}").type == "result"
    a = ic.lookup(alice, "+989120000009")
    assert (a.error, a.app_error) == ("resource-constraint", "rate-limited"), a
    assert a.el.find(f"{{{exlib.NS_CLIENT}}}error").get("type") == "wait", a
    # a cached or well-formed repeat does not get around it
    assert ic.lookup(alice, "+989120000000").error == "resource-constraint"
    # others are not limited by alice's use
    assert ic.lookup(bob, "+989120000000").type == "result"
    # per day: bob has used 1; 7 more fit the day (and the minute up to 5)
    for i in range(4):
        assert ic.lookup(bob, f"+98912100000{i}").type == "result"
    assert ic.lookup(bob, "+989121000009").error == "resource-constraint"


@pytest.mark.pv_timeout(150)
def test_daily_limit(interconnect, raw):
    ic = interconnect("mesh", providers=[BALE, EITAA],
                      directory={"lookups_per_minute": 100, "lookups_per_day": 3})
    alice = ic.login(raw, BALE, "alice")
    for i in range(3):
        assert ic.lookup(alice, f"+98912000000{i}").type == "result"
    a = ic.lookup(alice, "+989120000005")
    assert (a.error, a.app_error) == ("policy-violation", "daily-limit"), a
    assert ic.lookup(ic.login(raw, BALE, "carol"), N_UNKNOWN).type == "result"


@pytest.mark.pv_timeout(150)
def test_lookup_flood_leaves_others_working(interconnect, raw):
    ic = interconnect("mesh", providers=[BALE, EITAA], start=False,
                      directory={"lookups_per_minute": 20})
    seed_phone(ic.providers[EITAA], EITAA, "bob", N_TWO, findable=True)
    start_all(ic)
    mallory = ic.login(raw, BALE, "carol")
    alice = ic.login(raw, BALE, "alice")
    n = 300
    for i in range(n):
        mallory.send_stanza(f"<iq type='get' id='fl{i}' to='{BALE}'>"
                            f"{exlib.lookup_xml('+9891270%05d' % i)}</iq>")
    t0 = time.monotonic()
    a = ic.lookup(alice, N_TWO, timeout=20)
    assert a.jids == [f"bob@{EITAA}"], a
    assert time.monotonic() - t0 < 10, "another user's lookup was held up by the flood"
    # every flood iq is answered exactly once: 20 results, the rest rate-limited
    answers = {}
    deadline = time.monotonic() + 60
    while len(answers) < n and time.monotonic() < deadline:
        for e in mallory.collect(lambda e: (e.get("id") or "").startswith("fl"), 0.5):
            assert e.get("id") not in answers, f"answered twice: {e.get('id')}"
            answers[e.get("id")] = exlib.Answer(e)
    assert len(answers) == n
    ok = [x for x in answers.values() if x.type == "result"]
    limited = [x for x in answers.values() if x.error == "resource-constraint"]
    assert len(ok) == 20 and len(limited) == n - 20, (len(ok), len(limited))
    mallory.ping()


@pytest.mark.pv_timeout(150)
def test_remote_daily_limit_on_answering_side(interconnect, raw):
    ic = interconnect("mesh", providers=[BALE, EITAA], start=False,
                      directory={"cache_ttl": "0s"},
                      hosts={EITAA: {"directory": {"remote_lookups_per_day": 2}}})
    seed_phone(ic.providers[EITAA], EITAA, "bob", N_TWO, findable=True)
    start_all(ic)
    alice = ic.login(raw, BALE, "alice")
    for _ in range(2):
        assert ic.lookup(alice, N_TWO).jids == [f"bob@{EITAA}"]
    # eitaa answers bale's third query with policy-violation: the asker sees nothing
    # from eitaa (and the answer still comes, without waiting for a timeout)
    t0 = time.monotonic()
    assert ic.lookup(alice, N_TWO).jids == []
    assert time.monotonic() - t0 < 2.5
    assert "daily query limit reached for bale.localhost" in ic.providers[EITAA].log_text()


@pytest.mark.pv_timeout(150)
def test_down_member_does_not_block(interconnect, raw):
    ic = interconnect("mesh", providers=[BALE, EITAA, RUBIKA], start=False,
                      directory={"query_timeout": "2s"})
    seed_phone(ic.providers[EITAA], EITAA, "bob", N_TWO, findable=True)
    start_all(ic)
    ic.providers[RUBIKA].kill9()
    alice = ic.login(raw, BALE, "alice")
    t0 = time.monotonic()
    a = ic.lookup(alice, N_TWO, timeout=15)
    took = time.monotonic() - t0
    assert a.jids == [f"bob@{EITAA}"], a
    assert took < 6, f"a down member held the answer for {took:.1f}s"
    ic.providers[RUBIKA].start()   # restarted so the teardown stops it cleanly


@pytest.mark.pv_timeout(150)
def test_number_address_in_every_answer(interconnect, raw):
    ic = interconnect("star", start=False)
    seed_phone(ic.providers[SOROUSH], SOROUSH, "carol", N_HIDDEN, findable=False)
    start_all(ic)
    alice = ic.login(raw, BALE, "alice")
    for n in (N_UNKNOWN, N_HIDDEN):
        a = ic.lookup(alice, n)
        assert a.type == "result" and a.items == [], a
        assert a.number_address == ic.number_address(n), a
        assert a.number_address.endswith("@" + EXCHANGE)
    assert ic.lookup(alice, N_HIDDEN, id="x").raw == ic.lookup(alice, N_UNKNOWN, id="x").raw \
        .replace(ic.blind(N_UNKNOWN).encode(), ic.blind(N_HIDDEN).encode())


@pytest.mark.parametrize("layout", ["mesh", "star"])
@pytest.mark.pv_timeout(240)
def test_findability_changes_within_seconds(interconnect, raw, layout):
    """Through mod_phone's own protocol (log gateway): a person with accounts on eitaa
    and rubika turns findability and preference on and off; a user on bale sees each
    change within seconds (cache_ttl 2 s; via the exchange, publish included)."""
    ic = interconnect(layout)
    if not exlib.module_available("phone"):
        pytest.fail("this peyvand has no phone module (mod_phone, issue 6 P)")
    N = "+989126666666"
    alice = ic.login(raw, BALE, "alice")
    unknown = ic.lookup(alice, "+989127777777", id="cmp")

    def sees(want, pref=None, within=8):
        t0 = time.monotonic()
        last = None
        while time.monotonic() - t0 < within:
            last = ic.lookup(alice, N)
            if last.jids == sorted(want) and (pref is None or last.preferred == pref):
                return time.monotonic() - t0
            time.sleep(0.3)
        raise AssertionError(f"{layout}: wanted {want} (preferred {pref}) within {within}s, "
                             f"last answer {last}")

    ic.set_phone(raw, EITAA, "bob", N, findable=False)
    assert ic.lookup(alice, N).items == []
    eb = ic.login(raw, EITAA, "bob", resource="settings")
    ic.set_flags(eb, findable=True)
    sees([f"bob@{EITAA}"])
    ic.set_phone(raw, RUBIKA, "bob", N, findable=True, preferred=True)
    sees([f"bob@{EITAA}", f"bob@{RUBIKA}"], pref=f"bob@{RUBIKA}")
    # the person now prefers eitaa (the newer choice wins over rubika's older one)
    time.sleep(0.01)
    ic.set_flags(eb, preferred=True)
    sees([f"bob@{EITAA}", f"bob@{RUBIKA}"], pref=f"bob@{EITAA}")
    # and withdraws: eitaa unfindable, rubika's number released
    ic.set_flags(eb, findable=False)
    sees([f"bob@{RUBIKA}"])
    rb = ic.login(raw, RUBIKA, "bob", resource="release")
    r = rb.iq("set", f"<release xmlns='{exlib.NS_PHONE}'/>", to=None)
    assert r.get("type") == "result", exlib.to_str(r)
    took = sees([])
    assert took < 8
    # now indistinguishable from a number nobody has (the number address differs only
    # in the blinded part)
    gone = ic.lookup(alice, N, id="cmp")
    assert gone.raw == unknown.raw.replace(ic.blind("+989127777777").encode(),
                                           ic.blind(N).encode())


@pytest.mark.pv_timeout(240)
def test_blinded_index_is_stored_repaired_and_rekeyed(mesh, raw):
    """A provider answers blinded queries from a stored index (schema 006), not from
    memory: it heals a change made behind its back (bob@eitaa made unfindable while
    eitaa was down, as a crash between the phone write and the index write would leave
    it), and a new interconnect key rebuilds it on every provider."""
    ic = mesh
    eitaa = ic.providers[EITAA]
    eitaa.stop()
    seed_phone(eitaa, EITAA, "bob", N_TWO, findable=False, updated_ms=1_700_000_003_000)
    eitaa.start()
    assert "blinded index checked" in eitaa.log_text()
    alice = ic.login(raw, BALE, "alice")
    a = ic.lookup(alice, N_TWO)
    assert a.jids == [f"bob@{RUBIKA}"] and a.preferred == f"bob@{RUBIKA}", a
    key_file = Path(ic.key_file)
    old = key_file.read_bytes()
    try:
        key_file.write_bytes(os.urandom(32))
        for srv in ic.providers.values():
            srv.stop()
        for srv in ic.providers.values():
            srv.start()
            assert "blinded index rebuilt" in srv.log_text().rsplit("starting", 1)[-1]
        alice = ic.login(raw, BALE, "alice")
        b = ic.lookup(alice, N_TWO)
        assert b.jids == [f"bob@{RUBIKA}"] and b.preferred == f"bob@{RUBIKA}", b
        c = ic.lookup(ic.login(raw, SOROUSH, "bob"), N_LOCAL)
        assert c.jids == [f"alice@{BALE}"], c
    finally:
        key_file.write_bytes(old)
