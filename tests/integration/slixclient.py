"""slixmpp (Debian's python3-slixmpp), configured for the test servers.

Client is a slixmpp ClientXMPP that
  - connects to 127.0.0.1:<port> and accepts the server's self-signed certificate,
  - authenticates with SCRAM-SHA-256 unless told otherwise (no channel binding: slixmpp
    only knows tls-unique, which TLS 1.3 does not define),
  - never answers subscription requests by itself (the tests do it explicitly),
  - records a copy of every incoming top-level element, so tests can wait for exact
    stanzas with `await c.wait_for(pred)` using the predicates from rawxmpp.
Every wait has a timeout.
"""
import asyncio
import copy
import ssl

import slixmpp
from slixmpp.exceptions import IqError

DEFAULT_PLUGINS = ("xep_0030", "xep_0199", "xep_0092", "xep_0049", "xep_0054", "xep_0203")


class LoginFailed(AssertionError):
    def __init__(self, why, condition=None):
        super().__init__(why)
        self.condition = condition


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid, password, mech="SCRAM-SHA-256", plugins=DEFAULT_PLUGINS,
                 register=False):
        super().__init__(jid, password)
        self.ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.use_ipv6 = False
        self.use_aiodns = False
        if mech:
            self["feature_mechanisms"].use_mech = mech
        default_cb = self["feature_mechanisms"].sasl_callback

        def no_channel_binding(required, optional):
            creds = default_cb(required, optional)
            if "channel_binding" in creds:
                creds["channel_binding"] = None
            return creds
        self["feature_mechanisms"].sasl_callback = no_channel_binding

        self.roster.auto_authorize = None
        self.roster.auto_subscribe = False
        for p in plugins:
            self.register_plugin(p)
        if register:
            # Relies on the server advertising the iq-register stream feature.
            self.register_plugin("xep_0077")
            # slixmpp 1.8 holds back every stanza until the session starts, the
            # registration iqs included ("NOT SENT"); let them through.
            self._always_send_everything = True
        self.received = []
        self._new = asyncio.Event()
        self.failed_auth_conditions = []
        self.stream_errors = []
        self.mechanisms_offered = []
        self._session = asyncio.get_event_loop().create_future()
        # login() reports failures itself; keep asyncio from warning about them again
        self._session.add_done_callback(lambda f: f.cancelled() or f.exception())
        self.is_disconnected = asyncio.Event()
        self.add_filter("in", self._record)
        self.add_event_handler("session_start", self._on_session_start)
        self.add_event_handler("failed_auth", self._on_failed_auth)
        self.add_event_handler("failed_all_auth", self._on_failed_all_auth)
        self.add_event_handler("disconnected", self._on_disconnected)
        self.add_event_handler("connection_failed", self._on_connection_failed)
        self.add_event_handler("stream_error", lambda e: self.stream_errors.append(e))

    # --- recording --------------------------------------------------------------
    def _record(self, stanza):
        try:
            el = copy.deepcopy(stanza.xml)
        except Exception:   # pragma: no cover - defensive, never lose the stanza
            el = stanza.xml
        self.received.append([el, False])
        if el.tag.endswith("}features"):
            for m in el.iter():
                if m.tag.endswith("}mechanism") and m.text:
                    self.mechanisms_offered.append(m.text)
        self._new.set()
        return stanza

    async def wait_for(self, pred, timeout=5.0, what="stanza"):
        """First recorded element (not yet returned by wait_for) matching pred."""
        loop = asyncio.get_event_loop()
        deadline = loop.time() + timeout
        while True:
            for rec in self.received:
                if not rec[1] and pred(rec[0]):
                    rec[1] = True
                    return rec[0]
            left = deadline - loop.time()
            if left <= 0:
                from rawxmpp import to_str
                recent = " | ".join(to_str(r[0])[:160] for r in self.received[-8:])
                raise AssertionError(f"{self.boundjid}: no {what} within {timeout}s; "
                                     f"last received: {recent}")
            self._new.clear()
            try:
                await asyncio.wait_for(self._new.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def none_for(self, pred, duration=1.0, what="stanza"):
        """Assert nothing matching pred arrives within `duration` seconds."""
        await asyncio.sleep(duration)
        hits = [r[0] for r in self.received if not r[1] and pred(r[0])]
        if hits:
            from rawxmpp import to_str
            raise AssertionError(f"{self.boundjid}: unexpected {what}: {to_str(hits[0])}")

    # --- events ---------------------------------------------------------------
    def _on_session_start(self, _):
        if not self._session.done():
            self._session.set_result(True)

    def _on_failed_auth(self, stanza):
        self.failed_auth_conditions.append(stanza["condition"])
        if not self._session.done():
            self._session.set_exception(
                LoginFailed(f"SASL failure: {stanza['condition']}", stanza["condition"]))

    def _on_failed_all_auth(self, _):
        if not self._session.done():
            self._session.set_exception(LoginFailed("no usable SASL mechanism"))

    def _on_connection_failed(self, err):
        if not self._session.done():
            self._session.set_exception(LoginFailed(f"connection failed: {err}"))

    def _on_disconnected(self, reason):
        self.is_disconnected.set()
        if not self._session.done():
            self._session.set_exception(LoginFailed(f"disconnected before session start: {reason}"))

    # --- life cycle -------------------------------------------------------------
    async def login(self, port, direct_tls=False, timeout=20, presence=True, roster=True,
                    priority=None):
        """Connect, authenticate, bind; then (by default) fetch the roster and send
        initial presence, which makes this an 'available resource' per RFC 6121."""
        self.connect(address=("127.0.0.1", port), use_ssl=direct_tls)
        try:
            await asyncio.wait_for(asyncio.shield(self._session), timeout)
        except asyncio.TimeoutError:
            self.abort()
            raise LoginFailed(f"{self.boundjid}: no session within {timeout}s") from None
        if roster:
            await asyncio.wait_for(self.get_roster(), 10)
        if presence:
            self.send_presence(ppriority=priority)
        return self

    def used_mechanism(self):
        mech = self["feature_mechanisms"].mech
        return mech.name if mech else None

    async def quit(self, wait=1.0):
        if self.transport is None:
            return
        try:
            await asyncio.wait_for(self.disconnect(wait=wait), wait + 4)
        except (asyncio.TimeoutError, Exception):
            self.abort()

    async def iq_get(self, payload_xml, to=None, timeout=10):
        """Send a raw iq get with the given child; returns the answer element (result
        or error) -- never raises on an error answer."""
        return await self._iq("get", payload_xml, to, timeout)

    async def iq_set(self, payload_xml, to=None, timeout=10):
        return await self._iq("set", payload_xml, to, timeout)

    async def _iq(self, type, payload_xml, to, timeout):
        from xml.etree import ElementTree as ET
        iq = self.Iq()
        iq["type"] = type
        if to is not None:
            iq["to"] = to
        iq.append(ET.fromstring(payload_xml))
        try:
            resp = await iq.send(timeout=timeout)
        except IqError as e:
            resp = e.iq
        return copy.deepcopy(resp.xml)
