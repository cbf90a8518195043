"""The ``tinymed`` command, run as one rank of a job, with a record of what this rank writes.

``python train_cli.py RECORD_DIR WATCHED_DIR [--interrupt-after-epoch K] -- ARGS...`` runs
``tinymed ARGS`` and appends to ``RECORD_DIR/rank<R>.txt`` one line per file this process
opens for writing, creates, renames, links or deletes under ``WATCHED_DIR`` (seen through
Python's audit hooks, so nothing in tinymed is changed to watch it). Each line is written
at once, so the record survives a job that is aborted. ``--interrupt-after-epoch K`` stops
the run with a KeyboardInterrupt (as Ctrl-C under mpiexec, on every rank) once rank 0 has
saved the checkpoint of epoch K: a run to resume. (Without the barrier rank 1, which writes
nothing, would be interrupted first, and the abort that ends the job would stop rank 0
mid-save.)
"""

import os
import sys
from pathlib import Path

import tinymed.distributed as dist
from tinymed.cli import main
from tinymed.train.run import RunDirectory

# The audit events that change a directory, and which of their arguments are paths.
CHANGES = {"os.mkdir": 1, "os.rename": 2, "os.link": 2, "os.remove": 1, "os.rmdir": 1, "os.symlink": 2}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def watch(record_dir, watched_dir):
    watched = os.path.realpath(watched_dir)
    record = open(Path(record_dir) / f"rank{os.environ.get('PMI_RANK', '0')}.txt", "a", buffering=1)  # noqa: SIM115

    def inside(path):
        return isinstance(path, (str, bytes, os.PathLike)) and os.path.realpath(os.fsdecode(path)).startswith(watched)

    def hook(event, args):
        if event == "open":
            path, _, flags = args
            paths = [path] if flags & WRITE_FLAGS else []
        else:
            paths = list(args[: CHANGES.get(event, 0)])
        for path in filter(inside, paths):
            record.write(f"{event} {os.path.realpath(os.fsdecode(path))}\n")

    sys.addaudithook(hook)


def interrupt_after_epoch(epoch):
    save = RunDirectory.save

    def save_then_interrupt(self, state, metadata, seconds, best=None):
        save(self, state, metadata, seconds, best)
        if metadata["epoch"] == epoch:
            dist.barrier()
            raise KeyboardInterrupt

    RunDirectory.save = save_then_interrupt


if __name__ == "__main__":
    separator = sys.argv.index("--")
    options, command = sys.argv[1:separator], sys.argv[separator + 1 :]
    watch(options[0], options[1])
    if "--interrupt-after-epoch" in options:
        interrupt_after_epoch(int(options[options.index("--interrupt-after-epoch") + 1]))
    sys.exit(main(command))
