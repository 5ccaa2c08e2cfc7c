"""Archive files -> code shards: the nightly ingestion stage, in the order data flows through it.

config        what a run is asked to do (IngestConfig) and how a failed run reports
plan          list the archive, apply --since, skip the files already done
read          Ray Data read tasks: decode only, one row per frame (ROW_SCHEMA)
rows          the read rows' kinds (RowKind) and what one file's rows come to (FileOutcome)
frame_rows    raw pixel columns <-> model inputs (preprocessing on the encoder's device)
encode_actor  HashEncoder: the actors that preprocess and encode
resources     how many actors and read tasks a cluster runs
commit        encoded rows -> one shard (and quarantine record) per file, atomically
shard_rows    the columns of a shard and its quarantine lines
frame_meta    per-frame header values kept in the shards' `meta` column
vet           read and preprocess without encoding or writing (`check`, `--dry-run`)
local_read    the same read and preprocessing in process (training, queries by image)
query_images  query frames given as files, encoded as ingest encodes them
driver        run_ingest: plan -> read -> encode -> commit
"""
