"""Quantization benchmarking harness for diffusion pipelines."""

__version__ = "0.1.0"
