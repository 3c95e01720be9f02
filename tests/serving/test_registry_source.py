"""``--model models:/name@alias``: fetched from a real MLflow registry, served under its resolved version."""

from __future__ import annotations

import numpy as np

from pipelines.args import ServeArgs
from pipelines.serve import service_config
from serving.model_store import ModelStore, load_folder
from serving.registry import register


def test_registry_alias_is_fetched_resolved_and_scores_like_the_folder(serving_models, make_request, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert register(serving_models.a, "tiny-ctr", uri, alias="champion") == "models:/tiny-ctr/1"
    cfg = service_config(ServeArgs(model="models:/tiny-ctr@champion", mlflow_uri=uri, max_candidates=50))
    assert cfg.tracking_uri == uri and cfg.limits.max_candidates == 50
    store = ModelStore(cfg.model, tracking_uri=cfg.tracking_uri)
    model, previous = store.load()
    assert previous is None and model.version == "models:/tiny-ctr/1" and model.source == cfg.model
    request = make_request(0, n_hist=6, n_cand=9)
    np.testing.assert_array_equal(model.predict(request), load_folder(serving_models.a).predict(request))


def test_a_folder_model_has_no_registry_unless_one_is_named(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert service_config(ServeArgs(model=str(tmp_path))).tracking_uri == ""
    named = f"sqlite:///{tmp_path / 'm.db'}"
    assert service_config(ServeArgs(model=str(tmp_path), mlflow_uri=named)).tracking_uri == named
