"""Translation scores: the two BLEU protocols, chrF, signatures, buckets by length."""

from __future__ import annotations

import pytest

from attn_jax.evaluation import bleu

REFS = ["A man is riding a bike down the street.", "Two dogs play in the snow.",
        "A little girl in a pink dress smiles at the camera while holding a red balloon."]


def test_identical_output_scores_100():
  s = bleu.corpus_scores(REFS, REFS)
  assert s["bleu"] == pytest.approx(100.0) and s["bleu_tok_lc"] == pytest.approx(100.0)
  assert s["chrf"] == pytest.approx(100.0)
  assert "case:mixed" in s["bleu_signature"] and "tok:13a" in s["bleu_signature"]
  assert "case:lc" in s["bleu_tok_lc_signature"]


def test_lowercased_bleu_ignores_case_and_cased_does_not():
  s = bleu.corpus_scores([r.upper() for r in REFS], REFS)
  assert s["bleu_tok_lc"] == pytest.approx(100.0)
  assert s["bleu"] < 10.0


def test_13a_tokenisation_separates_punctuation():
  s = bleu.corpus_scores([r.replace(".", " .") for r in REFS], REFS)
  assert s["bleu_tok_lc"] == pytest.approx(100.0)


def test_empty_hypotheses_score_zero_and_mismatch_is_an_error():
  assert bleu.corpus_scores(["", "", ""], REFS)["bleu"] == 0.0
  with pytest.raises(ValueError, match="2 hypotheses but 3 references"):
    bleu.corpus_scores(REFS[:2], REFS)


def test_bleu_by_length_buckets():
  hyps = [REFS[0], "nothing alike here", REFS[2]]
  rows = bleu.bleu_by_length(hyps, REFS, [5, 7, 25], edges=(10, 20))
  assert [(r["bucket"], r["sentences"]) for r in rows] == [("1-10", 2), ("21+", 1)]
  assert rows[1]["bleu_tok_lc"] == pytest.approx(100.0)
  assert 0.0 < rows[0]["bleu_tok_lc"] < 100.0
