"""Figures in README.md and docs/ are the benchmark JSON's, rendered by benchmarks/tables.py;
every result JSON says how it was made; the docs define every condition and stay small."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).parents[1]
RESULTS = ROOT / "benchmarks" / "results"
# results made before every benchmark recorded how it was made (issue 17): their tables say
# so, and `make bench` reruns them. This set may only shrink.
PENDING_RERUN: set[str] = set()


def _benchmark(name: str):
    sys.path.insert(0, str(ROOT / "benchmarks"))  # the scripts import provenance.py
    spec = importlib.util.spec_from_file_location(
        f"bench_{name}", ROOT / "benchmarks" / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # a dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def test_every_table_in_the_docs_is_rendered_from_its_json() -> None:
    tables = _benchmark("tables")
    for path in tables.DOCS:
        text = path.read_text()
        assert tables.render(text) == text, f"{path.name}: run python benchmarks/tables.py"


def test_the_readmes_prose_figures_are_the_jsons() -> None:
    """The figures README.md's limitations quote by hand (outside table blocks) say what
    the JSON says (an audit: nothing checked them)."""
    tables = _benchmark("tables")
    assert len(tables.readme_figures()) >= 10
    assert tables.stale_readme_figures() == []


def test_every_table_block_has_content_and_every_json_a_table() -> None:
    tables = _benchmark("tables")
    used = set()
    for path in tables.DOCS:
        for m in tables.BLOCK.finditer(path.read_text()):
            used.add(m.group(2))
            content = m.group(3)
            assert content.count("|") > 6 or "_Not measured yet:" in content, m.group(2)
    jsons = {p.stem for p in RESULTS.glob("*.json")}
    assert jsons - {"robustness-dev"} <= used, jsons - used


@pytest.mark.parametrize("path", sorted(RESULTS.glob("*.json")), ids=lambda p: p.name)
def test_every_result_says_how_it_was_made(path: Path) -> None:
    result = json.loads(path.read_text())
    if path.stem in PENDING_RERUN:
        assert "command" not in result, f"{path.name} was rerun: take it off PENDING_RERUN"
        assert f"to be rerun: `python benchmarks/{result['benchmark']}.py`" in _tables_text()
        return
    assert re.fullmatch(r"[0-9a-f]{40}", result["commit"]), result.get("commit")
    assert isinstance(result["dirty"], bool)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", result["date"])
    assert result["command"].startswith(f"python benchmarks/{result['benchmark']}.py")
    machine = result["machine"]
    assert machine["cpus"] >= 1 and machine["cpu"] and machine["python"]
    assert {"whichvoice", "torch", "numpy"} <= set(result["versions"])


def test_published_results_come_from_committed_code() -> None:
    """A dirty run is for development only: what the docs quote was made from a commit."""
    tables = _benchmark("tables")
    quoted = {m.group(2) for p in tables.DOCS for m in tables.BLOCK.finditer(p.read_text())}
    for name in quoted & {p.stem for p in RESULTS.glob("*.json")} - PENDING_RERUN:
        assert not json.loads((RESULTS / f"{name}.json").read_text())["dirty"], name


def test_every_result_can_be_rerun_as_recorded(tmp_path: Path) -> None:
    """`make bench` re-runs each result's own recorded command at its commit (review: the
    Makefile's commands had drifted from what made the JSON): every command maps, its scratch
    folders under the work folder and its --json to its own file."""
    rerun = _benchmark("rerun")
    for path in sorted(RESULTS.glob("*.json")):
        p = rerun.plan(path, tmp_path)
        assert p.argv[0] == f"benchmarks/{json.loads(path.read_text())['benchmark']}.py"
        for option, value in zip(p.argv, p.argv[1:], strict=False):
            if option in rerun.PATH_OPTIONS:
                assert Path(value).parent == tmp_path, (path.name, value)
            if option == rerun.JSON_OPTION:
                assert value == f"benchmarks/results/{path.stem}.json"
        assert not any(w.startswith("/") and not w.startswith(str(tmp_path)) for w in p.argv)
    bench = re.search(r"^bench:.*?\n\n", (ROOT / "Makefile").read_text(), re.M | re.S)
    assert bench and "benchmarks/rerun.py --all" in bench.group(0)


def test_rerun_refuses_what_it_cannot_reproduce(tmp_path: Path) -> None:
    rerun = _benchmark("rerun")
    made = {"commit": "a" * 40, "date": "2026-12-01T00:00:00+00:00", "dirty": False}
    cases = {
        "dirty": dict(made, dirty=True, command="python benchmarks/x.py"),
        "nocommand": dict(made),
        "other": dict(made, command="make bench"),
        "path": dict(made, command="python benchmarks/x.py --corpus /data/c"),
    }
    for name, result in cases.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(result))
        with pytest.raises(rerun.RerunError, match=name):
            rerun.plan(tmp_path / f"{name}.json", tmp_path / "work")


def _tables_text() -> str:
    tables = _benchmark("tables")
    return "\n".join(p.read_text() for p in tables.DOCS)


def test_the_soak_passed() -> None:
    result = json.loads((RESULTS / "soak.json").read_text())
    assert all(result["passed"].values()), result["passed"]


def test_every_condition_is_defined_in_the_evaluation_protocol() -> None:
    from whichvoice.conditions import SUITE

    text = (ROOT / "docs" / "evaluation.md").read_text()
    for c in SUITE:
        assert f"| `{c.name}` | {c.family} | {c.definition} |" in text, c.name


def test_the_readme_is_a_guide_not_a_notebook() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.encode()) <= 15_000
    assert "make test" in readme.split("##")[0] and "make demo" in readme.split("##")[0]
    assert readme.index("## Limitations") < readme.index("## A five-minute tour")
    for link in re.findall(r"\]\((docs/[\w-]+\.md)", readme):
        assert (ROOT / link).is_file(), link


def test_links_between_the_docs_lead_somewhere() -> None:
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target, anchor in re.findall(r"\]\(([\w./-]+\.md)(?:#([\w-]+))?\)", page.read_text()):
            path = (page.parent / target).resolve()
            assert path.is_file(), f"{page.name} -> {target}"
            if anchor:
                headings = re.findall(r"^#+ (.+)$", path.read_text(), re.M)
                slugs = {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-")
                         for h in headings}  # fmt: skip
                assert anchor in slugs, f"{page.name} -> {target}#{anchor}"


def test_a_result_json_holds_no_nan(tmp_path: Path) -> None:
    """A small run's rates of nothing were written as bare NaN, which JSON has not (review)."""
    provenance = _benchmark("provenance")
    provenance.write_result(tmp_path / "r.json", {"a": float("nan"), "b": [1.0, float("inf")]})

    def refuse(constant: str) -> None:
        raise ValueError(constant)

    assert json.loads((tmp_path / "r.json").read_text(), parse_constant=refuse) == {
        "a": None,
        "b": [1.0, None],
    }


def test_the_endings_a_folder_search_takes_are_the_documented_ones() -> None:
    from whichvoice.audio import AUDIO_SUFFIXES

    text = " ".join((ROOT / "docs" / "cli.md").read_text().split())
    listed = re.search(r"searched for these endings \(any case\): ([.a-z0-9 ]+);", text)
    assert listed is not None and set(listed.group(1).split()) == AUDIO_SUFFIXES


def test_verify_counts_a_voices_clips_as_one_cluster() -> None:
    """verify.json's rates (audit, stop 66): a voice's clips go right or wrong together, so
    the interval is over voices (pairs for false acceptances), not over clips."""
    verify = _benchmark("verify")
    voices, per_voice = 6, 8
    truth = np.repeat(np.arange(voices), per_voice)
    scores = np.full((truth.size, voices), 0.2)
    scores[np.arange(truth.size), truth] = 0.9
    scores[truth == 0, 0] = 0.1  # voice 0: every clip rejected
    scores[truth == 1, 2] = 0.95  # voice 1's clips all taken for voice 2
    r = verify.at_threshold(scores, truth, 0.5)
    rejected, accepted = r["false_rejection"], r["false_acceptance"]
    assert (rejected["k"], rejected["n"], rejected["units"]) == (8, 48, 6)
    assert (accepted["k"], accepted["n"], accepted["units"]) == (8, 48 * 5, 30)
    for x in (rejected, accepted):  # wider than the clips' Wilson interval
        assert x["ci95"][0] < x["ci95_clips"][0] and x["ci95"][1] > x["ci95_clips"][1]
    o = verify.open_set(scores, truth, 0.5, splits=10)
    # per split on average: half the voices (24 clips) enrolled, half strangers
    assert o["unknown_rejected"]["n"] + o["false_rejection"]["n"] == pytest.approx(48, abs=6)
    assert o["false_rejection"]["units"] <= voices and o["unknown_rejected"]["units"] <= voices
    assert o["false_rejection"]["ci95"][1] > o["false_rejection"]["ci95_clips"][1]
    # the shares are exact: averages over the splits are not rounded voice by voice (one bad
    # clip in half the splits, 0.5 a split, was rounded to none: a review)
    scores[(truth == 3).nonzero()[0][0], 4] = 0.99  # one clip of voice 3 taken for voice 4
    c = verify.split_counts(scores, truth, 0.5, 10)
    o = verify.open_set(scores, truth, 0.5, splits=10)
    assert o["misidentified"]["value"] == pytest.approx(c["misnamed"] / c["enrolled_clips"])
    assert o["false_rejection"]["value"] == pytest.approx(
        c["false_rejections"] / c["enrolled_clips"]
    )
