"""attn_jax: attention in RNN encoder-decoders, as pure JAX functions."""
