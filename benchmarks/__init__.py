"""Benchmark harness: prompt tuning vs model tuning vs Hugging Face PEFT, and eval throughput.

Run `python -m benchmarks.run [--quick] [--json out.json]`; see benchmarks/README.md.
"""
