"""The README's configuration table, .env.example and the settings say the same."""

import re
from pathlib import Path

from app.core.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def env_example_names() -> set[str]:
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE))


def readme_names() -> set[str]:
    section = (ROOT / "README.md").read_text().split("## Configuration", 1)[1].split("\n## ")[0]
    return set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)`", section, flags=re.MULTILINE))


def test_env_example_lists_every_setting() -> None:
    fields = set(Settings.model_fields) - {"LLM_PROVIDERS"}
    names = env_example_names()
    assert fields - names == set(), "add these to .env.example"
    assert {n for n in names if not n.startswith("LLM_PROVIDERS__")} - fields == set()
    assert any(n.startswith("LLM_PROVIDERS__") for n in names)


def test_readme_table_matches_env_example() -> None:
    documented = readme_names()
    listed = {n for n in env_example_names() if not n.startswith("LLM_PROVIDERS__")}
    assert listed - documented == set(), "add these to the README's configuration table"
    assert documented - listed - {"LLM_PROVIDERS__"} == set()
