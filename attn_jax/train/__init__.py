"""Training: the train and eval steps, the loop, checkpoints and resuming, restoring a
trained model, fine-tuning starts, devices, seeds and the run log. Imports the layers below
it (model, data, decode, evaluation)."""
