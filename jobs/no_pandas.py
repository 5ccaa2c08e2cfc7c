"""Keep pandas out of the jobs that never use it, so that pyarrow does not import it.

pyarrow's first conversion between Arrow and NumPy (`Array.to_numpy`, `pa.array`,
`pq.read_table`) imports pandas only to learn whether its argument might be a DataFrame: 0.4 s
on a quiet machine and 0.9 s under load, a third of a search by id (benchmarks/RESULTS.md, "Jobs
that start fast"). In the console-script process of a job that hands pyarrow no pandas objects,
`keep_out` makes that import fail; pyarrow then works without its pandas integration. Ray's
workers are processes of their own and are not affected. Only the console script calls it: a
process that runs other work after the job (tests, a notebook) keeps pandas.
"""

from __future__ import annotations

import importlib.abc
import sys


class _KeptOut(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError(f"{name} is kept out of this job (jobs.no_pandas)", name=name)
        return None


def keep_out() -> bool:
    """Make `import pandas` fail in this process from now on; False when it is already imported
    (nothing left to save)."""
    if "pandas" in sys.modules:
        return False
    if not any(isinstance(f, _KeptOut) for f in sys.meta_path):
        sys.meta_path.insert(0, _KeptOut())
    return True
