"""The read side of the codes: what ingest wrote, made searchable.

store      the code-shard format (one Parquet file per archive file) and its writer
catalogue  segments + shards not yet compacted, as one ordered list of parts
compact    shards -> search segments (a Delta Lake table), each frame exactly once
vacuum     removes what compaction superseded, after a grace period
search     k-NN and MAP over the catalogue's parts (local threads or Ray tasks)
export     the codes as FAISS binary indexes, NumPy or Parquet, for downstream search
"""
