"""The main job's result (issue 8, item 12): the final held-out reward next to the random-valid and identity floors,
printed, stored in metrics.csv / summary.json and drawn on learning_curves.png; the transform picture's title."""

from __future__ import annotations

import csv
import json

import gymnasium as gym
import numpy as np
import pytest
import torch

import nat_gym  # noqa: F401  (registers NATCell-v0)
from agents.nat_trainer import NATTrainer, NATTrainerArgs, load_policy, result_text
from agents.transform import transform, write_outputs
from nat_gym import genotypes
from nat_gym import rules as rule_sets
from nat_gym.cli import main
from nat_gym.cost import network_cost
from nat_gym.plotting import learning_curves_figure
from nat_gym.sampling import random_valid_action
from nat_gym.supernet.checkpoint import save_checkpoint
from nat_gym.supernet.config import SupernetConfig
from nat_gym.supernet.model import Supernet

FLAGS = ["--epochs", "2", "--policy-updates-per-epoch", "2", "--eval-inputs", "4", "--eval-every", "1",
         "--reward-images", "120", "--no-progress", "--device", "cpu", "--op-embed-dim", "8", "--lift-dim", "16",
         "--hidden-dim", "8"]  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """One tiny `nat-gym train` run (2 epochs on a tiny supernet); returns (folder, stdout)."""
    torch.manual_seed(0)
    net = Supernet(SupernetConfig(C=4, layers=3, ops=rule_sets.get("nat++").ops, num_classes=10, in_channels=1))
    ckpt = save_checkpoint(tmp_path_factory.mktemp("sn") / "tiny.pt", net)
    out = tmp_path_factory.mktemp("nat") / "run"
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["train", "--supernet", str(ckpt), "--out", str(out), *FLAGS]) == 0
    return out, buf.getvalue()


def _rows(out):
    with (out / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


def test_the_run_prints_its_result_next_to_the_floors(run_dir):
    out, stdout = run_dir
    last = _rows(out)[-1]
    lines = stdout.strip().splitlines()
    assert lines[-1] == f"nat: done; outputs in {out}"
    result = lines[-2]
    assert result.startswith("nat: held-out reward acc(alpha) - acc(beta) at epoch 2: policy ")
    assert f"{float(last['eval_reward']):+.4f} sampled, {float(last['eval_reward_argmax']):+.4f} argmax" in result
    assert f"floors: random valid {float(last['eval_reward_random']):+.4f}, identity +0.0000" in result
    assert "random valid" in result and "MAdds saving" in result


def test_floors_are_stored_in_metrics_and_summary(run_dir):
    out, _ = run_dir
    rows = _rows(out)
    assert [r["eval_reward_random"] for r in rows[:-1]] == [""]  # measured once, at the end of the run
    last = rows[-1]
    assert float(last["eval_reward_identity"]) == 0.0  # alpha = beta scores exactly as beta
    assert -1.0 <= float(last["eval_reward_random"]) <= 1.0 and 0.0 < float(last["eval_madds_saving_random"]) < 1.0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["floors"] == {k: pytest.approx(float(last[k])) for k in
                                 ("eval_reward_random", "eval_reward_identity", "eval_madds_saving_random")}
    assert summary["final"]["eval_reward"] == pytest.approx(float(last["eval_reward"]))
    assert summary["eval_inputs"] == 4
    assert (out / "learning_curves.png").stat().st_size > 10_000


def test_the_random_floor_is_random_valid_transformations_scored_like_the_policy(run_dir):
    """Recompute the floor from the checkpoint: the same held-out inputs and images, the final supernet weights."""
    out, _ = run_dir
    _, args = load_policy(out / "checkpoint.pt")
    trainer = NATTrainer(NATTrainerArgs.from_dict({**args.__dict__, "supernet": args.supernet}), log=False)
    assert trainer.resume(out / "checkpoint.pt")
    floors = trainer.heldout_floors()
    last = _rows(out)[-1]
    assert floors["eval_reward_random"] == pytest.approx(float(last["eval_reward_random"]), abs=1e-6)
    # by hand: uniform valid ops per edge (seeded by eval_seed), reward on the whole validation split
    rng, rules, ev = np.random.default_rng(args.eval_seed), trainer.rules, trainer.evaluator
    betas = trainer._eval_inputs
    alphas = [rules.apply_indices(b, random_valid_action(rules, b, rng))[0] for b in betas]
    assert all(rules.validate_transformation(b, a) == [] for b, a in zip(betas, alphas))
    assert np.mean(ev.evaluate(alphas, None) - ev.evaluate(betas, None)) == pytest.approx(floors["eval_reward_random"])


def test_learning_curves_draw_the_floors(run_dir):
    out, _ = run_dir
    last = _rows(out)[-1]
    floors = {"random valid": float(last["eval_reward_random"]), "identity": 0.0}
    fig = learning_curves_figure(out / "metrics.csv", y=["reward", "eval_reward", "eval_reward_argmax"],
                                 reference_lines={"eval_reward": floors, "eval_reward_argmax": floors})  # fmt: skip
    by_title = {ax.get_title(): ax for ax in fig.axes}
    assert not [ln for ln in by_title["reward"].get_lines() if ln.get_label().startswith("random")]
    for panel in ("eval_reward", "eval_reward_argmax"):
        lines = {ln.get_label().split(" (")[0]: ln for ln in by_title[panel].get_lines()}
        for label, value in floors.items():
            ys = lines[label].get_ydata()
            assert np.allclose(ys, value), (panel, label)  # a horizontal line at the floor
        legend = [t.get_text() for t in by_title[panel].get_legend().get_texts()]
        assert any(t.startswith("random valid (") for t in legend) and any(t.startswith("identity") for t in legend)


def test_result_text_without_a_heldout_report():
    assert "no held-out report" in result_text([{"epoch": 1.0, "reward": 0.1}])


def test_random_valid_action_is_valid_uniform_and_seeded():
    rules = rule_sets.get("nat++")
    g = genotypes.get("DARTS_V2")
    mask = rules.mask(g)
    draws = np.stack([random_valid_action(rules, g, np.random.default_rng(s)) for s in range(400)])
    assert all(mask[i, a] for row in draws for i, a in enumerate(row))
    for i in range(g.num_edges):  # every allowed op of every edge shows up, about equally often
        counts = np.bincount(draws[:, i], minlength=rules.num_ops)[mask[i]]
        assert counts.min() > 400 / mask[i].sum() / 3
    assert np.array_equal(random_valid_action(rules, g, 7), random_valid_action(rules, g, 7))


def test_transform_title_names_the_input_and_the_saving(tmp_path, monkeypatch):
    torch.manual_seed(0)
    net = Supernet(SupernetConfig(C=4, layers=3, ops=rule_sets.get("nat++").ops, num_classes=10, in_channels=1))
    env = gym.make("NATCell-v0", supernet=net, reward_images=None, device="cpu")
    from agents.gcn_policy import GCNPolicy

    policy = GCNPolicy(rule_sets.get("nat++").num_ops, "fixed", op_embed_dim=8, lift_dim=16, hidden_dim=8)
    result = transform("darts_v2", policy, env, samples=4, seed=0)
    assert result.input_name == "DARTS_V2"
    before, after = network_cost(result.input), network_cost(result.best)
    title = result.title()
    assert title.startswith("DARTS_V2 \u2192 NAT (nat++): ")
    assert f"params {after.params / before.params - 1:+.1%}, MAdds {after.madds / before.madds - 1:+.1%}" in title
    assert f"accuracy {result.input_accuracy:.3f} \u2192 {result.best_accuracy:.3f}" in title
    seen = {}
    import nat_gym.plotting as plotting

    real = plotting.save_genotype_png
    monkeypatch.setattr(plotting, "save_genotype_png", lambda *a, **kw: seen.update(kw) or real(*a, **kw))
    paths = write_outputs(result, tmp_path)
    assert seen["title"] == title and paths["png"].is_file()
    assert json.loads(paths["json"].read_text())["input_name"] == "DARTS_V2"
    path = tmp_path / "mine.json"
    path.write_text(genotypes.get("R3").to_json())
    assert transform(str(path), policy, env, samples=2).input_name == "mine.json"
    assert transform(genotypes.get("R3"), policy, env, samples=2).title().startswith("input \u2192")
