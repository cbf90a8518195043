"""A checkpoint is read only by a tinymed that knows its format version.

A checkpoint written by another format version (newer, older, or none at all) may lay its
entries out differently; reading it as this version's would load wrong weights silently, so
it is refused with a message that names both versions.
"""

import json
import re

import numpy as np
import pytest
from helpers import complete_metadata

import tinymed as tm
from tinymed.models import build_model
from tinymed.train.checkpoint import FORMAT_VERSION, CheckpointError, load_checkpoint, load_model, save_checkpoint

MISSING = object()


def with_format_version(path, version):
    """Rewrite the checkpoint at ``path`` with its metadata's ``format_version`` set to
    ``version`` (removed for ``MISSING``), every other entry unchanged."""
    with np.load(path, allow_pickle=False) as npz:
        entries = {name: npz[name] for name in npz.files}
    metadata = json.loads(str(entries["metadata"]))
    if version is MISSING:
        del metadata["format_version"]
    else:
        metadata["format_version"] = version
    entries["metadata"] = np.array(json.dumps(metadata))
    with open(path, "wb") as f:
        np.savez(f, **entries)
    return path


@pytest.fixture
def saved(tmp_path):
    tm.manual_seed(0)
    return save_checkpoint(tmp_path / "lenet.npz", {"model": build_model("lenet").state_dict()}, complete_metadata())


def test_a_rewritten_checkpoint_of_this_version_still_loads(saved):
    """The rewriting alone does not make a checkpoint unreadable: the refusals below are the
    version check's."""
    expected = load_checkpoint(saved).state
    with_format_version(saved, FORMAT_VERSION)
    loaded = load_checkpoint(saved)
    assert loaded.metadata["format_version"] == FORMAT_VERSION
    for name, value in expected["model"].items():
        np.testing.assert_array_equal(loaded.state["model"][name], value)
    model, _ = load_model(saved, "classifier")
    assert model.state_dict().keys() == expected["model"].keys()


@pytest.mark.parametrize(
    "version",
    [FORMAT_VERSION + 1, FORMAT_VERSION - 1, str(FORMAT_VERSION), None, MISSING],
    ids=["newer", "older", "a string", "null", "missing"],
)
def test_a_checkpoint_of_another_format_version_is_refused(saved, version):
    with_format_version(saved, version)
    shown = None if version is MISSING else version
    message = rf"has tinymed checkpoint format version {re.escape(str(shown))}; this tinymed .* reads version {FORMAT_VERSION}"
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(saved)
    with pytest.raises(CheckpointError, match=message):
        load_model(saved, "classifier")
