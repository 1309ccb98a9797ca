"""The docs stay true: the generated pages are up to date, the results page lists what it cannot
render, and the env reference names every observation field, info key and env default."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re

from benchmarks import config_page, results_page
from exposure_env import OBSERVATION_FIELDS, STEP_INFO_KEYS, ExposureEnvConfig

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def test_results_page_is_generated_from_the_committed_results():
    page = results_page.build_page(ROOT / "benchmarks" / "results")
    assert {"surrogate_sweep.json", "compare_controllers.json", "env_throughput.json"} <= set(page.rendered)
    assert page.text == (DOCS / "results.md").read_text(), "run: python -m benchmarks.results_page"


def test_results_page_lists_files_it_does_not_know(tmp_path):
    (tmp_path / "mystery.json").write_text(json.dumps({"x": 1}))
    (tmp_path / "motab.json").write_text(json.dumps({"a new shape": True}))
    page = results_page.build_page(tmp_path)
    assert page.rendered == [] and {name for name, _ in page.skipped} == {"mystery.json", "motab.json"}
    assert "`mystery.json`: no renderer" in page.text and "`motab.json`: shape not known" in page.text
    assert results_page.main(["--results-dir", str(tmp_path), "--out", str(tmp_path / "r.md")]) == 0
    assert results_page.main(["--results-dir", str(tmp_path), "--out", str(tmp_path / "r.md"), "--check"]) == 0


def test_configuration_page_is_generated_from_the_code():
    page = config_page.build_page()
    assert page.text == (DOCS / "configuration.md").read_text(), "run: python -m benchmarks.config_page"
    assert "| `lambda_gt` | `0.005` |" in page.text


def test_env_reference_names_every_observation_field_info_key_and_default():
    text = (DOCS / "env.md").read_text()
    for column, field in enumerate(OBSERVATION_FIELDS):
        assert re.search(rf"\| {column} \| `{field.name}` \| {field.low:g} \| {field.high:g} \|", text), field.name
    for key in STEP_INFO_KEYS:
        assert f"| `{key}` |" in text, key
    arguments = text[text.index("## Arguments"):]
    for f in dataclasses.fields(ExposureEnvConfig):
        row = re.search(rf"\| `{f.name}` \| `?([^`|]+)`? \|", arguments)
        assert row is not None and row.group(1).strip() == f"{f.default}", f.name


def test_docs_never_point_outside_the_repository():
    for path in [ROOT / "README.md", *DOCS.glob("*.md")]:
        assert "../shared" not in path.read_text(), path
    # the code's own docs cite the repository's methods page, not a document a user does not have
    for folder in ("agents", "distill_backend", "exposure_env", "benchmarks"):
        for path in (ROOT / folder).rglob("*.py"):
            assert not re.search(r"SPEC sections? \d|\.\./shared", path.read_text()), path
    for path in [ROOT / "README.md", *DOCS.glob("*.md")]:
        assert not re.search(r"SPEC sections? \d", path.read_text()), path
