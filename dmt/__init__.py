"""dmt — Space-Time Diffusion Features for Zero-Shot Text-Driven Motion Transfer (Yatim et al.,
CVPR 2024) on ZeroScope, as a plain PyTorch library. It never imports ComfyUI.

Stages (each callable alone, each returning data):
    load_zeroscope → prepare_frames → invert_video → extract_targets → low_frequency_init
    → guided_sample → decode_latents;  or `transfer` for all of them.
On Wan 2.1 (load_wan), `transfer` runs attention-motion-flow guidance: extract_amf_targets →
    amf_guided_sample (dmt.transfer.amf_guidance, dmt.transfer.wan_transfer); with
    AMFSettings(guidance="smm") the paper's SMM guidance on transformer blocks: extract_smm_targets
    → the same amf_guided_sample (dmt.transfer.wan_smm, dmt.transfer.block_features). Stage by
    stage (as the ComfyUI nodes run it): invert_wan_video → extract_wan_targets → flow_init →
    wan_guided_sample → decode_wan_latents (dmt.transfer.wan_stages).
Motion customization (dmt.customize): load_examples → encode_examples → train_motion → save_motion /
    load_motion → apply_motions → generate_video, on ZeroScope or Wan through one model interface
    (dmt.models.interface: each model's encoders, training objective, prediction and sampler).
Metric: motion_fidelity(original, edited) (the paper's Motion-Fidelity score, offline tracker).
Batches: run_batch(job_file, model, out_dir, ray=None|"local"|"auto"|address) (cached, resumable).
"""

from .errors import (DMTError, DMTOutOfMemoryError, InputError, Interrupted, InversionMismatchError,
                     ModelLoadError)
from .transfer.context import ContextOptions
from .transfer.features import FEATURE_PATHS, capture_features, spatial_marginal_mean, truncated_forward
from .transfer.inversion import DEFAULT_INVERSION_STEPS, DEFAULT_SAMPLING_STEPS, Inversion, invert_latents, invert_video
from .models.latents import decode_latents, encode_frames, prepare_frames
from .transfer.loss import smm_loss, total_loss
from .models.memory import gradient_checkpointing, low_memory_mode, offloaded, on_device
from .metrics.motion_fidelity import MotionFidelity, draw_comparison, draw_tracks, motion_fidelity
from .models.zeroscope import DEFAULT_MODEL, ZeroScope, download_model, load_zeroscope, missing_files
from .models.wan import DEFAULT_WAN_MODEL, Wan, check_wan_frames, check_wan_size, load_wan
from .transfer.noise_init import low_frequency_init, low_pass
from .transfer.presets import PRESETS, Preset, apply_preset, get_preset, preset_kwargs
from .io.preview import latent_preview
from .transfer.pipeline import TransferResult, transfer
from .transfer.amf_guidance import (AMFSampleResult, AMFSettings, AMFTargets, WanSMMTargets, amf_guided_sample,
                                   extract_amf_targets)
from .transfer.wan_smm import extract_smm_targets
from .transfer.wan_transfer import FlowInversion, flow_init
from .transfer.wan_stages import (WanTargets, decode_wan_latents, extract_wan_targets, invert_wan_video,
                                  wan_guided_sample)
from .transfer.sampler import GuidanceSettings, SampleResult, denoise_step, guided_sample, optimize_latent
from .transfer.schedule import Schedule, make_schedule, valid_inversion_steps
from .transfer.inversion_files import load_inversion, save_inversion
from .transfer.targets import Targets, extract_targets
from .metrics.tracking import Tracks, track_points
from .models.text import AUTHORS_PROMPT_PREFIX, DEFAULT_NEGATIVE_PROMPT, encode_prompt
from .io.video import VideoClip, VideoReadError, read_video, write_video
from .customize import (GenerateSettings, Motion, MotionExample, MotionFileError, TrainResult, TrainSettings,
                        apply_motions, encode_examples, example_from_frames, generate_regularization,
                        generate_video, load_examples, load_motion, load_regularization, save_motion,
                        touched_parameters, train_motion)
from .batch import BatchReport, load_jobs, run_batch

__version__ = "0.2.0"
__all__ = [n for n in dir() if not n.startswith("_")]
