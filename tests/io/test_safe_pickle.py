import os
import pickle
from collections import OrderedDict

import numpy as np
import pytest

from eochange.errors import DataError
from eochange.io.safe_pickle import load_data_pickle


class Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def _dump(path, value, protocol=4):
    path.write_bytes(pickle.dumps(value, protocol=protocol))
    return path


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_plain_data_round_trips(tmp_path, protocol):
    value = {
        "ROIs1158_spring_s2_1_p1.tif": np.array([0.25, 0.75] + [0.0] * 15),
        "names": ["a", "b"],
        "n": 3,
        "x": 1.5,
        "flag": True,
        "none": None,
        "scalar": np.float64(0.5),
        "ints": np.arange(4, dtype=np.int16),
        "tuple": (1, "two"),
    }
    loaded = load_data_pickle(_dump(tmp_path / "a.pkl", value, protocol))
    assert loaded.keys() == value.keys()
    np.testing.assert_array_equal(loaded["ints"], value["ints"])
    assert loaded["ints"].dtype == np.int16 and loaded["scalar"] == 0.5


def test_code_is_refused_before_it_runs(tmp_path):
    path = _dump(tmp_path / "evil.pkl", [Payload()])
    with pytest.raises(DataError, match=r"evil\.pkl.*posix\.system|evil\.pkl.*os\.system"):
        load_data_pickle(path, "split list")


@pytest.mark.parametrize(
    "value", [OrderedDict(a=1), {1, 2}, np.array([object()], dtype=object), range(3)]
)
def test_non_data_objects_are_refused(tmp_path, value):
    path = _dump(tmp_path / "odd.pkl", value)
    with pytest.raises(DataError, match="odd.pkl"):
        load_data_pickle(path)


@pytest.mark.parametrize("content", [b"", b"not a pickle", pickle.dumps([1, 2])[:-3]])
def test_corrupt_and_truncated_files_give_one_clear_error(tmp_path, content):
    path = tmp_path / "bad.pkl"
    path.write_bytes(content)
    with pytest.raises(DataError, match="bad.pkl"):
        load_data_pickle(path, "label file")


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="label file not found"):
        load_data_pickle(tmp_path / "nope.pkl", "label file")
