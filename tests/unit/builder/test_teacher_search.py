"""Teacher candidates (issue 16 item 3): concatenated features, the MLP, augmentation, the
k-fold search, and a build on the tiny data with the search on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from builder.errors import BuilderError
from builder.pipeline.teacher import TeacherConfig, l2_path_scores, stratified_folds
from builder.pipeline.teachers.augment import augment_images, policy_rows, shift
from builder.pipeline.teachers.choose import (
    ChoiceConfig,
    TeacherData,
    TeacherRecipe,
    TeacherSpec,
    search_teacher,
)
from builder.pipeline.teachers.concat import BlockScaler
from builder.pipeline.teachers.mlp import MlpConfig, train_mlp

_FAST_MLP = MlpConfig(hidden=32, weight_decays=(1e-3, 1e-1), max_epochs=30, batch_size=32)


def _xor(n: int, seed: int, noise_dims: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Two classes by the sign of x0 * x1: no linear boundary separates them."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2 + noise_dims)).astype(np.float32)
    return x, (x[:, 0] * x[:, 1] > 0).astype(np.int64)


def test_block_scaler_gives_each_encoder_unit_total_variance() -> None:
    # Prepare: two encoders of different widths and scales
    rng = np.random.default_rng(0)
    wide, narrow = rng.normal(5, 40, size=(50, 12)), rng.normal(-1, 0.1, size=(50, 3))
    # Execute
    joined = BlockScaler.fit([wide, narrow]).apply([wide, narrow], batch_size=7)
    # Assert
    assert joined.shape == (50, 15)
    assert joined[:, :12].var(axis=0).sum() == pytest.approx(1.0, rel=1e-3)
    assert joined[:, 12:].var(axis=0).sum() == pytest.approx(1.0, rel=1e-3)
    with pytest.raises(BuilderError, match="number of images"):
        BlockScaler.fit([wide, narrow]).apply([wide, narrow[:10]])


def test_mlp_learns_what_a_linear_teacher_cannot() -> None:
    # Prepare
    x, y = _xor(400, seed=0)
    x_test, y_test = _xor(400, seed=1)
    # Execute
    model, curve = train_mlp(
        x, y, num_classes=2, weight_decay=1e-3, epochs=30, config=_FAST_MLP,
        evaluate=(x_test, y_test),
    )  # fmt: skip
    # Assert: numpy logits (standardisation and projection folded in) predict the held-out set
    assert np.mean(model.predict(x_test) == y_test) > 0.85
    assert len(curve) == 30 // _FAST_MLP.eval_every and model.kind == "mlp"


def test_mlp_teacher_does_not_depend_on_or_move_torch_global_random_state() -> None:
    # Prepare: two different global states, as other code in the same process leaves them
    import torch

    x, y = _xor(200, seed=4)
    models = []
    for global_seed in (1, 12345):
        torch.manual_seed(global_seed)
        expected_next = torch.rand(3)
        torch.manual_seed(global_seed)
        # Execute
        model, _ = train_mlp(x, y, num_classes=2, weight_decay=1e-3, epochs=5, config=_FAST_MLP)
        models.append(model)
        # Assert: the caller's global generator is where it was
        assert torch.equal(torch.rand(3), expected_next)
    # Assert: the same data and config train the same weights, dropout included
    for name in ("w1", "b1", "w2", "b2"):
        np.testing.assert_array_equal(getattr(models[0], name), getattr(models[1], name))


def test_search_prefers_the_mlp_on_a_nonlinear_task_and_keeps_its_hyperparameters() -> None:
    # Prepare
    x, y = _xor(300, seed=2)
    data = TeacherData(encoders=("a",), train=(x,), labels=y, num_classes=2)
    # Execute
    search = search_teacher(data, ChoiceConfig(mlp=_FAST_MLP))
    # Assert
    assert [s.spec.kind for s in search.scored] == ["softmax-regression", "mlp"]
    assert search.best.spec.kind == "mlp" and search.best.mean > search.scored[0].mean + 0.1
    assert search.best.spec.weight_decay in _FAST_MLP.weight_decays
    assert search.best.spec.epochs is not None and search.best.spec.epochs % 5 == 0


def test_search_concatenates_encoders_that_each_see_half_the_classes() -> None:
    # Prepare: encoder a separates classes {0,1} from {2,3}, encoder b 0/2 from 1/3
    rng = np.random.default_rng(3)
    y = np.repeat(np.arange(4), 40)
    a = (np.where(y < 2, 2.0, -2.0)[:, None] + rng.normal(size=(160, 4))).astype(np.float32)
    b = (np.where(y % 2 == 0, 2.0, -2.0)[:, None] + rng.normal(size=(160, 4))).astype(np.float32)
    data = TeacherData(encoders=("a", "b"), train=(a, b), labels=y, num_classes=4)
    # Execute
    search = search_teacher(data, ChoiceConfig(mlp_candidate=False))
    # Assert
    names = [s.spec.name(data.encoders) for s in search.scored]
    assert names == ["softmax-regression on a", "softmax-regression on b",
                     "softmax-regression on a+b"]  # fmt: skip
    assert search.best.spec.encoders == (0, 1) and search.best.mean > 0.9
    assert max(s.mean for s in search.scored[:2]) < 0.7  # each alone: half the classes


def test_shift_moves_content_and_repeats_the_border() -> None:
    # Prepare
    pixels = np.zeros((6, 6), dtype=np.uint8)
    pixels[2, 3] = 255
    pixels[:, 0] = 9  # left border column
    image = Image.fromarray(pixels)
    # Execute
    moved = np.asarray(shift(image, 1, 2))
    back = np.asarray(shift(image, -1, 0))
    # Assert
    assert moved[4, 4] == 255 and moved[2, 3] == 0
    assert (moved[2:, 0] == 9).all() and (moved[2:, 1] == 9).all()  # border repeated
    assert back[2, 2] == 255 and (back[:, 5] == back[:, 4]).all()


def test_augment_images_keeps_ops_sources_and_modes() -> None:
    # Prepare
    images = [Image.new("RGB", (28, 28), (i, 0, 0)) for i in range(3)] + [Image.new("P", (14, 14))]
    # Execute
    copies = augment_images(images)
    # Assert
    assert len(copies.images) == 3 * 4
    assert list(copies.source) == [0, 1, 2, 3] * 3
    assert list(policy_rows(copies.ops, "shift")) == list(range(4, 12))
    assert len(policy_rows(copies.ops, "flip-shift")) == 12
    assert {im.mode for im in copies.images} == {"RGB"}
    assert copies.images[0].size == (28, 28)
    with pytest.raises(BuilderError, match="unknown augmentation policy"):
        policy_rows(copies.ops, "rotate")


def test_fold_training_never_sees_copies_of_its_held_out_images() -> None:
    # Prepare: pure noise, and exact copies of every train image with its label. A fold that
    # trained on copies of its own held-out images would memorise them (near 100 %).
    rng = np.random.default_rng(4)
    x = rng.normal(size=(120, 200)).astype(np.float32)
    y = np.repeat(np.arange(3), 40)
    config = TeacherConfig(l2_grid=(1e-4,), num_folds=3)
    folds = stratified_folds(y, num_folds=3, seed=0)
    extra = (x.copy(), y.copy(), np.arange(120))
    # Execute
    accs = l2_path_scores(x, y, num_classes=3, config=config, folds=folds, extra=extra)
    # Assert
    assert np.mean(accs[1e-4]) < 0.6


def test_recipe_refits_on_a_fold_with_only_that_folds_copies() -> None:
    # Prepare
    x, y = _xor(60, seed=5)
    data = TeacherData(
        encoders=("a",), train=(x,), labels=y, num_classes=2,
        augmented=(x + 0.01,), aug_ops=np.asarray(["shift+"] * 60), aug_source=np.arange(60),
    )  # fmt: skip
    recipe = TeacherRecipe(
        data, TeacherSpec((0,), "softmax-regression", "shift", l2=0.1), ChoiceConfig()
    )
    # Execute
    model = recipe.fit(np.arange(30))
    # Assert
    assert recipe.kind == "softmax-regression+augment:shift" and model.num_classes == 2
    with pytest.raises(BuilderError, match="without augmented data"):
        TeacherRecipe(
            TeacherData(encoders=("a",), train=(x,), labels=y, num_classes=2),
            TeacherSpec((0,), "mlp", "shift"),
            ChoiceConfig(),
        )


def test_build_runs_the_searched_teacher_on_tiny_data(tmp_path: Path) -> None:
    # Prepare
    from builder.pipeline.budget import parse_budget
    from builder.pipeline.build import build_task_multi
    from builder.pipeline.config import TaskConfig
    from builder.pipeline.targets import load_target
    from builder.report.markdown import render_markdown
    from plada.head import HeadHyperParams
    from plada.signing import generate_keypair, load_private_key
    from tests.unit.builder.test_pipeline import PixelFeatures
    from tools.tiny.corpus import make_tiny_corpus, make_tiny_imagefolder

    corpus = make_tiny_corpus(tmp_path / "corpus", num_images=200)
    target = make_tiny_imagefolder(tmp_path / "target", train_per_class=9, test_per_class=6)
    generate_keypair(tmp_path / "keys")
    config = TaskConfig(
        budget=parse_budget("24"), strategy="class-top-k", created_at=1_800_000_000,
        hp=HeadHyperParams(epochs=10, learning_rate=1e-2), teacher_search=True,
    )  # fmt: skip
    # Execute
    result = build_task_multi(
        corpus, load_target(target),
        teacher_sources=[PixelFeatures(2, "pix2"), PixelFeatures(6, "pix6")],
        device_sources={"lite0-64-int8": PixelFeatures(4, "pix4")},
        signing_key=load_private_key(tmp_path / "keys" / "private.pem"), config=config,
    )  # fmt: skip
    # Assert
    report = result.record
    search = report.teacher_search
    assert search is not None and report.teacher is not None and report.teacher_choice
    names = [c.name for c in search.candidates]
    assert names[:3] == ["softmax-regression on pix2", "softmax-regression on pix6",
                         "softmax-regression on pix2+pix6"]  # fmt: skip
    assert any(c.kind == "mlp" for c in search.candidates)
    assert [c.augment for c in search.candidates][-2:] == ["shift", "flip-shift"]
    assert sum(c.chosen for c in search.candidates) == 1
    assert all(c.test_accuracy is not None for c in search.candidates)
    # the searched teacher joins the choice only when it ran and cleared the plain ones' scores
    assert len(report.teacher_choice) in ((2, 3) if search.ran else (2,))
    if search.ran:
        assert search.device_val_accuracy is not None and search.device_tie_tolerance is not None
    chosen_run = next(c for c in report.teacher_choice if c.chosen)
    assert report.teacher.encoder == chosen_run.encoder and report.teacher.kind == chosen_run.kind
    assert "teacher_search" in report.timings_s
    assert "## Teacher" in render_markdown(report)


def test_fine_tune_changes_the_encoder_and_embeds_with_it() -> None:
    # Prepare: the smallest Lite backbone, two classes a few images each
    from builder.pipeline.teachers.finetune import (
        FineTuneConfig,
        FineTunedFeatures,
        fine_tune_encoder,
        weights_digest,
    )

    images = [Image.new("RGB", (32, 32), (255 * (i % 2), 40 * i, 0)) for i in range(8)]
    labels = np.arange(8) % 2
    config = FineTuneConfig(epochs=1, batch_size=4)
    # Execute
    tuned = fine_tune_encoder("lite0-32", images, labels, num_classes=2, config=config)
    untouched = fine_tune_encoder(
        "lite0-32", images, labels, num_classes=2, config=FineTuneConfig(epochs=0)
    )
    source = FineTunedFeatures(tuned)
    # Assert
    assert weights_digest(tuned.module) != weights_digest(untouched.module)
    assert source.id.startswith("lite0-32-ft-")
    features = source.image_features(images)
    assert features.shape == (8, tuned.feature_dim)
    assert np.isfinite(features).all()
