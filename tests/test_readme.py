"""The README stays true: its set-up commands are the ones CI runs, and every Python code block of it runs.

The Python blocks run in order in one namespace (as a reader pastes them into one session), verbatim. Two
documented mechanisms keep that fast without touching the text:

- the default digits supernet (which ``gym.make("NATCell-v0")`` trains on first use) is trained with a 1-epoch
  recipe (``nat_gym.supernet.default.DEFAULT_TRAIN_CONFIG`` monkeypatched) into the test's temporary cache folder
  (``tests/conftest.py``), never the user's;
- every Stable-Baselines3 ``learn(...)`` stops after :data:`SB3_MAX_EPISODES` episodes through SB3's own callback
  API (``StopTrainingOnMaxEpisodes``, appended to the callbacks the block passes), so a ``learn(2048)`` with
  ``n_steps=64`` collects one rollout, makes one update and stops in the second rollout.
"""

from __future__ import annotations

import contextlib
import io
import re
from dataclasses import replace
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SB3_MAX_EPISODES = 96
"""Episodes (one step each in NATCell-v0 by default) after which a README ``learn(...)`` stops."""

_PYTHON_FENCE = re.compile(r"^```(?:python|python3|py)[ \t]*\n(.*?)^```[ \t]*$", flags=re.S | re.M)


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Set-up: two commands", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)\n```", section, flags=re.S)


def python_blocks(text: str) -> list[tuple[int, str]]:
    """``(first line number, code)`` of every fenced Python block of a Markdown text."""
    return [(text.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in _PYTHON_FENCE.finditer(text)]


def run_python_blocks(text: str, filename: str = "README.md") -> dict:
    """Execute the Python blocks of ``text`` in order in one namespace; an exception names the block's lines
    (tracebacks point at the README's own line numbers). Returns the namespace."""
    import sys
    import types

    module = types.ModuleType("__readme__")  # a module, as a session's __main__ is (dataclasses look theirs up)
    sys.modules[module.__name__] = module
    try:
        for line, code in python_blocks(text):
            compiled = compile("\n" * (line - 1) + code, filename, "exec")
            try:
                exec(compiled, module.__dict__)
            except Exception as err:
                raise AssertionError(f"{filename}: the Python block at line {line} fails: {err!r}") from err
    finally:
        del sys.modules[module.__name__]
    return module.__dict__


def test_readme_has_two_setup_commands():
    cmds = _readme_commands()
    assert len(cmds) == 2, cmds
    assert all(c.startswith("python3 -m venv .venv && ") for c in cmds)


def test_ci_runs_the_readme_test_command_verbatim():
    test_cmd = _readme_commands()[1]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_cmd in ci, "the last command of .ci/run must be the README's test command"
    assert "pytest" in test_cmd


def test_block_runner_fails_on_a_block_that_cannot_run():
    text = "# doc\n\n```python\nx = 1\n```\n\ntext\n\n```py\ny = x + 1\nraise_here = env.action_masks()\n```\n"
    assert [line for line, _ in python_blocks(text)] == [4, 10]
    with pytest.raises(AssertionError, match="line 10") as err:
        run_python_blocks(text, "doc.md")
    assert isinstance(err.value.__cause__, NameError)
    assert run_python_blocks("```python\nx = 2\n```\n```bash\nexit 1\n```\n")["x"] == 2  # bash blocks are not run


@pytest.fixture
def fast_readme(monkeypatch):
    """The two mechanisms of the module docstring."""
    from stable_baselines3.common.base_class import BaseAlgorithm
    from stable_baselines3.common.callbacks import BaseCallback, StopTrainingOnMaxEpisodes

    import nat_gym.supernet.default as default

    monkeypatch.setattr(default, "DEFAULT_TRAIN_CONFIG", replace(default.DEFAULT_TRAIN_CONFIG, epochs=1))
    setup_learn = BaseAlgorithm._setup_learn
    calls: list[int] = []

    def capped(self, total_timesteps, callback=None, *args, **kwargs):
        given = [] if callback is None else list(callback) if isinstance(callback, list) else [callback]
        if any(not isinstance(c, BaseCallback) for c in given):  # a plain function: SB3 wraps it
            from stable_baselines3.common.callbacks import ConvertCallback

            given = [c if isinstance(c, BaseCallback) else ConvertCallback(c) for c in given]
        calls.append(total_timesteps)
        stop = StopTrainingOnMaxEpisodes(max_episodes=SB3_MAX_EPISODES)
        return setup_learn(self, total_timesteps, [*given, stop], *args, **kwargs)

    monkeypatch.setattr(BaseAlgorithm, "_setup_learn", capped)
    return calls


def test_every_python_block_of_the_readme_runs(fast_readme):
    text = (ROOT / "README.md").read_text()
    blocks = python_blocks(text)
    assert len(blocks) >= 2 and any("gym.make(" in code for _, code in blocks)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        ns = run_python_blocks(text)
    printed = out.getvalue()
    # the values the tour's comments state
    assert "3349342" in printed  # DARTS_V2's parameters at C=36, 20 layers
    assert ns["mask"].shape == (16, 13)
    assert ns["info"]["invalid_edges"] == 0  # the masked sample is a valid transformation
    assert ns["edge_mask"].shape == (13,) and ns["edge_info"]["edge"] == 15  # NATEdge-v0: 16 decisions
    assert ns["edge_info"]["invalid_edges"] == 0
    # the SB3 block: it learnt (one update) and stopped through the documented cap
    assert fast_readme == [2048, 2048] and 64 < ns["model"].num_timesteps <= SB3_MAX_EPISODES
    assert ns["model"]._n_updates >= 1
    # the GCN features extractor block: the same, with agents.sb3.GCNExtractor in the policy
    assert type(ns["gcn_model"].policy.features_extractor).__name__ == "GCNExtractor"
    assert 64 < ns["gcn_model"].num_timesteps <= SB3_MAX_EPISODES and ns["gcn_model"]._n_updates >= 1
    # the BlockQNN-v0 block: one conv3 layer reading the input, and the episode goes on
    assert str(ns["block_info"]["block"]) == "conv3:0" and not ns["terminated"]
