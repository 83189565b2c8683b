r"""Plain PyTorch peer of attn_jax's matched configuration (bench_matched.flags), timed on CPU.

  python experiments/peers/torch_matched.py --data_dir=../shared/data/multi30k \
      --spm_model=/tmp/peers/spm.ende.model [--warmup=20 --windows=5 --window_steps=40]
      [--decode_sentences=1000] [--json=FILE] [--skip_decode]

Model: embeddings 256; bidirectional GRU encoder, 256 per direction; GRU decoder 256 from
s_0 = tanh(W [h->_N; h<-_1] + b); h_t = GRU(h_{t-1}, [E y_{t-1}; h~_{t-1}]) (input feeding);
additive attention v^T tanh(W h_t + U k_j + b) queried by h_t; h~_t = tanh(W_c [c_t; h_t])
feeds the softmax; no tied embeddings; dropout 0.2 on both embeddings and on h~_t. Adam 1e-3,
global-norm clipping 1.0, mean cross-entropy, batches of 64 sentences from length-sorted pools.
Decoding: greedy and beam 5 (GNMT length penalty 0.6), at most ceil(1.5 n) + 10 tokens + EOS.
Target tokens: subwords + EOS (no BOS); source tokens: subwords + EOS. The whole-program
decoding time is a subprocess running `--translate` (load, encode, search, write).
"""

import time

START = time.perf_counter()  # before importing torch: the whole program's clock

import argparse, gzip, json, os, random, resource, statistics, subprocess, sys, tempfile

import sentencepiece as spm
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence, pad_sequence

PAD, BOS, EOS = 0, 1, 2  # the ids of the project's SentencePiece models


def read_lines(path):
  """Lines of a text file, gzipped or not, split on "\n" only."""
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "rb") as f:
    lines = f.read().decode("utf-8").split("\n")
  return lines[:-1] if lines and lines[-1] == "" else lines


class Seq2Seq(nn.Module):
  def __init__(self, vocab, embed=256, hidden=256, attention=256, dropout=0.2):
    super().__init__()
    self.src_embed = nn.Embedding(vocab, embed)
    self.tgt_embed = nn.Embedding(vocab, embed)
    self.encoder = nn.GRU(embed, hidden, batch_first=True, bidirectional=True)
    self.bridge = nn.Linear(2 * hidden, hidden)  # s_0 from [h->_N; h<-_1]
    self.key = nn.Linear(2 * hidden, attention)  # U k_j + b, once per sentence
    self.query = nn.Linear(hidden, attention, bias=False)  # W h_t
    self.v = nn.Linear(attention, 1, bias=False)
    self.cell = nn.GRUCell(embed + hidden, hidden)  # input [E y_{t-1}; h~_{t-1}]
    self.combine = nn.Linear(2 * hidden + hidden, hidden)  # W_c [c_t; h_t]
    self.out = nn.Linear(hidden, vocab)
    self.drop = nn.Dropout(dropout)

  def encode(self, src, src_len):
    """src [B, S] (EOS-terminated, PAD after), src_len [B] -> memory, s_0 [B, H]."""
    x = self.drop(self.src_embed(src))  # [B, S, E]
    packed = pack_padded_sequence(x, src_len.cpu(), batch_first=True, enforce_sorted=False)
    states, final = self.encoder(packed)  # final [2, B, H]
    states = pad_packed_sequence(states, batch_first=True, total_length=src.size(1))[0]  # [B,S,2H]
    mask = torch.arange(src.size(1))[None, :] < src_len[:, None]  # [B, S]
    h0 = torch.tanh(self.bridge(torch.cat([final[0], final[1]], -1)))  # [B, H]
    return (self.key(states), states, mask), h0  # keys [B, S, A]

  def step(self, emb, h, feed, memory):
    """One decoder step: emb [B, E], h [B, H], feed h~_{t-1} [B, H] -> h_t, h~_t."""
    keys, states, mask = memory
    h = self.cell(torch.cat([emb, feed], -1), h)  # [B, H]
    scores = self.v(torch.tanh(keys + self.query(h)[:, None])).squeeze(-1)  # [B, S]
    weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), -1)  # [B, S]
    context = torch.bmm(weights[:, None], states).squeeze(1)  # [B, 2H]
    return h, torch.tanh(self.combine(torch.cat([context, h], -1)))  # [B, H] each

  def forward(self, src, src_len, tgt_in):
    """Teacher forcing: tgt_in [B, T] = BOS y_1 .. y_n PAD.. -> logits [B, T, V]."""
    memory, h = self.encode(src, src_len)
    emb = self.drop(self.tgt_embed(tgt_in))  # [B, T, E]
    feed, outs = h.new_zeros(h.shape), []
    for t in range(tgt_in.size(1)):
      h, feed = self.step(emb[:, t], h, feed, memory)
      outs.append(feed)
    return self.out(self.drop(torch.stack(outs, 1)))  # [B, T, V]


def pad(seqs):
  """List of id lists -> int64 [B, max len], PAD after."""
  return pad_sequence([torch.tensor(s) for s in seqs], batch_first=True, padding_value=PAD)


def training_batches(pairs, batch_size, rng, pool=100):
  """Endless batches: shuffle, sort pools of `pool` batches by length, shuffle the batches."""
  while True:
    order = list(range(len(pairs)))
    rng.shuffle(order)
    batches = []
    for p in range(0, len(order), batch_size * pool):
      chunk = sorted(order[p:p + batch_size * pool], key=lambda i: [len(x) for x in pairs[i]])
      batches += [chunk[b:b + batch_size] for b in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    for batch in batches:
      src = [pairs[i][0] + [EOS] for i in batch]
      tgt = [pairs[i][1] for i in batch]
      yield (pad(src), torch.tensor([len(s) for s in src]),  # [B, S], [B]
             pad([[BOS] + t for t in tgt]), pad([t + [EOS] for t in tgt]))  # [B, T] each


def output_limits(src_len):
  """Most output tokens, EOS included: ceil(1.5 n) + 10 + 1, n = source subwords."""
  return torch.ceil(1.5 * (src_len - 1).float()).long() + 11


@torch.no_grad()
def greedy(model, src, src_len):
  memory, h = model.encode(src, src_len)
  limits, done = output_limits(src_len), torch.zeros(src.size(0), dtype=torch.bool)
  y, feed, outs = torch.full((src.size(0),), BOS), h.new_zeros(h.shape), []
  for t in range(int(limits.max())):
    h, feed = model.step(model.tgt_embed(y), h, feed, memory)
    y = model.out(feed).argmax(-1).masked_fill(done, PAD)  # [B]
    outs.append(y)
    done |= (y == EOS) | (t + 1 >= limits)
    if done.all():
      break
  return torch.stack(outs, 1)  # [B, T]


@torch.no_grad()
def beam_search(model, src, src_len, k=5, alpha=0.6):
  """Batched beam search; the best finished hypothesis by log P / ((5 + |Y|) / 6) ** alpha."""
  lp = lambda n: ((5.0 + n) / 6.0) ** alpha
  n, limits = src.size(0), output_limits(src_len)
  memory, h = model.encode(src, src_len)
  memory = tuple(m.repeat_interleave(k, 0) for m in memory)  # [n*k, S, ...]
  h = h.repeat_interleave(k, 0)  # [n*k, H]
  feed, y = h.new_zeros(h.shape), torch.full((n * k,), BOS)
  scores = torch.tensor([0.0] + [float("-inf")] * (k - 1)).repeat(n, 1)  # [n, k]: live log P
  seqs = torch.zeros((n, k, 0), dtype=torch.long)  # [n, k, t]
  best = torch.full((n,), float("-inf"))  # normalised score of the best finished
  best_seq = torch.full((n, int(limits.max())), PAD)
  rows, first_k = torch.arange(n), torch.arange(2 * k) < k
  for t in range(int(limits.max())):
    h, feed = model.step(model.tgt_embed(y), h, feed, memory)
    logp = torch.log_softmax(model.out(feed), -1).view(n, k, -1)  # [n, k, V]
    vocab = logp.size(-1)
    top, index = (scores[:, :, None] + logp).view(n, -1).topk(2 * k, -1)  # [n, 2k]
    beam, token = index // vocab, index % vocab
    ext = torch.cat([seqs.gather(1, beam[:, :, None].expand(-1, -1, t)), token[:, :, None]], 2)
    ends = (token == EOS) | (t + 1 >= limits)[:, None]  # [n, 2k]
    finished = torch.where(ends & first_k, top / lp(t + 1), float("-inf"))
    fin_best, fin_index = finished.max(-1)  # [n]
    better = fin_best > best
    best = torch.where(better, fin_best, best)
    best_seq[better] = PAD
    best_seq[better, :t + 1] = ext[rows, fin_index][better]
    scores, pick = top.masked_fill(ends, float("-inf")).topk(k, -1)  # [n, k]: live ones
    seqs = ext.gather(1, pick[:, :, None].expand(-1, -1, t + 1))
    y = token.gather(1, pick).view(-1)
    reorder = (beam.gather(1, pick) + rows[:, None] * k).view(-1)  # [n*k]
    h, feed = h[reorder], feed[reorder]
    if (best >= scores[:, 0] / lp(limits.float())).all():  # no live one can win any more
      break
  return best_seq


def decode(model, sources, beam):
  """sources: id lists -> output id lists in input order; batches of 64 by length."""
  model.eval()
  order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
  outputs = [None] * len(sources)
  for b in range(0, len(order), 64):
    batch = order[b:b + 64]
    src = [sources[i] + [EOS] for i in batch]
    src_len = torch.tensor([len(s) for s in src])
    ids = (greedy(model, pad(src), src_len) if beam == 1
           else beam_search(model, pad(src), src_len, beam))
    for i, row in zip(batch, ids.tolist()):
      outputs[i] = row[:row.index(EOS)] if EOS in row else [x for x in row if x != PAD]
  return outputs


def translate(args):
  """--translate: a whole decoding program, from loading to writing the text."""
  sp = spm.SentencePieceProcessor(model_file=args.spm_model)
  model = Seq2Seq(sp.get_piece_size())
  model.load_state_dict(torch.load(args.load))
  sources = [sp.encode(s) for s in read_lines(args.input)][:args.decode_sentences]
  began = time.perf_counter()
  outputs = decode(model, sources, args.beam_size)
  search = time.perf_counter() - began
  with open(args.output, "w", encoding="utf-8") as f:
    f.writelines(sp.decode(o) + "\n" for o in outputs)
  print(json.dumps({"sentences": len(sources), "search_seconds": search,
                    "peak_rss_gib": peak_rss_gib()}))


RATES = ("tgt_tokens_per_s", "src_tgt_tokens_per_s", "sentences_per_s")


def peak_rss_gib():
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def time_training(args, model, pairs):
  """Warm-up steps, then timed windows of the real loop -> median and range of each rate."""
  optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate)
  loss_fn = nn.CrossEntropyLoss(ignore_index=PAD)  # mean over target subwords + EOS
  batches = training_batches(pairs, args.batch_size, random.Random(args.seed))

  def train_steps(count):
    tgt_tokens = src_tokens = sentences = 0
    began = time.perf_counter()
    for _ in range(count):
      src, src_len, tgt_in, tgt_out = next(batches)
      model.train()
      logits = model(src, src_len, tgt_in)  # [B, T, V]
      loss = loss_fn(logits.flatten(0, 1), tgt_out.flatten())
      optimizer.zero_grad()
      loss.backward()
      nn.utils.clip_grad_norm_(model.parameters(), args.clip_norm)
      optimizer.step()
      tgt_tokens += int((tgt_out != PAD).sum())
      src_tokens += int(src_len.sum())
      sentences += src.size(0)
    seconds = time.perf_counter() - began
    return seconds, {"tgt_tokens_per_s": tgt_tokens / seconds, "sentences_per_s": sentences /
                     seconds, "src_tgt_tokens_per_s": (src_tokens + tgt_tokens) / seconds,
                     "loss": loss.item()}

  seconds, row = train_steps(args.warmup)
  print(f"warm-up: {args.warmup} steps in {seconds:.1f} s, loss {row['loss']:.3f}")
  windows = []
  for w in range(args.windows):
    seconds, row = train_steps(args.window_steps)
    windows.append(dict(row, seconds=seconds))
    print(f"window {w + 1}: " + ", ".join(f"{k} {row[k]:,.1f}" for k in RATES + ("loss",)))
  training = {k: {"median": statistics.median(v), "min": min(v), "max": max(v)}
              for k, v in ((k, [w[k] for w in windows]) for k in RATES)}
  print("training, median (range): " + "; ".join(
      f"{k} {v['median']:,.1f} ({v['min']:,.1f}-{v['max']:,.1f})" for k, v in training.items()))
  return dict(training, windows=windows, peak_rss_gib=peak_rss_gib())


def time_decoding(args, model, sp):
  """Greedy and beam search: the search alone in this process, and --translate as a whole
  program in a subprocess (start-up, loading, SentencePiece, writing)."""
  source_path = os.path.join(args.data_dir, f"{args.decode_split}.{args.src_lang}.gz")
  sources = [sp.encode(s) for s in read_lines(source_path)][:args.decode_sentences]
  results = {}
  with tempfile.TemporaryDirectory() as tmp:
    saved = os.path.join(tmp, "model.pt")
    torch.save(model.state_dict(), saved)
    for name, beam in (("greedy", 1), (f"beam{args.beam_size}", args.beam_size)):
      began = time.perf_counter()
      outputs = decode(model, sources, beam)
      search = time.perf_counter() - began
      began = time.perf_counter()
      flags = dict(load=saved, spm_model=args.spm_model, input=source_path, beam_size=beam,
                   output=os.path.join(tmp, name), decode_sentences=args.decode_sentences,
                   threads=args.threads)
      command = [sys.executable, os.path.abspath(__file__), "--translate"]
      proc = subprocess.run(command + [f"--{k}={v}" for k, v in flags.items()], check=True,
                            stdout=subprocess.PIPE, text=True)
      whole = time.perf_counter() - began
      program = json.loads(proc.stdout.strip().splitlines()[-1])
      results[name] = {"sentences": len(sources), "search_seconds": search,
                       "search_sentences_per_s": len(sources) / search, "whole_program_seconds":
                       whole, "whole_program_peak_rss_gib": program["peak_rss_gib"],
                       "mean_output_len": statistics.mean(len(o) + 1 for o in outputs)}
      print(f"{name}: " + ", ".join(f"{k} {v:,.2f}" for k, v in results[name].items()))
  return results


def benchmark(args):
  sp = spm.SentencePieceProcessor(model_file=args.spm_model)
  src, tgt = (read_lines(os.path.join(args.data_dir, f"train.{lang}.gz"))
              for lang in (args.src_lang, args.tgt_lang))
  pairs = [(sp.encode(s), sp.encode(t)) for s, t in zip(src, tgt) if s.strip() and t.strip()]
  kept = [p for p in pairs if max(len(p[0]), len(p[1])) <= args.max_len]
  print(f"train: {len(kept)} pairs ({len(pairs) - len(kept)} over {args.max_len} subwords), "
        f"vocabulary {sp.get_piece_size()}, torch {torch.__version__}, {args.threads} threads")
  torch.manual_seed(args.seed)
  model = Seq2Seq(sp.get_piece_size(), dropout=args.dropout)
  if args.load:
    model.load_state_dict(torch.load(args.load))
  results = {"config": vars(args), "torch": torch.__version__}
  results["training"] = time_training(args, model, kept)
  print(f"peak RSS after training: {results['training']['peak_rss_gib']:.2f} GiB")
  if not args.skip_decode:
    results["decoding"] = time_decoding(args, model, sp)
  results["peak_rss_gib"], results["script_seconds"] = peak_rss_gib(), time.perf_counter() - START
  print(f"peak RSS {results['peak_rss_gib']:.2f} GiB, "
        f"whole script {results['script_seconds']:.1f} s")
  if args.json:
    json.dump(results, open(args.json, "w"), indent=1)


FLAGS = [  # name, default, help; the type is the default's
    ("data_dir", "../shared/data/multi30k", "Multi30k: <split>.<lang>.gz"),
    ("spm_model", "/tmp/peers/spm.ende.model", "joint SentencePiece model (PAD 0, BOS 1, EOS 2)"),
    ("max_len", 63, "training pairs with more subwords on either side are dropped"),
    ("src_lang", "en", ""), ("tgt_lang", "de", ""), ("batch_size", 64, ""), ("dropout", 0.2, ""),
    ("learning_rate", 1e-3, ""), ("clip_norm", 1.0, "global norm"), ("seed", 0, ""),
    ("threads", 2, ""), ("warmup", 20, "untimed steps"), ("windows", 5, ""),
    ("window_steps", 40, "steps per window"), ("beam_size", 5, ""), ("json", "", "output file"),
    ("load", "", "a saved state_dict to start from (or to translate with)"), ("input", "", ""),
    ("output", "", ""), ("decode_split", "test_2016_flickr", ""), ("decode_sentences", 1000, ""),
]


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  for name, default, text in FLAGS:
    p.add_argument(f"--{name}", type=type(default), default=default, help=text or None)
  p.add_argument("--skip_decode", action="store_true", help="time training only")
  p.add_argument("--translate", action="store_true", help="decode --input to --output with --load")
  args = p.parse_args()
  torch.set_num_threads(args.threads)
  translate(args) if args.translate else benchmark(args)


if __name__ == "__main__":
  main()
