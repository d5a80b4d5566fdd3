"""Helpers for the consent tests (issue 4): the urn:peyvand:consent:0 IQ protocol
(src/modules/mod_consent.c), XEP-0191 blocking, vCards and roster items for the
recipients, barriers that make "nothing arrived" a fact rather than a timeout, and the
comparison of what a sender sees with what it sees for an account that does not exist.

Every helper takes a logged-in rawxmpp.RawClient.  Elements are xml.etree Elements
(Clark notation); raw bytes come from RawClient.raw_in (the decrypted stream).
Protocol: docs/protocol/consent.md."""
import calendar
import functools
import hashlib
import re
import subprocess
import time
from xml.sax.saxutils import escape, quoteattr

import pvserver
from rawxmpp import NS_CLIENT, NS_ROSTER, local, stanza_error_condition, to_str

NS_CONSENT = "urn:peyvand:consent:0"
NS_BLOCKING = "urn:xmpp:blocking"
NS_VCARD = "vcard-temp"
NS_FORWARD = "urn:xmpp:forward:0"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_RECEIPTS = "urn:xmpp:receipts"
NS_CHATSTATES = "http://jabber.org/protocol/chatstates"
NS_MARKERS = "urn:xmpp:chat-markers:0"
REPORT_SPAM = "urn:xmpp:reporting:spam"

BALE, EITAA, RUBIKA, SOROUSH = ("bale.localhost", "eitaa.localhost", "rubika.localhost",
                                "soroush.localhost")
ZERO_HASH = "0" * 64
SLOW = pvserver.SLOW    # under $PEYVAND_WRAPPER (valgrind) every wait is stretched


def t(seconds):
    return seconds * SLOW


def password(user):
    return f"pw-{user}"


def users(*names):
    """{user: password} for s2sharness.make_providers(users=...)."""
    return {n: password(n) for n in names}


def login(raw, srv, user, resource="raw", presence=True, priority=None):
    """A raw client logged in as user@srv.domain (initial presence unless told not)."""
    c = raw(srv.port, domain=srv.domain)
    c.login(user, password(user), resource=resource)
    if presence:
        c.presence(priority=priority)
    return c


def bare(j):
    return (j or "").split("/", 1)[0]


def cq(tag):
    return f"{{{NS_CONSENT}}}{tag}"


# --- the consent IQ protocol ---------------------------------------------------------

def consent_iq(c, type_, payload, to=""):
    """Send an iq in the consent namespace (to='' = no 'to': the account itself) and
    return the answer element (result or error)."""
    return c.iq(type_, payload, to=to, timeout=t(20))


def expect_result(res, what):
    assert res.get("type") == "result", f"{what}: expected a result, got {to_str(res)}"
    return res


def expect_error(res, condition, etype=None, what=""):
    assert res.get("type") == "error", f"{what}: expected error {condition}, got {to_str(res)}"
    got = stanza_error_condition(res)
    assert got == condition, f"{what}: expected <{condition}/>, got <{got}/>: {to_str(res)}"
    if etype:
        err = res.find(f"{{{NS_CLIENT}}}error")
        assert err is not None and err.get("type") == etype, \
            f"{what}: expected error type {etype!r}: {to_str(res)}"
    return res


def consent_xml(policy=None, providers=None, senders=None):
    attrs = f" policy={quoteattr(policy)}" if policy else ""
    kids = "".join(f"<provider domain={quoteattr(d)} policy={quoteattr(p)}/>"
                   for d, p in (providers or {}).items())
    kids += "".join(f"<sender jid={quoteattr(j)} rule={quoteattr(r)}/>"
                    for j, r in (senders or {}).items())
    return f"<consent xmlns='{NS_CONSENT}'{attrs}>{kids}</consent>"


def set_consent(c, policy=None, providers=None, senders=None):
    res = consent_iq(c, "set", consent_xml(policy, providers, senders))
    return expect_result(res, f"{c.jid}: consent set policy={policy} providers={providers} "
                              f"senders={senders}")


def settings(c):
    """The account's settings: {'policy', 'head', 'providers': {d: p}, 'senders': {j: r}}."""
    res = expect_result(consent_iq(c, "get", f"<consent xmlns='{NS_CONSENT}'/>"),
                        f"{c.jid}: consent get")
    el = res.find(cq("consent"))
    assert el is not None, f"consent get: no <consent/> in the result: {to_str(res)}"
    return {
        "policy": el.get("policy"),
        "head": int(el.get("head", "-1")),
        "providers": {p.get("domain"): p.get("policy") for p in el.findall(cq("provider"))},
        "senders": {s.get("jid"): s.get("rule") for s in el.findall(cq("sender"))},
        "el": el,
    }


def requests(c):
    """Held requests in the server's order: [{'from', 'count', 'bytes', 'first', 'last'}]."""
    res = expect_result(consent_iq(c, "get", f"<requests xmlns='{NS_CONSENT}'/>"),
                        f"{c.jid}: requests get")
    el = res.find(cq("requests"))
    assert el is not None, f"requests get: no <requests/>: {to_str(res)}"
    out = []
    for r in el.findall(cq("request")):
        out.append({"from": r.get("from"), "count": int(r.get("count")),
                    "bytes": int(r.get("bytes")), "first": r.get("first"),
                    "last": r.get("last"), "el": r})
    return out


def held(c, sender):
    """The stanzas held from sender (in order, the elements inside each <forwarded/>),
    or None when nothing is held (item-not-found)."""
    res = consent_iq(c, "get", f"<request xmlns='{NS_CONSENT}' from={quoteattr(sender)}/>")
    if res.get("type") == "error":
        expect_error(res, "item-not-found", what=f"{c.jid}: request from {sender}")
        return None
    el = res.find(cq("request"))
    assert el is not None, f"request get: no <request/>: {to_str(res)}"
    out = []
    for fw in el.findall(f"{{{NS_FORWARD}}}forwarded"):
        inner = [x for x in fw if local(x.tag) in ("message", "presence", "iq")]
        assert len(inner) == 1, f"a <forwarded/> must carry exactly one stanza: {to_str(fw)}"
        out.append(inner[0])
    return out


def held_bodies(stanzas):
    return [child_text(s, "body") for s in (stanzas or []) if local(s.tag) == "message"]


def child_text(el, name):
    for x in el:
        if local(x.tag) == name:
            return x.text
    return None


def request_action(c, action, jid, extra_attrs="", inner=""):
    j = f" jid={quoteattr(jid)}" if jid is not None else ""
    return consent_iq(c, "set", f"<{action} xmlns='{NS_CONSENT}'{j}{extra_attrs}>{inner}"
                                f"</{action}>")


def accept(c, jid):
    return expect_result(request_action(c, "accept", jid), f"{c.jid}: accept {jid}")


def decline(c, jid):
    return expect_result(request_action(c, "decline", jid), f"{c.jid}: decline {jid}")


def report(c, jid, reason=REPORT_SPAM, text=None):
    inner = f"<text>{escape(text)}</text>" if text else ""
    return expect_result(request_action(c, "report", jid, f" reason={quoteattr(reason)}", inner),
                         f"{c.jid}: report {jid}")


def history(c, after=None):
    """(verified attribute, [entries]) of the account's consent history export."""
    a = f" after={quoteattr(str(after))}" if after is not None else ""
    res = expect_result(consent_iq(c, "get", f"<history xmlns='{NS_CONSENT}'{a}/>"),
                        f"{c.jid}: history get")
    el = res.find(cq("history"))
    assert el is not None, f"history get: no <history/>: {to_str(res)}"
    entries = []
    for e in el.findall(cq("entry")):
        entries.append({"seq": int(e.get("seq")), "stamp": e.get("stamp"),
                        "prev": e.get("prev"), "hash": e.get("hash"),
                        "action": e.text or "", "el": e})
    return el.get("verified"), entries


def stamp_seconds(iso):
    """'2024-01-02T03:04:05Z' -> Unix seconds (the log stores whole seconds, UTC)."""
    return calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ"))


def entry_hash(prev, seq, stamp, action):
    """pv_store.h: lowercase hex SHA-256 of prev "\\n" seq "\\n" stamp "\\n" action, seq
    and stamp in decimal without leading zeros."""
    data = f"{prev}\n{int(seq)}\n{int(stamp)}\n".encode() + action.encode()
    return hashlib.sha256(data).hexdigest()


def check_chain(entries, first_prev=ZERO_HASH):
    """Every entry's prev is the previous entry's hash and its hash recomputes."""
    prev = first_prev
    for e in entries:
        assert re.fullmatch(r"[0-9a-f]{64}", e["hash"] or ""), f"hash not 64 hex: {to_str(e['el'])}"
        assert e["prev"] == prev, (f"entry {e['seq']}: prev={e['prev']} but the previous "
                                   f"entry's hash is {prev}: {to_str(e['el'])}")
        want = entry_hash(e["prev"], e["seq"], stamp_seconds(e["stamp"]), e["action"])
        assert e["hash"] == want, (f"entry {e['seq']}: hash {e['hash']} does not recompute "
                                   f"(SHA-256 of prev\\nseq\\nstamp\\naction = {want}): "
                                   f"{to_str(e['el'])}")
        prev = e["hash"]


# --- XEP-0191, vCard, roster ---------------------------------------------------------

def block(c, jid):
    res = c.iq("set", f"<block xmlns='{NS_BLOCKING}'><item jid={quoteattr(jid)}/></block>",
               to="", timeout=t(20))
    return expect_result(res, f"{c.jid}: XEP-0191 block {jid}")


def blocklist(c):
    res = expect_result(c.iq("get", f"<blocklist xmlns='{NS_BLOCKING}'/>", to="", timeout=t(20)),
                        f"{c.jid}: XEP-0191 blocklist")
    bl = res.find(f"{{{NS_BLOCKING}}}blocklist")
    assert bl is not None, to_str(res)
    return sorted(i.get("jid") for i in bl.findall(f"{{{NS_BLOCKING}}}item"))


def set_vcard(c, fn):
    res = c.iq("set", f"<vCard xmlns='{NS_VCARD}'><FN>{escape(fn)}</FN></vCard>", to="",
               timeout=t(20))
    return expect_result(res, f"{c.jid}: vCard set")


def roster_add(c, jid, name=None):
    n = f" name={quoteattr(name)}" if name else ""
    res = c.iq("set", f"<query xmlns='{NS_ROSTER}'><item jid={quoteattr(jid)}{n}/></query>",
               to="", timeout=t(20))
    return expect_result(res, f"{c.jid}: roster add {jid}")


def vcard_fn(res):
    v = res.find(f"{{{NS_VCARD}}}vCard")
    return None if v is None else child_text(v, "FN")


# --- barriers ------------------------------------------------------------------------

def remote_barrier(sender, domain, timeout=t(30)):
    """Ping the recipient's server `domain` from a remote sender and wait for the answer.
    The ping travels the same s2s link as everything the sender sent before it, and its
    answer the same link back as every answer to those stanzas: once it is here, the
    recipient's server has processed all of them and any answer has arrived."""
    res = sender.iq("get", "<ping xmlns='urn:xmpp:ping'/>", to=domain, timeout=timeout)
    assert res.get("type") == "result", f"barrier ping to {domain} failed: {to_str(res)}"


def local_barrier(c, timeout=t(20)):
    """A ping to the client's own server: everything routed to this session before it
    was processed has been written to the socket before the answer."""
    res = c.iq("get", "<ping xmlns='urn:xmpp:ping'/>", timeout=timeout)
    assert res.get("type") == "result", f"{c.jid}: ping failed: {to_str(res)}"


# --- what a sender sees ----------------------------------------------------------------

def raw_stanza(c, el):
    """The exact bytes of a received stanza (found in the stream by its id), or None."""
    id_ = el.get("id")
    if not id_:
        return None
    name = local(el.tag).encode()
    data = bytes(c.raw_in)
    for q in (b"'", b'"'):
        needle = b"id=" + q + escape(id_, {"'": "&apos;", '"': "&quot;"}).encode() + q
        pos = data.find(needle)
        while pos >= 0:
            start = data.rfind(b"<", 0, pos)
            tagname = data[start + 1:].split(None, 1)[0].split(b">", 1)[0]
            if tagname.split(b":")[-1] == name:
                gt = data.find(b">", pos)
                if data[gt - 1:gt] == b"/":
                    return data[start:gt + 1]
                end = data.find(b"</" + tagname + b">", gt)
                if end >= 0:
                    return data[start:end + len(tagname) + 3]
            pos = data.find(needle, pos + 1)
    return None


def sender_view(c, recipient_bare, ids, probe_ids=()):
    """What the sender received about one probe: the stanzas answering one of `ids`,
    plus anything unsolicited from the recipient's address (a stanza from it whose id is
    not among `probe_ids`, the ids of everything the sender sent).  As bytes normalised
    for comparison: the stanza id becomes {ID} and the recipient's bare JID {RCPT} (they
    necessarily differ between two recipients); nothing else is touched."""
    out = []
    for el in c.seen:
        if local(el.tag) not in ("message", "presence", "iq"):
            continue
        answers = el.get("id") in ids
        unsolicited = bare(el.get("from")) == recipient_bare and el.get("id") not in probe_ids
        if not (answers or unsolicited):
            continue
        b = raw_stanza(c, el)
        if b is None:
            b = to_str(el).encode()
        if el.get("id"):
            for q in ("'", '"'):
                b = b.replace(f"id={q}{el.get('id')}{q}".encode(), f"id={q}{{ID}}{q}".encode())
        b = b.replace(recipient_bare.encode(), b"{RCPT}")
        out.append(b)
    return out


def errors_to(c, ids):
    return [el for el in c.seen if el.get("type") == "error" and el.get("id") in ids]


# --- providers ---------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def has_module(name):
    """Whether this peyvand knows module `name` (`--check-config` on a one-host config)."""
    s = pvserver.Server({"hosts": {"localhost": pvserver.host_config(
        "localhost", modules=pvserver.DEFAULT_MODULES + [name])}})
    try:
        p = subprocess.run([s.bin, "--config", str(s.config_path), "--check-config"],
                           capture_output=True, text=True, timeout=60)
        return p.returncode == 0
    finally:
        s.cleanup()


BLOCKING = has_module("blocking")
MODULES = pvserver.DEFAULT_MODULES + ["consent"] + (["blocking"] if BLOCKING else [])


def need_blocking(what="this test"):
    assert BLOCKING, (f"{what} needs XEP-0191, but this peyvand has no 'blocking' module "
                      f"(`peyvand --check-config` rejects hosts.<d>.modules: [blocking])")


def host_overrides(domains, consent=None, members=None, per_host=None):
    """hosts.<d> overrides for s2sharness.make_providers: the default modules plus
    consent (and blocking when built), the `consent:` section, and bale.localhost
    members-only when `members` is given."""
    hosts = {}
    for d in domains:
        h = {"modules": list(MODULES)}
        if consent:
            h["consent"] = dict(consent)
        if members is not None and d == BALE:
            h["interconnect"] = {"mode": "members", "members": {m: {} for m in members}}
        h.update((per_host or {}).get(d, {}))
        hosts[d] = h
    return hosts
