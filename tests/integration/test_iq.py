"""IQ services of the server and of accounts: disco (XEP-0030), ping (XEP-0199), version
(XEP-0092), private XML storage (XEP-0049), vcard-temp (XEP-0054), and the
service-unavailable answer for namespaces nobody handles (RFC 6120 8.4)."""
import pytest

from helpers import USERS, jid
from rawxmpp import NS_CLIENT, stanza_error_condition, to_str

DISCO_INFO = "http://jabber.org/protocol/disco#info"
DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
NS_VERSION = "jabber:iq:version"
NS_PRIVATE = "jabber:iq:private"
NS_VCARD = "vcard-temp"


@pytest.fixture
def alice(server, slix, run):
    c = slix(jid("alice") + "/a", USERS["alice"])
    run(c.login(server.port))
    return c


def test_disco_info_and_items_of_the_server(alice, run):
    async def scenario():
        res = await alice.iq_get(f"<query xmlns='{DISCO_INFO}'/>", to="localhost")
        assert res.get("type") == "result", to_str(res)
        assert res.get("from") == "localhost", to_str(res)
        q = res.find(f"{{{DISCO_INFO}}}query")
        ids = [(i.get("category"), i.get("type")) for i in q.findall(f"{{{DISCO_INFO}}}identity")]
        assert ("server", "im") in ids, ids
        feats = {f.get("var") for f in q.findall(f"{{{DISCO_INFO}}}feature")}
        for need in (DISCO_INFO, DISCO_ITEMS, "urn:xmpp:ping", NS_VERSION, NS_PRIVATE, NS_VCARD):
            assert need in feats, f"{need} missing from server features {sorted(feats)}"
        res = await alice.iq_get(f"<query xmlns='{DISCO_ITEMS}'/>", to="localhost")
        assert res.get("type") == "result", to_str(res)
        assert res.find(f"{{{DISCO_ITEMS}}}query") is not None, to_str(res)
    run(scenario())


def test_disco_info_of_own_account(alice, run):
    async def scenario():
        # RFC 6121 / XEP-0030: the server answers for the bare JID of an account
        res = await alice.iq_get(f"<query xmlns='{DISCO_INFO}'/>", to=jid("alice"))
        assert res.get("type") == "result", to_str(res)
        assert res.find(f"{{{DISCO_INFO}}}query") is not None, to_str(res)
    run(scenario())


def test_ping_server(alice, run):
    async def scenario():
        res = await alice.iq_get("<ping xmlns='urn:xmpp:ping'/>", to="localhost")
        assert res.get("type") == "result", to_str(res)
        assert len(list(res)) == 0, f"ping result must be empty: {to_str(res)}"
        # slixmpp's own ping API
        rtt = await alice["xep_0199"].ping(jid="localhost", timeout=10)
        assert rtt >= 0
    run(scenario())


def test_version(alice, run):
    async def scenario():
        res = await alice.iq_get(f"<query xmlns='{NS_VERSION}'/>", to="localhost")
        assert res.get("type") == "result", to_str(res)
        q = res.find(f"{{{NS_VERSION}}}query")
        assert (q.findtext(f"{{{NS_VERSION}}}name") or "").lower().startswith("peyvand"), to_str(res)
        assert q.findtext(f"{{{NS_VERSION}}}version"), to_str(res)
    run(scenario())


def test_private_storage_round_trip(server, alice, slix, run):
    async def scenario():
        payload = ("<storage xmlns='storage:bookmarks'><conference jid='room@muc.example' "
                   "autojoin='true' name='The room'><nick>al</nick></conference></storage>")
        res = await alice.iq_set(f"<query xmlns='{NS_PRIVATE}'>{payload}</query>")
        assert res.get("type") == "result", to_str(res)
        res = await alice.iq_get(f"<query xmlns='{NS_PRIVATE}'><storage xmlns='storage:bookmarks'/></query>")
        assert res.get("type") == "result", to_str(res)
        conf = res.find(f"{{{NS_PRIVATE}}}query/{{storage:bookmarks}}storage/{{storage:bookmarks}}conference")
        assert conf is not None, to_str(res)
        assert conf.get("jid") == "room@muc.example" and conf.get("name") == "The room"
        assert conf.findtext("{storage:bookmarks}nick") == "al"
        # a namespace never stored: an empty element of that namespace comes back
        res = await alice.iq_get(f"<query xmlns='{NS_PRIVATE}'><prefs xmlns='urn:example:nothing'/></query>")
        assert res.get("type") == "result", to_str(res)
        assert res.find(f"{{{NS_PRIVATE}}}query/{{urn:example:nothing}}prefs") is not None, to_str(res)
        # nobody else can read it (XEP-0049: to another user -> forbidden)
        bob = slix(jid("bob") + "/b", USERS["bob"])
        await bob.login(server.port)
        res = await bob.iq_get(f"<query xmlns='{NS_PRIVATE}'><storage xmlns='storage:bookmarks'/></query>",
                               to=jid("alice"))
        assert res.get("type") == "error", f"bob read alice's private storage: {to_str(res)}"
        # bob's own storage is separate
        res = await bob.iq_get(f"<query xmlns='{NS_PRIVATE}'><storage xmlns='storage:bookmarks'/></query>")
        assert res.find(f".//{{storage:bookmarks}}conference") is None, to_str(res)
    run(scenario())


def test_vcard_set_get(server, alice, slix, run):
    async def scenario():
        card = (f"<vCard xmlns='{NS_VCARD}'><FN>Alice Example</FN><NICKNAME>al</NICKNAME>"
                f"<EMAIL><USERID>alice@example.org</USERID></EMAIL></vCard>")
        res = await alice.iq_set(card)
        assert res.get("type") == "result", to_str(res)
        res = await alice.iq_get(f"<vCard xmlns='{NS_VCARD}'/>")
        assert res.get("type") == "result", to_str(res)
        v = res.find(f"{{{NS_VCARD}}}vCard")
        assert v is not None and v.findtext(f"{{{NS_VCARD}}}FN") == "Alice Example", to_str(res)
        assert v.findtext(f"{{{NS_VCARD}}}EMAIL/{{{NS_VCARD}}}USERID") == "alice@example.org"
        # another user fetches it from the bare JID
        bob = slix(jid("bob") + "/b", USERS["bob"])
        await bob.login(server.port)
        res = await bob.iq_get(f"<vCard xmlns='{NS_VCARD}'/>", to=jid("alice"))
        assert res.get("type") == "result", to_str(res)
        assert res.get("from") == jid("alice"), to_str(res)
        assert res.find(f"{{{NS_VCARD}}}vCard/{{{NS_VCARD}}}NICKNAME").text == "al"
        # bob cannot overwrite it
        res = await bob.iq_set(f"<vCard xmlns='{NS_VCARD}'><FN>Mallory</FN></vCard>", to=jid("alice"))
        assert res.get("type") == "error", to_str(res)
        res = await alice.iq_get(f"<vCard xmlns='{NS_VCARD}'/>")
        assert res.find(f"{{{NS_VCARD}}}vCard/{{{NS_VCARD}}}FN").text == "Alice Example"
    run(scenario())


@pytest.mark.parametrize("to", ["localhost", "alice@localhost", None], ids=["server", "bare", "self"])
@pytest.mark.parametrize("type", ["get", "set"])
def test_unknown_namespace_is_service_unavailable(alice, run, to, type):
    async def scenario():
        payload = "<query xmlns='urn:example:no-such-protocol'><x/></query>"
        res = await (alice.iq_get(payload, to=to) if type == "get" else alice.iq_set(payload, to=to))
        assert res.get("type") == "error", to_str(res)
        assert stanza_error_condition(res) == "service-unavailable", to_str(res)
        err = res.find(f"{{{NS_CLIENT}}}error")
        assert err.get("type") == "cancel", to_str(res)
    run(scenario())


def test_iq_to_offline_full_jid_is_service_unavailable(alice, run):
    async def scenario():
        res = await alice.iq_get(f"<query xmlns='{NS_VERSION}'/>", to=jid("bob") + "/nowhere")
        assert res.get("type") == "error", to_str(res)
        assert stanza_error_condition(res) == "service-unavailable", to_str(res)
    run(scenario())


def test_iq_between_full_jids(server, alice, slix, run):
    async def scenario():
        bob = slix(jid("bob") + "/b", USERS["bob"])
        await bob.login(server.port)
        # slixmpp's xep_0092 answers version queries addressed to bob's full JID
        res = await alice.iq_get(f"<query xmlns='{NS_VERSION}'/>", to=str(bob.boundjid))
        assert res.get("type") == "result", to_str(res)
        assert res.get("from") == str(bob.boundjid)
    run(scenario())
