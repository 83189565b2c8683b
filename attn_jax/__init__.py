"""attn_jax: attention in RNN encoder-decoders, as pure JAX functions.

Entry points (the programs in experiments/ call these):

* `attn_jax.train.loop.train_and_evaluate(config, workdir)`: trains, evaluates and
  checkpoints a run; resumes it from its workdir.
* `attn_jax.train.inference.load(workdir)`: a trained model (config, parameters,
  vocabularies) restored from its checkpoints; `load_ensemble` for several.
* `attn_jax.decode.searches.make_search(config, beam_size, alpha)`: the jitted greedy or
  beam search; `attn_jax.train.inference.translate` runs it over raw sentences.
* `attn_jax.evaluation.held_out`: evaluation and decoding passes over a held-out split.
* `attn_jax.study.comparison.compare(config, workdir, plan)`: attention variants trained
  over seeds, scored and reported side by side.
* `attn_jax.model.attention.VARIANTS`: the registry of attention variants.

The packages are layers, lowest first: config (with batch and compiling), model, data,
decode, evaluation, train, study, perf; each imports only those before it.
"""
