"""Citations a machine can check: every option of the audited methods names its source (a quoted
citation of the reference, "ours" and why, or a paper section), and scripts/check_citations.py
finds a quote at its cited line or reports the miss."""

import importlib.util
from pathlib import Path

import pytest

from unlearnbench.method_defaults import Citation, citations, method_rows, sourced

ROOT = Path(__file__).resolve().parents[1]

# the methods audited against their references with quoted citations (issue 35)
AUDITED = (
    "residual-routing",
    "tuned-lens",
    "sequential-unlearn",
    "orthogonal-circuit-breakers",
    "era",
    "demix",
    "rewritten-transfer",
    "circuit-breakers",
    "filter",
    "no-filter",
    "npo",
    "grad-ascent",
    "grad-diff",
    "sgtm",
    "activation-masking",
    "gradient-routing",
    "rmu",
    "checkpoint-transfer",
)


def load_script():
    spec = importlib.util.spec_from_file_location(
        "check_citations", ROOT / "scripts/check_citations.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("method", AUDITED)
def test_every_option_cites_a_quote_or_says_ours_or_a_paper_section(method):
    bare = [f"{r.name}: {r.source!r}" for r in method_rows(method) if not sourced(r.source)]
    assert not bare, "sources without a quote, 'ours' or a paper section:\n" + "\n".join(bare)


def test_sourced_refuses_a_bare_file_and_line():
    assert not sourced("reference: trainer.py:361")  # the file:line alone is not checkable
    assert not sourced('the value "0.95"')  # a quote without a place
    assert sourced('trainer.py:361 "betas=(0.9, 0.95)"')
    assert sourced("ours: more steps for the tiny model")
    assert sourced("Cloud et al. 2024, TinyStories section")


def test_citations_parse_quotes_ranges_and_bare_lines():
    text = (
        'trainer.py:259 "data_split_order = x", :510 "label =" and '
        'lens_unlearn.py:532 \'retain_loss_type: Literal["l2", "kl"] = "kl"\', '
        'model.py:213-215 (no quote), then (:216 "y")'
    )
    assert citations(text) == [
        Citation("trainer.py", 259, 259, "data_split_order = x"),
        Citation("trainer.py", 510, 510, "label ="),
        Citation("lens_unlearn.py", 532, 532, 'retain_loss_type: Literal["l2", "kl"] = "kl"'),
        Citation("model.py", 216, 216, "y"),  # the file mentioned last
    ]


@pytest.fixture
def refs(tmp_path):
    repo = tmp_path / "refs" / "some-reference" / "src"
    repo.mkdir(parents=True)
    lines = [f"# line {i}" for i in range(1, 21)]
    lines[9] = "    optimizer = AdamW(params,"  # line 10
    lines[10] = "        betas=(0.9,  0.95))"  # line 11, spaces differ from the quote
    (repo / "trainer.py").write_text("\n".join(lines) + "\n")
    return tmp_path / "refs"


def test_check_finds_the_quote_near_its_line_and_reports_misses(refs):
    script = load_script()
    hit = Citation("src/trainer.py", 12, 12, "betas=(0.9, 0.95))")  # one line off: near enough
    assert script.check(refs, "", "", hit) is None
    spanning = Citation("trainer.py", 10, 11, "AdamW(params, betas=(0.9, 0.95))")
    assert script.check(refs, "", "", spanning) is None
    far = Citation("trainer.py", 19, 19, "betas=(0.9, 0.95))")
    assert "the text is at some-reference/src/trainer.py:11" in script.check(refs, "", "", far)
    wrong = Citation("trainer.py", 11, 11, "betas=(0.9, 0.999)")
    assert "not in the file" in script.check(refs, "", "", wrong)
    missing = Citation("other.py", 1, 1, "x")
    assert script.check(refs, "", "", missing) == "no such file in the references"


def test_the_script_lists_misses_and_refuses_a_missing_folder(refs, tmp_path, capsys):
    script = load_script()
    assert script.main([str(tmp_path / "nowhere")]) == 2
    assert script.main([str(refs)]) == 1  # the project's citations are not in this reference
    out = capsys.readouterr().out.splitlines()
    assert out[-1].endswith("missed") and any(line.startswith("MISS ") for line in out)
