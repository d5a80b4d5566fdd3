"""The exchange harness (issue 6): four peyvand providers and one exchange on loopback,
certificates from one test CA, the modules phone and directory, a shared blinding key,
in a mesh (static routes between all providers), a star (providers route only to the
exchange, route_via_exchange on) or both.  Used through the `interconnect` fixture of
conftest.py; see README.md for the config it writes.

  make_interconnect(server_factory, ca, layout, ...) -> Interconnect
  Interconnect      .providers {domain: Server}, .exchange Server or None, .servers (all),
                    .key (blinding key bytes), .key_file, .layout
                    .blind(number), .number_address(number)
                    .login(raw, domain, user)            a raw c2s client
                    .lookup(client, number) -> Answer    one urn:peyvand:directory:0 lookup
                    .set_phone(raw, domain, user, number, findable=, preferred=)
  blind(key, number)  HMAC-SHA256(key, number) as lowercase base32 without padding
  module_available(name)  does this peyvand binary have the module?
"""
import base64
import functools
import hashlib
import hmac
import os
import subprocess
import tempfile
import time
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import pvserver
from helpers import wait_until
import rawxmpp
import s2sharness
from rawxmpp import NS_CLIENT, local, ns_of, stanza_error_condition, to_str

PROVIDERS = list(s2sharness.PROVIDERS)   # bale, eitaa, rubika, soroush .localhost
EXCHANGE = "exchange.localhost"
NS_DIRECTORY = "urn:peyvand:directory:0"
NS_PHONE = "urn:peyvand:phone:0"
NS_STANZAS = rawxmpp.NS_STANZAS

# Short, test-friendly discovery settings (hosts.<d>.directory, docs/config.md).
DIRECTORY_DEFAULTS = {
    "cache_ttl": "2s",
    "query_timeout": "3s",
    "lookups_per_minute": 120,
    "lookups_per_day": 500,
    "remote_lookups_per_day": 5000,
}

# mod_phone with the development gateway that writes codes to the log (P's module).
PHONE_DEFAULTS = {"gateway": "log"}


# --- blinding ------------------------------------------------------------------------------

def blind(key, number):
    """The blinded form of an E.164 number: lowercase RFC 4648 base32 of
    HMAC-SHA256(key, number), without padding (52 characters)."""
    mac = hmac.new(key, number.encode(), hashlib.sha256).digest()
    return base64.b32encode(mac).decode().lower().rstrip("=")


# --- which modules this binary has -----------------------------------------------------------

@functools.lru_cache(maxsize=None)
def module_available(name):
    """True when `peyvand --check-config` accepts a host with this module."""
    d = Path(tempfile.mkdtemp(prefix="pv-probe-", dir="/tmp"))
    try:
        cfg = {"data_dir": str(d / "data"), "admin_socket": str(d / "a.sock"),
               "hosts": {"localhost": {"modules": [name]}}}
        (d / "c.yaml").write_text(pvserver.to_yaml(cfg) + "\n")
        p = subprocess.run([pvserver.find_binary("PEYVAND_BIN", "peyvand"), "--config",
                            str(d / "c.yaml"), "--check-config"],
                           capture_output=True, text=True, timeout=30)
        return p.returncode == 0
    finally:
        subprocess.run(["rm", "-rf", str(d)], timeout=30)


def _with_optional(base, optional):
    return list(base) + [m for m in optional if m not in base and module_available(m)]


# --- lookup answers --------------------------------------------------------------------------

class Answer:
    """One answer to a lookup: .el (the iq), .raw (its bytes as received), .type,
    .items [(jid, preferred)], .preferred (jid or None), .number_address, .error
    (defined condition), .app_error (application-specific condition or None)."""

    def __init__(self, el, raw=b""):
        self.el, self.raw = el, raw
        self.type = el.get("type")
        self.items, self.preferred, self.number_address = [], None, None
        self.error = stanza_error_condition(el) if self.type == "error" else None
        self.app_error = None
        if self.type == "error":
            err = el.find(f"{{{NS_CLIENT}}}error")
            for c in (err if err is not None else []):
                if ns_of(c.tag) not in (NS_STANZAS, ""):
                    self.app_error = local(c.tag)
            return
        res = el.find(f"{{{NS_DIRECTORY}}}result")
        for c in (res if res is not None else []):
            if c.tag == f"{{{NS_DIRECTORY}}}item":
                pref = c.get("preferred") in ("true", "1")
                self.items.append((c.get("jid"), pref))
                if pref:
                    self.preferred = c.get("jid")
            elif c.tag == f"{{{NS_DIRECTORY}}}number-address":
                self.number_address = c.get("jid")

    @property
    def jids(self):
        return sorted(j for j, _ in self.items)

    def __repr__(self):
        return to_str(self.el)


def _iq_bytes(raw, id):
    """The bytes of the <iq> with this id among the elements received (other stanzas,
    e.g. the own presence echoed after login, may precede or follow it)."""
    pos = 0
    while True:
        i = raw.find(b"<iq ", pos)
        if i < 0:
            return raw
        tag_end = raw.find(b">", i)
        if f"id='{id}'".encode() in raw[i:tag_end] or f'id="{id}"'.encode() in raw[i:tag_end]:
            if raw[tag_end - 1:tag_end] == b"/":
                return raw[i:tag_end + 1]
            j = raw.find(b"</iq>", tag_end)
            return raw[i:j + 5] if j >= 0 else raw[i:]
        pos = tag_end


def lookup_xml(number):
    return (f"<lookup xmlns='{NS_DIRECTORY}'><number>{escape(number)}</number></lookup>")


# --- the interconnect --------------------------------------------------------------------------

class Interconnect:
    def __init__(self, layout, providers, exchange, key, key_file):
        self.layout = layout
        self.providers = providers
        self.exchange = exchange
        self.key, self.key_file = key, key_file
        self.servers = dict(providers)
        if exchange:
            self.servers[EXCHANGE] = exchange

    def __getitem__(self, domain):
        return self.servers[domain]

    def blind(self, number):
        return blind(self.key, number)

    def number_address(self, number):
        return f"{self.blind(number)}@{EXCHANGE}"

    def login(self, raw, domain, user, resource="raw", **kw):
        return s2sharness.login(raw, self.servers[domain], user, resource=resource, **kw)

    def lookup(self, client, number, timeout=15, id=None):
        """Ask the client's own server where `number` can be reached (XEP-style iq get
        to the server); returns an Answer with the exact bytes received."""
        id = id or rawxmpp.new_id("lk")
        start = len(client.raw_in)
        el = client.iq("get", lookup_xml(number), to=client.domain, timeout=timeout, id=id)
        return Answer(el, _iq_bytes(bytes(client.raw_in[start:]), id))

    def set_phone(self, raw, domain, user, number, findable=True, preferred=False):
        """Give user@domain a verified number and settings through P's client protocol
        (urn:peyvand:phone:0, docs/protocol/phone.md): register the number, read the
        code from the log gateway, confirm, then set findable/preferred."""
        c = self.login(raw, domain, user, resource="phone-setup")
        srv = self.servers[domain]
        cur = c.iq("get", f"<phone xmlns='{NS_PHONE}'/>", to=None)
        assert cur.get("type") == "result", f"mod_phone missing on {domain}? {to_str(cur)}"
        if cur.find(f"{{{NS_PHONE}}}phone").get("number") != number:
            r = c.iq("set", f"<request-code xmlns='{NS_PHONE}' number={quoteattr(number)}/>",
                     to=None)
            assert r.get("type") == "result", to_str(r)
            code = wait_for(lambda: log_code(srv, domain, number), 10, 0.1,
                            f"the log gateway's code for {domain}")
            r = c.iq("set", f"<verify xmlns='{NS_PHONE}' number={quoteattr(number)} "
                            f"code={quoteattr(code)}/>", to=None)
            assert r.get("type") == "result", to_str(r)
        return self.set_flags(c, findable=findable, preferred=preferred)

    @staticmethod
    def set_flags(client, findable=None, preferred=None):
        """Change the findable/preferred settings of client's account (mod_phone);
        returns the <phone/> element of the result."""
        attrs = ""
        if findable is not None:
            attrs += f" findable='{str(bool(findable)).lower()}'"
        if preferred is not None:
            attrs += f" preferred='{str(bool(preferred)).lower()}'"
        r = client.iq("set", f"<settings xmlns='{NS_PHONE}'{attrs}/>", to=None)
        assert r.get("type") == "result", to_str(r)
        return r.find(f"{{{NS_PHONE}}}phone")


def make_interconnect(server_factory, ca, layout="mesh", providers=None, with_exchange=None,
                      users=None, modules=None, extra_modules=(), exchange_modules=None,
                      directory=None, phone=None, hosts=None, exchange_host=None, s2s=None,
                      log_level=None, start=True, certs=None):
    """Start the providers (default all four) and, for layout star/both (or
    with_exchange=True), exchange.localhost.

    layout   "mesh": static routes between all providers (and to/from the exchange if it
             runs; providers then also name it in interconnect.exchange);
             "star": providers have a route only to the exchange and route_via_exchange
             on; the exchange has routes to all;  "both": all routes, exchange configured,
             route_via_exchange off.
    users    {user: password} on every provider (default alice, bob, carol)
    modules  provider modules (default: the integration defaults + phone + directory, and
             R's "exchange"/"abuse" if this binary has them); extra_modules are appended
    exchange_modules  (default: disco, ping, directory + "exchange"/"abuse" if present)
    directory / phone  hosts.<d>.directory / .phone of every provider (merged into
             the defaults above);  hosts {domain: host-section overrides}, merged last;
             exchange_host: overrides of the exchange's host section
    s2s      s2s overrides for every server.
    certs    {provider domain: "good" | "wrong" | "other"} (s2sharness.TestCA; default good)"""
    assert layout in ("mesh", "star", "both"), layout
    domains = list(providers or PROVIDERS)
    with_exchange = layout != "mesh" if with_exchange is None else with_exchange
    assert with_exchange or layout == "mesh", "star/both need the exchange"
    key_file = Path(ca.dir) / "blinding.key"
    if not key_file.exists():
        key_file.write_bytes(os.urandom(32))
    key = key_file.read_bytes()

    if modules is None:
        # phone (P) and directory (D) are the point of this harness; they are added only
        # when the binary has them so that the harness also starts while they are built
        # (tests needing them then fail with "unknown module"/"service-unavailable").
        modules = _with_optional(pvserver.DEFAULT_MODULES,
                                 ["phone", "directory", "abuse"])
    modules = list(modules) + [m for m in extra_modules if m not in modules]
    if exchange_modules is None:
        exchange_modules = _with_optional(["disco", "ping"], ["directory", "exchange", "abuse"])
    dir_cfg = pvserver.deep_merge(DIRECTORY_DEFAULTS, directory or {})
    phone_cfg = pvserver.deep_merge(PHONE_DEFAULTS, phone or {})

    members_all = domains + ([EXCHANGE] if with_exchange else [])
    host_over = {}
    for d in domains:
        ic = {"mode": "members",
              "members": {m: {} for m in members_all if m != d},
              "blinding_key_file": str(key_file)}
        if with_exchange:
            ic["exchange"] = EXCHANGE
            ic["route_via_exchange"] = layout == "star"
        h = {"modules": modules, "interconnect": ic, "directory": dir_cfg}
        if "phone" in modules:
            h["phone"] = phone_cfg
        host_over[d] = pvserver.deep_merge(h, (hosts or {}).get(d, {}))

    servers = s2sharness.make_providers(server_factory, ca, domains, s2s=s2s, hosts=host_over,
                                        certs=certs,
                                        users=users, start=False, log_level=log_level,
                                        routes=layout != "star")
    exchange = None
    if with_exchange:
        exchange = server_factory(None, users={}, domain=EXCHANGE, start=False)
        taken = {exchange.port, exchange.tls_port}
        for srv in servers.values():
            taken.update((srv.port, srv.tls_port, srv.s2s_port, srv.s2s_tls_port))
        exchange.domain = EXCHANGE
        exchange.s2s_port, exchange.s2s_tls_port = s2sharness.alloc_ports(2, taken)
        # No blinding key on the exchange: it only stores and compares blinded numbers
        # (docs/protocol/directory.md, security considerations).
        ex_host = {"role": "exchange", "modules": list(exchange_modules),
                   "interconnect": {"mode": "members",
                                    "members": {d: {} for d in domains}},
                   "directory": dir_cfg}
        ex_host = pvserver.deep_merge(ex_host, exchange_host or {})
        over = s2sharness.provider_overrides(
            EXCHANGE, ca, exchange.s2s_port, exchange.s2s_tls_port,
            {d: s2sharness.route_to(s) for d, s in servers.items()},
            s2s=s2s, host=ex_host, log_level=log_level)
        exchange.write_config(pvserver.deep_merge(exchange.config, over))
        exchange.extra_ports = [exchange.s2s_port, exchange.s2s_tls_port]
        for srv in servers.values():
            srv.config["s2s"].setdefault("routes", {})[EXCHANGE] = s2sharness.route_to(exchange)
            srv.write_config()
    ic = Interconnect(layout, servers, exchange, key, str(key_file))
    if start:
        if exchange:
            exchange.start()
        for srv in servers.values():
            srv.start()
    return ic


def mask(number):
    """pv_phone_mask: '+', the first two and the last four digits, '*' between."""
    d = number[1:]
    return "+" + d[:2] + "*" * (len(d) - 6) + d[-4:]


def log_code(srv, domain, number):
    """The last code the log gateway of mod_phone wrote for number on domain, or None."""
    import re
    m = re.findall(rf"sms \(log gateway\) host={re.escape(domain)} to={re.escape(mask(number))} "
                   rf"code=(\d+)", srv.log_text())
    return m[-1] if m else None


# --- numbers without mod_phone's protocol ------------------------------------------------------

def seed_phone(srv, domain, user, number, findable=True, preferred=False, updated_ms=None):
    """Give user@domain a verified number by writing the phone table (schema
    004_phone.sql) of a provider that is NOT running (the data dir exists once users were
    added).  What mod_phone stores after a verified registration, without the SMS step."""
    import sqlite3
    assert not srv.running(), "seed_phone writes the database of a stopped server"
    updated_ms = int(time.time() * 1000) if updated_ms is None else updated_ms
    db = sqlite3.connect(str(srv.data_dir / "peyvand.sqlite"), timeout=10)
    try:
        with db:
            db.execute("INSERT OR REPLACE INTO phone (host, user, e164, findable, preferred, "
                       "updated_ms) VALUES (?, ?, ?, ?, ?, ?)",
                       (domain, user, number, int(findable), int(preferred), updated_ms))
    finally:
        db.close()


def registry_xml(kind, frm, jid, blinded=None, preferred=False, updated_ms=None, id=None,
                 to=EXCHANGE):
    """A <message type='normal'> carrying <publish/> or <withdraw/> (what a provider's
    mod_directory sends to the exchange), for a hand-written member server."""
    updated_ms = int(time.time() * 1000) if updated_ms is None else updated_ms
    id = id or rawxmpp.new_id("reg")
    attrs = f" jid={quoteattr(jid)} updated='{updated_ms}'"
    if blinded:
        attrs += f" blinded={quoteattr(blinded)}"
    if preferred:
        attrs += " preferred='true'"
    return (f"<message type='normal' from={quoteattr(frm)} to={quoteattr(to)} id={quoteattr(id)}>"
            f"<{kind} xmlns='{NS_DIRECTORY}'{attrs}/></message>")


# --- small helpers ---------------------------------------------------------------------------

def wait_for(fn, timeout=15, interval=0.2, what="condition"):
    """helpers.wait_until with the longer defaults that links between servers need."""
    return wait_until(fn, timeout, interval, what)


def iq_error(el):
    """(defined condition, application condition or None) of an iq error."""
    a = Answer(el)
    return a.error, a.app_error


__all__ = ["PROVIDERS", "EXCHANGE", "NS_DIRECTORY", "NS_PHONE", "blind", "module_available",
           "Answer", "Interconnect", "make_interconnect", "wait_for", "iq_error", "lookup_xml",
           "seed_phone", "registry_xml", "quoteattr"]
