from .registry import OWN_MODELS, ImageClassifier, count_parameters, create_model

__all__ = ["OWN_MODELS", "ImageClassifier", "count_parameters", "create_model"]
