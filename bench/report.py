#!/usr/bin/python3
"""Turn the JSON lines of one bench/run into bench/results/<date>-<host>.md: a side-by-side
table per scenario with ratios against peyvand, the machine, the versions, the method, and
a PNG chart per scenario drawn with gnuplot (Debian's gnuplot-nox).

  bench/report.py --results X.jsonl --out X.md [--started ISO] [--params TEXT]

Only reads its input and writes X.md and X-<scenario>.png beside it.
"""
import argparse
import json
import os
import platform
import re
import subprocess
import tempfile
from pathlib import Path

ORDER = ["peyvand", "prosody", "ejabberd"]


def sh(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def pkg_version(p):
    return sh("dpkg-query", "-W", "-f=${Version}", p) or "not installed"


def machine():
    cpu = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1048576:.1f} GiB"
    except OSError:
        pass
    root = Path(__file__).resolve().parents[1]
    # bench/run says what the binaries were built from; the tree at the end of a long
    # run may differ.
    rev = os.environ.get("BENCH_BUILT_REV")
    if not rev:
        rev = sh("git", "-C", str(root), "rev-parse", "--short", "HEAD")
        if sh("git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"):
            rev += " (with uncommitted changes)"
    return {
        "host": platform.node(),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory": mem,
        "kernel": platform.release(),
        "open files (hard)": sh("sh", "-c", "ulimit -Hn"),
        "peyvand": f"0.1.0 git {rev}, "
                   "RelWithDebInfo build",
        "prosody": pkg_version("prosody") + " (lua " + pkg_version("lua5.4") + ")",
        "ejabberd": pkg_version("ejabberd") + " (erlang " + pkg_version("erlang-base") + ")",
        "openssl": sh("openssl", "version"),
        "libuv": pkg_version("libuv1"),
    }


def fmt(v, digits=1):
    if v is None:
        return "–"
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15 and digits == 1:
        v = int(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if abs(v) >= 100:
            return f"{v:,.0f}"
        if 0 < abs(v) < 1:
            return f"{v:.3g}"  # 0.436 and 0.372 ms must not both print as 0.4
        return f"{v:.{digits}f}"
    return str(v)


def ratio(v, base, lower_better):
    """How many times better peyvand is (>1: peyvand better); None: not a ratio metric."""
    if lower_better is None:
        return ""
    if not isinstance(v, (int, float)) or not isinstance(base, (int, float)) or not v or not base:
        return "–"
    r = (v / base) if lower_better else (base / v)
    return f"{r:.2f}×"


def by_server(rows):
    servers = [s for s in ORDER if any(r["label"] == s for r in rows)]
    servers += sorted({r["label"] for r in rows} - set(servers))
    return servers


def table(rows, metrics):
    """metrics: [(title, getter, lower_better)] -> markdown lines, one row per server,
    plus a 'peyvand vs X' ratio row for each other server."""
    servers = by_server(rows)
    get = {s: next((r for r in rows if r["label"] == s), None) for s in servers}
    out = ["| server | " + " | ".join(m[0] for m in metrics) + " |",
           "|---" * (len(metrics) + 1) + "|"]
    for s in servers:
        r = get[s]
        out.append(f"| {s} | " + " | ".join(fmt(m[1](r) if r else None) for m in metrics) + " |")
    base = get.get("peyvand")
    if base:
        for s in servers:
            if s == "peyvand" or not get[s]:
                continue
            out.append(f"| peyvand vs {s} | " + " | ".join(
                ratio(m[1](get[s]), m[1](base), m[2]) for m in metrics) + " |")
    return out


def g(*keys):
    def f(r):
        v = r
        for k in keys:
            if not isinstance(v, dict) or k not in v:
                return None
            v = v[k]
        return v
    return f


def lat(p):
    """A latency percentile, or None when no message sent in the window arrived."""
    def f(r):
        h = r.get("latency_ms") or {}
        return h.get(p) if h.get("count") else None
    return f


def gnuplot(script, png):
    try:
        p = subprocess.run(["gnuplot"], input=script, capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            return f"(chart failed: {p.stderr.strip()[:200]})"
    except OSError as e:
        return f"(no chart: {e})"
    return None


def bar_chart(png, title, series, ylabel_list):
    """series: list of (panel title, {server: value}) -> one PNG with a bar panel each."""
    tmp = tempfile.mkdtemp(prefix="pv-bench-plot-")
    n = len(series)
    lines = [f"set terminal pngcairo size {420 * n},360 font 'sans,9'",
             f"set output '{png}'",
             f"set multiplot layout 1,{n} title '{title}'",
             "set style data histograms", "set style fill solid 0.8 border -1",
             "set boxwidth 0.7", "set grid ytics", "set yrange [0:*]", "unset key"]
    for i, (ptitle, vals) in enumerate(series):
        f = Path(tmp) / f"s{i}.dat"
        with open(f, "w") as fh:
            for s in [x for x in ORDER if x in vals] + [x for x in vals if x not in ORDER]:
                v = vals[s]
                fh.write(f"{s} {v if v is not None else 0}\n")
        lines += [f"set title '{ptitle}'", f"set ylabel '{ylabel_list[i]}'",
                  f"plot '{f}' using 2:xtic(1) lc rgb '#4477aa', '' using 0:2:($2 >= 100 ? sprintf('%.0f', $2) : sprintf('%.3g', $2)) "
                  "with labels offset 0,0.7 notitle"]
    lines.append("unset multiplot")
    return gnuplot("\n".join(lines) + "\n", png)


def latency_chart(png, title, rows):
    """p99 latency against offered rate, one line per server."""
    tmp = tempfile.mkdtemp(prefix="pv-bench-plot-")
    plots = []
    for i, s in enumerate(by_server(rows)):
        pts = sorted((r["rate_offered"], g("latency_ms", "p99")(r), g("latency_ms", "p50")(r))
                     for r in rows if r["label"] == s and r.get("rate_offered"))
        if not pts:
            continue
        f = Path(tmp) / f"{s}.dat"
        f.write_text("".join(f"{a} {b} {c}\n" for a, b, c in pts))
        plots.append(f"'{f}' using 1:2 with linespoints lw 2 lc {i + 1} title '{s} p99', "
                     f"'{f}' using 1:3 with linespoints dt 2 lc {i + 1} title '{s} p50'")
    if not plots:
        return "(no paced runs)"
    script = "\n".join([
        "set terminal pngcairo size 640,400 font 'sans,9'", f"set output '{png}'",
        f"set title '{title}'", "set xlabel 'offered msgs/s'", "set ylabel 'latency (ms)'",
        "set logscale y", "set grid", "set key top left",
        "plot " + ", ".join(plots)]) + "\n"
    return gnuplot(script, png)


def spread(vals, unit=""):
    """median [min–max] of the numbers in vals (each followed by unit), or – when there
    are none."""
    vals = sorted(v for v in vals if isinstance(v, (int, float)))
    if not vals:
        return "–"
    n = len(vals)
    med = vals[n // 2] if n % 2 else (vals[n // 2 - 1] + vals[n // 2]) / 2
    def f(v):
        return fmt(float(v), 2) + unit
    return f(med) if n == 1 else f"{f(med)} [{f(vals[0])}–{f(vals[-1])}]"


def login_kind(r):
    """A login row's storm: "full" handshakes, "resumed" TLS sessions (--tls-resume),
    "reconnect" (bench/run's reconnect_storm: direct TLS, resumed, SASL2 + Bind 2 where
    offered), or "sm-resume" (resume_storm: the same, resuming a XEP-0198 session)."""
    if "sm_resumed" in r:
        return "sm-resume"
    if r.get("direct_tls"):
        return "reconnect"
    return "resumed" if "tls_resumed" in r else "full"


def is_(scenario, kind=None):
    return lambda r: r.get("scenario") == scenario and (kind is None or login_kind(r) == kind)


# (header, which rows, value, lower is better)
ROUND_METRICS = [
    ("delivered msgs/s", is_("chat"), g("delivered_per_s"), False),
    ("server CPU µs/msg", is_("chat"), g("server_cpu_us_per_msg"), True),
    ("logins/s", is_("login", "full"), g("logins_per_s"), False),
    ("server CPU ms/login", is_("login", "full"), g("server_cpu_ms_per_login"), True),
    ("reconnect: server CPU ms/login", is_("login", "reconnect"),
     g("server_cpu_ms_per_login"), True),
    ("SM resume: server CPU ms/login", is_("login", "sm-resume"),
     g("server_cpu_ms_per_login"), True),
]


def rounds_section(rounds):
    """The rounds scenario: every server's median [range] over the rounds, and the median
    [range] of peyvand's ratio to each server taken within each round."""
    nr = len({r["round"] for r in rounds})
    servers = by_server(rounds)

    def vals(srv, which, get):
        return {r["round"]: get(r) for r in rounds if r["label"] == srv and which(r)}

    md = ["## 6. Repeated rounds (the verdict)", "",
          f"{nr} rounds; in each, every server in turn was started for one saturation chat "
          "window, one login storm of full handshakes, one reconnect storm and one resume "
          "storm (section 1), in reversed order every other round. Each cell is "
          "the median over the rounds, with the lowest and highest in brackets. A ratio "
          "row takes peyvand's ratio to that server within each round (the two ran "
          "minutes apart) and gives the median of those ratios.", "",
          "| server | " + " | ".join(m[0] for m in ROUND_METRICS) + " |",
          "|---" * (len(ROUND_METRICS) + 1) + "|"]
    for s in servers:
        md.append(f"| {s} | " + " | ".join(
            spread(vals(s, which, get).values()) for _, which, get, _ in ROUND_METRICS) + " |")
    if "peyvand" in servers:
        for s in servers:
            if s == "peyvand":
                continue
            cells = []
            for _, which, get, lower in ROUND_METRICS:
                mine, theirs = vals("peyvand", which, get), vals(s, which, get)
                rs = [(theirs[k] / mine[k]) if lower else (mine[k] / theirs[k])
                      for k in mine if k in theirs and mine[k] and theirs[k]]
                cells.append(spread(rs, "×"))
            md.append(f"| peyvand vs {s} | " + " | ".join(cells) + " |")
    return md + [""]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--started", default="")
    ap.add_argument("--params", default="")
    a = ap.parse_args()
    rows = []
    for line in Path(a.results).read_text().splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    # windows of the "rounds" scenario have their own section; the tables above it
    # hold each server's single run of every scenario
    rounds = [r for r in rows if "round" in r]
    rows = [r for r in rows if "round" not in r]
    out_md = Path(a.out)
    stem = str(out_md)[:-3] if str(out_md).endswith(".md") else str(out_md)
    m = machine()
    md = [f"# peyvand vs Prosody vs ejabberd — {m['host']}, {a.started or 'date unknown'}", "",
          "Produced by `bench/run` (see bench/NOTES.md for the method and what dominates "
          "peyvand's costs). Ratios are *how many times better peyvand is* (above 1: peyvand "
          "better; below 1: worse). Server CPU is read from /proc/<pid>/stat of the server "
          "process (user + system, all threads) over the measured window; the machine is "
          "shared, so prefer the per-unit CPU columns to the rates.", "",
          "## Machine and versions", "", "| | |", "|---|---|"]
    md += [f"| {k} | {v} |" for k, v in m.items()]
    md += [f"| run parameters | {a.params} |", ""]

    def sc(name, **kw):
        return [r for r in rows if r.get("scenario") == name and
                all(r.get(k) == v for k, v in kw.items())]

    charts = []
    # --- login
    login = [r for r in sc("login") if login_kind(r) == "full"]
    resumed = [r for r in sc("login") if login_kind(r) == "resumed"]
    reconnect = [r for r in sc("login") if login_kind(r) == "reconnect"]
    sm_resume = [r for r in sc("login") if login_kind(r) == "sm-resume"]
    if login:
        md += ["## 1. Login storm (TCP + TLS 1.3 + SCRAM + bind, keys cached client-side)", ""]
        md += table(login, [
            ("logins/s", g("logins_per_s"), False),
            ("server CPU ms/login", g("server_cpu_ms_per_login"), True),
            ("server CPU %", g("server_cpu_pct"), None),
            ("login p50 ms", g("login_ms", "p50"), True),
            ("login p99 ms", g("login_ms", "p99"), True),
            ("failed", g("failed"), None),
            ("SCRAM", g("mech"), None),
            ("generator CPU %", g("gen_cpu_pct"), None)])
        png = f"{stem}-login.png"
        err = bar_chart(png, "login storm", [
            ("logins per second", {r["label"]: r.get("logins_per_s") for r in login}),
            ("server CPU per login", {r["label"]: r.get("server_cpu_ms_per_login") for r in login})],
            ["logins/s", "ms"])
        charts.append((png, err))
        md += ["", f"![login]({Path(png).name})", ""]
    # the reconnecting storms: one table each, the same columns around their counts
    head = [("logins/s", g("logins_per_s"), False),
            ("server CPU ms/login", g("server_cpu_ms_per_login"), True)]
    tail = [("logins", g("logins"), None),
            ("login p50 ms", g("login_ms", "p50"), True),
            ("login p99 ms", g("login_ms", "p99"), True),
            ("failed", g("failed"), None)]
    storms = [
        (resumed, "### Reconnecting clients (each login resumes the user's last TLS 1.3 session)",
         "`resumed` counts the logins whose handshake the server resumed; 0 means the "
         "server issued no ticket the client could use, so every login was a full "
         "handshake again.",
         [("resumed", g("tls_resumed"), None)]),
        (reconnect, "### Reconnecting with the fewest round trips each server allows",
         "Direct TLS (XEP-0368), the user's last TLS session resumed, and SASL2 with "
         "Bind 2 inside it (XEP-0388, XEP-0386) where the server offers them; "
         "`SASL2` counts those logins, 0 meaning the server was logged in to with "
         "RFC 6120's SASL and bind.",
         [("resumed", g("tls_resumed"), None), ("SASL2", g("sasl2_logins"), None)]),
        (sm_resume, "### Reconnecting phones that resume their session (XEP-0198)",
         "As above, and each login resumes the user's stream management session, "
         "which its previous login enabled and left by dropping the connection "
         "without closing the stream (a phone losing its network). The resumption "
         "rides inside SASL2's `<authenticate/>` where offered, else it replaces "
         "the RFC 6120 bind. `SM resumed` counts the logins that resumed.",
         [("SM resumed", g("sm_resumed"), None), ("TLS resumed", g("tls_resumed"), None),
          ("SASL2", g("sasl2_logins"), None)]),
    ]
    for storm, title, text, counts in storms:
        if storm:
            md += [title, "", text, ""]
            md += table(storm, head + counts + tail)
            md += [""]
    # --- idle
    idle = sc("idle")
    if idle:
        md += ["## 2. Idle authenticated sessions (memory)", ""]
        md += table(idle, [
            ("sessions", g("sessions"), None),
            ("server RSS before KiB", g("server_rss_before_kib"), True),
            ("server RSS after KiB", g("server_rss_after_kib"), True),
            ("server KiB/session", g("server_rss_per_session_kib"), True),
            ("kernel TCP buffers KiB/conn", g("kernel_tcp_mem_per_connection_kib"), None),
            ("kernel socket slabs KiB/conn", g("kernel_socket_slab_per_connection_kib"), None),
            ("idle server CPU %", g("idle_server_cpu_pct"), None),
            ("failed", g("failed"), None)])
        md += ["", "The kernel's share is not in the server's RSS and is shown apart: TCP "
               "buffers are /proc/net/sockstat `TCP mem` (pages; idle sockets hold almost "
               "none), socket slabs are the `TCP` and `sock_inode_cache` objects of "
               "/proc/slabinfo (empty when the tool is not root). Both are measured before "
               "and after the logins and cover both ends of each loopback connection (the "
               "generator's too), so a server's own share is about half.", ""]
        png = f"{stem}-idle.png"
        err = bar_chart(png, f"idle sessions", [
            ("server RSS per idle session",
             {r["label"]: r.get("server_rss_per_session_kib") for r in idle})], ["KiB"])
        charts.append((png, err))
        md += [f"![idle]({Path(png).name})", ""]
    # --- chat
    chat = sc("chat")
    if chat:
        sat = [r for r in chat if not r.get("rate_offered") and not r.get("sm")]
        with_sm = [r for r in chat if not r.get("rate_offered") and r.get("sm")]
        paced = [r for r in chat if r.get("rate_offered") and not r.get("sm")]
        cols = [("delivered msgs/s", g("delivered_per_s"), False),
                ("server CPU µs/msg", g("server_cpu_us_per_msg"), True),
                ("server CPU %", g("server_cpu_pct"), None),
                ("p50 ms", lat("p50"), True),
                ("p99 ms", lat("p99"), True),
                ("errors", g("errors"), None),
                ("generator CPU %", g("gen_cpu_pct"), None)]
        md += ["## 3. One-to-one chat (online users to random online users)", "",
               "### At saturation (each generator process keeps 2 × its users in flight)", ""]
        md += table(sat, cols)
        if with_sm:
            md += ["", "### At saturation, every client with stream management (XEP-0198)", "",
                   "As phones log in: each user enables resumable XEP-0198, counts what it "
                   "receives and answers the server's `<r/>`. What a server acknowledges then "
                   "is its promise; peyvand commits each sender's count of handled stanzas "
                   "before acknowledging it (the resumption after kill -9 neither loses nor "
                   "repeats a message), the others keep it in memory.", ""]
            md += table(with_sm, cols)
        md += ["", "### At offered rates", "",
               "| server | offered/s | delivered/s | p50 ms | p90 ms | p99 ms | max ms | "
               "server CPU µs/msg | server CPU % |", "|---|---|---|---|---|---|---|---|---|"]
        for s in by_server(paced):
            for r in sorted((r for r in paced if r["label"] == s), key=lambda r: r["rate_offered"]):
                md.append(f"| {s} | {fmt(r['rate_offered'])} | {fmt(r.get('delivered_per_s'))} | "
                          f"{fmt(lat('p50')(r), 2)} | {fmt(lat('p90')(r), 2)} | "
                          f"{fmt(lat('p99')(r), 2)} | {fmt(lat('max')(r), 2)} | "
                          f"{fmt(r.get('server_cpu_us_per_msg'))} | {fmt(r.get('server_cpu_pct'))} |")
        png = f"{stem}-chat.png"
        err = bar_chart(png, "1:1 chat at saturation", [
            ("delivered msgs/s", {r["label"]: r.get("delivered_per_s") for r in sat}),
            ("server CPU per message", {r["label"]: r.get("server_cpu_us_per_msg") for r in sat})],
            ["msgs/s", "µs"])
        charts.append((png, err))
        png2 = f"{stem}-chat-latency.png"
        err2 = latency_chart(png2, "1:1 chat latency at offered rates", paced)
        charts.append((png2, err2))
        md += ["", f"![chat]({Path(png).name})", f"![chat latency]({Path(png2).name})", ""]
    # --- offline
    off = sc("offline")
    if off:
        md += ["## 4. Offline messages (stored, then delivered at the receivers' login)", ""]
        md += table(off, [
            ("stored", g("sent_to_offline"), None),
            ("stored/s", g("stored_per_s"), False),
            ("server CPU µs/stored", g("server_cpu_us_per_stored"), True),
            ("delivered/s", g("delivered_per_s"), False),
            ("server CPU µs/delivered", g("server_cpu_us_per_delivered"), True),
            ("lost", g("lost"), None)])
        png = f"{stem}-offline.png"
        err = bar_chart(png, "offline messages", [
            ("stored per second", {r["label"]: r.get("stored_per_s") for r in off}),
            ("delivered per second", {r["label"]: r.get("delivered_per_s") for r in off})],
            ["msgs/s", "msgs/s"])
        charts.append((png, err))
        md += ["", f"![offline]({Path(png).name})", ""]
    # --- interconnect
    ic = sc("interconnect")
    if ic:
        sat = [r for r in ic if not r.get("rate_offered")]
        paced = [r for r in ic if r.get("rate_offered")]
        md += ["## 5. Interconnect (users on provider A ↔ users on provider B over s2s)", "",
               "Two instances of the same server, each its own process and domain; CPU is "
               "the sum of both.", ""]
        md += table(sat, [
            ("delivered msgs/s", g("delivered_per_s"), False),
            ("server CPU µs/msg (A+B)", g("server_cpu_us_per_msg"), True),
            ("p50 ms", lat("p50"), True),
            ("p99 ms", lat("p99"), True),
            ("errors", g("errors"), None),
            ("skipped/stalled", g("skipped_or_stalled"), None)])
        if paced:
            md += ["", "| server | offered/s | delivered/s | p50 ms | p99 ms | max ms | "
                   "server CPU µs/msg |", "|---|---|---|---|---|---|---|"]
            for r in paced:
                md.append(f"| {r['label']} | {fmt(r['rate_offered'])} | {fmt(r.get('delivered_per_s'))} | "
                          f"{fmt(lat('p50')(r), 2)} | {fmt(lat('p99')(r), 2)} | "
                          f"{fmt(lat('max')(r), 2)} | {fmt(r.get('server_cpu_us_per_msg'))} |")
        png = f"{stem}-interconnect.png"
        err = bar_chart(png, "interconnect at saturation", [
            ("delivered msgs/s", {r["label"]: r.get("delivered_per_s") for r in sat}),
            ("server CPU per message (A+B)",
             {r["label"]: r.get("server_cpu_us_per_msg") for r in sat})], ["msgs/s", "µs"])
        charts.append((png, err))
        md += ["", f"![interconnect]({Path(png).name})", ""]

    if rounds:
        md += rounds_section(rounds)

    missing = [f"{s}/{n}" for s in ORDER for n in ("login", "idle", "chat", "offline", "interconnect")
               if any(r["label"] == s for r in rows) and not sc(n, label=s)]
    if missing:
        md += ["## Runs without a result", "", "These runs failed or were not run (see the "
               "bench/run output): " + ", ".join(missing), ""]
    md += ["## Method", "",
           "- One generator, `peyvand-bench` (tools/peyvand-bench.c), for all three servers: "
           "plain XMPP over STARTTLS with TLS 1.3, SCRAM (SHA-256 where offered; Prosody 0.12 "
           "offers SCRAM-SHA-1 only), resource binding, initial presence. It runs as several "
           "processes with one libuv loop each; source addresses are spread over "
           "127.100.0.0/16. Its own CPU is in every row (percent of one core; two "
           "processes can show up to 200 %) — on this 2-core machine the generator and the "
           "server share the cores, so a server near 100 % of a core plus a busy generator "
           "means the machine, not only the server, is saturated.",
           "- Paced runs whose server cannot keep up stop adding to a backlog past 5 s of "
           "offered load (`skipped_or_stalled` in the JSON); a saturation window that sees "
           "no delivery for 2 s is written off and counted there too.",
           "- Accounts are created with XEP-0077 in-band registration from a separate start "
           "of each server with registration enabled; every measured run is a fresh start "
           "without it.",
           "- Login: each user logs in once first (client keys derived and cached), then "
           "concurrent login/close loops for the window; `key_derivations_in_window` = 0 "
           "shows the client did no PBKDF2 in it. The reconnecting run that follows on the "
           "same server start (`--tls-resume`) offers each user the TLS session of its "
           "previous login. The reconnect storm after it connects to the direct TLS port and "
           "adds SASL2 + Bind 2 where offered (`--direct-tls --sasl2 --tls-resume`); the "
           "resume storm adds `--sm-resume` (XEP-0198 resumption in place of the binding).",
           "- Idle: RSS (VmRSS) of the server process before the logins and after them plus "
           "a settle time, divided by the sessions.",
           "- Chat: every user online; each message carries a CLOCK_MONOTONIC timestamp in "
           "its body; latency = arrival − timestamp, in a log-linear histogram (±3 %). "
           "Delivered/s counts arrivals inside the window; server CPU per message = server "
           "CPU in the window / those arrivals. The paced runs send at the offered rate "
           "from random senders to random recipients.",
           "- Offline: half the users stay offline; the other half send each of them "
           "`per_user` messages, paced by an XEP-0199 ping after every 50; the "
           "store CPU includes 1 s after the last ping answer (asynchronous commits). Then "
           "the receivers log in, send presence, and the delivery is timed until every "
           "stored message has arrived.",
           "- Interconnect: two instances of the same server with their own domains, s2s "
           "over STARTTLS with certificates from one test CA; half the users on each side "
           "message users on the other side. peyvand runs with its consent filter (issue 4), "
           "every user's policy opened to everyone, so each delivered message is checked and "
           "its evidence record written; Prosody and ejabberd have no such filter.",
           "- Rounds (section 6): the same chat and login runs, shorter, repeated with "
           "every server restarted for each round; the servers' order is reversed every "
           "other round, so a drift of the machine's speed over the run does not favour "
           "the server that ran first.",
           "- Configurations: see the comments in bench/run (written next to the data of "
           "each run). All servers log at warning level.",
           ""]
    errs = [f"- {Path(p).name}: {e}" for p, e in charts if e]
    if errs:
        md += ["Chart problems:", ""] + errs + [""]
    out_md.write_text("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
