"""Model definitions (torch), their configuration (`models.config`, plain data) and checkpoints."""
