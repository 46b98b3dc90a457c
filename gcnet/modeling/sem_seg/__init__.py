from .head import AUXILIARY_HEAD, HEAD_GC, ContextHead
from .segmentor import INFERENCE, INFERENCE_MODES, ContextSegmentor
