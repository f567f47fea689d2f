"""The operator's peering identity works for a UID with no passwd entry (as in the image)."""

from __future__ import annotations

import getpass

from flowreg.controller.run import operator_identity


def test_pod_name_is_the_identity(monkeypatch):
    monkeypatch.setenv("POD_ID", "flowreg-7cc7548c6b-lr8zb")
    assert operator_identity() == "flowreg-7cc7548c6b-lr8zb"


def test_a_uid_without_a_passwd_entry_still_gets_a_unique_identity(monkeypatch):
    monkeypatch.delenv("POD_ID", raising=False)
    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.delenv(name, raising=False)

    def no_entry() -> str:
        raise KeyError("getpwuid(): uid not found: 10001")

    monkeypatch.setattr(getpass, "getuser", no_entry)
    first, second = operator_identity(), operator_identity()
    assert first.startswith("uid") and "@" in first
    assert first != second
