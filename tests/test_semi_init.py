"""Semi-supervised training (`--method semi`) and fine-tuning from a checkpoint (`--init`).

The semi loss is ours on the labelled rows of both views plus CIBHash on every row, written out
here from its two parts; unlabelled images move the codes only through the label-free term; a
run on a partly labelled set trains, resumes exactly and counts accuracy on the labelled images
only. `--init` copies the backbone, starts the head fresh where it must, refuses another
backbone or preprocessing, and is recorded. cifar10-1's unlabelled database joins training."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from test_cibhash import PRE
from test_cibhash import _splits as _cib_splits
from test_methods import _cfg

from pipeline.errors import BadInput
from pipeline.model.checkpoint import open_checkpoint
from pipeline.training.datasets.cifar10 import cifar10_protocol
from pipeline.training.loop import TrainConfig, train_model
from pipeline.training.losses import HashingLoss, LossConfig
from pipeline.training.methods import build_loss, needs_labels
from pipeline.training.methods.cibhash import CIBHashLoss
from pipeline.training.methods.semi import SemiLoss, pseudo_label_loss
from pipeline.training.warm_start import in_head

torch.set_num_threads(1)


def _partly_labelled(n=64, labelled=24):
    sp = _cib_splits(n)
    x, y = sp["train"]
    y = y.copy()
    y[labelled:] = -1
    return {**sp, "train": (x, y)}


# -- the loss ------------------------------------------------------------------------------------


def test_semi_loss_is_ours_on_the_labelled_rows_plus_weighted_cibhash_on_all():
    torch.manual_seed(0)
    b, bits = 6, 8
    h = torch.tanh(torch.randn(2 * b, bits, requires_grad=True))
    logits = torch.randn(2 * b, 3)
    y = torch.tensor([0, 1, -1, 2, -1, 1])
    sup = HashingLoss(LossConfig(pair_weight=0.1, quant_weight=0.1, label_smoothing=0.2))
    loss = SemiLoss(sup, tau=0.3, beta=0.001, weight=0.5)
    torch.manual_seed(1)
    got, parts = loss(h, logits, y)
    known = torch.cat([y, y]) >= 0
    torch.manual_seed(1)  # the same Bernoulli draws
    want = 0.5 * CIBHashLoss(0.3, 0.001)(h)[0] + sup(h[known], logits[known], y.repeat(2)[known])[0]
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    assert {"contrast", "kl", "ce", "pair", "quant"} <= set(parts)
    assert parts["labelled"].item() == pytest.approx(4 / 6)


def test_unlabelled_images_reach_the_codes_only_through_the_label_free_term():
    torch.manual_seed(0)
    u = torch.randn(8, 8, requires_grad=True)
    logits = torch.randn(8, 3, requires_grad=True)
    y = torch.full((4,), -1)
    total, parts = SemiLoss(HashingLoss(), 0.3, 0.001, 1.0, pseudo=0.0)(torch.tanh(u), logits, y)
    total.backward()
    assert "ce" not in parts and "pseudo" not in parts and parts["labelled"].item() == 0.0
    assert logits.grad is None or not logits.grad.any()  # no label: the classifier learns nothing
    assert u.grad.abs().sum() > 0  # ... but the codes do


def _pseudo_reference(logits, unlabelled, confidence, smoothing=0.0):
    """Row by row: each unlabelled row's strong view (second) learns the weak view's (first)
    class where the weak view is confident; summed, over all unlabelled rows."""
    b, total, rows, accepted = len(unlabelled), 0.0, 0, 0
    for i in range(b):
        if not unlabelled[i]:
            continue
        for student, teacher in ((b + i, i),):
            rows += 1
            p = torch.softmax(logits[teacher], 0)
            if p.max() >= confidence:
                accepted += 1
                logp = torch.log_softmax(logits[student], 0)
                target = torch.full_like(logp, smoothing / len(logp))
                target[int(p.argmax())] += 1 - smoothing
                total += -(target * logp).sum().item()
    return total / rows, accepted / rows


def test_pseudo_labels_are_the_weak_views_confident_class_over_all_unlabelled_rows():
    torch.manual_seed(0)
    b = 12
    logits = (torch.randn(2 * b, 4) * 3).requires_grad_()
    y = torch.tensor([0, -1, -1, 2, -1, -1, 1, -1, -1, -1, 3, -1])
    got, accepted = pseudo_label_loss(logits, y < 0, 0.9)
    want, want_accepted = _pseudo_reference(logits.detach(), (y < 0).tolist(), 0.9)
    assert 0 < want_accepted < 1  # some views confident, some not
    assert got.item() == pytest.approx(want, rel=1e-5)
    assert accepted.item() == pytest.approx(want_accepted)
    smoothed, _ = pseudo_label_loss(logits, y < 0, 0.9, 0.2)
    assert smoothed.item() == pytest.approx(_pseudo_reference(logits.detach(), y < 0, 0.9, 0.2)[0])
    got.backward()
    p = torch.softmax(logits.detach(), 1).max(1).values
    for i in range(b):  # the strong view learns where the weak one is a confident teacher
        learns = bool(y[i] < 0 and p[i] >= 0.9)
        assert bool(logits.grad[b + i].abs().sum() > 0) == learns
        assert not logits.grad[i].any()  # the weak view is never a student
    # through the semi loss: weighted, logged, and nothing when every row has a label; with
    # label smoothing eps the threshold is c x (1 - eps + eps / K) and the targets are smoothed
    h = torch.tanh(torch.randn(2 * b, 8))
    loss = SemiLoss(HashingLoss(), 0.3, 0.001, 1.0, pseudo=2.0, confidence=0.9)
    smooth = SemiLoss(HashingLoss(LossConfig(label_smoothing=0.2)), 0.3, 0.001, 1.0, 2.0, 0.9)
    torch.manual_seed(1)
    smooth_total = smooth(h, logits.detach(), y)[0]
    torch.manual_seed(1)
    sup_smooth = SemiLoss(HashingLoss(LossConfig(label_smoothing=0.2)), 0.3, 0.001, 1.0, 0.0)
    base_smooth = sup_smooth(h, logits.detach(), y)[0]
    ref = _pseudo_reference(logits.detach(), y < 0, 0.9 * (1 - 0.2 + 0.2 / 4), 0.2)[0]
    assert smooth_total.item() == pytest.approx(base_smooth.item() + 2.0 * ref, rel=1e-5)
    without = SemiLoss(HashingLoss(), 0.3, 0.001, 1.0, pseudo=0.0)
    torch.manual_seed(1)
    total, parts = loss(h, logits.detach(), y)
    torch.manual_seed(1)
    base, _ = without(h, logits.detach(), y)
    assert total.item() == pytest.approx(base.item() + 2.0 * want, rel=1e-5)
    assert parts["accepted"].item() == pytest.approx(want_accepted)
    assert "pseudo" not in loss(h, logits.detach(), y.clamp_min(0))[1]


def test_semi_options_are_checked():
    cfg = _cfg("semi").resolved(64)
    assert cfg.method_options["pseudo"] == 1.0 and cfg.method_options["confidence"] == 0.95
    for bad in ({"confidence": 1.5}, {"pseudo": -1.0}):
        with pytest.raises(BadInput, match="method semi"):
            replace(_cfg("semi"), method_options=bad).resolved(64)


def test_who_needs_which_labels():
    assert not needs_labels("semi") and not needs_labels("cibhash") and needs_labels("ours")
    with pytest.raises(BadInput, match="--method semi learns from the labelled .* none of the 64"):
        build_loss(_cfg("semi").resolved(64), np.full(64, -1), "cpu")
    with pytest.raises(BadInput, match="--method semi learns from the labelled ones"):
        build_loss(_cfg("ours").resolved(64), np.r_[np.zeros(32), np.full(32, -1)], "cpu")


# -- a run --------------------------------------------------------------------------------------


def test_a_partly_labelled_run_trains_resumes_exactly_and_scores_the_labelled(tmp_path):
    sp, info = _partly_labelled(), {"dataset": "tiny", "seed": 0}
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    _, ca = train_model(sp, _cfg("semi", epochs=4), a, info)
    train_model(sp, _cfg("semi", epochs=4), b, info, stop_after=3)
    _, cb = train_model(sp, _cfg("semi", epochs=4), b, info)
    assert ca["model_sha256"] == cb["model_sha256"]
    assert ca["classes"] == ["c0", "c1", "c2", "c3"] and ca["model_options"] == {
        "widths": [8, 8, 8]
    }
    last = ca["history"][-1]
    assert last["images"] == 64 and {"contrast", "ce", "pair", "labelled"} <= set(last)
    assert 0 <= last["train_accuracy"] <= 1 and last["labelled"] == pytest.approx(24 / 64, abs=0.2)
    assert ca["augment"]["policy"] == "allsky"  # two views: the data's own augmentation
    assert ca["augment"]["weak_views"] == {"count": 1, "policy": "shift-flip", "translate": 2}
    assert {"pseudo", "accepted"} <= set(last)


def _shift_flip_crops(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Every translation by up to `pad` px (reflect padding) of each image, and its flip."""
    s = x.shape[-1]
    xp = torch.nn.functional.pad(x, (pad,) * 4, mode="reflect")
    crops = [
        xp[..., dy : dy + s, dx : dx + s] for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
    ]
    crops += [c.flip(-1) for c in crops]
    return torch.stack(crops, 1)  # (n, candidates, C, S, S)


def test_the_first_view_is_the_weak_shift_flip_one_only_with_pseudo_labels(tmp_path, monkeypatch):
    from pipeline.training import loop

    seen, real = [], loop._step

    def step(st, data, cfg, xb, yb, ib):
        seen.append((xb.clone(), ib.clone()))
        return real(st, data, cfg, xb, yb, ib)

    monkeypatch.setattr(loop, "_step", step)
    sp = _partly_labelled()
    train_model(sp, _cfg("semi", epochs=1), str(tmp_path / "w"), {"dataset": "t"})
    crops = _shift_flip_crops(torch.from_numpy(sp["train"][0]), 2)
    xb, ib = seen[0]
    b = len(ib)

    def is_crop(row, i):
        return bool((crops[i] - row).flatten(1).abs().amax(1).min() < 1e-6)

    assert all(is_crop(xb[j], int(ib[j])) for j in range(b))  # weak: a shifted (flipped) copy
    assert not any(is_crop(xb[b + j], int(ib[j])) for j in range(b))  # strong: rotated, jittered
    seen.clear()
    cfg = _cfg("semi", epochs=1)
    cfg = replace(cfg, method_options={"pseudo": 0.0})
    _, saved = train_model(sp, cfg, str(tmp_path / "s"), {"dataset": "t"})
    xb, ib = seen[0]
    assert not any(is_crop(xb[j], int(ib[j])) for j in range(b))  # both views strong
    assert "weak_views" not in saved["augment"]


# -- --init --------------------------------------------------------------------------------------


def test_init_copies_the_backbone_and_starts_the_class_head_fresh(tmp_path, monkeypatch):
    from pipeline.training import loop

    src = str(tmp_path / "src")
    train_model(_cib_splits(labelled=False), _cfg("cibhash", epochs=1), src, {"dataset": "t"})
    theirs = open_checkpoint(src).build_model().state_dict()
    seen = {}
    real = loop._train_epoch

    def first_epoch(st, *a):  # the weights the new run starts from
        seen.setdefault("sd", {k: v.clone() for k, v in st.model.state_dict().items()})
        return real(st, *a)

    monkeypatch.setattr(loop, "_train_epoch", first_epoch)
    out = str(tmp_path / "ft")
    _, cfg = train_model(_cib_splits(), _cfg("ours", epochs=1, init=src), out, {"dataset": "t"})
    start = seen["sd"]
    backbone = [k for k in theirs if not in_head(k)]
    assert any("features" in k for k in backbone) and "norm.mean" in backbone
    assert all(torch.equal(start[k], theirs[k]) for k in backbone)
    hw = "body.head.hash.weight"
    assert torch.equal(start[hw], theirs[hw])  # the same code length: the hash layer carries over
    rec = cfg["init"]
    assert rec["checkpoint"] == src and rec["method"] == "cibhash" and rec["epochs_done"] == 1
    assert {"body.head.classifier.weight", "body.head.classifier.bias"} <= set(rec["fresh"])
    assert all(in_head(k) for k in rec["fresh"])
    # a resume keeps the record and does not load the init again
    _, again = train_model(_cib_splits(), _cfg("ours", epochs=2, init=src), out, {"dataset": "t"})
    assert again["init"] == rec and again["epochs_done"] == 2


def test_init_refuses_another_backbone_preprocessing_or_a_missing_checkpoint(tmp_path):
    src = str(tmp_path / "src")
    train_model(_cib_splits(labelled=False), _cfg("cibhash", epochs=1), src, {"dataset": "t"})
    wide = replace(_cfg("ours", epochs=1, init=src), widths=(8, 8, 16))
    with pytest.raises(BadInput, match=r"--init .*src: its body.features.* this model's is"):
        train_model(_cib_splits(), wide, str(tmp_path / "w"), {"dataset": "t"})
    sp = {**_cib_splits(), "preprocess": {**PRE, "mask": False}}
    with pytest.raises(BadInput, match="its preprocess is .* same preprocess"):
        train_model(sp, _cfg("ours", epochs=1, init=src), str(tmp_path / "p"), {"dataset": "t"})
    with pytest.raises(BadInput, match=r"--init .*nowhere: .*no checkpoint config"):
        cfg = _cfg("ours", epochs=1, init=str(tmp_path / "nowhere"))
        train_model(_cib_splits(), cfg, str(tmp_path / "n"), {"dataset": "t"})
    assert not (tmp_path / "w").exists() or not (tmp_path / "w" / "config.json").exists()


# -- cifar10-1 with its database unlabelled ------------------------------------------------------


def _fake_cifar(per_class=700):
    rng = np.random.default_rng(0)
    n = 10 * per_class
    y = np.tile(np.arange(10), per_class).astype(np.int64)
    x = rng.integers(0, 255, (n, 2, 2, 3), dtype=np.uint8)
    x[:, 0, 0, 0] = np.arange(n) % 251  # tell images apart
    half = n // 2
    return {"train_x": x[:half], "train_y": y[:half], "test_x": x[half:], "test_y": y[half:]}


def test_cifar10_1_unlabelled_database_joins_training_after_the_labelled():
    d = _fake_cifar()
    plain = cifar10_protocol(d, "cifar10-1", seed=3)
    semi = cifar10_protocol(d, "cifar10-1", seed=3, unlabelled=True)
    (tx, ty), (px, py) = semi["train"], plain["train"]
    assert len(py) == 5000 and len(ty) == 7000 - 1000  # all but the queries
    assert np.array_equal(ty[:5000], py) and np.array_equal(tx[:5000], px)
    assert (ty[5000:] == -1).all()
    assert np.array_equal(semi["query"][1], plain["query"][1])
    assert len(semi["db"][1]) == 6000  # the database is unchanged
    capped = cifar10_protocol(d, "cifar10-1", seed=3, limit=100, unlabelled=True)
    assert (capped["train"][1] >= 0).sum() == 100 and (capped["train"][1] < 0).sum() == 100
    with pytest.raises(BadInput, match="cifar10-2's database is its training set"):
        cifar10_protocol(d, "cifar10-2", unlabelled=True)


def test_train_config_records_init():
    cfg = TrainConfig(init="runs/x").resolved(64)
    assert cfg.init == "runs/x"


# -- the observatory's story through the train job -----------------------------------------------


@pytest.mark.slow  # three trainings, ~25 s alone on 2 cores
def test_cli_label_free_then_init_on_a_few_labels_and_semi_on_a_partly_labelled_archive(
    tmp_path, capsys
):
    """An archive without label headers and a catalogue labelling a third of its frames:
    cibhash on all of it, then `--init` from that model on the labelled third (ours, which
    leaves the rest out), and `--method semi` on labelled and unlabelled frames in one run."""
    import csv
    import json

    from test_labelfree import _job, _synth

    from pipeline.ingest.local_read import read_archive
    from pipeline.model.preprocess import PreprocessConfig

    night, twin = tmp_path / "night", tmp_path / "twin"
    _synth(capsys, night, "--no-labels")
    _synth(capsys, twin)
    frames = read_archive(str(twin), PreprocessConfig.aurora(32).to_dict(), None, 1)
    labels = tmp_path / "labels.csv"
    with open(labels, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "label"])
        w.writerows(zip(frames.ids[::3], frames.labels[::3].tolist(), strict=True))
    small = ["--dataset", "archive", "--data", night, "--size", "32", "--bits", "16"]
    small += ["--epochs", "1", "--widths", "8,16,16", "--threads", "1", "--batch-size", "16"]
    lf, ft, semi = tmp_path / "lf", tmp_path / "ft", tmp_path / "semi"
    rc, s = _job(capsys, "train", "--method", "cibhash", *small, "--out", lf)
    assert rc == 0, s
    rc, s = _job(capsys, "train", "--init", lf, "--labels", labels, *small, "--out", ft)
    assert rc == 0 and 0 <= s["map"] <= 1, s
    cfg = json.loads((ft / "config.json").read_text())
    assert cfg["init"]["checkpoint"] == str(lf) and cfg["init"]["method"] == "cibhash"
    assert cfg["train_images"] < len(frames.ids) // 3 + 1  # the labelled third only
    rc, s = _job(capsys, "train", "--method", "semi", "--labels", labels, *small, "--out", semi)
    assert rc == 0 and 0 <= s["map"] <= 1, s
    cfg = json.loads((semi / "config.json").read_text())
    n_lab = len(frames.ids[::3])
    assert cfg["train_images"] > n_lab  # the unlabelled frames train too
    assert 0 < cfg["history"][-1]["labelled"] < 0.6
