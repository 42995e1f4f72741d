CREATE TABLE scheduled_jobs (
    name TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    spec_json TEXT NOT NULL,
    schedule_key TEXT NOT NULL,
    anchor BIGINT NOT NULL,
    paused BIGINT NOT NULL,
    next_run_at BIGINT,
    run_id TEXT,
    lease_until BIGINT,
    checkpoint_json TEXT,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE job_runs (
    seq $IDENTITY,
    id TEXT NOT NULL UNIQUE,
    job TEXT NOT NULL,
    trigger_kind TEXT NOT NULL,
    scheduled_for BIGINT,
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    state TEXT NOT NULL,
    items BIGINT NOT NULL,
    error TEXT,
    detail TEXT,
    owner TEXT NOT NULL
);
CREATE INDEX job_runs_by_job ON job_runs (job, seq);
CREATE TABLE dataset_rows (
    dataset TEXT NOT NULL,
    row_key TEXT NOT NULL,
    row_json TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (dataset, row_key)
)
