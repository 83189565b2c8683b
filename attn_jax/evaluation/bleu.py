"""Corpus-level translation scores through sacreBLEU, with their signatures.

* ``bleu``: sacreBLEU as published by default (cased, 13a tokenisation).
* ``bleu_tok_lc``: tokenised lowercased BLEU (lowercase=True, tokenize='13a'),
  the protocol Multi30k papers report.
* ``chrf``: chrF (Popovic 2015), default sacreBLEU settings.

Hypotheses and references are detokenised text, one sentence each.
"""

from __future__ import annotations

from attn_jax.evaluation import metrics


def corpus_scores(hyps: list[str], refs: list[str]) -> dict[str, float | str]:
  """{"bleu", "bleu_tok_lc", "chrf"} and their sacreBLEU signatures ("..._signature")."""
  from sacrebleu.metrics import BLEU, CHRF  # pylint: disable=g-import-not-at-top
  # (imported here: the programs that only translate never load sacreBLEU)
  if len(hyps) != len(refs):
    raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")
  out: dict[str, float | str] = {}
  for name, metric in (("bleu", BLEU()), ("bleu_tok_lc", BLEU(lowercase=True, tokenize="13a")),
                       ("chrf", CHRF())):
    out[name] = float(metric.corpus_score(hyps, [refs]).score)
    out[f"{name}_signature"] = str(metric.get_signature())
  return out


def bleu_by_length(hyps: list[str], refs: list[str], src_lengths: list[int],
                   edges: tuple[int, ...] = (10, 20, 30, 40, 50)) -> list[dict]:
  """Tokenised lowercased BLEU of the sentences in each source-length bucket.

  Buckets are [1, e_0], (e_0, e_1], ..., (e_last, inf) in source words; empty ones
  are left out. Returns [{"bucket": "1-10", "sentences": n, "bleu_tok_lc": x}, ...].
  """
  from sacrebleu.metrics import BLEU  # pylint: disable=g-import-not-at-top
  metric = BLEU(lowercase=True, tokenize="13a")
  rows = []
  for label, idx in metrics.length_groups(src_lengths, edges).items():
    score = metric.corpus_score([hyps[i] for i in idx], [[refs[i] for i in idx]]).score
    rows.append({"bucket": label, "sentences": len(idx), "bleu_tok_lc": float(score)})
  return rows
