"""docs/results.md and the README's results block are what bench/results/*.json render, and nothing else."""

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def results_doc():
    spec = importlib.util.spec_from_file_location("results_doc", REPO / "bench" / "results_doc.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_pages_match_the_results(results_doc):
    assert results_doc.stale() == [], "run python bench/results_doc.py and commit what it writes"


@pytest.fixture
def scratch(results_doc, tmp_path, monkeypatch):
    """The renderer pointed at a copy of the results, the pages and the README."""
    shutil.copytree(REPO / "bench" / "results", tmp_path / "results")
    (tmp_path / "docs").mkdir()
    shutil.copy(REPO / "docs" / "results.md", tmp_path / "docs" / "results.md")
    shutil.copy(REPO / "README.md", tmp_path / "README.md")
    monkeypatch.setattr(results_doc, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(results_doc, "RESULTS_MD", tmp_path / "docs" / "results.md")
    monkeypatch.setattr(results_doc, "README", tmp_path / "README.md")
    monkeypatch.setattr(results_doc, "REPO", tmp_path)
    return tmp_path


def test_a_changed_figure_makes_both_pages_stale_until_rendered(results_doc, scratch, monkeypatch):
    path = scratch / "results" / "bench_gaze.json"
    report = json.loads(path.read_text())
    report["decoders"][0]["groups"]["oracle"] = 0.123456
    path.write_text(json.dumps(report))
    assert results_doc.stale() == [results_doc.RESULTS_MD, results_doc.README]
    monkeypatch.setattr(sys, "argv", ["results_doc.py", "--check"])
    assert results_doc.main() == 1
    monkeypatch.setattr(sys, "argv", ["results_doc.py"])
    assert results_doc.main() == 0
    assert results_doc.stale() == []
    assert "| plain ridge | 0 | 0.123 |" in (scratch / "README.md").read_text()
    assert "| plain ridge | 0 | 0.123 |" in results_doc.RESULTS_MD.read_text()


def test_a_page_edited_by_hand_is_stale(results_doc, scratch):
    readme = scratch / "README.md"
    readme.write_text(readme.read_text().replace("| gaze ridge | 0.5 |", "| gaze ridge | 0.7 |", 1))
    assert results_doc.stale() == [results_doc.README]


def test_a_readme_without_the_block_is_refused(results_doc, scratch):
    (scratch / "README.md").write_text("# stream_decoder\n")
    with pytest.raises(ValueError, match="no <!-- results_doc: realism -->"):
        results_doc.stale()


def test_a_figure_from_another_simulator_is_marked_until_remade(results_doc, scratch):
    path = scratch / "results" / "bench_gaze.json"
    report = json.loads(path.read_text())
    for version, marked in (("0123456789ab", True), (results_doc.simulator_version(), False)):
        path.write_text(json.dumps(report | {"simulator": version}))
        assert (results_doc.EARLIER_SIMULATOR in results_doc.readme_block("decoders")) is marked
    step = json.loads((scratch / "results" / "bench_step.json").read_text()) | {"simulator": "0123456789ab"}
    assert results_doc.EARLIER_SIMULATOR not in results_doc.measured_by("bench_step", step)
