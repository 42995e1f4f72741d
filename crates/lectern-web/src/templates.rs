//! The page templates (askama, compiled in; every `{{ value }}` is HTML-escaped) and what the
//! layout needs to know about the viewer.

use crate::viewer::Viewer;
use askama::Template;
use lectern_store::Role;

/// What the layout shows: the navigation for the viewer's role.
#[derive(Debug, Clone, Default)]
pub struct Nav {
    /// A viewer is known (signed in or local): the navigation is shown.
    pub known: bool,
    pub actor: String,
    pub role: &'static str,
    pub csrf: String,
    pub signed_in: bool,
    pub trainer: bool,
    pub admin: bool,
    pub projects: bool,
}

impl Nav {
    pub fn of(viewer: &Viewer) -> Nav {
        Nav {
            known: true,
            actor: viewer.actor().to_string(),
            role: viewer.role().as_str(),
            csrf: viewer.csrf.clone(),
            signed_in: viewer.signed_in,
            trainer: viewer.role() >= Role::Trainer,
            admin: viewer.role() == Role::Admin,
            projects: viewer.web.config.projects.is_some(),
        }
    }

    /// The navigation of a page shown before signing in (only the CSRF token).
    pub fn anonymous(csrf: &str) -> Nav {
        Nav { csrf: csrf.to_string(), ..Nav::default() }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage<'a> {
    pub nav: Nav,
    pub title: &'a str,
    pub message: &'a str,
}

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage<'a> {
    pub nav: Nav,
    pub error: Option<&'a str>,
    pub oidc: bool,
    pub next: &'a str,
    pub next_query: String,
}
