"""Registration by phone number with the log gateway (issue 6, docs/protocol/phone.md):
the code conversation, the account it creates, and every way it can go wrong."""
from phonelib import (NS_PHONE, assert_error, assert_result, codes_in_log, preauth_client,
                      register, register_by_phone, registered_jid, request_code, wait_code)

NUM = "+989121230001"


def test_register_and_login(phone_server, raw):
    srv = phone_server()
    c = preauth_client(raw, srv)
    # the stream offers registration by phone before authentication
    assert c.features.find(f"{{{NS_PHONE}}}register") is not None
    res = assert_result(request_code(c, NUM))
    sent = res.find(f"{{{NS_PHONE}}}code-sent")
    assert sent.get("number") == NUM and sent.get("length") == "6" and sent.get("ttl") == "60"
    code = wait_code(srv, NUM, 0)
    assert len(code) == 6 and code.isdigit()
    jid = registered_jid(register(c, NUM, code, "pw-of-new-user"))
    assert jid == "989121230001@localhost"
    # the new account logs in with its password
    n = raw(srv.port)
    n.login("989121230001", "pw-of-new-user")
    n.ping()
    # the number is on the account
    from phonelib import get_phone
    ph = get_phone(n)
    assert ph.get("number") == NUM
    assert ph.get("findable") == "false" and ph.get("preferred") == "false"
    # the code never appears in the log except on the gateway line
    log = srv.log_text()
    assert log.count(code) == 1 or all(
        "log gateway" in line for line in log.splitlines() if code in line)
    assert NUM not in log, "the number must never be logged in clear"


def _alive(other):
    """Another, logged-in session keeps working after the bad input."""
    other.ping()


def test_wrong_code_then_right_code(phone_server, raw):
    srv = phone_server()
    other = raw(srv.port).login("alice", "alice-secret")
    c = preauth_client(raw, srv)
    num = "+989121230002"
    assert_result(request_code(c, num))
    code = wait_code(srv, num, 0)
    wrong = "000000" if code != "000000" else "111111"
    assert_error(register(c, num, wrong), "auth", "not-authorized", "wrong-code")
    _alive(other)
    # a wrong code of another length is just as wrong (and counted)
    assert_error(register(c, num, "12"), "auth", "not-authorized", "wrong-code")
    # attempts are left (max_attempts 3): the right code still works
    assert registered_jid(register(c, num, code)) == "989121230002@localhost"
    _alive(other)


def test_too_many_attempts(phone_server, raw):
    srv = phone_server(max_attempts=3)
    other = raw(srv.port).login("alice", "alice-secret")
    c = preauth_client(raw, srv)
    num = "+989121230003"
    assert_result(request_code(c, num))
    code = wait_code(srv, num, 0)
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(3):
        assert_error(register(c, num, wrong), "auth", "not-authorized", "wrong-code")
    # exhausted: even the right code is refused now
    assert_error(register(c, num, code), "cancel", "policy-violation", "too-many-attempts")
    _alive(other)
    # a new code starts afresh
    assert_result(request_code(c, num))
    code2 = wait_code(srv, num, 1)
    assert registered_jid(register(c, num, code2)) == "989121230003@localhost"


def test_expired_code(phone_server, raw):
    import time
    srv = phone_server(code_ttl="2s")
    other = raw(srv.port).login("alice", "alice-secret")
    c = preauth_client(raw, srv)
    num = "+989121230004"
    assert_result(request_code(c, num))
    code = wait_code(srv, num, 0)
    time.sleep(2.5)
    assert_error(register(c, num, code), "cancel", "item-not-found", "code-expired")
    # expired codes are gone: the next try finds none
    assert_error(register(c, num, code), "cancel", "item-not-found", "no-code")
    _alive(other)


def test_used_code_cannot_be_reused(phone_server, raw):
    srv = phone_server()
    num = "+989121230005"
    c = preauth_client(raw, srv)
    assert_result(request_code(c, num))
    code = wait_code(srv, num, 0)
    assert registered_jid(register(c, num, code)) == "989121230005@localhost"
    c2 = preauth_client(raw, srv)
    assert_error(register(c2, num, code), "cancel", "item-not-found", "no-code")
    # and never requested at all
    assert_error(register(c2, "+989121230099", "123456"), "cancel", "item-not-found", "no-code")


def test_duplicate_number_conflict(phone_server, raw):
    srv = phone_server()
    num = "+989121230006"
    register_by_phone(raw, srv, num)
    other = raw(srv.port).login("alice", "alice-secret")
    # someone proves the number again: the conflict is told only after the code
    c = preauth_client(raw, srv)
    assert_result(request_code(c, num))
    code = wait_code(srv, num, 1)
    assert_error(register(c, num, code), "cancel", "conflict", "number-taken")
    _alive(other)


def test_username_of_number_taken(phone_server, raw):
    from helpers import USERS
    users = dict(USERS)
    users["989121230007"] = "someone-else"
    srv = phone_server(users=users)
    c = preauth_client(raw, srv)
    num = "+989121230007"
    assert_result(request_code(c, num))
    code = wait_code(srv, num, 0)
    assert_error(register(c, num, code), "cancel", "conflict", "username-taken")
    # nothing was created: the existing account still has its own password
    raw(srv.port).login("989121230007", "someone-else").ping()


BAD_NUMBERS = ["989121234567", "+0989121234567", "+98 912 123 4567", "+98912abc4567",
               "+1234567", "+1234567890123456", "", "+", "00989121234567", "+98-912-1234567",
               "+۹۸۹۱۲۱۲۳۴۵۶۷"]


def test_numbers_not_e164(phone_server, raw):
    srv = phone_server()
    other = raw(srv.port).login("alice", "alice-secret")
    c = preauth_client(raw, srv)
    for bad in BAD_NUMBERS:
        assert_error(request_code(c, bad), "modify", "bad-request", "invalid-number")
        assert_error(register(c, bad, "123456"), "modify", "bad-request", "invalid-number")
    # no number attribute at all
    assert_error(c.iq("set", f"<request-code xmlns='{NS_PHONE}'/>"),
                 "modify", "bad-request", "invalid-number")
    # a code that is not digits is malformed (not counted as an attempt)
    assert_error(register(c, "+989121230010", "12ab56"), "modify", "bad-request")
    assert_error(register(c, "+989121230010", ""), "modify", "bad-request")
    assert not codes_in_log(srv, "+989121234567")
    _alive(other)
    # the stream is still usable for a good request
    assert_result(request_code(c, "+989121230010"))


def test_password_required_and_one_account_per_stream(phone_server, raw):
    srv = phone_server()
    c = preauth_client(raw, srv)
    num = "+989121230011"
    assert_result(request_code(c, num))
    code = wait_code(srv, num, 0)
    assert_error(register(c, num, code, password=None), "modify", "not-acceptable")
    assert_error(register(c, num, code, password=""), "modify", "not-acceptable")
    # the code was not spent by the malformed requests
    assert registered_jid(register(c, num, code)) == "989121230011@localhost"
    num2 = "+989121230012"
    assert_result(request_code(c, num2))
    code2 = wait_code(srv, num2, 0)
    assert_error(register(c, num2, code2), "modify", "not-acceptable")


def test_registration_disabled(phone_server, raw):
    srv = phone_server(register=False)
    other = raw(srv.port).login("alice", "alice-secret")
    c = preauth_client(raw, srv)
    assert c.features.find(f"{{{NS_PHONE}}}register") is None
    assert_error(request_code(c, "+989121230013"), "cancel", "service-unavailable")
    assert_error(register(c, "+989121230013", "123456"), "cancel", "service-unavailable")
    assert not codes_in_log(srv, "+989121230013")
    _alive(other)


def test_preauth_only_registration(phone_server, raw):
    srv = phone_server()
    c = preauth_client(raw, srv)
    res = c.iq("get", f"<phone xmlns='{NS_PHONE}'/>")
    assert_error(res, "auth", "not-authorized")
    assert_error(c.iq("set", f"<release xmlns='{NS_PHONE}'/>"), "auth", "not-authorized")
    assert_error(c.iq("set", f"<nonsense xmlns='{NS_PHONE}'/>"), "modify", "bad-request")


def test_send_limits(phone_server, raw):
    srv = phone_server(sends_per_number_per_hour=2, sends_per_client_per_hour=4)
    other = raw(srv.port).login("alice", "alice-secret")
    c = preauth_client(raw, srv)
    num = "+989121230014"
    assert_result(request_code(c, num))
    assert_result(request_code(c, num))
    # per number, whoever asks
    c2 = preauth_client(raw, srv)
    assert_error(request_code(c2, num), "wait", "resource-constraint", "too-many-codes")
    assert len(codes_in_log(srv, num)) == 2
    # per client (IP before login; all from 127.0.0.1): 2 sends so far, the refused
    # one was not sent and does not count; the 4th send is the last one
    assert_result(request_code(c, "+989121230015"))
    assert_result(request_code(c, "+989121230016"))
    assert_error(request_code(c, "+989121230017"), "wait", "resource-constraint",
                 "too-many-codes")
    assert not codes_in_log(srv, "+989121230017")
    _alive(other)


def test_localpart_template(phone_server, raw):
    srv = phone_server(localpart="u{digits}")
    assert register_by_phone(raw, srv, "+989121230018") == "u989121230018@localhost"


def test_code_survives_reload(phone_server, raw):
    srv = phone_server()
    c = preauth_client(raw, srv)
    num = "+989121230019"
    assert_result(request_code(c, num))
    code = wait_code(srv, num, 0)
    srv.hup()
    import time
    time.sleep(0.5)
    c2 = preauth_client(raw, srv)
    assert registered_jid(register(c2, num, code)) == "989121230019@localhost"
