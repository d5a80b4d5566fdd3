"""A tiny authoritative DNS server for the tests (UDP and TCP on 127.0.0.1), answering
A, AAAA and SRV records from a table the test fills in (RFC 1035 4, RFC 2782).

It lets a server under test find its peers by DNS SRV (RFC 6120 3.2, XEP-0368) without
touching /etc/hosts or any real resolver: peyvand reads it through its `s2s.dns_server`
option, Prosody through libunbound's forwarder setting.  Every query is recorded in
`queries` as (name, type name) so tests can assert what was looked up.

Runs in a daemon thread; stop() joins it.  Names are case-insensitive, no trailing dot.
"""
import select
import socket
import struct
import threading

TYPES = {1: "A", 28: "AAAA", 33: "SRV", 2: "NS", 6: "SOA", 5: "CNAME", 16: "TXT", 52: "TLSA"}
CODES = {v: k for k, v in TYPES.items()}


def _encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            b = label.encode("idna") if any(ord(c) > 127 for c in label) else label.encode()
            out += bytes([len(b)]) + b
    return out + b"\0"


def _decode_name(msg, off):
    labels = []
    jumped = False
    end = off
    for _ in range(128):
        n = msg[off]
        if n == 0:
            off += 1
            break
        if n & 0xC0 == 0xC0:
            ptr = struct.unpack("!H", msg[off:off + 2])[0] & 0x3FFF
            if not jumped:
                end = off + 2
            jumped = True
            off = ptr
            continue
        labels.append(msg[off + 1:off + 1 + n].decode("ascii", "replace"))
        off += 1 + n
    if not jumped:
        end = off
    return ".".join(labels), end


class DnsServer:
    def __init__(self, host="127.0.0.1", port=0, ttl=5):
        self.ttl = ttl
        self.records = {}            # lower-case name -> [(type code, rdata bytes)]
        self.queries = []
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind((host, port))
        self.port = self.udp.getsockname()[1]
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind((host, self.port))
        self.tcp.listen(8)
        self.host = host
        self._stop = threading.Event()
        self._thread = None
        self._lock = threading.Lock()

    @property
    def addr(self):
        """"ip:port", the form peyvand's s2s.dns_server takes."""
        return f"{self.host}:{self.port}"

    # --- the zone ----------------------------------------------------------------
    def _add(self, name, code, rdata):
        with self._lock:
            self.records.setdefault(name.lower().rstrip("."), []).append((code, rdata))

    def add_a(self, name, ip="127.0.0.1"):
        self._add(name, 1, socket.inet_aton(ip))

    def add_aaaa(self, name, ip="::1"):
        self._add(name, 28, socket.inet_pton(socket.AF_INET6, ip))

    def add_srv(self, name, port, target, priority=0, weight=0):
        self._add(name, 33, struct.pack("!HHH", priority, weight, port) + _encode_name(target))

    def clear(self, name=None):
        with self._lock:
            if name is None:
                self.records.clear()
            else:
                self.records.pop(name.lower().rstrip("."), None)

    def asked(self, name, qtype=None):
        name = name.lower().rstrip(".")
        return [q for q in self.queries if q[0] == name and (qtype is None or q[1] == qtype)]

    # --- the protocol --------------------------------------------------------------
    def answer(self, msg):
        if len(msg) < 12:
            return None
        qid, flags, qd = struct.unpack("!HHH", msg[:6])
        if flags & 0x8000 or qd < 1:
            return None
        name, off = _decode_name(msg, 12)
        qtype, qclass = struct.unpack("!HH", msg[off:off + 4])
        question = msg[12:off + 4]
        key = name.lower().rstrip(".")
        self.queries.append((key, TYPES.get(qtype, str(qtype))))
        with self._lock:
            rrs = list(self.records.get(key, []))
            exists = key in self.records or any(k.endswith("." + key) for k in self.records)
        answers = [r for r in rrs if r[0] == qtype]
        rcode = 0 if exists else 3          # NXDOMAIN for names we know nothing of
        rflags = 0x8000 | 0x0400 | (flags & 0x0100) | 0x0080 | rcode   # QR AA RD RA
        out = struct.pack("!HHHHHH", qid, rflags, 1, len(answers), 0, 0) + question
        for code, rdata in answers:
            out += struct.pack("!HHHIH", 0xC00C, code, 1, self.ttl, len(rdata)) + rdata
        return out

    def _serve(self):
        conns = []
        while not self._stop.is_set():
            try:
                r, _, _ = select.select([self.udp, self.tcp] + conns, [], [], 0.2)
            except (OSError, ValueError):
                break
            for s in r:
                try:
                    if s is self.udp:
                        msg, peer = self.udp.recvfrom(4096)
                        resp = self.answer(msg)
                        if resp:
                            self.udp.sendto(resp, peer)
                    elif s is self.tcp:
                        c, _ = self.tcp.accept()
                        c.settimeout(2)
                        conns.append(c)
                    else:
                        hdr = s.recv(2)
                        if len(hdr) < 2:
                            raise OSError("closed")
                        n = struct.unpack("!H", hdr)[0]
                        msg = b""
                        while len(msg) < n:
                            chunk = s.recv(n - len(msg))
                            if not chunk:
                                raise OSError("closed")
                            msg += chunk
                        resp = self.answer(msg)
                        if resp:
                            s.sendall(struct.pack("!H", len(resp)) + resp)
                except (OSError, struct.error, IndexError):
                    if s in conns:
                        conns.remove(s)
                        s.close()
        for c in conns:
            c.close()

    def start(self):
        self._thread = threading.Thread(target=self._serve, name="test-dns", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread:
            self._thread.join(5)
        self.udp.close()
        self.tcp.close()
