"""Where search and benchmark run their catalogue tasks: in this process, or as Ray tasks.

Why a rule: starting a local Ray instance and shutting it down costs seconds (3.7-7.5 s on this
project's 2-core machine, benchmarks/RESULTS.md "Jobs that start fast"), more than reading and
searching a small catalogue takes. In this process the kernels already use every core, so a local
Ray instance can only gain by reading parts on several CPUs at once. The rule, when neither --ray
nor --no-ray is given:

- a cluster is named (--ray-address or $RAY_ADDRESS): Ray, its CPUs are more than this machine's;
- else estimate the reading in this process,
      read_s = passes x (pending shards x SHARD_S + codes x CODE_S)
  and use a local Ray only when spreading it over this machine's CPUs saves more than Ray's
  start-up: read_s x (1 - 1/cpus) > RAY_START_S. On 2 CPUs that is more than 10 s of reading
  (about 5,000 pending shards, or 40M compacted codes, for one pass).

SHARD_S and CODE_S are this project's measurements (benchmarks/RESULTS.md "Search, MAP and
compaction over shards": 50,000 minute shards read twice by `benchmark --no-ray` in 103.5 s;
10M codes in 200 shards searched in 4.8 s, 1.1 s of it the kernel).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

RAY_START_S = 5.0  # ray.init + shutdown of a local instance
SHARD_S = 1e-3  # opening and reading one small pending shard, per pass
CODE_S = 0.25e-6  # reading one code (id, code, label) from a segment or shard, per pass


@dataclass(frozen=True)
class Choice:
    use_ray: bool
    reason: str  # one line for the log: what decided it


def machine_cpus() -> int:
    """CPUs this process may run on (a local Ray instance gets as many)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def forced(ray: bool, no_ray: bool, address: str | None) -> Choice | None:
    """The choice that the options make by themselves, or None when the work decides."""
    if no_ray:
        return Choice(False, "this process (--no-ray)")
    if ray:
        return Choice(True, f"Ray tasks on {address or 'a local instance'} (--ray)")
    if address:
        return Choice(True, f"Ray tasks on {address} (a cluster is named)")
    return None


def choose(catalogues, passes: int = 1, cpus: int | None = None) -> Choice:
    """In this process or a local Ray, for `passes` reads of every catalogue (the rule above)."""
    cpus = cpus or machine_cpus()
    shards = sum(len(c.shards) for c in catalogues)
    codes = sum(c.n_rows for c in catalogues)
    read_s = passes * (shards * SHARD_S + codes * CODE_S)
    saved_s = read_s * (1 - 1 / cpus)
    use_ray = saved_s > RAY_START_S
    what = (
        f"~{codes:,} codes, {shards:,} pending shards, {passes} pass(es): reading ~{read_s:.1f} s "
        f"here; a local Ray on {cpus} CPUs would save ~{saved_s:.1f} s, its start-up costs "
        f"~{RAY_START_S:g} s"
    )
    if use_ray:
        return Choice(True, f"Ray tasks on a local instance ({what}; --no-ray to stay here)")
    return Choice(False, f"this process ({what}; --ray to use Ray)")
