"""experiments/peer_benchmark.py: the peer's figures under the project's names, the ratios,
and the one-line errors of `benchmark --peers`."""

from __future__ import annotations

import pytest

import conftest
from experiments import peer_benchmark


def _peer_json():
  return {"training": {"tgt_tokens_per_s": {"median": 2000.0}, "peak_rss_gib": 1.25},
          "peak_rss_gib": 1.5,
          "decoding": {"greedy": {"sentences": 1000, "search_sentences_per_s": 200.0,
                                  "whole_program_seconds": 8.0, "mean_output_len": 12.0,
                                  "whole_program_peak_rss_gib": 0.5},
                       "beam5": {"sentences": 1000, "search_sentences_per_s": 50.0,
                                 "whole_program_seconds": 20.0, "mean_output_len": 11.0,
                                 "whole_program_peak_rss_gib": 0.6}}}


def test_peer_figures_and_ratios_under_one_set_of_names():
  peer = peer_benchmark.theirs(_peer_json(), 5)
  assert peer["program_greedy_first_sentences_per_sec"] == 125.0
  assert peer["program_beam5_second_sentences_per_sec"] == 50.0
  assert peer["decode_peak_rss_gib"] == 0.6
  mine = {key: 2 * value for key, value in peer.items()}
  ratio = peer_benchmark.ratios(mine, peer, 5)
  assert set(ratio) == {k.format(b=5) for k in peer_benchmark.RATIO_KEYS}
  assert all(r == 2.0 for r in ratio.values())
  lines = peer_benchmark.table(mine, peer, ratio).splitlines()
  assert len(lines) == 1 + len(ratio) and lines[1].split()[-1] == "2.00"


def test_named_interpreter_is_used_as_given():
  assert peer_benchmark.peer_python("/some/python") == "/some/python"


@pytest.mark.parametrize("flags", [["--peers"], ["--peers", "--nodecode", "--data_dir=x"]])
def test_peers_without_data_or_decoding_is_one_line(flags):
  proc = conftest.run_program("benchmark", *flags)
  assert conftest.error_line(proc) == (
      "error: flag --peers: needs --data_dir, decoding, and no --decode_workdir (both sides "
      "decode models trained for the same steps here)")


def test_missing_peer_environment_is_named(tmp_path, monkeypatch):
  monkeypatch.setattr(peer_benchmark, "DEFAULT_PEERS_VENV", str(tmp_path / "venv"))
  try:
    import torch  # pylint: disable=g-import-not-at-top,unused-import
    pytest.skip("torch is importable here: this interpreter runs the peer")
  except ImportError:
    pass
  with pytest.raises(peer_benchmark.PeerError, match=f"{tmp_path / 'venv'}/bin/python does not"):
    peer_benchmark.peer_python("")
