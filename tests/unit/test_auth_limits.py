"""The bounded, expiring counters behind failed-login limits and the password cache."""

from __future__ import annotations

from ocinest.registry.auth import Expiring, FailedLogins
from ocinest.registry.config import Config


def test_expiring_map_holds_at_most_its_size_oldest_out_first() -> None:
    m: Expiring[str, int] = Expiring(ttl=3600, size=3)
    for i, key in enumerate("abcde"):
        m.set(key, i)
    assert len(m) == 3
    assert [m.get(k, -1) for k in "abcde"] == [-1, -1, 2, 3, 4]
    m.set("c", 9)  # an update keeps its place (and expiry): c is still the oldest
    m.set("f", 5)
    assert m.get("c", -1) == -1 and m.get("f", -1) == 5


def test_expired_entries_go() -> None:
    m: Expiring[str, int] = Expiring(ttl=0, size=10)
    m.set("a", 1)
    assert m.get("a", -1) == -1 and m.remaining("a") == 0 and len(m) == 0


def test_failed_logins_per_user_and_address_and_per_address() -> None:
    limits = FailedLogins(Config(auth_fail_limit=2, auth_fail_limit_address=3))
    assert limits.attempt("192.0.2.1", "alice") == 0
    assert limits.attempt("192.0.2.1", "alice") == 0
    assert 0 < limits.attempt("192.0.2.1", "alice") <= 60  # alice from there: wait
    assert limits.attempt("192.0.2.2", "alice") == 0  # alice from elsewhere: not locked out
    assert limits.attempt("192.0.2.1", "bob") == 0
    limits.succeeded("192.0.2.1", "bob")  # a success is not a failure
    assert limits.attempt("192.0.2.1", "carol") == 0
    assert limits.attempt("192.0.2.1", "dave") > 0  # three failures from the address
    # Many user names from one address make few counters: the address limit stops them.
    before = len(limits._counts)
    for i in range(1000):
        limits.attempt("192.0.2.3", f"user{i}")
    assert len(limits._counts) == before + 1 + 3  # the address, and three users
