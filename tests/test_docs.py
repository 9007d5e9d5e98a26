"""The repository's documentation stands alone: every `docs/<page>.md` or `docs/<page>.md#<section>` that the
code, tests, tools and docs point at exists, and nothing points at documents the repository does not hold."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("netgpt", "ray_jobs", "tools", "tests", "docs", "README.md")
SUFFIXES = (".py", ".md", ".yaml")
REFERENCE = re.compile(r"docs/([A-Za-z0-9_-]+\.md)(?:#([A-Za-z0-9_-]+))?")
OUTSIDE = ("SPEC" + " §", "contracts" + " §", "ENVIRONMENT" + ".md", "../" + "shared")
"""References to documents outside the repository (spelled in pieces so this file does not match itself)."""


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading anchor of a markdown page (outside code blocks), with GitHub's -1, -2 for repeats."""
    seen: dict[str, int] = {}
    found = set()
    in_code = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
            continue
        match = re.match(r"#{1,6} (.+)", line)
        if in_code or not match:
            continue
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def scanned_files() -> list[Path]:
    files = []
    for name in SCANNED:
        path = ROOT / name
        files += [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES)
    return [p for p in files if "__pycache__" not in p.parts]


def references() -> list[tuple[str, int, str, str | None]]:
    """(file, line, page, anchor) of every docs reference."""
    found = []
    for path in scanned_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for match in REFERENCE.finditer(line):
                found.append((str(path.relative_to(ROOT)), number, match.group(1), match.group(2)))
    return found


@pytest.mark.parametrize(
    ("heading", "expected"),
    [
        ("The seeds' fields", "the-seeds-fields"),
        ("`meta.json`", "metajson"),
        ("Positions: global batches, the same", "positions-global-batches-the-same"),
        ("What a checkpoint holds", "what-a-checkpoint-holds"),
    ],
)
def test_slug_follows_github(heading, expected):
    assert slug(heading) == expected


def test_repeated_headings_get_numbered_anchors(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# A\n## Notes\n```\n# not a heading\n```\n## Notes\n", encoding="utf-8")
    assert anchors(page) == {"a", "notes", "notes-1"}


def test_the_scan_finds_references():
    pages = {page for _, _, page, _ in references()}
    assert {"data.md", "graph.md", "model.md", "store.md", "evaluate.md"} <= pages


def test_every_docs_reference_names_a_page_and_section_that_exist():
    dangling = []
    for file, line, page, anchor in references():
        target = ROOT / "docs" / page
        if not target.is_file():
            dangling.append(f"{file}:{line}: docs/{page} does not exist")
        elif anchor is not None and anchor not in anchors(target):
            dangling.append(f"{file}:{line}: docs/{page} has no section #{anchor}")
    assert not dangling, "\n".join(dangling)


def test_nothing_points_outside_the_repository():
    outside = [
        f"{path.relative_to(ROOT)}:{number}: {needle!r}"
        for path in scanned_files()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        for needle in OUTSIDE
        if needle in line
    ]
    assert not outside, "\n".join(outside)


def test_the_docs_index_lists_every_page_and_only_pages_that_exist():
    index = ROOT / "docs" / "README.md"
    listed = re.findall(r"\]\(([A-Za-z0-9_-]+\.md)\)", index.read_text(encoding="utf-8"))
    pages = sorted(p.name for p in (ROOT / "docs").glob("*.md") if p.name != "README.md")
    assert sorted(set(listed)) == pages, f"docs/README.md lists {sorted(set(listed))}, docs/ holds {pages}"
    assert len(listed) == len(set(listed)), "a page listed twice"
