"""Model definitions and the factory that builds them from configuration."""

from agegender.models.factory import ARCHITECTURES, ModelConfig, create_model

__all__ = ["ARCHITECTURES", "ModelConfig", "create_model"]
