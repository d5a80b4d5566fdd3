"""bench/report.py's "rounds" section (issue 5): the verdict of a benchmark run comes from
repeated short windows, so the report must give each server's median and range over the
rounds and the median of the ratios taken within a round, not the ratio of two medians.
Fed hand-made result lines; no server runs.
"""
import json
import subprocess
import sys
from pathlib import Path

REPORT = Path(__file__).resolve().parents[2] / "bench" / "report.py"


def line(**kw):
    return json.dumps(kw)


def report(tmp_path, rows):
    res = tmp_path / "r.jsonl"
    res.write_text("\n".join(rows) + "\n")
    out = tmp_path / "r.md"
    p = subprocess.run([sys.executable, str(REPORT), "--results", str(res), "--out", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return out.read_text()


def row_of(md, first_cell, section="## 6. Repeated rounds"):
    """The cells after the first of the row that starts with first_cell in section."""
    for l in md.split(section, 1)[1].splitlines():
        if l.startswith(f"| {first_cell} |"):
            return [c.strip() for c in l.strip("|").split("|")][1:]
    raise AssertionError(f"no row {first_cell!r} in\n{md}")


def test_rounds_give_medians_and_within_round_ratios(tmp_path):
    chat = {  # round: (peyvand µs/msg, ejabberd µs/msg, peyvand msgs/s, ejabberd msgs/s)
        1: (10.0, 80.0, 80000, 10000),  # ratios: CPU 8.0, rate 8.0
        2: (14.0, 70.0, 60000, 12000),  # 5.0, 5.0
        3: (12.0, 84.0, 70000, 14000),  # 7.0, 5.0
    }
    rows = []
    for r, (pu, eu, pr, er) in chat.items():
        rows.append(line(round=r, label="peyvand", scenario="chat",
                         server_cpu_us_per_msg=pu, delivered_per_s=pr))
        rows.append(line(round=r, label="ejabberd", scenario="chat",
                         server_cpu_us_per_msg=eu, delivered_per_s=er))
    rows.append(line(round=1, label="peyvand", scenario="login",
                     server_cpu_ms_per_login=0.4, logins_per_s=2000))
    rows.append(line(round=1, label="ejabberd", scenario="login",
                     server_cpu_ms_per_login=1.6, logins_per_s=500))
    # a single run outside the rounds: stays in its own table, not in the medians
    rows.append(line(label="peyvand", scenario="chat", server_cpu_us_per_msg=99.0,
                     delivered_per_s=1))
    md = report(tmp_path, rows)

    assert "## 6. Repeated rounds" in md and "3 rounds" in md
    p = row_of(md, "peyvand")
    assert p[0] == "70,000 [60,000–80,000]"
    assert p[1] == "12.00 [10.00–14.00]"
    assert p[3] == "0.4"
    e = row_of(md, "ejabberd")
    assert e[1] == "80.00 [70.00–84.00]"
    ratios = row_of(md, "peyvand vs ejabberd")
    # the medians of the per-round ratios; the ratios of the medians would be
    # 70,000 / 12,000 = 5.83 and 80 / 12 = 6.67
    assert ratios[0] == "5.00× [5.00×–8.00×]"
    assert ratios[1] == "7.00× [5.00×–8.00×]"
    assert ratios[3] == "4.00×"
    # the single run kept its own row in the chat table
    assert row_of(md, "peyvand", "## 3. One-to-one chat")[:2] == ["1", "99"]


def test_no_rounds_no_section(tmp_path):
    md = report(tmp_path, [line(label="peyvand", scenario="chat", server_cpu_us_per_msg=12.0,
                                delivered_per_s=70000)])
    assert "Repeated rounds" not in md


def test_login_storms_are_told_apart(tmp_path):
    """Full handshakes, resumed sessions (--tls-resume), the reconnect storm
    (--direct-tls --sasl2 --tls-resume) and the resume storm (and --sm-resume) each get
    their own table, and the rounds a column each for the reconnect and resume storms."""
    rows = [line(label="peyvand", scenario="login", server_cpu_ms_per_login=0.46),
            line(label="peyvand", scenario="login", server_cpu_ms_per_login=0.40, tls_resumed=9),
            line(label="peyvand", scenario="login", server_cpu_ms_per_login=0.32, tls_resumed=9,
                 direct_tls=1, sasl2_logins=9),
            line(label="peyvand", scenario="login", server_cpu_ms_per_login=0.43, tls_resumed=9,
                 direct_tls=1, sasl2_logins=9, sm_resumed=8)]
    for r, (full, rec) in {1: (0.46, 0.33), 2: (0.44, 0.31), 3: (0.48, 0.32)}.items():
        rows.append(line(round=r, label="peyvand", scenario="login", server_cpu_ms_per_login=full))
        rows.append(line(round=r, label="peyvand", scenario="login", server_cpu_ms_per_login=rec,
                         tls_resumed=9, direct_tls=1, sasl2_logins=9))
        rows.append(line(round=r, label="peyvand", scenario="login",
                         server_cpu_ms_per_login=rec + 0.02, tls_resumed=9, direct_tls=1,
                         sasl2_logins=9, sm_resumed=9))
    md = report(tmp_path, rows)
    assert row_of(md, "peyvand", "## 1. Login storm")[1] == "0.46"
    assert row_of(md, "peyvand", "### Reconnecting clients")[1] == "0.4"
    rec = row_of(md, "peyvand", "### Reconnecting with the fewest round trips")
    assert rec[1] == "0.32" and rec[3] == "9", rec
    smr = row_of(md, "peyvand", "### Reconnecting phones that resume their session")
    assert smr[1] == "0.43" and smr[2] == "8", smr
    p = row_of(md, "peyvand")
    assert p[3] == "0.46 [0.44–0.48]" and p[4] == "0.32 [0.31–0.33]", p
    assert p[5] == "0.34 [0.33–0.35]", p


def test_chat_with_stream_management_gets_its_own_table(tmp_path):
    rows = [line(label="peyvand", scenario="chat", delivered_per_s=70000,
                 server_cpu_us_per_msg=14.0),
            line(label="peyvand", scenario="chat", delivered_per_s=45000,
                 server_cpu_us_per_msg=22.0, sm=1)]
    md = report(tmp_path, rows)
    assert row_of(md, "peyvand", "### At saturation (each")[:2] == ["70,000", "14"], md
    assert row_of(md, "peyvand", "### At saturation, every client with stream")[:2] == \
        ["45,000", "22"], md
