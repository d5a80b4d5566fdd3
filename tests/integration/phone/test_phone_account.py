"""A logged-in account's number (issue 6, docs/protocol/phone.md): attach, change,
release, the settings (findable, preferred) and the "phone-changed" event that every
committed change fires (seen here through its log line)."""
from phonelib import (NS_PHONE, assert_error, assert_result, attach, codes_in_log, events,
                      get_phone, mask, preauth_client, register, release, request_code,
                      settings, verify, wait_code)

A1, A2, B1 = "+989121240001", "+989121240002", "+989121240003"


def login(raw, srv, user, pw=None):
    from helpers import USERS
    return raw(srv.port).login(user, pw or USERS[user])


def phone_of(res):
    assert_result(res)
    return res.find(f"{{{NS_PHONE}}}phone")


def test_attach_change_release(phone_server, raw):
    srv = phone_server()
    alice, bob = login(raw, srv, "alice"), login(raw, srv, "bob")
    carol = login(raw, srv, "carol")
    assert get_phone(alice).get("number") is None
    # attach
    ph = phone_of(attach(alice, srv, A1))
    assert ph.get("number") == A1 and ph.get("findable") == "false"
    assert int(ph.get("updated")) > 0
    assert get_phone(alice).get("number") == A1
    assert events(srv, "alice")[-1] == {"host": "localhost", "user": "alice",
                                        "number": mask(A1), "previous": "-",
                                        "findable": False, "preferred": False}
    # bob cannot take alice's number (told after he proved it)
    assert_error(attach(bob, srv, A1), "cancel", "conflict", "number-taken")
    assert get_phone(bob).get("number") is None
    # change: the new number is verified before the old one goes
    before = len(codes_in_log(srv, A2))
    assert_result(request_code(alice, A2))
    assert get_phone(alice).get("number") == A1, "requesting a code changes nothing"
    ph = phone_of(verify(alice, A2, wait_code(srv, A2, before)))
    assert ph.get("number") == A2
    assert events(srv, "alice")[-1]["previous"] == mask(A1)
    # the old number is free again
    assert phone_of(attach(bob, srv, A1)).get("number") == A1
    # alice cannot change to bob's number: she keeps hers
    assert_error(attach(alice, srv, A1), "cancel", "conflict", "number-taken")
    assert get_phone(alice).get("number") == A2
    # release
    assert_result(release(alice))
    assert get_phone(alice).get("number") is None
    ev = events(srv, "alice")[-1]
    assert ev["number"] == "-" and ev["previous"] == mask(A2)
    assert_error(release(alice), "cancel", "item-not-found", "no-number")
    carol.ping()


def test_code_bound_to_account_and_purpose(phone_server, raw):
    srv = phone_server()
    alice, bob = login(raw, srv, "alice"), login(raw, srv, "bob")
    assert_result(request_code(alice, B1))
    code = wait_code(srv, B1, 0)
    # bob (or a registration) cannot use the code sent for alice
    assert_error(verify(bob, B1, code), "auth", "not-authorized", "wrong-code")
    c = preauth_client(raw, srv)
    assert_error(register(c, B1, code), "auth", "not-authorized", "wrong-code")
    # alice can (2 of 3 attempts used)
    assert phone_of(verify(alice, B1, code)).get("number") == B1
    # used
    assert_error(verify(alice, B1, code), "cancel", "item-not-found", "no-code")


def test_verify_errors(phone_server, raw):
    srv = phone_server(code_ttl="2s")
    alice, bob = login(raw, srv, "alice"), login(raw, srv, "bob")
    assert_error(verify(alice, "98912", "123456"), "modify", "bad-request", "invalid-number")
    assert_error(verify(alice, A1, "x"), "modify", "bad-request")
    assert_error(verify(alice, A1, "123456"), "cancel", "item-not-found", "no-code")
    assert_result(request_code(alice, A1))
    code = wait_code(srv, A1, 0)
    import time
    time.sleep(2.5)
    assert_error(verify(alice, A1, code), "cancel", "item-not-found", "code-expired")
    # registration-only element after login
    assert_error(register(alice, A1, code), "modify", "unexpected-request")
    bob.ping()


def test_settings_round_trip(phone_server, raw):
    srv = phone_server()
    alice, bob = login(raw, srv, "alice"), login(raw, srv, "bob")
    # no number: nothing to set
    assert_error(settings(alice, findable="true"), "cancel", "item-not-found", "no-number")
    ph = get_phone(alice)
    assert ph.get("findable") == "false" and ph.get("preferred") == "false"
    assert_result(attach(alice, srv, A1))
    n_ev = len(events(srv, "alice"))
    ph = phone_of(settings(alice, findable="true"))
    assert ph.get("findable") == "true" and ph.get("preferred") == "false"
    assert ph.get("number") == A1
    ev = events(srv, "alice")
    assert len(ev) == n_ev + 1 and ev[-1]["findable"] and not ev[-1]["preferred"]
    assert ev[-1]["previous"] == "-" and ev[-1]["number"] == mask(A1)
    ph = phone_of(settings(alice, preferred="1"))
    assert ph.get("findable") == "true" and ph.get("preferred") == "true"
    ph = get_phone(alice)
    assert ph.get("findable") == "true" and ph.get("preferred") == "true"
    # to the own bare JID works as well as to the host or without `to`
    ph = phone_of(alice.iq("set", f"<settings xmlns='{NS_PHONE}' findable='false'/>",
                           to="alice@localhost"))
    assert ph.get("findable") == "false" and ph.get("preferred") == "true"
    assert get_phone(alice, to="").get("preferred") == "true"
    # bad values change nothing
    assert_error(settings(alice, findable="yes"), "modify", "bad-request")
    assert_error(settings(alice, preferred=""), "modify", "bad-request")
    assert get_phone(alice).get("preferred") == "true"
    # another user's bare JID is not a way to read or set alice's settings
    res = bob.iq("get", f"<phone xmlns='{NS_PHONE}'/>", to="alice@localhost")
    assert_error(res, "cancel", "service-unavailable")
    res = bob.iq("set", f"<settings xmlns='{NS_PHONE}' findable='true'/>", to="alice@localhost")
    assert_error(res, "cancel", "service-unavailable")
    assert get_phone(alice).get("findable") == "false"
    # settings survive a change of number, not a release
    assert phone_of(attach(alice, srv, A2)).get("preferred") == "true"
    assert_result(release(alice))
    assert_result(attach(alice, srv, A1))
    ph = get_phone(alice)
    assert ph.get("findable") == "false" and ph.get("preferred") == "false"
    bob.ping()


def test_account_deletion_releases_number(phone_server, raw):
    srv = phone_server()
    alice, bob = login(raw, srv, "alice"), login(raw, srv, "bob")
    assert_result(attach(alice, srv, A1))
    res = alice.iq("set", "<query xmlns='jabber:iq:register'><remove/></query>")
    assert_result(res)
    ev = events(srv, "alice")[-1]
    assert ev["number"] == "-" and ev["previous"] == mask(A1)
    # the number is free for someone else
    assert phone_of(attach(bob, srv, A1)).get("number") == A1
    bob.ping()


def test_account_deletion_by_operator(phone_server, raw):
    srv = phone_server()
    bob = login(raw, srv, "bob")
    assert_result(attach(bob, srv, B1))
    r = srv.ctl("user", "del", "bob@localhost")
    assert r.rc == 0, r
    from helpers import wait_until
    wait_until(lambda: any(e["previous"] == mask(B1) and e["number"] == "-"
                           for e in events(srv, "bob")), what="release event")
    carol = login(raw, srv, "carol")
    assert phone_of(attach(carol, srv, B1)).get("number") == B1
