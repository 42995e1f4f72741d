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

    /// The user part of the actor as it appears in project names, one-to-one: an OIDC
    /// subject keeps `a-z0-9` and writes every other byte as `_` and two hex digits
    /// (`jwt:Bob.O` → `_42ob_2eo`); an API key is `_k` and its id; anything else (`local`,
    /// `anonymous`) is `_x` and its encoded name. So no two callers share a user part, and a
    /// user part never holds a `-`: `<prefix><user>-<project>` names one user's project.
    pub fn user_slug(&self) -> String {
        match self.actor.split_once(':') {
            Some(("jwt", subject)) => encode_name(subject),
            Some(("key", id)) => format!("_k{}", encode_name(id)),
            _ => format!("_x{}", encode_name(&self.actor)),
        }
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

/// `a-z0-9` as they are, every other byte as `_` and two hex digits.
fn encode_name(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_lowercase() || b.is_ascii_digit() {
            out.push(b as char);
        } else {
            out.push_str(&format!("_{b:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projects_are_private_to_their_user() {
        let alice = Principal { actor: "jwt:Alice".into(), role: Role::Trainer };
        let admin = Principal { actor: "key:1".into(), role: Role::Admin };
        let slug = |actor: &str| Principal { actor: actor.into(), role: Role::Client }.user_slug();
        assert_eq!(alice.user_slug(), "_41lice");
        assert_eq!(slug("jwt:a.b-c@x"), "a_2eb_2dc_40x");
        assert_eq!(slug("key:35fd5c9d13f7"), "_k35fd5c9d13f7");
        // no two callers share a user part
        let actors = [
            "jwt:mary.jones",
            "jwt:mary_jones",
            "jwt:Mary-Jones",
            "jwt:Zoë",
            "jwt:Zoé",
            "jwt:anonymous",
            "anonymous",
            "local",
            "jwt:local",
            "key:abc",
            "jwt:_kabc",
            "jwt:abc",
        ];
        let slugs: std::collections::HashSet<String> = actors.iter().map(|a| slug(a)).collect();
        assert_eq!(slugs.len(), actors.len(), "{slugs:?}");
        assert!(actors.iter().all(|a| !slug(a).contains('-')));
        // user "alice-liddell" cannot reach alice's project "liddell-x"
        let liddell = Principal { actor: "jwt:alice-liddell".into(), role: Role::Trainer };
        assert!(!liddell.may_see(Some("kids-"), "kids-_41lice-liddell-x"));
        assert!(alice.may_see(Some("kids-"), "kids-_41lice-pets"));
        assert!(!alice.may_see(Some("kids-"), "kids-bob-pets"));
        assert!(!alice.may_see(Some("kids-"), "kids-_41licex-pets"));
        assert!(alice.may_see(Some("kids-"), "iris"));
        assert!(alice.may_see(None, "kids-bob-pets"));
        assert!(admin.may_see(Some("kids-"), "kids-bob-pets"));
    }
}
