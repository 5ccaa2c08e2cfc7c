"""The read side of the codes: what ingest wrote, made searchable.

store      the code-shard format (one Parquet file per archive file) and its writer
segments   the segment table (Delta Lake): its schema, derived from the shard schema, and
           `SegmentTable`, the one handle that opens, creates, reads and commits it
pending    marks of the folders that may hold shards not yet compacted (what readers list)
catalogue  segments + shards not yet compacted, as one ordered list of parts
compact    shards -> search segments, each frame exactly once
vacuum     removes what compaction superseded, after a grace period
search     k-NN and MAP over the catalogue's parts (local threads or Ray tasks)
placement  in this process or on Ray: the rule search and benchmark use when not told
export     the codes as FAISS binary indexes, NumPy or Parquet, for downstream search

Every function here takes a `pipeline.storage.Location` (made once at the job's edge with
`storage.location(uri, endpoint=...)`); a plain path or URI stands for `storage.location(it)`.
"""
