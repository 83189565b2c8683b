"""Tiny configurations, random inputs and NumPy reference implementations.

The references are written from the papers' equations (and the docstrings of
attn_jax), in float64 NumPy, independently of the library's JAX code; tests
compare the library against them.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from attn_jax import config as config_lib
from attn_jax.data import dataset
from attn_jax.model import seq2seq
from attn_jax.train import inference, loop

VOCAB = 8  # PAD, BOS, EOS + 5 symbols
PAD, BOS, EOS = config_lib.PAD_ID, config_lib.BOS_ID, config_lib.EOS_ID


# -- configurations -------------------------------------------------------------

def tiny_model(**overrides) -> config_lib.ModelConfig:
  """A small ModelConfig; for dot attention with a bidirectional encoder, each direction
  gets half the decoder's units (as dot needs) unless encoder_size is given."""
  kw = dict(src_vocab_size=VOCAB, tgt_vocab_size=VOCAB, embed_size=8, hidden_size=8,
            attention_size=8)
  kw.update(overrides)
  defaults = config_lib.ModelConfig()
  if (config_lib.needs_equal_sizes(kw.get("attention", defaults.attention))
      and kw.get("bidirectional", defaults.bidirectional) and "encoder_size" not in kw):
    kw["encoder_size"] = kw["hidden_size"] // 2
  return config_lib.ModelConfig(**kw)


def tiny_config(model_overrides=None, data_overrides=None, train_overrides=None
                ) -> config_lib.Config:
  m = dict(model_overrides or {})
  d = dict(task="reverse", vocab_size=VOCAB, min_len=1, max_len=5, train_size=64,
           eval_size=16)
  d.update(data_overrides or {})
  m.setdefault("src_vocab_size", d["vocab_size"])
  m.setdefault("tgt_vocab_size", d["vocab_size"])
  t = dict(num_steps=6, batch_size=8, warmup_steps=2, log_every=1, eval_every=3,
           checkpoint_every=3, keep_checkpoints=2, num_plots=1)
  t.update(train_overrides or {})
  return config_lib.Config(model=tiny_model(**m), data=config_lib.DataConfig(**d),
                           train=config_lib.TrainConfig(**t))


def trained_translation(root) -> dict[str, str]:
  """A tiny translation workdir in `root` trained for 4 steps, checkpointed and scored (BLEU)
  at steps 2 and 4, on a corpus with train, val and test: {"root", "data_dir", "workdir"}."""
  data_dir = write_corpus(root, splits=("train", "val", "test"))
  workdir = str(root / "run")
  config = tiny_config(
      data_overrides=dict(task="translation", data_dir=data_dir, vocab_size=300, max_len=15),
      train_overrides=dict(num_steps=4, eval_every=2, checkpoint_every=2, num_plots=0))
  loop.train_and_evaluate(config, workdir)
  return {"root": root, "data_dir": data_dir, "workdir": workdir}


@functools.lru_cache(maxsize=None)
def _jitted_init(config: config_lib.ModelConfig):
  return jax.jit(lambda key: seq2seq.init(key, config))


def init_params(config: config_lib.ModelConfig, seed: int = 0) -> dict:
  """seq2seq.init, jitted (eager initialisation compiles every op separately)."""
  return _jitted_init(config)(jax.random.key(seed))


def random_params(init_fn, config, seed: int = 0, scale: float = 0.5) -> dict:
  """A params tree shaped like init_fn(key, config), every leaf N(0, scale^2) noise.

  Nonzero biases and unsaturated gates make the reference tests sensitive to
  every parameter; the shapes come from jax.eval_shape, so nothing compiles.
  """
  shapes = jax.eval_shape(lambda: init_fn(jax.random.key(0), config))
  rng = np.random.default_rng(seed)
  return jax.tree.map(
      lambda s: jnp.asarray(scale * rng.standard_normal(s.shape), s.dtype), shapes)


def randomize(tree, seed: int, scale: float = 0.5):
  """Every floating leaf replaced by N(0, scale^2) noise (NumPy: nothing compiles)."""
  rng = np.random.default_rng(seed)
  def noise(x):
    if not jnp.issubdtype(x.dtype, jnp.floating):
      return x
    return jnp.asarray(scale * rng.standard_normal(x.shape), x.dtype)
  return jax.tree.map(noise, tree)


def to_np(tree):
  return jax.tree.map(lambda x: np.asarray(x, np.float64), tree)


# -- a tiny parallel corpus --------------------------------------------------------

CORPUS_WORDS = ["cat", "dog", "bird", "red", "big", "runs", "sits", "the", "a", "on"]


def saved_params(workdir, step: int) -> dict:
  """The parameters of `workdir`'s checkpoint at `step`, restored on one device."""
  return jax.device_get(
      inference.load(str(workdir), str(step), translation_only=False).params)


def write_corpus(directory, splits=("train", "val")) -> str:
  """<split>.en / <split>.de files of 64 (train) or 12 lines; German is upper-cased English."""
  lines = [" ".join(CORPUS_WORDS[(i * 7 + j) % len(CORPUS_WORDS)] for j in range(1 + i % 6))
           for i in range(64)]
  for split in splits:
    rows = lines if split == "train" else lines[:12]
    for lang, text in (("en", rows), ("de", [s.upper() for s in rows])):
      (directory / f"{split}.{lang}").write_text("\n".join(text) + "\n", encoding="utf-8")
  return str(directory)


# -- random inputs ----------------------------------------------------------------

def random_src(rng: np.random.Generator, lengths, width: int, vocab: int = VOCAB,
               junk: bool = False) -> tuple[np.ndarray, np.ndarray]:
  """EOS-terminated sources of the given real lengths (EOS included).

  Returns (src int32 [batch, width], src_len int32 [batch]); past the length the
  tokens are PAD, or random symbols when `junk` (which the model must ignore).
  """
  lengths = np.asarray(lengths, np.int32)
  src = rng.integers(config_lib.NUM_SPECIAL, vocab, size=(len(lengths), width)).astype(np.int32)
  for i, n in enumerate(lengths):
    src[i, n - 1] = EOS
    if not junk:
      src[i, n:] = PAD
  return src, lengths


def random_batch(rng: np.random.Generator, src_lengths, tgt_lengths, src_width: int,
                 tgt_width: int, vocab: int = VOCAB) -> dataset.Batch:
  src, src_len = random_src(rng, src_lengths, src_width, vocab)
  tgt_len = np.asarray(tgt_lengths, np.int32)
  b = len(tgt_len)
  tgt_out = np.full((b, tgt_width), PAD, np.int32)
  tgt_in = np.full((b, tgt_width), PAD, np.int32)
  align = np.full((b, tgt_width), -1, np.int32)
  for i, m in enumerate(tgt_len):
    tokens = rng.integers(config_lib.NUM_SPECIAL, vocab, size=m - 1)
    tgt_out[i, :m - 1] = tokens
    tgt_out[i, m - 1] = EOS
    tgt_in[i, 0] = BOS
    tgt_in[i, 1:m] = tokens
    align[i, :m] = rng.integers(0, src_len[i], size=m)
  return dataset.Batch(src=src, src_len=src_len, tgt_in=tgt_in, tgt_out=tgt_out,
                    tgt_len=tgt_len, align=align)


def tree_equal(a, b) -> bool:
  """Same structure and bitwise-equal leaves."""
  la, ta = jax.tree.flatten(a)
  lb, tb = jax.tree.flatten(b)
  return ta == tb and all(
      np.asarray(x).dtype == np.asarray(y).dtype and np.array_equal(np.asarray(x), np.asarray(y))
      for x, y in zip(la, lb))


# -- NumPy references ---------------------------------------------------------------

def sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def layer_norm(p: dict, x: np.ndarray, eps: float = 1e-5) -> np.ndarray:
  """Ba et al. (2016): (x - mean) / sqrt(var + eps) * gain + bias over the last axis."""
  mean = x.mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(x.var(-1, keepdims=True) + eps) * p["scale"] + p["bias"]


def _projections(p: dict, h: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(W x + b, U h (+ b_h)), each layer-normalised over all gates when p has "ln_input"."""
  wx = x @ p["input"]["kernel"] + p["input"]["bias"]
  uh = h @ p["recurrent"]["kernel"] + p["recurrent"].get("bias", 0.0)
  if "ln_input" in p:
    wx, uh = layer_norm(p["ln_input"], wx), layer_norm(p["ln_recurrent"], uh)
  return wx, uh


def gru_step(p: dict, h: np.ndarray, x: np.ndarray) -> np.ndarray:
  """GRU (Cho et al. 2014) with the reset gate applied after U_n h (cuDNN form).

  p: {"input": {"kernel" [in, 3H], "bias" [3H]}, "recurrent": {"kernel" [H, 3H], "bias" [3H]}},
  gate blocks in the order r, z, n (and "ln_input"/"ln_recurrent" with layer norm).
  """
  H = h.shape[-1]
  wx, uh = _projections(p, h, x)
  blk = lambda m, k: m[..., k * H:(k + 1) * H]
  r = sigmoid(blk(wx, 0) + blk(uh, 0))
  z = sigmoid(blk(wx, 1) + blk(uh, 1))
  n = np.tanh(blk(wx, 2) + r * blk(uh, 2))
  return (1.0 - z) * n + z * h


def lstm_step(p: dict, h: np.ndarray, c: np.ndarray, x: np.ndarray):
  """LSTM with forget gate; gate blocks i, f, g, o; the recurrent map has no bias. With
  layer norm (Ba et al. 2016, eq. 20-22) also h' = o * tanh(LN(c'))."""
  H = h.shape[-1]
  wx, uh = _projections(p, h, x)
  pre = lambda k: wx[..., k * H:(k + 1) * H] + uh[..., k * H:(k + 1) * H]
  i, f, g, o = sigmoid(pre(0)), sigmoid(pre(1)), np.tanh(pre(2)), sigmoid(pre(3))
  c_new = f * c + i * g
  c_out = layer_norm(p["ln_cell"], c_new) if "ln_cell" in p else c_new
  return o * np.tanh(c_out), c_new


def cell_step(cell: str, p: dict, state: tuple, x: np.ndarray) -> tuple:
  """state: (h, c) with c None for the GRU."""
  h, c = state
  if cell == "gru":
    return gru_step(p, h, x), None
  return lstm_step(p, h, c, x)


def masked_softmax(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
  s = np.where(mask, scores, -np.inf)
  e = np.where(mask, np.exp(s - np.max(s)), 0.0)
  return e / e.sum()


def sparsemax(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """Martins & Astudillo 2016, Algorithm 1 (the projection onto the simplex), over mask."""
  z = scores[mask].astype(np.float64)
  z_sorted = np.sort(z)[::-1]
  k = np.arange(1, len(z) + 1)
  cumulative = np.cumsum(z_sorted)
  size = k[1 + k * z_sorted > cumulative].max()
  out = np.zeros(len(scores))
  out[mask] = np.maximum(z - (cumulative[size - 1] - 1) / size, 0)
  return out


def entmax15(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """p = [z/2 - tau]_+^2 summing to 1 (Peters et al. 2019, eq. 9 with alpha = 1.5), over mask;
  tau by bisection, an independent route to the papers' sort-based threshold."""
  x = scores[mask].astype(np.float64) / 2
  low, high = x.max() - 1, x.max()
  for _ in range(200):
    tau = (low + high) / 2
    low, high = (tau, high) if (np.maximum(x - tau, 0) ** 2).sum() > 1 else (low, tau)
  out = np.zeros(len(scores))
  out[mask] = np.maximum(x - (low + high) / 2, 0) ** 2
  return out


NORMALISERS = {"sparsemax": sparsemax, "entmax15": entmax15}


def multihead(score: str, p: dict, q: np.ndarray, states: np.ndarray, mask: np.ndarray):
  """(context [A], the heads' mean weights [S]) of N heads, each over its own slice of the
  projections: additive v_n^T tanh(W_n q + U_n k_j + b_n) (Bahdanau eq. 6 per head) or
  scaled dot (W^Q_n q) . (W^K_n k_j) / sqrt(d) (Vaswani eq. 1); context = concat_n of
  sum_j a_nj W^V_n k_j."""
  v = p["v"]["kernel"]  # [d, N]
  d, heads = v.shape
  wq = q @ p["query"]["kernel"]  # [N * d]
  uk = states @ p["key"]["kernel"] + p["key"]["bias"]  # [S, N * d]
  values = states @ p["value"]["kernel"]  # [S, A]
  width = values.shape[1] // heads
  contexts, weights = [], []
  for n in range(heads):
    qn, kn = wq[n * d:(n + 1) * d], uk[:, n * d:(n + 1) * d]
    if score == "additive":
      scores = np.tanh(kn + qn) @ v[:, n]
    else:
      scores = kn @ qn / np.sqrt(d)
    a = masked_softmax(scores, mask)
    weights.append(a)
    contexts.append(a @ values[:, n * width:(n + 1) * width])
  return np.concatenate(contexts), np.mean(weights, axis=0)


def attention_scores(variant: str, p: dict, q: np.ndarray, k: np.ndarray) -> np.ndarray:
  """Scores of query q [H] against raw encoder states k [S, A], from the papers.

  dot: q . k_j (Luong eq. 8; A == H);
  scaled_dot: the same / sqrt(H) (Vaswani eq. 1);
  general: q^T W k_j (Luong eq. 8), W [H, A] stored transposed as a dense kernel [A, H];
  additive: v^T tanh(W q + U k_j + b) (Bahdanau eq. 6).
  """
  if variant in ("dot", "scaled_dot"):
    scores = np.array([q @ kj for kj in k])
    return scores / math.sqrt(q.shape[0]) if variant == "scaled_dot" else scores
  if variant == "general":
    W = p["W"]["kernel"].T  # [H, A]
    return np.array([q @ W @ kj for kj in k])
  if variant == "additive":
    Wq = p["query"]["kernel"].T  # [att, H]
    U, b = p["key"]["kernel"].T, p["key"]["bias"]  # [att, A], [att]
    v = p["v"]["kernel"][:, 0]  # [att]
    return np.array([v @ np.tanh(Wq @ q + U @ kj + b) for kj in k])
  if variant == "location":
    W_a = p["W_a"]["kernel"].T  # [positions, H]
    return np.array([W_a[j] @ q if j < len(W_a) else -np.inf for j in range(len(k))])
  raise ValueError(variant)


def attend(variant: str, p: dict, q: np.ndarray, states: np.ndarray, summary: np.ndarray,
           mask: np.ndarray, t: int = 0, window: int = 10) -> tuple[np.ndarray, np.ndarray]:
  """(context [A], weights [S]) for one example at decoder step t; `none` returns the
  summary and zeros.

  local_m_<score>: p_t = t (at most the last real position), softmax of <score> over the
  window [p_t - D, p_t + D] (Luong section 3.2). local_p_<score>: p_t = S sigmoid(v_p^T
  tanh(W_p h_t)) (eq. 9); a_t(s) = align(s) exp(-(s - p_t)^2 / (2 sigma^2)), sigma = D/2
  (eq. 10), align the softmax over the window.
  """
  if variant == "none":
    return summary, np.zeros(len(mask))
  s = np.arange(len(mask))
  if variant.startswith("local_m_"):
    p_t = min(t, mask.sum() - 1)
    near = mask & (np.abs(s - p_t) <= window)
    weights = masked_softmax(attention_scores(variant[8:], p, q, states), near)
  elif variant.startswith("local_p_"):
    W_p, v_p = p["W_p"]["kernel"].T, p["v_p"]["kernel"][:, 0]  # [att, H], [att]
    p_t = mask.sum() * sigmoid(v_p @ np.tanh(W_p @ q))
    near = mask & (np.abs(s - p_t) <= window)
    align = masked_softmax(attention_scores(variant[8:], p, q, states), near)
    weights = align * np.exp(-(s - p_t) ** 2 / (2 * (window / 2) ** 2))
  elif variant.startswith("multihead_"):
    return multihead(variant[10:], p, q, states, mask)
  elif variant in RECURRENT:
    context, weights, _ = attend_step(variant, p, q, states, summary, mask, t, window,
                                      initial_state(variant, mask))
    return context, weights
  elif variant.split("_")[0] in NORMALISERS:
    name, score = variant.split("_", 1)
    weights = NORMALISERS[name](attention_scores(score, p, q, states), mask)
  else:
    weights = masked_softmax(attention_scores(variant, p, q, states), mask)
  return weights @ states, weights


# -- variants with a state carried across decoder steps -------------------------

RECURRENT = ("coverage_additive", "monotonic", "mocha")


def initial_state(variant: str, mask: np.ndarray):
  """The state before the first step: coverage 0 (See et al. eq. 10); monotonic
  (alpha_0 = delta_{j,0}, t_0 = 0) (Raffel et al. sec. 2.2); None without a state."""
  if variant == "coverage_additive":
    return np.zeros(len(mask))
  if variant in ("monotonic", "mocha"):
    return np.eye(len(mask))[0], 0
  return None


def coverage_additive(p: dict, q: np.ndarray, states: np.ndarray, mask: np.ndarray,
                      coverage: np.ndarray):
  """e_j = v^T tanh(W q + U k_j + w_c cov_j + b) (See et al. 2017, eq. 11), a = softmax(e),
  cov' = cov + a (eq. 10): (context, weights, cov')."""
  Wq = p["query"]["kernel"].T  # [att, H]
  U, b = p["key"]["kernel"].T, p["key"]["bias"]  # [att, A], [att]
  v, w_c = p["v"]["kernel"][:, 0], p["coverage"]["kernel"][0]  # [att], [att]
  scores = np.array([v @ np.tanh(Wq @ q + U @ kj + w_c * cj + b)
                     for kj, cj in zip(states, coverage)])
  weights = masked_softmax(scores, mask)
  return weights @ states, weights, coverage + weights


def monotonic_energy(p: dict, q: np.ndarray, states: np.ndarray) -> np.ndarray:
  """e_j = g v^T/||v|| tanh(W q + V k_j + b) + r (Raffel et al. 2017, sec. 2.5) [S]."""
  Wq = p["query"]["kernel"].T
  V, b = p["key"]["kernel"].T, p["key"]["bias"]
  v = p["v"]["kernel"][:, 0]
  return np.array([p["g"] * v @ np.tanh(Wq @ q + V @ kj + b) / np.linalg.norm(v) + p["r"]
                   for kj in states])


def monotonic_expected(p: dict, q: np.ndarray, states: np.ndarray, mask: np.ndarray,
                       previous: np.ndarray, noise=None):
  """Raffel et al. eq. 9 as written, a sum over k of products over l:
  alpha_j = p_j sum_{k<=j} alpha'_k prod_{l=k}^{j-1} (1 - p_l), p = sigmoid(e + noise),
  p = 0 at padding: (context, alpha)."""
  e = monotonic_energy(p, q, states) + (0.0 if noise is None else noise)
  prob = np.where(mask, sigmoid(e), 0.0)
  alpha = np.array([prob[j] * sum(previous[k] * np.prod(1 - prob[k:j]) for k in range(j + 1))
                    for j in range(len(mask))])
  alpha = np.where(mask, alpha, 0.0)
  return alpha @ states, alpha


def monotonic_hard(p: dict, q: np.ndarray, states: np.ndarray, mask: np.ndarray,
                   position: int):
  """Raffel et al. Algorithm 1, one output step: from j = t_{i-1}, attend to the first
  h_j with sigmoid(e_j) >= 0.5; none: context 0 and the position past the end.
  (context, weights, position)."""
  e = monotonic_energy(p, q, states)
  weights = np.zeros(len(mask))
  for j in range(position, int(mask.sum())):
    if sigmoid(e[j]) >= 0.5:
      weights[j] = 1.0
      return states[j], weights, j
  return np.zeros(states.shape[1]), weights, int(mask.sum())


def mocha_expected(p: dict, q: np.ndarray, states: np.ndarray, mask: np.ndarray,
                   previous: np.ndarray, width: int, noise=None):
  """Chiu & Raffel 2018 as written: alpha from monotonic_expected, u_j = v^T tanh(W q + U
  k_j + b) (the chunk energy), beta_j = sum_{k=j}^{j+w-1} alpha_k exp(u_j) /
  sum_{l=k-w+1}^{k} exp(u_l) over real positions: (context, beta, alpha)."""
  _, alpha = monotonic_expected(p["monotonic"], q, states, mask, previous, noise)
  u = attention_scores("additive", p["chunk"], q, states)
  real = np.flatnonzero(mask)
  beta = np.zeros(len(mask))
  for j in real:
    for k in range(j, min(j + width, len(mask))):
      chunk = [l for l in range(k - width + 1, k + 1) if l >= 0 and mask[l]]
      if mask[k]:
        beta[j] += alpha[k] * np.exp(u[j]) / sum(np.exp(u[l]) for l in chunk)
  return beta @ states, beta, alpha


def mocha_hard(p: dict, q: np.ndarray, states: np.ndarray, mask: np.ndarray, position: int,
               width: int):
  """Chiu & Raffel 2018, Algorithm 1 at test time: t from monotonic_hard, then a softmax of
  the chunk energies over h_{t-w+1..t}: (context, weights, position)."""
  _, stop, position = monotonic_hard(p["monotonic"], q, states, mask, position)
  weights = np.zeros(len(mask))
  if stop.sum() == 0:
    return np.zeros(states.shape[1]), weights, position
  chunk = list(range(max(0, position - width + 1), position + 1))
  u = attention_scores("additive", p["chunk"], q, states[chunk])
  weights[chunk] = np.exp(u - u.max()) / np.exp(u - u.max()).sum()
  return weights @ states, weights, position


def attend_step(variant: str, p: dict, q: np.ndarray, states: np.ndarray, summary: np.ndarray,
                mask: np.ndarray, t: int, window: int, state, search: bool = False):
  """One decoder step of any variant with its state: (context, weights, state')."""
  if variant == "coverage_additive":
    return coverage_additive(p, q, states, mask, state)
  if variant == "mocha":
    alignment, position = state
    if search:
      context, weights, position = mocha_hard(p, q, states, mask, position, window)
      return context, weights, (alignment, position)
    context, weights, alignment = mocha_expected(p, q, states, mask, alignment, window)
    return context, weights, (alignment, position)
  if variant == "monotonic":
    alignment, position = state
    if search:
      context, weights, position = monotonic_hard(p, q, states, mask, position)
      return context, weights, (alignment, position)
    context, weights = monotonic_expected(p, q, states, mask, alignment)
    return context, weights, (weights, position)
  return (*attend(variant, p, q, states, summary, mask, t, window), state)
