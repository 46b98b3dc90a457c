"""Training settings: detectron2's LazyConfig ``train`` dict (output_dir, init_checkpoint,
max_iter, amp, ddp, checkpointer, eval_period, log_period, device) for the 1x schedule, plus
the options ``tools/train_net.py`` adds."""

from gcnet.engine.config import default_device, get_detectron2_config
from gcnet.engine.inference import InferenceOptions

train = get_detectron2_config("common/train.py").train
train.max_iter = 90000
# An initial checkpoint (init_checkpoint) of another architecture is refused: its tensors of
# another shape (other than the layers sized by the number of classes, which start new) mean
# another model. True loads whatever fits instead.
train.init_checkpoint_partial = False
# Where the model runs: CUDA when this machine has it, else the CPU (train.device=cpu or
# cuda:1 on the command line to choose).
train.device = default_device()
# Mixed precision on CUDA: "float16" (with a gradient scaler) or "bfloat16".
train.amp.precision = "float16"
# Gradient clipping by total norm; the original GCNet configs clip at 35.
train.clip_grad = dict(enabled=False, max_norm=35.0)
# What to do with a step whose loss is not finite or spikes above spike_factor x the median
# of the last `window` steps: "skip" it, or "reload" the last checkpoint (gcnet.engine.LossGuard).
train.loss_guard = dict(action="skip", spike_factor=10.0, window=20, max_consecutive=10)
# Keep model_best.pth for the best value of this metric at evaluation time ("" to disable).
train.best_checkpoint = dict(metric="segm/AP", mode="max")
train.seed = -1
# Throughput (README "Performance"): cuDNN's algorithm search for fixed input sizes, and the
# channels_last memory format (faster convolutions on tensor-core GPUs, with train.amp).
train.cudnn_benchmark = False
train.channels_last = False
# Inference (README "Performance"): fold each fixed BatchNorm into its conv (the predictor, demos,
# predict.py, export and --eval-only); for the predictor, channels_last and torch.compile True,
# False or "auto" (measured once on the device), and bfloat16 autocast (opt-in).
train.inference = InferenceOptions().to_dict()
