"""Label conversions of the SEN12MS toolbox, with the reference's hand-computed cases."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eochange.datasets.dfc2020 import label_lut, to_dfc_classes
from eochange.datasets.sen12ms_layout import (
    BAND_SETS,
    PatchId,
    class_mask,
    igbp_target,
    resolve_bands,
    simplify,
)
from eochange.errors import ConfigError, DataError


def _fractions(**by_class):
    """17 fractions from 1-based IGBP class numbers: _fractions(c6=0.01, ...)."""
    p = np.zeros(17)
    for key, value in by_class.items():
        p[int(key[1:]) - 1] = value
    return p


def test_simplified_sums_are_sequential_in_the_vectors_dtype():
    # float64: 0.01 + 0.09 = 0.09999999999999999 < 0.1, so Shrubland is not selected
    p = _fractions(c6=0.01, c7=0.09, c10=0.9)
    assert simplify(p)[1] == 0.09999999999999999
    assert igbp_target(p, "simplified", "multi", 0.1).tolist() == [0, 0, 0, 1, 0, 0, 0, 0, 0, 0]
    # the same values in float32 reach 0.1 and are selected
    target = igbp_target(p.astype(np.float32), "simplified", "multi", 0.1)
    assert target[1] == 1 and target.dtype == np.float32
    # other examples of the reference
    assert simplify(_fractions(c8=0.02, c9=0.18))[2] == 0.19999999999999998
    assert simplify(_fractions(c1=0.14, c2=0.14, c3=0.14, c4=0.14, c5=0.14))[0] == (
        0.7000000000000001
    )


def test_single_label_first_maximum_wins_and_simplification_changes_the_argmax():
    tie = _fractions(c1=0.5, c17=0.5)  # Forest / Water tie -> Forest
    assert igbp_target(tie).tolist() == [1] + [0] * 9
    five_forests = _fractions(c1=0.14, c2=0.14, c3=0.14, c4=0.14, c5=0.14, c12=0.30)
    assert np.argmax(igbp_target(five_forests, "full")) == 11  # Croplands
    assert np.argmax(igbp_target(five_forests, "simplified")) == 0  # Forest (0.7)
    assert np.argmax(igbp_target(np.zeros(17))) == 0  # all zero -> class 0


def test_multi_label_threshold_is_inclusive_and_can_be_empty():
    p = _fractions(c10=0.1, c12=0.9)
    assert igbp_target(p, "full", "multi", 0.1)[[9, 11]].tolist() == [1, 1]
    assert igbp_target(np.full(17, 1 / 17), "full", "multi", 0.1).sum() == 0
    assert igbp_target(np.full(17, 1 / 17), "full", "multi", 0.0).sum() == 17
    assert igbp_target(np.zeros(17), "simplified", "multi", 0.1).sum() == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 1000), min_size=17, max_size=17).filter(lambda v: sum(v) > 0))
def test_simplified_target_has_a_label_when_fractions_sum_to_one(counts):
    p = np.asarray(counts, np.float64) / sum(counts)
    assert simplify(p).sum() == pytest.approx(1)
    assert igbp_target(p, "simplified", "multi", 0.1).sum() >= 1
    assert igbp_target(p, "simplified", "single").sum() == 1


def test_per_pixel_masks_and_the_dfc_mappings():
    igbp = np.arange(18, dtype=np.uint8)
    assert class_mask(igbp, "simplified").tolist() == [255, 0, 0, 0, 0, 0, 1, 1, 2, 2, 3, 4, 5,
                                                        6, 5, 7, 8, 9]  # fmt: skip
    assert class_mask(igbp, "full").tolist() == [255, *range(17)]
    assert label_lut("igbp").tolist() == class_mask(igbp, "simplified").tolist()
    assert label_lut("igbp", no_savanna=True).tolist() == [
        255, 0, 0, 0, 0, 0, 1, 1, 255, 255, 2, 3, 4, 5, 4, 6, 7, 8]  # fmt: skip
    assert label_lut("dfc").tolist() == [255, *range(10)]
    assert label_lut("dfc", no_savanna=True).tolist() == [255, 0, 1, 255, 2, 3, 4, 5, 6, 7, 8]
    with pytest.raises(DataError, match=r"lc\.tif.*\[18, 200\]"):
        class_mask(np.array([1, 18, 200]), where="lc.tif")


def test_back_to_dfc_classes_inverts_the_training_classes():
    for no_savanna in (False, True):
        lut = label_lut("dfc", no_savanna)
        dfc = np.arange(11)
        trained = lut[dfc]
        back = to_dfc_classes(np.where(trained == 255, 255, trained), no_savanna)
        kept = trained != 255
        assert back[kept].tolist() == dfc[kept].tolist()
        assert (back[~kept] == 255).all()


def test_band_sets_follow_the_toolbox():
    assert BAND_SETS["rgb"] == ("B2", "B3", "B4")  # blue, green, red
    assert BAND_SETS["s1s2"][-2:] == ("VV", "VH") and len(BAND_SETS["s1s2"]) == 12
    assert "B1" not in BAND_SETS["s2"] and "B10" not in BAND_SETS["s2"]
    with pytest.raises(ConfigError, match="unknown set"):
        resolve_bands("rgbn")
    with pytest.raises(ConfigError, match="B13"):
        resolve_bands(["B2", "B13"])


def test_patch_names_and_paths_are_built_from_components(tmp_path):
    patch = PatchId.parse("ROIs1158_spring_s2_124_p100.tif")
    assert patch == PatchId("ROIs1158_spring", 124, 100)
    root = tmp_path / "data_s2_copy"  # a root containing "s2_" breaks upstream's replace
    assert patch.path(root, "s1") == (
        root / "ROIs1158_spring" / "s1_124" / "ROIs1158_spring_s1_124_p100.tif"
    )
    with pytest.raises(DataError, match="not a SEN12MS patch name"):
        PatchId.parse("../etc/passwd")
