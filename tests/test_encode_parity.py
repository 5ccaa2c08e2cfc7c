"""The codes we measure are the codes we ship.

Frame i of an archive is the same model input whether `train`/`evaluate` read it (datasets
`synthetic-aurora` and `archive`) or ingest does, and the codes `evaluate` computes for a set of
frames are, bit for bit, the codes ingest stores for them, under the checkpoint's encode
settings (views, precision), on the CPU.
"""

from __future__ import annotations

import numpy as np
import pytest
from ingest_helpers import make_model
from shard_fixtures import read_codes

from kernels import pack_codes
from pipeline.codes import catalogue, search
from pipeline.ingest.config import IngestConfig
from pipeline.ingest.driver import run_ingest
from pipeline.ingest.local_read import archive_files, read_archive
from pipeline.ingest.read import FileTask, read_file_rows
from pipeline.model.checkpoint import load_checkpoint
from pipeline.model.preprocess import PreprocessConfig
from pipeline.model.settings import DEFAULT_ENCODE, encode_settings
from pipeline.synth import write_archive
from pipeline.training.datasets.synthetic import synthetic_splits
from pipeline.training.evaluate import encode

N = 60  # three minute files


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("archive")
    write_archive(str(root), N, seed=5, fmt="pgm.gz")
    return str(root)


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    """Ingest's encoder actor (on the CPU) for a checkpoint preprocessing like `aurora(32)`."""
    from pipeline.ingest.encode_actor import HashEncoder
    from pipeline.model.checkpoint import open_checkpoint

    enc = HashEncoder(
        open_checkpoint(make_model(tmp_path_factory.mktemp("m") / "ckpt")), device="cpu"
    )
    assert enc.preprocess == PreprocessConfig.aurora(32)
    return enc


def _ingest_inputs(root: str, enc) -> tuple[np.ndarray, list]:
    """The model inputs and labels that ingest's encoder actor computes from its read tasks'
    rows (what `HashEncoder.__call__` hands to its model)."""
    seen, labels = [], []
    encode = enc.encode
    enc.encode = lambda x: seen.append(np.asarray(x).copy()) or encode(x)
    try:
        for uri, rel in archive_files(root):
            for t in read_file_rows(FileTask(uri=uri, rel=rel)):
                labels += [r["label"] for r in enc(t).to_pylist() if r["kind"] == "frame"]
    finally:
        enc.encode = encode
    return np.concatenate(seen).reshape(len(labels), -1), labels


def test_synthetic_training_frames_are_ingest_inputs(archive, encoder):
    pre = PreprocessConfig.aurora(32).to_dict()
    sp = synthetic_splits(5, None, n_train=20, n_query=4, n_database=N, preprocess=pre, workers=1)
    x, labels = _ingest_inputs(archive, encoder)
    assert x.shape == (N, 32 * 32)
    np.testing.assert_array_equal(sp["db"][0].reshape(N, -1), x)
    assert sp["db"][1].tolist() == labels
    np.testing.assert_array_equal(sp["train"][0], sp["db"][0][:20])


def test_archive_dataset_frames_are_ingest_inputs(archive, encoder):
    pre = PreprocessConfig.aurora(32).to_dict()
    frames = read_archive(archive, pre)
    x, labels = _ingest_inputs(archive, encoder)
    np.testing.assert_array_equal(frames.x.reshape(N, -1), x)
    assert frames.labels.tolist() == labels
    assert frames.ids[0].endswith("#0") and len(set(frames.ids)) == N


HEADLESS = {"classifier": "none", "hash_act": "linear", "hash_bn": False}  # DPSH's and DSH's


@pytest.mark.integration
@pytest.mark.parametrize(
    "settings, options",
    [(None, None), ({"views": "mirror", "precision": "bf16"}, None), (None, HEADLESS)],
    ids=["default", "mirror-bf16", "no-class-head"],
)
def test_evaluate_codes_are_the_stored_codes(ray_local, archive, tmp_path, settings, options):
    model_dir = make_model(
        tmp_path / "model", size=32, bits=48, seed=1, encode=settings, model_options=options
    )
    model, cfg = load_checkpoint(model_dir)
    assert encode_settings(cfg) == {**DEFAULT_ENCODE, **(settings or {})}
    frames = read_archive(archive, cfg["preprocess"])
    h, logp = encode(model, frames.x, encode_settings(cfg))
    assert (logp is None) == bool(options)
    measured = dict(zip(frames.ids, pack_codes(h)[:, 0].tolist(), strict=True))

    summary = run_ingest(IngestConfig(source=archive, out=str(tmp_path / "codes"), model=model_dir))
    assert summary["frames"] == N and summary["quarantined"] == 0
    cat = catalogue.open_catalogue(summary["out"])
    codes, _, ids = search.load_all(cat)
    stored = dict(zip(ids.tolist(), codes[:, 0].tolist(), strict=True))
    assert cat.meta.model == cfg["model_id"]
    assert stored == measured
    preds = read_codes(summary["out"], columns=["pred", "score"])
    pred = preds.column("pred").to_numpy()
    score = preds.column("score").to_numpy()
    if options:  # no class head: the shards say "no prediction"
        assert (pred == -1).all() and np.isnan(score).all()
    else:
        assert ((pred >= 0) & (pred < 4)).all() and ((score > 0) & (score <= 1)).all()
    if settings:  # the settings matter, so the equality above is not an accident
        h0, _ = encode(model, frames.x, DEFAULT_ENCODE)
        assert pack_codes(h0)[:, 0].tolist() != [measured[i] for i in frames.ids]
