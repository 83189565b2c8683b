"""Decoding: greedy search, beam search and ensembles of models. Imports the model and data
layers."""
