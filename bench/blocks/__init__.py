"""Building blocks several model families share, each written once.

A diffusion pipeline is a denoiser with text encoders and a VAE around it, and the families
share most of the latter: CLIP-L and OpenCLIP bigG (FLUX, SD3.5), T5-XXL (FLUX, SD3.5), UMT5-XXL
(Wan), Qwen2.5-VL (Qwen-Image), AutoencoderKL (FLUX, SD3.5) and the causal Wan VAE (Wan,
Qwen-Image). For each block this package holds its config from a spec's sizes and a tokenizer's
ids, its model built on the meta device, and its working memory for `bench size`
(docs/size.md); bench/models/tokenizers.py holds their local tokenizers.

A family (bench/families) composes these blocks with its own denoiser; nothing here knows a
family, the families' registry, or which block a family uses. Nothing imports torch,
diffusers or transformers at module level.
"""
