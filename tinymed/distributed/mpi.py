"""The MPI library (through mpi4py) and the launcher that started this process.

MPI is what clusters already run: ``mpiexec -n 4 python train.py`` (or ``srun`` under
Slurm) starts four copies of a program, and MPI tells each its rank (0 to 3) and the world
size (4). mpi4py is imported only when a process group is made, because importing
``mpi4py.MPI`` initialises MPI.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from types import ModuleType

from tinymed.distributed.errors import DistBackendError

INSTALL_HINT = (
    'install them with pip install "tinymed[distributed]" (mpi4py, and MPICH, which brings mpiexec), '
    "or on a cluster load its MPI first (e.g. module load openmpi) and pip install mpi4py"
)

# Environment variables that MPI launchers set in every process they start: MPICH's and
# Intel MPI's Hydra (PMI_*), Slurm's srun with PMIx, and Open MPI.
LAUNCHER_VARIABLES: tuple[str, ...] = ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE")


def is_mpi_launched() -> bool:
    """Whether an MPI launcher (``mpiexec``, ``srun``) started this process.

    A program started without one is a world of one process, however many copies of it
    run side by side."""
    return any(name in os.environ for name in LAUNCHER_VARIABLES)


def is_mpi4py_installed() -> bool:
    """Whether mpi4py can be found, without importing it (which would initialise MPI)."""
    return importlib.util.find_spec("mpi4py") is not None


def load_mpi(op: str) -> ModuleType:
    """``mpi4py.MPI``, initialising MPI on first use; raises :class:`DistBackendError` with
    what to install when mpi4py or the MPI library it needs is missing."""
    try:
        return importlib.import_module("mpi4py.MPI")
    # ImportError: no mpi4py; RuntimeError or OSError: mpi4py found no MPI library to load.
    except (ImportError, RuntimeError, OSError) as e:
        raise DistBackendError(f"{op}: the MPI backend needs mpi4py and an MPI library ({e}); {INSTALL_HINT}") from e
