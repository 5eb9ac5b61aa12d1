"""Documented limits on what an input may ask for (docs/limits.md).

Every count and length a user controls is bounded here, and checked before anything is
allocated or run: a config that implies a hundred million images, a prompt file of gigabytes
or a run folder line of gigabytes is one clear line, not a process that swaps for an hour. The
limits are far above any sweep this harness is meant for; raise one here (and in
docs/limits.md) if a real sweep needs more. GGUF header limits live with the header reader
(bench/gguf/header.py).
"""

from __future__ import annotations

# Files read whole.
MAX_CONFIG_BYTES = 1 << 20  # a config is a few KiB; 1 MiB leaves room for long inline prompts
MAX_PROMPT_FILE_BYTES = 16 << 20  # 100k prompts of ~160 characters
MAX_MANIFEST_BYTES = 256 << 20  # holds the prompts and images lists: ~1M images fit
MAX_JSONL_LINE_BYTES = 16 << 20  # one record or score row; real ones are a few KiB
MAX_YAML_DEPTH = 64  # nesting of mappings and lists; configs use at most 4

# Names become file names (images/<cell-id>/<prompt-id>__r<repeat>.png, results/<run-id>):
# 64 characters each keep every path component under the usual 255-byte limit.
MAX_NAME_CHARS = 64

# Prompts.
MAX_PROMPTS = 100_000
MAX_PROMPT_CHARS = 10_000  # T5 reads at most 512 tokens (~2-3k characters); CLIP 77

# Image size. Each side must also be a multiple of what the model family's pipeline keeps
# (its VAE's down-sampling times the transformer's patch side: 16 for FLUX, 32 for Wan 2.2),
# or the pipeline rounds it down with only a log warning and a record would name a size the
# image is not: bench.families.base.Family.side_rule.
MIN_SIDE = 16
MAX_SIDE = 8192

# Per-image and per-run work.
MAX_STEPS = 1000  # the flow-matching schedulers' training timesteps; more means nothing
MAX_SEQUENCE_LENGTH = 512  # T5's limit in FluxPipeline
MAX_REPEATS = 10_000
MAX_WARMUP = 100
MAX_GUIDANCE = 100.0
# Video: Wan 2.1 makes 81 frames at 16 fps, Wan 2.2 121 at 24; a frame count is also a factor
# of the run's megapixel-steps below, so this bounds one video, not the run.
MAX_FRAMES = 1025
MAX_FPS = 240
MAX_BLOCKS_PER_GROUP = 1024
MAX_VARIANTS = 64
MAX_OFFLOAD_MODES = 16
MAX_SPEEDUPS = 32
MAX_RESOLUTIONS = 64
MAX_IMAGES_PER_CELL = 100_000  # prompts x repeats
MAX_RUN_IMAGES = 1_000_000  # cells x images per cell: the image records of one run
# images x steps x megapixels over the whole run (e.g. 100k images of 1024x1024 at 50 steps
# is 5.2e6): a bound on how long a run may be asked to go, whatever the other factors are.
MAX_RUN_MEGAPIXEL_STEPS = 1e8

# Seeds: torch.Generator.manual_seed takes 0 .. 2**64-1 (a negative seed wraps around to the
# same generator state as a large positive one, so it would name a seed that was not used).
MAX_SEED = 2**64 - 1

# Devices: torch stores a device index as int8, so cuda:128 means cuda:-128.
MAX_DEVICE_INDEX = 127
