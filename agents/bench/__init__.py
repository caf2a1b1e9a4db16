"""``nat-gym bench``: algorithms x seeds on pinned task sets at equal budgets of reward evaluations.

Modules, one concern each: :mod:`~agents.bench.algorithms` (the amortised algorithms' registry and adapters),
:mod:`~agents.bench.protocols` (the amortised and per-instance protocols), :mod:`~agents.bench.results` (the CSV
rows), :mod:`~agents.bench.runner` (jobs, resuming, ``--jobs`` processes, the JSON summary),
:mod:`~agents.bench.stats` (rliable statistics), :mod:`~agents.bench.report` (Markdown and PNGs),
:mod:`~agents.bench.validate` (re-scoring rows) and :mod:`~agents.bench.cli` (the commands).
"""
