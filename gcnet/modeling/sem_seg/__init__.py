from .head import CONTEXT_TYPES, DEFAULT_SEG_GC, ContextHead
from .segmentor import INFERENCE_MODES, ContextSegmentor
