"""What a model family is to the harness: one class per family, one module each.

A family is everything the harness knows about one kind of diffusion pipeline that is not
generic: the synthetic specs it builds offline (a tiny one for CPUs and the real architecture
with random weights), which shared building blocks it is made of (bench/blocks: CLIP, T5, UMT5,
Qwen2.5-VL, AutoencoderKL, the Wan VAE), its own denoiser, how its pipeline is called, its GGUF
tensor names and rules, and its denoiser's working-memory formula for `bench size`. The engines
below take a family as an argument and never test a class name: bench/models/synthetic.py
(cache folder, seeded fill, saving, digest), bench/gguf (quantizer, writer), bench/size
(components, terms); the registry (bench/families/__init__.py) and the look-ups by name
(bench/families/synthetic.py, gguf.py, sizing.py) sit beside the families. A new family is one
module defining a subclass and its entry in bench/families/__init__.py;
tests/families/test_conformance.py runs every registered family through the same checks.

Nothing here imports torch, diffusers or transformers at module level: the config and the CLI
look families up by name, and the GGUF converter's worker processes must start without torch.
docs/extending.md says what a new family writes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from bench.blocks.meta import on_meta
from bench.blocks.text_encoders import text_encoder_activations
from bench.blocks.vaes import autoencoder_kl_decode_activations
from bench.errors import UserInputError
from bench.models.synthetic import fill_components
from bench.sizing.components import Component, PipelineComponents, offload_order

if TYPE_CHECKING:
    from PIL.Image import Image

    from bench.gguf.names import TensorNames
    from bench.sizing.terms import DenoiserStreams, Scenario

#: Called after each denoising step the way diffusers' ``callback_on_step_end`` is.
StepCallback = Callable[..., dict[str, Any]]


class UnknownPreset(UserInputError):
    """A synthetic preset the family does not define; the message lists the ones it does."""


class UnsupportedOption(UserInputError):
    """A generation option the family does not take (a video frame count for an image model),
    or a value of it the pipeline would not make as asked.

    `key` is the setting as a config names it (``num_frames``) and `problem` the rest, so a
    caller that calls the setting otherwise (`bench size --frames`, ``num_frames=``) names it
    its own way with the same words.
    """

    def __init__(self, key: str, problem: str) -> None:
        self.key, self.problem = key, problem
        super().__init__(f"{key}: {problem}")


class NonFiniteOutput(RuntimeError):
    """The pipeline returned NaN or infinite pixel values. Cast to 8 bits they would be a
    black (or clipped) image scored as if the model had drawn it; the image is a failure with
    this reason instead (a half-precision overflow, a schedule that divides by zero)."""


def pictures(array: Any) -> list[Image]:
    """PIL images of a pipeline's ``output_type="np"`` result (float, [0, 1], ... × H × W × 3:
    one image per leading index), converted as diffusers' own ``numpy_to_pil`` converts them,
    after checking every value is finite (`NonFiniteOutput` otherwise)."""
    import numpy as np  # with PIL: loaded only when a pipeline has run
    from PIL import Image as PILImage  # PIL: heavy

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
class SideRule:
    """What an image side must be for one pipeline: a multiple of `multiple`, because of `why`
    (the VAE's down-sampling and the transformer's patches, in words). The pipeline refuses a
    side that is not a multiple of `refused` (0: none; it rounds every other side down with
    only a log warning), which the message says instead of the rounding."""

    multiple: int
    why: str
    refused: int = 0

    def problem(self, value: int, low: int = 1, high: int | None = None) -> str | None:
        """None when `value` is a multiple; else what to write instead, naming the nearest
        valid sides within `low`..`high`."""
        step = self.multiple
        if value % step == 0:
            return None
        below, above = value // step * step, (value // step + 1) * step
        nearest = " or ".join(
            str(v) for v in (below, above) if v >= max(low, step) and (high is None or v <= high)
        )
        if not below:
            effect = "the pipeline cannot make it"
        elif self.refused and value % self.refused:
            effect = "the pipeline refuses it"
        else:
            effect = f"the pipeline would silently make it {below}"
        return f"expected a multiple of {step} ({self.why}, so {effect}); nearest valid: {nearest}"


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
    #: image sides must be a multiple of this (VAE down-sampling × patch size) in the published
    #: architecture, else the pipeline silently resizes (or refuses); `side_why` says why in
    #: words and `side_refused` is the multiple the pipeline itself insists on (0: it rounds
    #: every other side down with only a log warning). A pipeline whose VAE downsamples more
    #: (Wan 2.2) needs more: `side_rule` computes it from the VAE's and transformer's configs.
    side_multiple: ClassVar[int] = 16
    side_why: ClassVar[str] = "VAE downsamples by 8 and its transformer packs 2×2 patches"
    side_refused: ClassVar[int] = 0
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
    #: the pipeline's tokenizers, by its constructor's keys: the kind of each local stand-in
    #: (bench/models/tokenizers.py's BUILDERS: "clip", "t5", "qwen2")
    tokenizer_kinds: ClassVar[Mapping[str, str]] = {}
    #: the spec's fields holding text-encoder sizes: a spec that names the vocabulary in each
    #: (a published architecture) is sized with the real tokenizers' special ids, any other
    #: with the local tokenizers' (as a build always is)
    text_encoder_fields: ClassVar[tuple[str, ...]] = ()
    #: diffusers scheduler class of a synthetic build (its config: the spec's ``scheduler``)
    scheduler_class: ClassVar[str] = "FlowMatchEulerDiscreteScheduler"
    #: keywords of bench.models.synthetic.fill_components for a build (``tie``, ``cast_buffers``)
    fill_options: ClassVar[Mapping[str, bool]] = {}
    #: the config key only the family's VAE has: how a sized component is told to be the VAE
    vae_config_key: ClassVar[str] = "block_out_channels"

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

    def local_tokenizers(self) -> dict[str, Any]:
        """The pipeline's tokenizers, by its constructor's keys, built locally."""
        from bench.models.tokenizers import BUILDERS  # loads transformers

        return {key: BUILDERS[kind]() for key, kind in self.tokenizer_kinds.items()}

    def models(self, spec: Any, tokenizers: Mapping[str, Any]) -> dict[str, Any]:
        """The model components of ``spec`` on the meta device, by the pipeline's keys: the
        denoiser (``denoiser_class`` of the spec's ``transformer`` config), then the family's
        text encoders and VAE (`blocks`)."""
        import diffusers  # diffusers: heavy, loaded only to build

        denoiser = on_meta(getattr(diffusers, self.denoiser_class), **spec.transformer)
        return {self.denoiser: denoiser, **self.blocks(spec, tokenizers)}

    def blocks(self, spec: Any, tokenizers: Mapping[str, Any]) -> dict[str, Any]:
        """The text encoders and the VAE of ``spec`` on the meta device (bench/blocks), by the
        pipeline's keys: vocabularies and special ids from ``tokenizers`` (the local ones, by
        key), or, where it has none, the real tokenizers' (the spec names the vocabulary)."""
        raise NotImplementedError

    def pipeline_options(self, spec: Any) -> dict[str, Any]:
        """Constructor arguments of the pipeline that are neither models, tokenizers nor the
        scheduler (Wan 2.2's ``expand_timesteps``)."""
        return {}

    def meta_components(self, spec: Any) -> dict[str, Any]:
        """The model components of ``spec`` on the meta device: shapes without memory, for
        `bench size` and the builder. Vocabulary sizes the spec does not name come from the
        family's local tokenizers, as in a build."""
        named = all("vocab_size" in getattr(spec, f) for f in self.text_encoder_fields)
        return self.models(spec, {} if named else self.local_tokenizers())

    def build_components(self, spec: Any, seed: int) -> dict[str, Any]:
        """Every pipeline component, as the pipeline class's constructor takes them: the models
        filled by bench.models.synthetic's seeded fill, the local tokenizers, the scheduler."""
        import diffusers  # diffusers: heavy, loaded only to build
        import torch  # torch: likewise

        tokenizers = self.local_tokenizers()
        modules = self.models(spec, tokenizers)
        fill_components(modules, seed, getattr(torch, spec.dtype), **self.fill_options)
        scheduler = getattr(diffusers, self.scheduler_class)(**spec.scheduler)
        return {**modules, **tokenizers, "scheduler": scheduler, **self.pipeline_options(spec)}

    def build_pipeline(self, spec: Any, seed: int) -> Any:
        """The pipeline object of a synthetic build, ready for ``save_pretrained``."""
        import diffusers  # diffusers: heavy, loaded only to build

        return getattr(diffusers, self.pipeline_class)(**self.build_components(spec, seed))

    # --- sizes ----------------------------------------------------------------------------
    def side_factors(
        self, vae: Mapping[str, Any], transformer: Mapping[str, Any]
    ) -> tuple[int, int]:
        """(the VAE's spatial down-sampling, the transformer's patch side) of the pipeline with
        these component configs, as the pipeline class computes them. The base class knows no
        architecture: the class's `side_multiple` as one factor."""
        return self.side_multiple, 1

    def side_rule(self, vae: Mapping[str, Any], transformer: Mapping[str, Any]) -> SideRule:
        """The multiple every side must be for the pipeline whose VAE and transformer have
        these configs (a spec's dicts, a folder's config.json files, a loaded model's
        ``config``), and why. Never less than the published architecture's `side_multiple`:
        a tiny preset (a 3-level VAE) keeps its real model's rule, so a config means the same
        size whichever preset it names."""
        factor, patch = self.side_factors(vae, transformer)
        if factor * patch <= self.side_multiple:
            return SideRule(
                self.side_multiple, f"{self.title}'s {self.side_why}", self.side_refused
            )
        why = (
            f"this {self.title} VAE downsamples by {factor} and its transformer packs "
            f"{patch}×{patch} patches"
        )
        return SideRule(factor * patch, why, self.side_refused)

    def preset_side_rule(self, preset: str) -> SideRule:
        """The side rule of a synthetic preset (`UnknownPreset` for a name it lacks)."""
        spec = self.preset(preset)
        return self.side_rule(spec.vae, spec.transformer)

    def pipeline_side_rule(self, pipe: Any) -> SideRule:
        """The side rule of a loaded pipeline, from its own VAE's and denoiser's configs."""
        vae = getattr(pipe, "vae", None)
        denoiser = getattr(pipe, self.denoiser, None)
        return self.side_rule(
            dict(getattr(vae, "config", None) or {}), dict(getattr(denoiser, "config", None) or {})
        )

    def check_generation_size(self, pipe: Any, height: int, width: int) -> None:
        """Refuse, before the pipeline runs, a size it would silently change (FLUX, Qwen-Image
        and Wan round it down with only a log warning): for a pretrained model, whose VAE the
        config could not know, this is where the rule is checked (`UnsupportedOption`, a cell
        failure naming the size)."""
        rule = self.pipeline_side_rule(pipe)
        for key, value in (("height", height), ("width", width)):
            problem = rule.problem(value)
            if problem:
                raise UnsupportedOption(key, f"{problem} (got {value})")

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
                    key, f"not a {self.title} generation option (accepted: {accepted})"
                )

    def check_video_option(self, key: str) -> None:
        """Refuse a video setting (``num_frames``, ``fps``) for a family that makes images (the
        config names the families that make videos: bench/config.py)."""
        if self.output != "video":
            raise UnsupportedOption(key, f"{self.title} makes images, not videos")

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
        """One generation: the pipeline called the way the family's documentation calls it
        (`call_arguments`: its own guidance keywords), its output as PIL images (one for an
        image family, the frames in order for a video family). ``guidance`` is the family's
        own guidance (FLUX: distilled guidance scale)."""
        self.check_options(options)
        self.check_generation_size(pipe, height, width)
        result = pipe(
            prompt,
            **self.call_arguments(guidance, options or {}),
            height=height,
            width=width,
            num_inference_steps=steps,
            max_sequence_length=max_sequence_length,
            generator=generator,
            callback_on_step_end=callback_on_step_end,
            output_type="np",
        )
        return pictures(result.frames[0] if self.output == "video" else result.images[:1])

    def call_arguments(self, guidance: float, options: Mapping[str, Any]) -> dict[str, Any]:
        """The pipeline call's keywords that are the family's own: its guidance, its negative
        prompt, a video's frame count (checked here)."""
        raise NotImplementedError

    # --- GGUF -----------------------------------------------------------------------------
    #: tensor names, fusions, high-precision tensors and architecture of the family's community
    #: GGUF files (a bench.gguf.names.TensorNames: FLUX's in bench/families/flux_gguf.py)
    gguf: ClassVar[TensorNames]

    # --- sizing ---------------------------------------------------------------------------
    def offload_order(self, names: list[str]) -> tuple[str, ...]:
        """The order model offload moves the components: the pipeline class's
        ``model_cpu_offload_seq``, then any component it does not name."""
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
        terms are generic (bench.sizing.predict); this is the part that depends on the model:
        the denoiser's by the family's formula, the VAE's and the text encoders' by their
        blocks' (bench/blocks)."""
        if component.name == self.denoiser:
            work, why = self.denoiser_activations(pipe, scenario, compute_dtype)
            return "transformer activations", work, why
        if self.vae_config_key in component.config:
            work, why = self.vae_activations(component, scenario)
            return "VAE decode activations", work, why
        work, why = self.text_encoder_activations(component, scenario)
        return f"{component.name} activations", work, why

    def denoiser_activations(
        self, pipe: PipelineComponents, scenario: Scenario, dtype: str
    ) -> tuple[int, str]:
        """The denoiser's peak in one step at the compute ``dtype``: (bytes, why); by default an
        image transformer's, one block (`block_activations`) over the image and text tokens
        of `denoiser_streams`."""
        streams = self.denoiser_streams(pipe, scenario)
        tokens, text = streams.image_tokens, streams.text_tokens
        transformer = pipe.components[self.denoiser]
        peak = self.block_activations(transformer, tokens + text, scenario.batch, dtype)
        return image_denoiser_peak(tokens, text, peak)

    def block_activations(
        self, transformer: Component, tokens: int, batch: int, dtype: str
    ) -> tuple[int, str]:
        """The peak of one of the denoiser's blocks over ``tokens`` (bytes, why): the family's
        transformer_activations."""
        raise NotImplementedError

    def denoiser_streams(self, pipe: PipelineComponents, scenario: Scenario) -> DenoiserStreams:
        """The token streams the denoiser's blocks return in one call (a cache's state)."""
        raise NotImplementedError

    def vae_activations(self, vae: Component, scenario: Scenario) -> tuple[int, str]:
        """The VAE decoder's peak: (bytes, why); by default AutoencoderKL's (FLUX.1, SD3.5) at
        full resolution."""
        return autoencoder_kl_decode_activations(
            vae, scenario.height, scenario.width, scenario.batch
        )

    def text_encoder_activations(self, encoder: Component, scenario: Scenario) -> tuple[int, str]:
        """A text encoder's peak at the prompt's sequence length (T5's or CLIP's formula)."""
        return text_encoder_activations(
            encoder, scenario.max_sequence_length, scenario.batch, encoder.dtype
        )


def image_denoiser_peak(image: int, text: int, peak: tuple[int, str]) -> tuple[int, str]:
    """A denoiser's ``peak`` over ``image`` + ``text`` tokens, the why saying how many of each."""
    work, why = peak
    return work, f"{image} image + {text} text tokens; {why}"
