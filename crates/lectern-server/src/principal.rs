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

    /// The user part of the actor (`jwt:Alice` → `alice`) as it appears in project names:
    /// lower case, anything but `a-z0-9` as `_`, at most 40 characters. Never a `-`, so that
    /// `<prefix><user>-<project>` names one user and one project (project names have no `_`).
    pub fn user_slug(&self) -> String {
        let subject = self.actor.split_once(':').map(|(_, s)| s).unwrap_or(&self.actor);
        subject.chars().take(40).map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect()
    }

    /// The names of this caller's own projects start with this (`<prefix><user>-`).
    pub fn own_projects(&self, prefix: &str) -> String {
        format!("{prefix}{}-", self.user_slug())
    }

    /// Whether this caller may see the dataset or model `name` when `projects` (the
    /// `[dashboard] projects` prefix) makes projects private: anything outside the prefix;
    /// inside it, only the caller's own (admins see all).
    pub fn may_see(&self, projects: Option<&str>, name: &str) -> bool {
        match projects {
            Some(prefix) if name.starts_with(prefix) => {
                self.role == Role::Admin || name.starts_with(&self.own_projects(prefix))
            }
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projects_are_private_to_their_user() {
        let alice = Principal { actor: "jwt:Alice".into(), role: Role::Trainer };
        let admin = Principal { actor: "key:1".into(), role: Role::Admin };
        assert_eq!(alice.user_slug(), "alice");
        assert_eq!(Principal { actor: "jwt:a.b-c@x".into(), role: Role::Client }.user_slug(), "a_b_c_x");
        // user "alice-liddell" cannot reach alice's project "liddell-x"
        let other = Principal { actor: "jwt:alice-liddell".into(), role: Role::Trainer };
        assert!(!other.may_see(Some("kids-"), "kids-alice-liddell-x"));
        assert!(alice.may_see(Some("kids-"), "kids-alice-pets"));
        assert!(!alice.may_see(Some("kids-"), "kids-bob-pets"));
        assert!(!alice.may_see(Some("kids-"), "kids-alicex-pets"));
        assert!(alice.may_see(Some("kids-"), "iris"));
        assert!(alice.may_see(None, "kids-bob-pets"));
        assert!(admin.may_see(Some("kids-"), "kids-bob-pets"));
    }
}
