//! One module per command.

pub mod backup;
pub mod cluster;
pub mod dataset;
pub mod job;
pub mod keys;
pub mod model;
pub mod serve;
pub mod train;
pub mod train_worker;
pub mod worker;
