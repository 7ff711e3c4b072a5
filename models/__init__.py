"""The score-SDE core: SDEs, parametrisations, networks, training, checkpoints, samplers, guidance."""
