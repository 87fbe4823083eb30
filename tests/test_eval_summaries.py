"""``edgecomp eval``: summaries from a tiny export, scores checked against references computed here,
resuming after an interrupted run, every script's ROUGE tokens, the paired bootstrap, bad input."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tiny import CORPUS

from edgecomp.errors import EdgecompError
from edgecomp.eval import rouge as rouge_module
from edgecomp.eval.bootstrap import mean_interval, paired_difference
from edgecomp.eval.compare import compare, load_scores
from edgecomp.eval.language_id import identify
from edgecomp.eval.run import PREDICTIONS, EvalOptions, evaluate
from edgecomp.export.pipeline import export_checkpoint

# One sentence a script/language the project scores, with a reference-like paraphrase.
SCRIPTS = {
    "en": "The council approved a new budget for schools and roads on Monday.",
    "es": "El consejo aprobó el lunes un nuevo presupuesto para escuelas y carreteras.",
    "fr": "Le conseil a approuvé lundi un nouveau budget pour les écoles et les routes.",
    "sw": "Baraza liliidhinisha bajeti mpya ya shule na barabara siku ya Jumatatu.",
    "id": "Dewan menyetujui anggaran baru untuk sekolah dan jalan pada hari Senin.",
    "vi": "Hội đồng đã thông qua ngân sách mới cho trường học và đường sá vào thứ Hai.",
    "hi": "परिषद ने सोमवार को स्कूलों और सड़कों के लिए नए बजट को मंज़ूरी दी।",
    "ar": "وافق المجلس يوم الاثنين على ميزانية جديدة للمدارس والطرق.",
    "ur": "کونسل نے پیر کے روز اسکولوں اور سڑکوں کے لیے نئے بجٹ کی منظوری دی۔",
    # segmented by the scorer's own word segmenters, which return spaces as tokens
    "th": "สภาเมืองอนุมัติงบประมาณใหม่ สำหรับโรงเรียนและถนน ในวันจันทร์ที่ผ่านมา",
    "zh": "市议会 周一 批准了 学校 和 道路 的 新 预算 方案",
}
IDENTIFIED = ("en", "es", "fr", "sw", "id", "vi", "hi", "ar", "ur")  # the project's languages
ENGLISH = "The Premier League has agreed to pay the fee to the player, according to the Daily Mail."


@pytest.mark.parametrize("lang", sorted(SCRIPTS))
def test_every_script_is_tokenized_into_words_not_spaces(lang):
    text = SCRIPTS[lang]
    toks = rouge_module.tokens(text, lang)
    assert len(toks) >= 8, toks
    assert all(t.strip() and not any(c.isspace() for c in t) for t in toks), toks
    assert rouge_module.tokens(text + "\u00a0\u3000 \t", lang) == toks  # odd spaces add nothing
    same = rouge_module.rouge([text], [text], lang)
    assert all(v == [100.0] for v in same.values())
    if lang != "en":
        # an English summary shares no word with a reference in another language
        assert rouge_module.rouge([text], [ENGLISH], lang)["rougeL"] == [0.0]


def test_blank_tokens_from_a_segmenter_are_dropped():
    wrapped = rouge_module._NoBlankTokens(lambda text: ["a", " ", "\u200b", "b", "\u3000"])
    assert wrapped("ignored") == ["a", "\u200b", "b"]


def test_unknown_rouge_language_is_refused():
    with pytest.raises(EdgecompError, match="no ROUGE tokenizer settings"):
        rouge_module.scorer("xx")


def _lcs(a, b):
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            table[i + 1][j + 1] = table[i][j] + 1 if x == y else max(table[i][j + 1], table[i + 1][j])
    return table[-1][-1]


def _rouge_l(ref: str, pred: str) -> float:
    """ROUGE-L F1 written out here, on lower-cased words with punctuation removed."""

    def norm(s: str) -> list[str]:
        return "".join(c if c.isalnum() or c.isspace() else " " for c in s.lower()).split()

    r, p = norm(ref), norm(pred)
    if not r or not p:
        return 0.0
    lcs = _lcs(r, p)
    return 0.0 if lcs == 0 else 100 * 2 * lcs / (len(r) + len(p))


@pytest.mark.parametrize(
    "pair",
    [
        ("mvua kubwa imesababisha mafuriko mjini", "mvua imesababisha hasara kubwa mjini"),
        ("serikali imetangaza mpango mpya", "mpango mpya wa serikali"),
        ("habari njema", "hakuna kitu"),
    ],
)
def test_rouge_l_matches_a_reference_implementation(pair):
    ref, pred = pair  # Swahili: the scorer has no stemmer for it, so words are compared as they are
    assert rouge_module.rouge([ref], [pred], "sw")["rougeL"][0] == pytest.approx(_rouge_l(ref, pred))


def test_language_identifier_on_short_sentences():
    langs = sorted(IDENTIFIED)
    assert identify([SCRIPTS[x] for x in langs]) == langs
    assert identify(["", "12 34"]) == ["??", "??"]


def test_bootstrap_on_known_inputs():
    constant = mean_interval([2.0] * 10)
    assert (constant.mean, constant.low, constant.high) == (2.0, 2.0, 2.0)
    x = np.random.default_rng(0).normal(5.0, 1.0, 400)
    m = mean_interval(x)
    assert m.low < 5.0 < m.high and m.high - m.low == pytest.approx(2 * 1.96 / 20, rel=0.2)
    shifted = paired_difference(x, x + 1.0)  # the same documents, each one point better
    assert (shifted.mean, shifted.low, shifted.high, shifted.p_not_better) == pytest.approx((1.0, 1.0, 1.0, 0.0))
    noise = np.random.default_rng(1).normal(0.0, 1.0, 400)
    noisy = paired_difference(x, x + noise - noise.mean())  # differences that average exactly zero
    assert noisy.low < 0 < noisy.high and 0.3 < noisy.p_not_better < 0.7
    worse = paired_difference(x + 1.0, x)
    assert worse.high == pytest.approx(-1.0) and worse.p_not_better == 1.0
    with pytest.raises(ValueError):
        paired_difference([1.0, 2.0], [1.0])


@pytest.fixture(scope="module")
def tiny_export(tiny_llama_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("eval-export") / "export"
    export_checkpoint(tiny_llama_dir, out, manifest={})
    return out


@pytest.fixture(scope="module")
def eval_pairs(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("eval-data") / "pairs.jsonl"
    rows = [{"id": f"doc-{i}", "text": " ".join(CORPUS[i : i + 3]), "summary": CORPUS[i]} for i in range(6)]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _options(model, data, out, **kw):
    return EvalOptions(model=model, data=data, lang="en", out=out, batch_size=2, max_new_tokens=6, **kw)


def test_eval_scores_its_own_predictions(tiny_export, eval_pairs, tmp_path):
    scores = evaluate(_options(tiny_export, eval_pairs, tmp_path / "ev"))
    rows = [json.loads(x) for x in (tmp_path / "ev" / PREDICTIONS).read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"doc-{i}" for i in range(6)]
    assert scores["documents"] == 6 and set(scores["per_document"]) == {r["id"] for r in rows}
    for r in rows:
        per = scores["per_document"][r["id"]]
        want = rouge_module.scorer("en").score(r["reference"], r["prediction"])
        assert per["rougeL"] == pytest.approx(100 * want["rougeL"].fmeasure)
        assert per["words"] == len(r["prediction"].split())
        assert per["target_lang"] == 100.0 * (r["lang_guess"] == "en")
        assert 1 <= r["new_tokens"] <= 6
    means = {k: v["mean"] for k, v in scores["metrics"].items()}
    per_document = [scores["per_document"][r["id"]]["rougeL"] for r in rows]
    assert means["rougeL"] == pytest.approx(np.mean(per_document), abs=1e-3)
    for m in scores["metrics"].values():
        assert m["low"] <= m["mean"] <= m["high"]
    assert json.loads((tmp_path / "ev" / "scores.json").read_text())["metrics"] == scores["metrics"]


def test_an_interrupted_eval_resumes_where_it_stopped(tiny_export, eval_pairs, tmp_path, monkeypatch):
    whole = evaluate(_options(tiny_export, eval_pairs, tmp_path / "whole"))
    # the module, not the same-named function the package exports
    summarize_module = importlib.import_module("edgecomp.runtime.summarize")
    real, calls = summarize_module.summarize_many, []

    def flaky(model, texts, *args, **kw):
        calls.append(len(texts))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(model, texts, *args, **kw)

    monkeypatch.setattr(summarize_module, "summarize_many", flaky)
    with pytest.raises(KeyboardInterrupt):
        evaluate(_options(tiny_export, eval_pairs, tmp_path / "cut"))
    path = tmp_path / "cut" / PREDICTIONS
    assert len(path.read_text().splitlines()) == 2
    with open(path, "a") as f:
        f.write('{"id": "doc-2", "predic')  # a line torn by a kill
    monkeypatch.setattr(summarize_module, "summarize_many", real)
    seen = []

    def counted(model, texts, *args, **kw):
        seen.append(len(texts))
        return real(model, texts, *args, **kw)

    monkeypatch.setattr(summarize_module, "summarize_many", counted)
    resumed = evaluate(_options(tiny_export, eval_pairs, tmp_path / "cut"))
    assert sum(seen) == 4  # only the documents not yet written
    assert resumed["per_document"] == whole["per_document"]
    assert len(path.read_text().splitlines()) == 6


def test_another_model_or_setting_in_the_same_folder_is_refused(tiny_export, eval_pairs, tmp_path):
    evaluate(_options(tiny_export, eval_pairs, tmp_path / "ev", limit=2))
    with pytest.raises(EdgecompError, match="another model, data or settings"):
        evaluate(_options(tiny_export, eval_pairs, tmp_path / "ev", limit=3))
    assert evaluate(_options(tiny_export, eval_pairs, tmp_path / "ev", limit=3, force=True))["documents"] == 3


def test_compare_pairs_documents_and_refuses_other_data(tiny_export, eval_pairs, tmp_path):
    a = evaluate(_options(tiny_export, eval_pairs, tmp_path / "a"))
    b = json.loads(json.dumps(a))
    for per in b["per_document"].values():
        per["rougeL"] += 2.0
    result = compare(a, b)
    d = result["metrics"]["rougeL"]["difference"]
    assert (d["mean"], d["low"], d["high"]) == pytest.approx((2.0, 2.0, 2.0))
    b["data_sha256"] = "other"
    with pytest.raises(EdgecompError, match="same documents"):
        compare(a, b)
    assert load_scores(tmp_path / "a")["documents"] == 6
    with pytest.raises(EdgecompError, match="not a scores.json"):
        bad = tmp_path / "bad.json"
        bad.write_text("[1, 2]")
        load_scores(bad)


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "edgecomp.cli", *args], capture_output=True, text=True, cwd=cwd)


@pytest.mark.parametrize(
    "case", ["missing-data", "not-jsonl", "not-export", "unknown-lang", "not-library", "bad-compare"]
)
def test_bad_input_is_one_line_and_exit_2(case, tiny_export, eval_pairs, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    args = {
        "missing-data": ["--model", tiny_export, "--data", tmp_path / "nope.jsonl", "--lang", "en"],
        "not-jsonl": ["--model", tiny_export, "--data", bad, "--lang", "en"],
        "not-export": ["--model", tmp_path, "--data", eval_pairs, "--lang", "en"],
        "unknown-lang": ["--model", tiny_export, "--data", eval_pairs, "--lang", "qqq"],
        "not-library": ["--data", eval_pairs, "--lang", "en", "--library", tmp_path],
        "bad-compare": ["--compare", bad, bad],
    }[case]
    r = _cli("eval", *map(str, args), "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("edgecomp: error:"), r.stderr
