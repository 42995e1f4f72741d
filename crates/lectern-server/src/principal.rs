//! Who is calling: set on each request by the auth layer, read by the handlers that record
//! management actions in the audit log.

use lectern_store::Role;

/// The caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// What the audit log names: `key:<id>`, `jwt:<subject>` or `local` (no auth).
    pub actor: String,
    pub role: Role,
}

impl Principal {
    /// The caller when no authentication is in force.
    pub fn local() -> Self {
        Principal { actor: "local".into(), role: Role::Admin }
    }
}
