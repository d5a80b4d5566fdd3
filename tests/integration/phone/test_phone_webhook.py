"""The webhook SMS gateway (issue 6, docs/config.md `phone.gateway: webhook`): the code
goes to an HTTP endpoint (here a recording server on 127.0.0.1 run by the test) as JSON
with a bearer token; a failing endpoint gives the client <service-unavailable/> type
wait with <sms-failed/>, and changes nothing; the server's loop never waits for it."""
import socket
import time

from phonelib import (NS_PHONE, assert_error, assert_result, codes_in_log, preauth_client,
                      register, registered_jid, request_code)

NUM = "+989121250001"


def webhook_server(phone_server, tmp_path, url, token="tok-123 ", **kw):
    tf = tmp_path / "sms-token"
    tf.write_text(token + "\n")
    return phone_server(gateway="webhook", webhook_url=url, webhook_token_file=str(tf),
                        webhook_timeout="2s", **kw)


def test_webhook_delivers_code(phone_server, webhook, raw, tmp_path):
    hook = webhook()
    srv = webhook_server(phone_server, tmp_path, hook.url)
    c = preauth_client(raw, srv)
    res = assert_result(request_code(c, NUM))
    assert res.find(f"{{{NS_PHONE}}}code-sent").get("number") == NUM
    assert len(hook.requests) == 1
    path, headers, _body = hook.requests[0]
    assert path == "/sms"
    assert headers.get("Content-Type") == "application/json"
    assert headers.get("Authorization") == "Bearer tok-123"
    body = hook.json_bodies()[0]
    assert set(body) == {"to", "code", "text"}
    assert body["to"] == NUM and body["code"].isdigit() and len(body["code"]) == 6
    assert body["code"] in body["text"]
    # the code works, and it is in no log line
    assert registered_jid(register(c, NUM, body["code"])) == "989121250001@localhost"
    assert body["code"] not in srv.log_text()
    assert not codes_in_log(srv, NUM)


def test_webhook_error_status(phone_server, webhook, raw, tmp_path):
    hook = webhook(status=500)
    srv = webhook_server(phone_server, tmp_path, hook.url)
    other = raw(srv.port).login("alice", "alice-secret")
    c = preauth_client(raw, srv)
    assert_error(request_code(c, NUM), "wait", "service-unavailable", "sms-failed")
    assert len(hook.requests) == 1
    code = hook.json_bodies()[0]["code"]
    # nothing was stored: the code that may have gone out does not work
    assert_error(register(c, NUM, code), "cancel", "item-not-found", "no-code")
    other.ping()
    # once the gateway works again, so does registration
    hook.status = 200
    assert_result(request_code(c, NUM))
    code = hook.json_bodies()[-1]["code"]
    assert registered_jid(register(c, NUM, code)) == "989121250001@localhost"


def test_webhook_unreachable(phone_server, raw, tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there
    srv = webhook_server(phone_server, tmp_path, f"http://127.0.0.1:{port}/sms")
    c = preauth_client(raw, srv)
    assert_error(request_code(c, NUM), "wait", "service-unavailable", "sms-failed")
    c2 = raw(srv.port).login("alice", "alice-secret")
    res = c2.iq("set", f"<request-code xmlns='{NS_PHONE}' number='{NUM}'/>")
    assert_error(res, "wait", "service-unavailable", "sms-failed")
    c2.ping()


def test_webhook_timeout_does_not_block_others(phone_server, webhook, raw, tmp_path):
    hook = webhook(delay=3.0)   # longer than webhook_timeout (2s)
    srv = webhook_server(phone_server, tmp_path, hook.url)
    other = raw(srv.port).login("alice", "alice-secret")
    c = preauth_client(raw, srv)
    c.send(f"<iq type='set' id='slow' to='localhost'><request-code xmlns='{NS_PHONE}' "
           f"number='{NUM}'/></iq>")
    # while the gateway hangs, other sessions are served at once
    time.sleep(0.3)
    t0 = time.monotonic()
    other.ping()
    assert time.monotonic() - t0 < 1.0
    res = c.next(lambda e: e.get("id") == "slow", timeout=10, what="answer to the slow request")
    assert_error(res, "wait", "service-unavailable", "sms-failed")
    other.ping()


def test_client_gone_before_gateway_answers(phone_server, webhook, raw, tmp_path):
    hook = webhook(delay=1.0)
    srv = webhook_server(phone_server, tmp_path, hook.url)
    c = preauth_client(raw, srv)
    c.send(f"<iq type='set' id='x' to='localhost'><request-code xmlns='{NS_PHONE}' "
           f"number='{NUM}'/></iq>")
    time.sleep(0.2)
    c.abort()
    time.sleep(1.5)   # the answer finds no session; nothing breaks
    other = raw(srv.port).login("alice", "alice-secret")
    other.ping()
    # the code was stored all the same: the person got the SMS
    c2 = preauth_client(raw, srv)
    code = hook.json_bodies()[0]["code"]
    assert registered_jid(register(c2, NUM, code)) == "989121250001@localhost"


def test_bad_webhook_config_refused(phone_server, tmp_path):
    import pytest
    with pytest.raises(RuntimeError):
        phone_server(gateway="webhook", webhook_url="ftp://example/sms")
    with pytest.raises(RuntimeError):
        phone_server(gateway="webhook", webhook_url="http://127.0.0.1:9/sms",
                     webhook_token_file=str(tmp_path / "missing"))
    with pytest.raises(RuntimeError):
        phone_server(gateway="carrier-pigeon")


def test_stop_with_send_in_flight(phone_server, webhook, raw, tmp_path):
    hook = webhook(delay=1.5)
    srv = webhook_server(phone_server, tmp_path, hook.url)
    c = preauth_client(raw, srv)
    c.send(f"<iq type='set' id='x' to='localhost'><request-code xmlns='{NS_PHONE}' "
           f"number='{NUM}'/></iq>")
    from helpers import wait_until
    wait_until(lambda: hook.requests, what="the webhook call")
    # SIGTERM while the gateway call runs: a clean exit (checked by the fixture: exit
    # code 0, no sanitizer report)
    srv.stop()
