"""Install tinymed. `kernels/` ships as the subpackage `tinymed.kernels` (CUDA C sources and
Numba kernels), so the GPU backends find their kernels wherever the package is installed, and
`tutorials/` (the course's chapters and the instructor's guide) as `tinymed.tutorials`, so
`tinymed course release` and `tinymed course check` work from a plain `pip install`."""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r'VERSION = "([^"]+)"', (HERE / "tinymed" / "version.py").read_text()).group(1)

setup(
    name="tinymed",
    version=VERSION,
    description="A from-scratch deep-learning framework for teaching medical image analysis",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    # Every package under tinymed/ (found, so a new one cannot be left out of a
    # non-editable install), plus kernels/ installed as tinymed.kernels and the chapters as
    # tinymed.tutorials (their figures stay behind: a chapter draws its own).
    packages=find_packages(include=["tinymed", "tinymed.*"])
    + ["tinymed.kernels", "tinymed.kernels.numba", "tinymed.tutorials"],
    package_dir={
        "tinymed.kernels": "kernels",
        "tinymed.kernels.numba": "kernels/numba",
        "tinymed.tutorials": "tutorials",
    },
    package_data={"tinymed.kernels": ["cuda/*.cu", "cuda/*.cuh"], "tinymed.tutorials": ["*.py", "README.md"]},
    install_requires=["numpy>=1.24", "matplotlib>=3.7", "tqdm>=4.60"],
    extras_require={
        "test": [
            "pytest>=7",
            "hypothesis>=6.80",
            "ruff>=0.6",
            "numba>=0.59",
            "cuda-bindings>=12",
            "nvidia-cuda-nvrtc",
            "tinymed[distributed]",  # the tests run mpiexec -n 2
            "tinymed[course]",  # and every chapter as a notebook
        ],
        # The CUDA-toolkit extras bring what compiling needs: NVRTC and the CUDA headers for
        # CuPy (ctk), NVVM for Numba (cu13); the plain wheels cannot compile a kernel.
        "cuda": ["cupy-cuda13x[ctk]>=14", "numba-cuda[cu13]>=0.20"],
        # MPI for tinymed.distributed: the bindings, and MPICH with its mpiexec (on a cluster,
        # install mpi4py alone, built against the site's MPI).
        "distributed": ["mpi4py>=4", "mpich"],
        # What the chapters need to open, run and grade as notebooks.
        "course": [
            "jupytext>=1.16",
            "ipykernel>=6",
            "nbclient>=0.10",
            "matplotlib>=3.7",
            # Chapters 6 and 7 run the Numba kernels in the simulator and compile the CUDA C with
            # NVRTC; chapter 6 holds a kernel to the reference with hypothesis.
            "numba>=0.59",
            "hypothesis>=6.80",
            "cuda-bindings>=12",
            "nvidia-cuda-nvrtc",
        ],
    },
    entry_points={"console_scripts": ["tinymed = tinymed.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
    ],
)
