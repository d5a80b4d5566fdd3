"""Fixtures for the phone-number tests (issue 6, mod_phone, urn:peyvand:phone:0).  The
parent conftest's fixtures apply too (server_factory, raw, the SIGALRM bound, log tails
on failure, the sanitizer check of every server log).

  phone_server(**phone) -> pvserver.Server
      a peyvand whose host "localhost" has the default modules plus "phone", with
      hosts.localhost.phone = defaults below updated by **phone (log gateway,
      registration on, short limits so tests run fast); users alice/bob/carol
  webhook(status=200, delay=0) -> WebhookServer
      a tiny HTTP server on 127.0.0.1 (a thread of this test) that records every POST
      and answers with `status` after `delay` seconds; stopped at teardown
"""
import pytest

from phonelib import WebhookServer, phone_overrides


@pytest.fixture
def phone_server(server_factory):
    def make(users=None, **phone):
        kw = {} if users is None else {"users": users}
        return server_factory(phone_overrides(**phone), **kw)
    return make


@pytest.fixture
def webhook():
    made = []

    def make(status=200, delay=0.0):
        w = WebhookServer(status=status, delay=delay)
        made.append(w)
        return w
    yield make
    for w in made:
        w.stop()
