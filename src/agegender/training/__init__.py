"""Training (needs torch): configuration and its flags, presets, augmentation, losses, the
training model, the step, the epoch loop and the run orchestrator, one module each.

Nothing is imported here, so reading a configuration or building the command line's flags
(`training.config`, `training.flags`) does not load torch.
"""
