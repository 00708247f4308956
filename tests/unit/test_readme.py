"""The README's configuration table and the example config stay in step with the settings."""

from __future__ import annotations

from pathlib import Path

from ris.settings import describe_settings, load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_readme_lists_every_setting() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [env for env, _default, _help in describe_settings() if f"| `{env}` |" not in readme]
    assert missing == []


def test_example_config_is_valid(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text((ROOT / "instance" / "config.example.toml").read_text(encoding="utf-8"))
    settings = load_settings(environ={"RIS_INSTANCE_PATH": str(tmp_path)})
    assert settings.timezone == "Europe/Berlin"
