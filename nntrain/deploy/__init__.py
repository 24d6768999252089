"""Using a trained model outside training: ``nntrain predict`` (label new inputs) and
``nntrain export`` (ONNX, torch.export, safetensors, each checked for parity before it is kept)."""
