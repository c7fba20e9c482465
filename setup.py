"""Installs `prompt_tuning`: a JAX/Flax reproduction of Lester et al. (2021).

    pip install -e ".[test]"        # CPU jax, without the Hugging Face parity tests
    pip install -e ".[test,parity]" torch==2.13.0   # what CI and the README use: adds the parity tests
    pip install -e . "jax[cuda12]"  # on a GPU machine
"""
import setuptools

setuptools.setup(
    name="prompt_tuning",
    version="0.1.0",
    description=(
        "The Power of Scale for Parameter-Efficient Prompt Tuning, in JAX/Flax "
        "with a self-contained T5 1.1 and a T5X-style trainer."
    ),
    python_requires=">=3.11",
    packages=setuptools.find_packages(include=["prompt_tuning", "prompt_tuning.*"]),
    include_package_data=True,
    install_requires=[
        "jax>=0.4.30",
        "flax>=0.10",
        "optax>=0.2.3",
        "orbax-checkpoint>=0.6",
        "seqio>=0.0.19",
        "tensorflow-datasets>=4.9",
        "gin-config>=0.5",
        "sentencepiece>=0.2",
        "tensorstore>=0.1.60",
        "safetensors>=0.4",
        "msgpack>=1.0",
        "tqdm>=4.60",
        "matplotlib>=3.7",
    ],
    extras_require={
        "test": ["pytest>=8", "pytest-timeout>=2", "pytest-xdist>=3", "nbclient>=0.10", "nbformat>=5.9", "ipykernel>=6"],
        # torch is pinned on the command line (README), not here: an unpinned
        # torch pulls gigabytes of CUDA wheels on a CPU machine.
        "parity": ["transformers>=4.40", "peft>=0.10"],
    },
)
