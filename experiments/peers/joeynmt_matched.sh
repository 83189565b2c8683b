#!/usr/bin/env bash
# Times Joey NMT 2.3.0 on the matched configuration (joeynmt_matched.yaml) on the CPU.
#
#   experiments/peers/joeynmt_matched.sh prepare   # data, vocabulary file, $WORK/train.yaml
#   experiments/peers/joeynmt_matched.sh train     # STEPS updates, then the training figures
#   experiments/peers/joeynmt_matched.sh decode    # greedy and beam 5 on test_2016_flickr
#   experiments/peers/joeynmt_matched.sh all       # the three in turn
#
# Environment (defaults): PY=/tmp/venv_peers/bin/python (requirements-peers.txt),
# DATA=<repo>/../shared/data/multi30k, SPM=/tmp/peers/spm.ende.model (the joint 8,000-piece
# model of attn_jax.data.vocab.train), WORK=/tmp/peers/joey, STEPS=240, LOG_EVERY=40, SENTENCES=1000.
#
# Training figures: Joey logs "Tokens per Sec" every LOG_EVERY updates: target tokens (subwords
# + EOS, no BOS, the loss's count) over the wall time since the previous log line, data loading
# and on-the-fly SentencePiece encoding included. The first window is the warm-up; the others
# (5 with the defaults) are summarised as median and range. Sentences/s come from the log's
# millisecond timestamps (64 x LOG_EVERY sentences per window); source+target tokens/s is an
# estimate, target tokens/s x (source + target) / target tokens of the training corpus, as Joey
# does not log source tokens and draws its batches at random. Peak RSS: /usr/bin/time -v.
#
# Decoding figures: `joeynmt translate` on the first SENTENCES lines of test_2016_flickr.en with
# the model just trained; "Generation took" in translate.log is the search (batches of 64 in file
# order, encoder included); the whole program (start-up, loading, SentencePiece, writing) is
# timed from the shell. Translations go to stdout: 2.3.0's `translate -o FILE` fails (n_best).
#
# Forced deviations from bench_matched.flags: random batches instead of length buckets; the
# output layer and the attention keys have no bias; dropout falls on [E y_{t-1}; h~_{t-1}]
# (the fed attentional vector too) and on [h_t; c_t], not on E y_{t-1} and h~_t; the decoding
# limit is int(1.5 x the longest source of the batch, EOS counted) for the whole batch, not
# ceil(1.5 n) + 10 tokens and EOS per sentence; default initialisers (xavier / normal).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
PY=${PY:-/tmp/venv_peers/bin/python}
DATA=${DATA:-$HERE/../../../shared/data/multi30k}
SPM=${SPM:-/tmp/peers/spm.ende.model}
WORK=${WORK:-/tmp/peers/joey}
STEPS=${STEPS:-240}
LOG_EVERY=${LOG_EVERY:-40}
SENTENCES=${SENTENCES:-1000}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} MKL_NUM_THREADS=${MKL_NUM_THREADS:-2}

prepare() {
  mkdir -p "$WORK/data"
  for split in train val test_2016_flickr; do
    for lang in en de; do
      gzip -dc "$DATA/$split.$lang.gz" > "$WORK/data/$split.$lang"
    done
  done
  # The vocabulary file: every piece of the SentencePiece model, one a line, in its id order.
  "$PY" - "$SPM" "$WORK/vocab.txt" <<'EOF'
import sys
import sentencepiece as spm
sp = spm.SentencePieceProcessor(model_file=sys.argv[1])
pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
bad = [p for p in pieces if len(p.splitlines()) != 1]
assert not bad, f"pieces that Joey's line reader would split: {bad}"
open(sys.argv[2], "w", encoding="utf-8").write("".join(p + "\n" for p in pieces))
print(f"{sys.argv[2]}: {len(pieces)} pieces")
EOF
  sed -e "s|@WORK@|$WORK|g" -e "s|@SPM@|$SPM|g" -e "s|@STEPS@|$STEPS|g" \
      -e "s|@LOG_EVERY@|$LOG_EVERY|g" "$HERE/joeynmt_matched.yaml" > "$WORK/train.yaml"
  echo "wrote $WORK/train.yaml"
}

train() {
  rm -rf "$WORK/model"
  /usr/bin/time -v -o "$WORK/train.time" "$PY" -m joeynmt train "$WORK/train.yaml" --skip-test
  "$PY" - "$WORK" "$SPM" "$LOG_EVERY" <<'EOF'
import datetime, json, re, statistics, sys
import sentencepiece as spm
work, model, log_every = sys.argv[1], sys.argv[2], int(sys.argv[3])
line = re.compile(r"^(\S+ \S+) - .*Step:\s+(\d+),.*Tokens per Sec:\s+(\d+)")
rows = [m.groups() for m in map(line.match, open(f"{work}/model/train.log")) if m]
stamp = lambda s: datetime.datetime.strptime(s, "%Y-%m-%d %H:%M:%S,%f").timestamp()
sp = spm.SentencePieceProcessor(model_file=model)
src = [len(sp.encode(s)) + 1 for s in open(f"{work}/data/train.en", encoding="utf-8")]
tgt = [len(sp.encode(s)) + 1 for s in open(f"{work}/data/train.de", encoding="utf-8")]
keep = [i for i in range(len(src)) if max(src[i], tgt[i]) <= 64]
ratio = sum(src[i] + tgt[i] for i in keep) / sum(tgt[i] for i in keep)
tok = [float(r[2]) for r in rows[1:]]  # rows[0]: the warm-up window
sent = [64 * log_every / (stamp(b[0]) - stamp(a[0])) for a, b in zip(rows, rows[1:])]
rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(f"{work}/train.time").read())
spread = lambda v: {"median": statistics.median(v), "min": min(v), "max": max(v)}
out = {"windows": len(tok), "window_steps": log_every, "tgt_tokens_per_s": spread(tok),
       "src_tgt_tokens_per_s_estimate": spread([t * ratio for t in tok]),
       "sentences_per_s": spread(sent), "peak_rss_gib": int(rss.group(1)) / 2**20}
json.dump(out, open(f"{work}/training.json", "w"), indent=1)
print(json.dumps(out, indent=1))
EOF
}

decode() {
  head -n "$SENTENCES" "$WORK/data/test_2016_flickr.en" > "$WORK/input.en"
  for beam in 1 5; do
    sed -e "s|^  beam_size: .*|  beam_size: $beam|" "$WORK/train.yaml" > "$WORK/decode_beam$beam.yaml"
    began=$(date +%s.%N)
    /usr/bin/time -v -o "$WORK/decode_beam$beam.time" "$PY" -m joeynmt translate \
        "$WORK/decode_beam$beam.yaml" < "$WORK/input.en" > "$WORK/output_beam$beam.de"
    ended=$(date +%s.%N)
    search=$(grep -o 'Generation took [0-9.]*' "$WORK/model/translate.log" | tail -n 1 | awk '{print $3}')
    lines=$(wc -l < "$WORK/input.en")
    "$PY" - "$beam" "$lines" "$search" "$began" "$ended" "$WORK" "$SPM" <<'EOF'
import json, statistics, sys
import sentencepiece as spm
beam, n, search, began, ended, work, model = sys.argv[1], int(sys.argv[2]), *map(float, sys.argv[3:6]), *sys.argv[6:]
sp = spm.SentencePieceProcessor(model_file=model)
outputs = open(f"{work}/output_beam{beam}.de", encoding="utf-8").read().split("\n")[:n]
row = {"beam_size": int(beam), "sentences": n, "search_seconds": search,
       "search_sentences_per_s": n / search, "whole_program_seconds": ended - began,
       "mean_output_len": statistics.mean(len(sp.encode(o)) + 1 for o in outputs)}  # EOS counted
json.dump(row, open(f"{work}/decode_beam{beam}.json", "w"), indent=1)
print(json.dumps(row))
EOF
  done
}

case "${1:-all}" in
  prepare) prepare ;;
  train) train ;;
  decode) decode ;;
  all) prepare; train; decode ;;
  *) echo "usage: $0 prepare|train|decode|all" >&2; exit 2 ;;
esac
