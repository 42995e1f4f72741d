CREATE TABLE datasets (
    name TEXT PRIMARY KEY,
    format TEXT NOT NULL,
    object_key TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size BIGINT NOT NULL,
    row_count BIGINT NOT NULL,
    schema_json TEXT NOT NULL,
    preview_json TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE training_jobs (
    seq $IDENTITY,
    id TEXT NOT NULL UNIQUE,
    model TEXT NOT NULL,
    dataset TEXT NOT NULL,
    dataset_sha256 TEXT,
    request_json TEXT NOT NULL,
    state TEXT NOT NULL,
    stage TEXT NOT NULL,
    percent BIGINT NOT NULL,
    error TEXT,
    result_json TEXT,
    version BIGINT,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT
);
CREATE INDEX training_jobs_by_model ON training_jobs (model, seq);
CREATE TABLE training_pictures (
    job_id TEXT NOT NULL,
    name TEXT NOT NULL,
    svg TEXT NOT NULL,
    PRIMARY KEY (job_id, name)
)
