"""Right-for-the-right-reasons fine-tuning from the explorer's region marks (Ross et al. 2017)."""
import jax
import numpy as np
import pytest

from shapjax.explorer import Explorer, rrr


@pytest.fixture(scope="module")
def planted():
    from shapjax import data, models

    return models.pretrained("planted-patch"), data.planted_patch(16, key=jax.random.key(5))


def test_finetune_lowers_the_penalty_outside_the_marks_and_keeps_the_accuracy(planted):
    clf, ds = planted
    new, hist = rrr.finetune(clf, ds.images, ds.labels, ds.masks, key=jax.random.key(0), steps=20, batch_size=8)
    assert len(hist["loss"]) == 20 and np.mean(hist["rr"][-3:]) < 0.8 * np.mean(hist["rr"][:3])
    assert (np.asarray(new(ds.images)).argmax(1) == ds.labels).mean() == 1.0
    share = rrr.gradient_share_outside(new, ds.images, ds.masks)
    assert share.shape == (16,) and np.all((0 <= share) & (share <= 1))
    assert new.class_names == clf.class_names


def test_finetune_checks_its_inputs(planted):
    clf, ds = planted
    with pytest.raises(ValueError, match="agree"):
        rrr.finetune(clf, ds.images, ds.labels[:3], ds.masks, key=jax.random.key(0))
    with pytest.raises(ValueError, match="labels"):
        rrr.finetune(clf, ds.images, ds.labels + 10, ds.masks, key=jax.random.key(0))
    with pytest.raises(TypeError, match="key"):
        rrr.finetune(clf, ds.images, ds.labels, ds.masks, key=None)


def test_marks_from_feedback(planted, tmp_path):
    clf, ds = planted
    ex = Explorer(clf, ds.images, model_name="planted-patch", store=tmp_path, settings=["gradcam"])
    with pytest.raises(ValueError, match="no stored feedback"):
        rrr.marks_from_feedback(ex)
    ex.feedback({"image_id": "image-3", "class": 1, "setting": "gradcam", "verdict": "down",
                 "regions": [{"box": [0, 0, 8, 4]}]})
    ex.feedback({"image_id": "image-4", "class": 0, "setting": "gradcam", "verdict": "up"})
    x, y, m = rrr.marks_from_feedback(ex)
    assert x.shape == (1, 32, 32, 3) and y.tolist() == [1] and m.sum() == 32
    np.testing.assert_array_equal(x[0], ds.images[3])
    ex.wait_idle(120)
    ex.close()
