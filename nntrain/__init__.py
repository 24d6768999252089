"""nntrain: train small image classifiers with PyTorch the disciplined way."""

__version__ = "0.1.0"
