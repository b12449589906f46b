"""``sipresponder --rules FILE --check`` on every rule file in ``examples/``, and a broken file.

Every example passes ``--check`` with one summary line per rule and says in its top
comment what it does and how to run it; a file with a typo fails ``--check``, and the
start, with one line that names the file, the rule, its line and the field.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from examplekit import (
    BROKEN,
    EXAMPLE_FILES,
)


def run_check(path: Path) -> subprocess.CompletedProcess[str]:
    """``sipresponder --rules PATH --check``; it exits by itself (killed after 20 s)."""
    return subprocess.run(
        [sys.executable, "-m", "sipresponder", "--rules", str(path), "--check"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_example_passes_check(path: Path) -> None:
    result = run_check(path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    doc = yaml.safe_load(path.read_text("utf-8"))
    rules = doc["rules"]
    lines = result.stdout.splitlines()
    # One summary line per rule, in order, then the default and the seed if any, then OK.
    expected = len(rules) + ("default" in doc) + ("seed" in doc) + 1
    assert len(lines) == expected, result.stdout
    for i, rule in enumerate(rules, start=1):
        assert lines[i - 1].startswith(f"rule {i} {rule['name']!r} (line "), lines[i - 1]
    if "seed" in doc:
        assert f"seed {doc['seed']}" in result.stdout
    assert re.fullmatch(rf"{re.escape(str(path))}: OK, {len(rules)} rules?", lines[-1]), lines


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_example_says_what_it_does_and_how_to_run_it(path: Path) -> None:
    text = path.read_text("utf-8")
    head = text.split("\n\n", 1)[0]
    assert head.startswith(f"# {path.name} — "), head[:80]
    assert f"sipresponder --rules examples/{path.name}" in text


def test_broken_file_fails_check_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN, encoding="utf-8")
    result = run_check(path)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    # The file, the rule (index and line), the field, the problem.
    assert lines[0].startswith("sipresponder: error: "), lines[0]
    # The line is the faulty step's own (11), within rule 2 (which starts on line 7).
    assert f"{path}: rule 2 (line 11): plan[1].retry_afer: unknown field" in lines[0]


def test_broken_file_stops_the_start_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "sipresponder", "--port", "0", "--rules", str(path)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert result.returncode == 2
    assert "listening" not in result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and f"{path}: rule 2 (line " in lines[0], result.stderr
    assert "plan[1].retry_afer" in lines[0]
