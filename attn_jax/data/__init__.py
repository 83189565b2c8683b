"""The data: datasets and batches, corpus files, vocabularies and BPE-dropout, length
buckets, the synthetic tasks, translation splits, and a run's input pipeline. Imports the
model layer at most."""
