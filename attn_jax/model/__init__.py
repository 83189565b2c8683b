"""The model: layers and matmul precision, recurrent cells, the attention variants, the
encoder, the decoder, the output layer's loss and the whole encoder-decoder (seq2seq).
Imports only `attn_jax.config`."""
