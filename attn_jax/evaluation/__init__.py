"""Evaluation: metrics, BLEU, the evaluation and decoding passes, and plots. Imports the
layers below it (model, data, decode)."""
