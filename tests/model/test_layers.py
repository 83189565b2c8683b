"""Dense, embedding and dropout layers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from attn_jax.model import layers


def test_dense_and_embed():
  init = layers.dense_init(jax.random.key(0), 3, 4)
  assert init["kernel"].shape == (3, 4)
  np.testing.assert_array_equal(init["bias"], np.zeros(4))
  x = np.arange(6, dtype=np.float32).reshape(2, 3)
  rng = np.random.default_rng(0)
  p = {"kernel": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32), "bias": jnp.arange(4.0)}
  np.testing.assert_allclose(np.asarray(layers.dense(p, x)),
                             x @ np.asarray(p["kernel"]) + np.arange(4), rtol=1e-6)
  nb = layers.dense_init(jax.random.key(0), 3, 4, bias=False)
  assert set(nb) == {"kernel"}
  e = layers.embed_init(jax.random.key(0), 5, 2)
  np.testing.assert_array_equal(np.asarray(layers.embed(e, jnp.array([[4, 0]]))),
                                np.asarray(e["embedding"])[[[4, 0]]])


def test_dropout():
  x = jnp.ones((200, 50))
  assert layers.dropout(None, x, 0.5) is x
  assert layers.dropout(jax.random.key(0), x, 0.0) is x
  y = np.asarray(layers.dropout(jax.random.key(0), x, 0.25))
  assert set(np.unique(y)) <= {0.0, np.float32(1 / 0.75)}
  assert abs((y == 0).mean() - 0.25) < 0.02  # 10,000 draws

