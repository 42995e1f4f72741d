//! One module per command.

pub mod keys;
pub mod model;
pub mod serve;
