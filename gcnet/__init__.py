"""GCNet (Global Context Networks) for detectron2.

``gcnet.layers`` holds the paper's blocks as plain PyTorch modules. The other packages
(``gcnet.modeling``, ``gcnet.data``, ...) build on detectron2 and say so when it is missing.
"""

__version__ = "0.1.0"
