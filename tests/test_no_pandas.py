"""`jobs.no_pandas`: with pandas kept out, pyarrow's conversions still work and pandas is not
imported; an explicit import fails with a message that names the reason."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CODE = """
import sys
from jobs import no_pandas
assert no_pandas.keep_out()
import numpy as np, pyarrow as pa, pyarrow.compute as pc, pyarrow.parquet as pq
t = pa.table({"f": pa.array(np.array(["a", "b", "b"], object)), "x": np.arange(3)})
pq.write_table(t, sys.argv[1])
back = pq.read_table(sys.argv[1])
assert back.column("x").to_numpy().tolist() == [0, 1, 2]
assert pc.equal(back.column("f"), "b").to_numpy(zero_copy_only=False).tolist() == [0, 1, 1]
assert back.to_pylist()[1] == {"f": "b", "x": 1}
assert "pandas" not in sys.modules
try:
    import pandas
except ModuleNotFoundError as exc:
    print("refused:", exc)
"""


def test_pyarrow_works_without_pandas(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
    p = subprocess.run(
        [sys.executable, "-c", CODE, str(tmp_path / "t.parquet")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    assert "refused: pandas is kept out of this job (jobs.no_pandas)" in p.stdout


def test_nothing_to_keep_out_once_imported():
    import pandas  # noqa: F401  (this test process may have it already)

    from jobs import no_pandas

    before = list(sys.meta_path)
    assert no_pandas.keep_out() is False
    assert sys.meta_path == before
