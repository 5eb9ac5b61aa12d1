"""What a model family is to the harness: one class per family, one module each.

A family is everything the harness knows about one kind of diffusion pipeline that is not
generic: the synthetic specs it builds offline (a tiny one for CPUs and the real architecture
with random weights), how its pipeline is called and its output taken, its GGUF tensor names
and rules, and the working-memory formulas `bench size` uses. The generic machinery asks the
family and never tests a class name: bench/models/synthetic.py (cache folder, seeded fill,
saving, digest), bench/gguf (quantizer, writer), bench/size (offload residency, terms), the
runner (timing, records). A new family is one module defining a subclass and its entry in
bench/families/__init__.py; tests/families/test_conformance.py runs every registered family
through the same checks.

Nothing here imports torch, diffusers or transformers at module level: the config and the CLI
look families up by name, and the GGUF converter's worker processes must start without torch.

Adding a family (FLUX, SD3.5, Qwen-Image and Wan are the models): a module
``bench/families/<name>.py`` with a frozen spec dataclass and presets (a tiny one whose block
widths are multiples of 256 so the K-quants apply, and the real architecture),
``meta_components``/``build_components`` (local tokenizers from bench/models/tokenizers.py),
``generate`` (the pipeline's own keyword for guidance; a video family sets ``output = "video"``,
``default_num_frames``/``default_fps`` and ``check_num_frames``, takes ``num_frames`` in
``options`` and returns its frames, which the runner saves and every later stage reads as one
video), ``activations`` (reusing bench.size.predict's T5/CLIP/AutoencoderKL formulas where the
family has those parts; ``scenario.num_frames`` for a video), and a ``TensorNames`` subclass
with the community files' names and rules (``<name>_gguf.py``; tensors of more than 4
dimensions are written as the community files write them, bench/gguf/plan.py); then its entry
in ``FAMILIES``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from bench.errors import UserInputError

if TYPE_CHECKING:
    from PIL.Image import Image

    from bench.gguf.names import TensorNames
    from bench.size.components import Component, PipelineComponents
    from bench.size.predict import Scenario

#: Called after each denoising step the way diffusers' ``callback_on_step_end`` is.
StepCallback = Callable[..., dict[str, Any]]


class UnknownPreset(UserInputError):
    """A synthetic preset the family does not define; the message lists the ones it does."""


class UnsupportedOption(UserInputError):
    """A generation option the family does not take (a video frame count for an image model)."""


class NonFiniteOutput(RuntimeError):
    """The pipeline returned NaN or infinite pixel values. Cast to 8 bits they would be a
    black (or clipped) image scored as if the model had drawn it; the image is a failure with
    this reason instead (a half-precision overflow, a schedule that divides by zero)."""


def pictures(array: Any) -> list[Image]:
    """PIL images of a pipeline's ``output_type="np"`` result (float, [0, 1], ... × H × W × 3:
    one image per leading index), converted as diffusers' own ``numpy_to_pil`` converts them,
    after checking every value is finite (`NonFiniteOutput` otherwise)."""
    import numpy as np
    from PIL import Image as PILImage

    values = np.asarray(array)
    bad = int(values.size - np.isfinite(values).sum())
    if bad:
        raise NonFiniteOutput(
            f"{bad} of {values.size} output values are NaN or infinite (shape "
            f"{tuple(values.shape)}): the image would be cast to black"
        )
    pixels = (values.reshape(-1, *values.shape[-3:]) * 255).round().astype("uint8")
    return [PILImage.fromarray(p) for p in pixels]  # (H, W, 3) uint8: RGB


@dataclass(frozen=True)
class PublishedCount:
    """A parameter count as its source publishes it: ``value`` rounded to ``unit``.

    A built model matches when it rounds to the same figure (within half a unit), which is all
    a figure such as "11.9B params" on a model page says.
    """

    value: float
    unit: float
    source: str

    def matches(self, count: int) -> bool:
        return abs(count - self.value) <= self.unit / 2


class Family:
    """Base of every model family. Subclasses set the class attributes and implement the
    methods that raise NotImplementedError here."""

    #: registry key, the config's ``model.family``
    name: ClassVar[str]
    #: the family in tables and messages ("FLUX.1")
    title: ClassVar[str]
    #: diffusers pipeline class (``model_index.json``'s ``_class_name``)
    pipeline_class: ClassVar[str]
    #: the denoising component: what a GGUF file replaces, what the step timer hooks,
    #: whose dtype is the compute dtype in `bench size`
    denoiser: ClassVar[str] = "transformer"
    #: its diffusers class (``<class>.from_single_file`` loads GGUF files)
    denoiser_class: ClassVar[str]
    #: what one generation gives: one image, or the frames of one video
    output: ClassVar[Literal["image", "video"]] = "image"
    #: image sides must be a multiple of this (VAE down-sampling × patch size), else the
    #: pipeline silently resizes
    side_multiple: ClassVar[int] = 16
    #: preset the config uses when it names none
    default_preset: ClassVar[str] = "tiny"
    #: preset with the published architecture (random weights), the one sized by `--model`
    real_preset: ClassVar[str]
    #: the published model that preset reproduces, in words ("Stable Diffusion 3.5 Large"):
    #: what reports name when they say what a run is not
    real_model: ClassVar[str] = ""
    #: published parameter counts of the real architecture, per component
    published_parameters: ClassVar[Mapping[str, PublishedCount]] = {}
    #: family-specific generation settings `generate` accepts in ``options`` (Wan: num_frames)
    generation_options: ClassVar[tuple[str, ...]] = ()
    #: the pipeline's own default size (its __call__'s height/width), what `bench size` sizes
    #: when asked for none
    default_height: ClassVar[int] = 1024
    default_width: ClassVar[int] = 1024
    #: a video family's frame count and frame rate when the config names none (None: images)
    default_num_frames: ClassVar[int | None] = None
    default_fps: ClassVar[int | None] = None

    # --- synthetic pipelines --------------------------------------------------------------
    @property
    def presets(self) -> Mapping[str, Any]:
        """Synthetic specs by preset name: frozen dataclasses whose every field shapes the
        build (their ``asdict`` is hashed into the cache folder's name)."""
        raise NotImplementedError

    def preset(self, name: str) -> Any:
        """The spec of a preset, or `UnknownPreset` naming the family's presets."""
        try:
            return self.presets[name]
        except KeyError:
            raise UnknownPreset(
                f"preset {name!r}: not a {self.title} preset (known: {', '.join(self.presets)})"
            ) from None

    def cache_stem(self, preset: str) -> str:
        """First part of a synthetic cache folder's name; the family's name keeps presets of
        different families (both called "tiny") apart."""
        return f"{self.name}-{preset}"

    def meta_components(self, spec: Any) -> dict[str, Any]:
        """The model components of ``spec`` on the meta device: shapes without memory, for
        `bench size` and the builder. Vocabulary sizes the spec does not name come from the
        family's local tokenizers, as in a build."""
        raise NotImplementedError

    def build_components(self, spec: Any, seed: int) -> dict[str, Any]:
        """Every pipeline component (models filled by bench.models.synthetic's seeded fill,
        tokenizers made locally, scheduler), as the pipeline class's constructor takes them."""
        raise NotImplementedError

    def build_pipeline(self, spec: Any, seed: int) -> Any:
        """The pipeline object of a synthetic build, ready for ``save_pretrained``."""
        import diffusers

        return getattr(diffusers, self.pipeline_class)(**self.build_components(spec, seed))

    # --- running --------------------------------------------------------------------------
    def denoiser_module(self, pipe: Any) -> Any:
        """The denoiser of a loaded pipeline (the module the step timer hooks)."""
        return getattr(pipe, self.denoiser)

    def check_options(self, options: Mapping[str, Any] | None) -> None:
        """Refuse options the family does not take, naming the first one."""
        for key in options or {}:
            if key not in self.generation_options:
                accepted = ", ".join(self.generation_options) or "none"
                raise UnsupportedOption(
                    f"{key}: not a {self.title} generation option (accepted: {accepted})"
                )

    def check_video_option(self, key: str) -> None:
        """Refuse a video setting (``num_frames``, ``fps``) for a family that makes images,
        naming the registered video families."""
        if self.output == "video":
            return
        from bench.families import FAMILIES

        videos = ", ".join(f.name for f in FAMILIES.values() if f.output == "video")
        raise UnsupportedOption(
            f"{key}: {self.title} makes images, not videos (video families: model.family "
            f"{videos or 'none registered'})"
        )

    def check_num_frames(self, num_frames: int) -> None:
        """Refuse a frame count the pipeline would not generate as asked (an image family
        takes none; a video family overrides this with its VAE's temporal rule)."""
        self.check_video_option("num_frames")

    def generate(
        self,
        pipe: Any,
        prompt: str,
        *,
        height: int,
        width: int,
        steps: int,
        guidance: float,
        max_sequence_length: int,
        generator: Any,
        callback_on_step_end: StepCallback | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> list[Image]:
        """One generation: the pipeline called the way the family's documentation calls it,
        its output as PIL images (one for an image family, the frames in order for a video
        family). ``guidance`` is the family's own guidance (FLUX: distilled guidance scale)."""
        raise NotImplementedError

    # --- GGUF -----------------------------------------------------------------------------
    @property
    def gguf(self) -> TensorNames:
        """Tensor names, fusions, high-precision tensors and architecture of the community
        GGUF files of this family (bench.gguf.names.TensorNames)."""
        raise NotImplementedError

    # --- sizing ---------------------------------------------------------------------------
    def offload_order(self, names: list[str]) -> tuple[str, ...]:
        """The order model offload moves the components: the pipeline class's
        ``model_cpu_offload_seq``, then any component it does not name."""
        from bench.size.components import offload_order

        return offload_order(self.pipeline_class, names)

    def activations(
        self,
        component: Component,
        pipe: PipelineComponents,
        scenario: Scenario,
        compute_dtype: str,
    ) -> tuple[str, int, str]:
        """Working memory of one component while it runs under ``scenario``: (term name,
        bytes, why). The weights, offload residency, GGUF scratch, allocator and context
        terms are generic (bench.size.predict); this is the part that depends on the model."""
        raise NotImplementedError
