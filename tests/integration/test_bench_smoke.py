"""A tiny run of the load generator (tools/peyvand-bench.c, issue 5) against a real
server: ten users log in over STARTTLS + SCRAM and message each other for two seconds.

This is a smoke test of the tool, not a benchmark (bench/run measures; bench/NOTES.md
says how): it checks that the tool speaks XMPP well enough to get messages delivered,
that its JSON result line is well formed, and that it exits cleanly (under ASan when
the tool is the sanitizer build: a leak or a UB report in its stderr fails the test).
"""
import json
import subprocess

import pytest

from pvserver import SANITIZER_PATTERNS, find_binary

PASSWORD = "bench-pass-1"
USERS = {f"bench{i}": PASSWORD for i in range(10)}


def run_bench(server, *args, timeout=90):
    tool = find_binary("PEYVAND_BENCH_BIN", "peyvand-bench")
    argv = [tool, "--port", str(server.port), "--domain", "localhost",
            "--users", str(len(USERS)), "--procs", "2", "--password", PASSWORD,
            "--server-pid", str(server.pid), "--label", "peyvand", *args]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    report = f"argv: {argv}\nrc={p.returncode}\n--- stdout\n{p.stdout}--- stderr\n{p.stderr}"
    assert not SANITIZER_PATTERNS.search(p.stderr), "sanitizer report from the tool\n" + report
    assert p.returncode == 0, report
    lines = [l for l in p.stdout.splitlines() if l.strip()]
    assert len(lines) == 1, "exactly one result line on stdout\n" + report
    res = json.loads(lines[0])
    assert res["tool"] == "peyvand-bench" and res["format"] == 1, report
    assert res["workers_ok"] == 1, report
    return res, report


@pytest.mark.pv_timeout(150)
def test_ten_users_chat_for_two_seconds(server_factory):
    server = server_factory(users=USERS)
    res, report = run_bench(server, "--duration", "2", "--warmup", "0.5", "chat")
    assert res["scenario"] == "chat" and res["label"] == "peyvand", report
    assert res["online"] == 10 and res["login_failed"] == 0, report
    assert res["mech"] == "SCRAM-SHA-256", report
    assert res["delivered"] > 0 and res["sent"] > 0, report
    assert res["errors"] == 0, report
    lat = res["latency_ms"]
    assert lat["count"] > 0 and 0 <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"], report
    # the server was sampled from /proc: it did work for those messages
    assert res["server_cpu_s"] > 0 and res["server_cpu_us_per_msg"] > 0, report


@pytest.mark.pv_timeout(150)
def test_chat_with_stream_management(server_factory):
    """--sm in chat: every user enables XEP-0198, counts what it receives and answers
    the server's <r/>; messages still flow and the server acknowledges them."""
    server = server_factory(users=USERS)
    res, report = run_bench(server, "--duration", "2", "--warmup", "0.5", "--sm", "chat")
    assert res["sm"] == 1 and res["online"] == 10 and res["login_failed"] == 0, report
    assert res["delivered"] > 0 and res["errors"] == 0 and res["dropped"] == 0, report


@pytest.mark.pv_timeout(150)
def test_login_storm_resumes_tls_sessions(server_factory):
    """--tls-resume: every measured login offers the user's last TLS 1.3 ticket and
    the server takes it (the server's ticket still reaches a client that logs in)."""
    server = server_factory(users=USERS)
    res, report = run_bench(server, "--duration", "1.5", "--concurrency", "2",
                            "--tls-resume", "login")
    assert res["scenario"] == "login" and res["failed"] == 0, report
    assert res["logins"] > 0, report
    assert res["tls_resumed"] == res["logins"], report
    assert res["key_derivations_in_window"] == 0, report
    # without the flag nothing is resumed (and the key is not reported)
    res, report = run_bench(server, "--duration", "1", "--concurrency", "2", "login")
    assert res["logins"] > 0 and "tls_resumed" not in res, report


@pytest.mark.pv_timeout(150)
def test_login_storm_with_direct_tls_sasl2_and_bind2(server_factory):
    """--direct-tls --sasl2: the storm logs in on the XEP-0368 port with XEP-0388 and a
    XEP-0386 binding, every login of the window (the server offers both)."""
    server = server_factory(users=USERS)
    res, report = run_bench(server, "--port", str(server.tls_port), "--direct-tls", "--sasl2",
                            "--duration", "1.5", "--concurrency", "2", "login")
    assert res["scenario"] == "login" and res["failed"] == 0, report
    assert res["logins"] > 0 and res["sasl2_logins"] == res["logins"], report
    assert res["direct_tls"] == 1, report


@pytest.mark.pv_timeout(150)
@pytest.mark.parametrize("how", ["sasl2", "classic"])
def test_login_storm_resumes_sm_sessions(server_factory, how):
    """--sm-resume: each login drops its connection without closing the stream and the
    user's next login resumes that XEP-0198 session, inside <authenticate/> (SASL2) or
    with <resume/> after the stream restart: every login of the window is a resumption
    (the warm-up logins enabled SM, inside the binding or after it)."""
    server = server_factory(users=USERS)
    args = (["--port", str(server.tls_port), "--direct-tls", "--sasl2"] if how == "sasl2"
            else [])
    res, report = run_bench(server, *args, "--sm-resume", "--duration", "1.5",
                            "--concurrency", "2", "login")
    assert res["failed"] == 0 and res["logins"] > 0, report
    assert res["sm_resumed"] == res["logins"], report
    assert res.get("sasl2_logins", 0) == (res["logins"] if how == "sasl2" else 0), report
    # the flag is for login storms only
    tool = find_binary("PEYVAND_BENCH_BIN", "peyvand-bench")
    p = subprocess.run([tool, "--sm-resume", "chat"], capture_output=True, text=True, timeout=30)
    assert p.returncode != 0 and "login" in p.stderr, p.stderr
