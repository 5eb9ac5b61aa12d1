"""GGUF tools: bit-exact ggml quantizers (Q8_0, Q6_K, Q5_K, Q4_K), the checkpoint converter
(a family's community layout, its tensor names passed in) and the file inspector.

Each name has one home: bench.gguf.quants (quantize, dequantize), bench.gguf.convert
(convert_checkpoint), bench.gguf.inspect (summarize_gguf), bench.gguf.qtypes
(supported_quant_types), bench.gguf.errors. Importing the package itself loads nothing, so a
family can name its tensors (bench.gguf.names) without loading numpy and the gguf library.
"""
