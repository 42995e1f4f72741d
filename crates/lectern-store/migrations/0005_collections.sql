CREATE TABLE collections (
    name TEXT PRIMARY KEY,
    model TEXT,
    dimension BIGINT NOT NULL,
    item_count BIGINT NOT NULL,
    generation BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE collection_items (
    collection TEXT NOT NULL,
    id TEXT NOT NULL,
    text TEXT,
    metadata_json TEXT NOT NULL,
    vector $BLOB NOT NULL,
    PRIMARY KEY (collection, id)
)
