"""One module per on-disk format; each ``load(cfg, notes)`` returns a ``nntrain.data.Dataset``.

``nntrain.data.LOADERS`` maps ``data.dataset`` names to these (imported lazily so that
PIL/torchvision are loaded only by the command that needs them).
"""
