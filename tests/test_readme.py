"""Every Python block in the README runs as written, from the repository root."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def test_the_readme_has_python_blocks():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_block_runs(code, tmp_path):
    # Run in a copy of the layout the README assumes (examples/ at hand), without writing into the repo.
    (tmp_path / "examples").symlink_to(ROOT / "examples", target_is_directory=True)
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_link_between_the_docs_leads_somewhere():
    """A link to a heading renamed since (the model card's history) led nowhere."""
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "weights" / "MODEL_CARD.md"]
    broken = []
    for doc in docs:
        for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            path, _, anchor = target.partition("#")
            file = (doc.parent / path).resolve() if path else doc
            if not file.exists():
                broken.append(f"{doc.name}: {target} (no such file)")
            elif anchor and file.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", file.read_text(), flags=re.M)
                if anchor not in {_anchor(h) for h in headings}:
                    broken.append(f"{doc.name}: {target} (no such heading)")
    assert broken == []


def test_a_table_ends_before_the_text_after_it():
    """Lines right after a table are read as more of its rows (GitHub's Markdown): a paragraph
    vanished into the 98-point table."""
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "weights" / "MODEL_CARD.md"]
    run_on = []
    for doc in docs:
        lines = doc.read_text().splitlines()
        for i, (line, after) in enumerate(zip(lines, lines[1:])):
            if line.startswith("|") and after.strip() and not after.startswith("|"):
                run_on.append(f"{doc.name}:{i + 2}: {after[:40]}")
    assert run_on == []
