"""Shared names for the integration tests (users, JIDs, small helpers)."""
import time

USERS = {"alice": "alice-secret", "bob": "bob-secret", "carol": "carol-secret"}
DOMAIN = "localhost"


def jid(user, domain=DOMAIN):
    return f"{user}@{domain}"


def login_raw(raw_factory, server, user, resource="raw", password=None, **kw):
    """A logged-in raw client for `user` (password from USERS unless given)."""
    c = raw_factory(server.port)
    c.login(user, password or USERS[user], resource=resource, **kw)
    return c


def wait_until(cond, timeout=10.0, interval=0.1, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        time.sleep(interval)
