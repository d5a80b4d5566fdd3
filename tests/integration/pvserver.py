"""Run a real peyvand server for one test: config file, process, ports, peyvandctl.

Every server lives in its own short temporary directory under /tmp (the admin socket
path must fit in sockaddr_un), listens on free loopback ports chosen here, logs to a
file in that directory, and is stopped by PID (SIGTERM, then SIGKILL) when the test
ends.  A restart reuses the same ports, config and data directory, which is what the
durability and stream-resumption tests need.
"""
import ctypes
import os
import random
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# The modules every test host enables unless a test says otherwise.
DEFAULT_MODULES = ["roster", "presence", "offline", "disco", "ping", "version",
                   "private", "vcard", "register"]

# What ASan/UBSan/LSan print when they find something.  Any of these in the server
# log fails the test: the bad-input cases exist to be run under the sanitizers.
SANITIZER_PATTERNS = re.compile(
    r"ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|"
    r"ERROR: UndefinedBehaviorSanitizer|SUMMARY: (Address|Undefined|Leak)Sanitizer")

# $PEYVAND_WRAPPER prefixes the server command, e.g.
#   PEYVAND_WRAPPER="valgrind --error-exitcode=99 --leak-check=full
#                    --errors-for-leak-kinds=definite" PEYVAND_BIN=build/peyvand
# (make valgrind).  Such a run is many times slower, so start-up, stop and test
# bounds are stretched by SLOW.  Valgrind writes its reports to stderr, i.e. into
# the server log; any error it reports, or its error exit code, fails the test.
WRAPPER = shlex.split(os.environ.get("PEYVAND_WRAPPER", ""))
SLOW = int(os.environ.get("PEYVAND_SLOW", "6")) if WRAPPER else 1
VALGRIND_ERROR_EXIT = 99
VALGRIND_PATTERNS = re.compile(
    r"^==\d+== (Invalid (read|write|free)|Conditional jump|Use of uninitialised|"
    r"Syscall param|Mismatched free|Source and destination overlap|"
    r"Argument .* of function|.*definitely lost in loss record|"
    r"ERROR SUMMARY: [1-9])", re.M)


def _die_with_parent():
    """In the child before exec: SIGKILL it if the test runner dies (PR_SET_PDEATHSIG),
    so that a killed pytest (ctest timeout, kill -9) leaves no server behind."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def find_binary(env_name, name):
    """Path of a binary: $env_name, else build-asan/<name>, else build/<name>."""
    path = os.environ.get(env_name)
    if path:
        return path
    for d in ("build-asan", "build"):
        cand = REPO / d / name
        if cand.is_file() and os.access(cand, os.X_OK):
            return str(cand)
    raise FileNotFoundError(
        f"{name} not found: set {env_name} or build it (build-asan/{name} or build/{name})")


def _ephemeral_low():
    try:
        return int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_handed_out = set()


def free_ports(n):
    """n distinct free TCP ports on 127.0.0.1 for a server to bind soon after.

    Taken below the kernel's ephemeral range: a port from bind(0) could be handed to
    some process's outgoing connection (a client, an s2s link, a benchmark running
    alongside) before the server binds it, which made starts fail with "address already
    in use".  Never the same port twice in one test run."""
    low, high = 20000, max(_ephemeral_low() - 1, 20000 + 4 * n)
    ports = []
    for _ in range(10000):
        if len(ports) == n:
            return ports
        port = random.randint(low, high)
        if port in _handed_out:
            continue
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            s.close()
        _handed_out.add(port)
        ports.append(port)
    raise RuntimeError(f"no {n} free ports between {low} and {high}")


# --- a tiny YAML emitter (the config is plain maps, lists and scalars) --------------

_PLAIN = re.compile(r"^[A-Za-z0-9_./:@-][A-Za-z0-9_./:@ -]*$")


def _scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    s = str(v)
    if _PLAIN.match(s) and not s.endswith(" ") and s.lower() not in (
            "true", "false", "yes", "no", "on", "off", "null", "~"):
        return s
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_yaml(obj, indent=0):
    pad = "  " * indent
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, (dict, list)) and v:
                out.append(f"{pad}{k}:")
                out.append(to_yaml(v, indent + 1))
            elif isinstance(v, list):
                out.append(f"{pad}{k}: []")
            elif isinstance(v, dict):
                out.append(f"{pad}{k}: {{}}")
            else:
                out.append(f"{pad}{k}: {_scalar(v)}")
    elif isinstance(obj, list):
        for v in obj:
            if isinstance(v, (dict, list)):
                out.append(f"{pad}-")
                out.append(to_yaml(v, indent + 1))
            else:
                out.append(f"{pad}- {_scalar(v)}")
    else:
        out.append(pad + _scalar(obj))
    return "\n".join(out)


def deep_merge(base, over):
    """Recursive dict merge; a value of None in `over` deletes the key."""
    res = dict(base)
    for k, v in over.items():
        if v is None:
            res.pop(k, None)
        elif isinstance(v, dict) and isinstance(res.get(k), dict):
            res[k] = deep_merge(res[k], v)
        else:
            res[k] = v
    return res


def host_config(domain, modules=None, **extra):
    cfg = {
        "certificate": f"certs/{domain}.crt",
        "key": f"certs/{domain}.key",
        "modules": list(modules if modules is not None else DEFAULT_MODULES),
    }
    cfg.update(extra)
    return cfg


class CtlResult:
    def __init__(self, args, proc):
        self.args = args
        self.rc = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr

    def __repr__(self):
        return (f"peyvandctl {' '.join(self.args)} -> rc={self.rc}\n"
                f"--- stdout\n{self.out}--- stderr\n{self.err}")


class Server:
    """One peyvand instance.  Use through the `server_factory` fixture."""

    def __init__(self, overrides=None, name="pv"):
        self.bin = find_binary("PEYVAND_BIN", "peyvand")
        self.ctl_bin = find_binary("PEYVANDCTL_BIN", "peyvandctl")
        self.name = name
        self.dir = Path(tempfile.mkdtemp(prefix="pv-", dir="/tmp"))
        self.data_dir = self.dir / "data"
        self.config_path = self.dir / "peyvand.yaml"
        self.log_path = self.dir / "peyvand.log"
        self.admin_socket = self.dir / "admin.sock"
        self.port, self.tls_port = free_ports(2)
        # further ports start() waits for (e.g. the s2s listeners of tests/integration/s2s)
        self.extra_ports = []
        self.proc = None
        self.exits = []          # (how stopped, returncode) for every stopped run
        self.expected_bad_exit = False
        base = {
            "log_level": "debug",
            "data_dir": str(self.data_dir),
            "admin_socket": str(self.admin_socket),
            "c2s": {
                "listen": ["127.0.0.1"],
                "port": self.port,
                "direct_tls_port": self.tls_port,
                "require_encryption": True,
            },
            "scram_iterations": 4096,
            "sm": {"resume_timeout": "5m"},
            "hosts": {"localhost": host_config("localhost")},
        }
        self.config = deep_merge(base, overrides or {})
        self.write_config()

    # --- config ---------------------------------------------------------------
    def write_config(self, config=None):
        if config is not None:
            self.config = config
        self.config_path.write_text(to_yaml(self.config) + "\n")

    # --- process --------------------------------------------------------------
    def start(self, timeout=30):
        timeout *= SLOW
        assert self.proc is None or self.proc.poll() is not None, "already running"
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== test harness: starting {self.bin} =====\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                WRAPPER + [self.bin, "--config", str(self.config_path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True, preexec_fn=_die_with_parent)
        self.wait_listening(timeout)
        return self

    def wait_listening(self, timeout=30):
        deadline = time.monotonic() + timeout
        pending = [self.port, self.tls_port] + [p for p in self.extra_ports if p]
        while pending:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"peyvand exited with {self.proc.returncode} during start-up\n"
                    + self.log_tail())
            port = pending[0]
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    pending.pop(0)
                    continue
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"peyvand did not listen on {port} within {timeout}s\n"
                                   + self.log_tail())
            time.sleep(0.05)

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=20):
        """SIGTERM, wait, SIGKILL if needed.  Returns the exit status (negative = signal)."""
        timeout *= SLOW
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        with open(self.log_path, "ab") as log:
            log.write(b"\n===== test harness: SIGTERM =====\n")
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
            self.exits.append(("SIGTERM", rc))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait(10)
            self.exits.append(("SIGTERM timed out, SIGKILL", rc))
        return rc

    def kill9(self):
        with open(self.log_path, "ab") as log:
            log.write(b"\n===== test harness: SIGKILL =====\n")
        self.proc.kill()
        rc = self.proc.wait(10)
        self.exits.append(("SIGKILL", rc))
        return rc

    def restart(self, how="term"):
        if how == "term":
            self.stop()
        elif how == "kill":
            self.kill9()
        else:
            raise ValueError(how)
        return self.start()

    def hup(self):
        self.proc.send_signal(signal.SIGHUP)

    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n=200):
        lines = self.log_text().splitlines()
        return "\n".join(lines[-n:])

    def problems(self):
        """Sanitizer reports and unclean SIGTERM exits seen so far (list of strings)."""
        out = []
        text = self.log_text()
        for m in SANITIZER_PATTERNS.finditer(text):
            start = text.rfind("\n", 0, m.start()) + 1
            out.append("sanitizer: " + text[start:text.find("\n", m.end())])
        for how, rc in self.exits:
            if how == "SIGTERM" and rc != 0 and not self.expected_bad_exit:
                out.append(f"exit status {rc} after SIGTERM (graceful stop must exit 0)")
            if how.startswith("SIGTERM timed out"):
                out.append(f"did not exit within {20 * SLOW}s of SIGTERM")
        if WRAPPER:
            for m in VALGRIND_PATTERNS.finditer(text):
                out.append("valgrind: " + text[m.start():text.find("\n", m.end())])
            for how, rc in self.exits:
                if rc == VALGRIND_ERROR_EXIT:
                    out.append(f"exit status {rc} after {how}: the wrapper "
                               f"({WRAPPER[0]}) reported errors (see the log)")
        keep = os.environ.get("PEYVAND_LOG_DIR")
        if out and keep:
            # The temporary directory goes away with the test; keep the whole log
            # (a valgrind report is longer than the tail in the test report).
            os.makedirs(keep, exist_ok=True)
            dest = Path(keep) / f"{self.dir.name}.log"
            shutil.copyfile(self.log_path, dest)
            out.append(f"full log kept in {dest}")
        return out

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- peyvandctl -----------------------------------------------------------
    def ctl(self, *args, input=None, timeout=60):
        argv = [self.ctl_bin, "--config", str(self.config_path), *args]
        proc = subprocess.run(argv, input=input, capture_output=True, text=True,
                              timeout=timeout)
        return CtlResult(list(args), proc)

    def add_user(self, jid, password):
        r = self.ctl("user", "add", jid, password)
        assert r.rc == 0, f"could not add {jid}: {r}"
        return r
