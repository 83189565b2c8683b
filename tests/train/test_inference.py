"""inference.translate: chunks and cut lines give what one pass over whole lines gives."""

from __future__ import annotations

import numpy as np
import pytest

import helpers
from attn_jax.data import translation
from attn_jax.decode import searches
from attn_jax.evaluation.held_out import Example
from attn_jax.train import inference, loop

pytestmark = pytest.mark.slow

SENTENCES = ["the red cat", "", "a big dog sits on the bird", "cat runs", "the bird",
             "a dog and a cat sit on the mat", "   ", "the big red bird runs"] * 3


@pytest.fixture(scope="module")
def model(tmp_path_factory):
  root = tmp_path_factory.mktemp("inference")
  data_dir = helpers.write_corpus(root)
  config = helpers.tiny_config(
      data_overrides=dict(task="translation", data_dir=data_dir, vocab_size=300, max_len=15),
      train_overrides=dict(num_steps=4, eval_every=4, checkpoint_every=4, num_plots=0))
  workdir = str(root / "run")
  loop.train_and_evaluate(config, workdir)
  return inference.load(workdir, "latest")


def _texts(model, outputs):
  return [inference.detokenize(o, model) for o in outputs]


def test_chunks_give_the_lines_of_one_pass_and_compile_as_often(model):
  search = searches.make_search(model.search_config, 2, 0.6, slots=3)
  whole_stages, chunk_stages, seen = {}, {}, []
  whole = inference.translate(model, SENTENCES, search, 3, whole_stages)
  chunked = inference.translate(model, SENTENCES, search, 3, chunk_stages, chunk_lines=5,
                                done=lambda first, out: seen.append((first, len(out))))
  assert _texts(model, chunked) == _texts(model, whole)
  assert seen == [(0, 5), (5, 5), (10, 5), (15, 5), (20, 4)]  # input order, every line once
  assert chunk_stages["compilations"] == whole_stages["compilations"]
  assert [o is None for o in chunked] == [not s.strip() for s in SENTENCES]


def test_a_cut_line_is_its_pieces_translated_and_joined(model, capsys):
  search = searches.make_search(model.search_config, 1, 0.0, with_weights=True, slots=2)
  line = "the red cat sits on the mat and the big dog runs"
  vocab, limit = model.vocabs.src, 9  # longer than any word: every cut before a word
  (cut,) = inference.translate(model, [line], search, 2, max_source_len=limit)
  assert "warning: line 1: " in capsys.readouterr().err
  ids = np.asarray(vocab.encode(line), np.int32)
  pieces = translation.cut(ids, limit, vocab)
  texts = [vocab.decode(p) for p in pieces]
  assert len(pieces) > 1 and [vocab.encode(t) for t in texts] == [p.tolist() for p in pieces]
  alone = inference.translate(model, texts, search, 2, max_source_len=limit)
  np.testing.assert_array_equal(cut.src, np.concatenate([p.src for p in alone]))
  np.testing.assert_array_equal(cut.output, np.concatenate([p.output for p in alone]))
  row = col = 0
  for p in alone:  # each piece's weights on the diagonal, zeros elsewhere
    block = cut.weights[row:row + len(p.output)]
    np.testing.assert_array_equal(block[:, col:col + len(p.src)], p.weights)
    assert not block[:, :col].any() and not block[:, col + len(p.src):].any()
    row, col = row + len(p.output), col + len(p.src)


def test_joined_without_weights():
  a = Example(np.array([5, 2]), np.array([7, 2]), np.zeros((2, 0), np.float32))
  b = Example(np.array([6, 2]), np.array([8, 9, 2]), np.zeros((3, 0), np.float32))
  joined = inference._joined([a, b])  # pylint: disable=protected-access
  assert joined.output.tolist() == [7, 2, 8, 9, 2] and joined.weights.shape == (5, 4)
