"""``ris user``: add, list, disable, enable and passwd, with one-line errors."""

from __future__ import annotations

from ris.services import RisService
from ris.settings import Settings
from tests.support.processes import run_ris


def test_add_list_disable_enable(settings: Settings, service: RisService) -> None:
    added = run_ris(
        settings, "user", "add", "anna", "--role", "frontdesk", "--password-stdin", stdin="a good password\n"
    )
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == "added user anna (frontdesk)"
    assert service.authenticate("anna", "a good password") is not None

    listed = run_ris(settings, "user", "list")
    assert listed.returncode == 0
    assert listed.stdout.splitlines()[1].split() == ["anna", "frontdesk", "active"]

    disabled = run_ris(settings, "user", "disable", "anna")
    assert disabled.returncode == 0, disabled.stderr
    assert service.authenticate("anna", "a good password") is None
    assert run_ris(settings, "user", "list").stdout.splitlines()[1].split() == ["anna", "frontdesk", "disabled"]

    assert run_ris(settings, "user", "enable", "anna").returncode == 0
    assert service.authenticate("anna", "a good password") is not None


def test_passwd(settings: Settings, service: RisService) -> None:
    run_ris(settings, "user", "add", "boss", "--role", "admin", "--password-stdin", stdin="first password\n")
    changed = run_ris(settings, "user", "passwd", "boss", "--password-stdin", stdin="second password\n")
    assert changed.returncode == 0, changed.stderr
    assert service.authenticate("boss", "first password") is None
    assert service.authenticate("boss", "second password") is not None


def test_errors_are_one_line(settings: Settings) -> None:
    run_ris(settings, "user", "add", "anna", "--role", "frontdesk", "--password-stdin", stdin="a good password\n")
    cases = {
        ("user", "add", "anna", "--role", "frontdesk", "--password-stdin"): "ris: user 'anna' already exists",
        ("user", "add", "bob", "--role", "frontdesk", "--password-stdin"): (
            "ris: password: must be at least 8 characters long"
        ),
        ("user", "add", "Bob Smith", "--role", "admin", "--password-stdin"): (
            "ris: username: may only hold lower-case letters"
        ),
        ("user", "disable", "nobody"): "ris: user 'nobody' does not exist",
    }
    for args, expected in cases.items():
        result = run_ris(settings, *args, stdin="short\n" if "bob" in args else "a good password\n")
        assert result.returncode == 1, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert result.stderr.startswith(expected), result.stderr


def test_unknown_role_is_refused(settings: Settings) -> None:
    result = run_ris(settings, "user", "add", "anna", "--role", "root", "--password-stdin", stdin="a good password\n")
    assert result.returncode == 2
    assert "invalid choice: 'root'" in result.stderr
