from test_consent_table import *
def test_dump(world):
    w = world
    print("setup", w.setup_seconds, "refusal", w.refusal_logged)
    for s in SETTINGS:
        print(s, "received", [(el.get("from"), local(el.tag), el.get("type"), el.get("id")) for el in w.received[s]][:40])
        for k in SENDERS:
            print("  held", s, k, [(local(e.tag), e.get("type"), e.get("id")) for e in (w.held[(s,k)] or [])])
    snd = w.snd["member-stranger"]
    print(sender_view(snd, recipient("off"), {"i-off-member-stranger"}, w.probe_ids["member-stranger"]))
    print(sender_view(snd, GHOST, {"i-ghost-member-stranger"}, w.probe_ids["member-stranger"]))
    print([to_str(e)[:300] for e in w.snd["non-member"].seen if e.get("type") == "error"][:3])
    assert 0
