"""README true to the tree: every environment variable the code reads, and every engine and app module, is named."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def code_files() -> list[Path]:
    return [path for folder in ("engine", "app", "pages") for path in sorted((ROOT / folder).rglob("*.py"))]


def test_every_environment_variable_the_code_reads_is_in_the_readme_table():
    read = set()
    for path in code_files():
        read |= set(re.findall(r"os\.environ(?:\.get\(|\[)\s*\"(INFERENCE_KITCHEN_[A-Z_]+)\"", path.read_text()))
    assert len(read) >= 6  # the finder itself works: cache, data, cap, threads and the two redraw periods
    table = {
        name
        for line in README.splitlines()
        if line.startswith("|")
        for name in re.findall(r"`(INFERENCE_KITCHEN_[A-Z_]+)`", line)
    }
    assert read <= table, f"read by the code but missing from README's table: {sorted(read - table)}"
    assert table <= read, f"in README's table but read nowhere: {sorted(table - read)}"


def test_every_engine_and_app_module_is_named_in_how_it_is_built():
    section = README.split("## How it is built", 1)[1].split("\n## ", 1)[0]
    modules = [path for folder in ("engine", "app") for path in sorted((ROOT / folder).rglob("*.py"))]
    missing = [
        str(path.relative_to(ROOT))
        for path in modules
        if path.name not in ("__init__.py", "__main__.py") and f"`{path.name}`" not in section
    ]
    assert not missing, f"modules missing from README's 'How it is built': {missing}"
