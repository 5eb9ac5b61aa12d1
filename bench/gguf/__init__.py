"""GGUF tools: bit-exact ggml quantizers (Q8_0, Q6_K, Q5_K, Q4_K), FLUX converter, inspector."""

from bench.gguf.convert import QuantizeSummary, quantize_checkpoint
from bench.gguf.errors import ConversionError, GGUFFileError
from bench.gguf.qtypes import supported_quant_types
from bench.gguf.quants import dequantize, quantize

__all__ = [
    "ConversionError",
    "GGUFFileError",
    "QuantizeSummary",
    "dequantize",
    "quantize",
    "quantize_checkpoint",
    "supported_quant_types",
]
