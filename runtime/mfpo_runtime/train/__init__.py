"""Training for the align stages: answer log-probs, the MFPO losses, references, the trainer
loop and its checkpoints. Called by `mfpo_runtime.stages.align` and the train benchmark."""
