"""The checkpoint reader against files TensorFlow itself wrote (tools/make_tf_fixtures.py)."""

import json
import shutil

import numpy as np
import pytest
from conftest import FIXTURES

from tagger.errors import ModelFileError
from tagger.model.convert.crc32c import crc32c, masked
from tagger.model.convert.tf_checkpoint import Checkpoint

TINY = FIXTURES / "tiny_vgg"


def test_crc32c_known_values():
    assert crc32c(b"123456789") == 0xE3069283  # the standard check value
    assert crc32c(b"") == 0
    assert crc32c(b"6789", crc32c(b"12345")) == crc32c(b"123456789")
    assert masked(0) == 0xA282EAD8


def test_reads_every_variable_with_its_shape():
    expected = json.loads((TINY / "expected.json").read_text())
    ck = Checkpoint(f"{TINY}/MTT_vgg/")
    assert {n: list(e.shape) for n, e in ck.entries.items()} == expected["variables"]
    first = expected["first_variable"]
    assert np.allclose(ck.read(first["name"]).ravel()[:8], first["values"], atol=1e-7)
    step = ck.read("global_step")
    assert step.dtype == np.int64 and int(step) == expected["global_step"]
    assert ck.read("1CNN/kernel").shape == (3, 3, 1, 4)


@pytest.fixture
def copy(tmp_path):
    dst = tmp_path / "MTT_vgg"
    shutil.copytree(TINY / "MTT_vgg", dst)
    return dst


def _flip(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


def test_corrupt_tensor_data_is_refused(copy):
    ck = Checkpoint(f"{copy}/")
    entry = ck.entries["dense/kernel"]
    _flip(copy / ".data-00000-of-00001", entry.offset + 5)
    ck = Checkpoint(f"{copy}/")
    ck.read("1CNN/kernel")  # other tensors still verify
    with pytest.raises(ModelFileError, match="checksum mismatch for variable 'dense/kernel'"):
        ck.read("dense/kernel")


def test_corrupt_index_block_is_refused(copy):
    _flip(copy / ".index", 20)
    with pytest.raises(ModelFileError, match="corrupt checkpoint index"):
        Checkpoint(f"{copy}/")


def test_truncated_index_and_missing_data_are_refused(copy):
    index = copy / ".index"
    index.write_bytes(index.read_bytes()[:-10])
    with pytest.raises(ModelFileError, match="bad magic|corrupt"):
        Checkpoint(f"{copy}/")
    shutil.copy(TINY / "MTT_vgg" / ".index", index)
    (copy / ".data-00000-of-00001").unlink()
    with pytest.raises(ModelFileError, match="cannot read checkpoint data"):
        Checkpoint(f"{copy}/").read("dense/bias")


def test_missing_checkpoint(tmp_path):
    with pytest.raises(ModelFileError, match="cannot read checkpoint index"):
        Checkpoint(f"{tmp_path}/nothing")
