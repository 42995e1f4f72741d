//! For admins: the audit log and the API keys.

use super::{Cell, Table};
use crate::http::{html, ok, read_form, see_other, PageError, PageResult};
use crate::templates::Nav;
use crate::viewer::Viewer;
use askama::Template;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use lectern_server::AppState;
use lectern_store::Role;
use std::sync::Arc;

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    nav: Nav,
    t: Table,
}

/// `GET /ui/audit`
pub async fn audit(State(state): State<Arc<AppState>>, viewer: Viewer) -> PageResult {
    viewer.require(Role::Admin)?;
    let mut t = Table::new("audit", &["When", "Who", "Action", "Target", "Detail"], "Nothing recorded yet.");
    for e in state.manager.audit_log(200).await? {
        t.push(vec![
            Cell::text(super::when(e.at_ms)),
            Cell::text(e.actor),
            Cell::text(e.action),
            Cell::text(e.target),
            Cell::text(e.detail),
        ]);
    }
    ok(&AuditPage { nav: Nav::of(&viewer), t })
}

#[derive(Template)]
#[template(path = "keys.html")]
struct KeysPage {
    nav: Nav,
    t: Table,
    revocable: Vec<(String, String)>,
    secret: Option<String>,
    error: Option<String>,
}

/// `GET /ui/keys`
pub async fn keys(State(state): State<Arc<AppState>>, viewer: Viewer) -> PageResult {
    viewer.require(Role::Admin)?;
    keys_page(&state, &viewer, StatusCode::OK, None, None).await
}

async fn keys_page(
    state: &AppState,
    viewer: &Viewer,
    status: StatusCode,
    secret: Option<String>,
    error: Option<String>,
) -> PageResult {
    let mut t = Table::new("keys", &["Id", "Name", "Role", "Created", "Revoked"], "No API keys.");
    let mut revocable = Vec::new();
    for key in state.manager.keys().await? {
        if key.revoked_at_ms.is_none() {
            revocable.push((key.id.clone(), key.name.clone()));
        }
        t.rows.push(super::Row {
            key: key.id.clone(),
            cells: vec![
                Cell::text(key.id),
                Cell::text(key.name),
                Cell::text(key.role.as_str()),
                Cell::text(super::when(key.created_at_ms)),
                Cell::text(super::maybe_when(key.revoked_at_ms)),
            ],
            ..super::Row::default()
        });
    }
    t.key_attr = "key";
    Ok(html(status, &KeysPage { nav: Nav::of(viewer), t, revocable, secret, error }))
}

/// `POST /ui/keys`: a new key, shown once on the answer.
pub async fn create_key(State(state): State<Arc<AppState>>, viewer: Viewer, request: Request) -> PageResult {
    viewer.require(Role::Admin)?;
    let form = read_form(&viewer.csrf, request, crate::http::SMALL_FORM).await?;
    let name = form.text("name");
    let role = match form.text("role").parse::<Role>() {
        Ok(role) if !name.is_empty() => role,
        Ok(_) => {
            return keys_page(&state, &viewer, StatusCode::BAD_REQUEST, None, Some("give the key a name".into())).await
        }
        Err(e) => {
            return keys_page(&state, &viewer, StatusCode::BAD_REQUEST, None, Some(PageError::from(e).message)).await
        }
    };
    let (_, secret) = state.manager.create_key(viewer.actor(), name, role).await?;
    state.auth.keys_changed(true);
    keys_page(&state, &viewer, StatusCode::OK, Some(secret), None).await
}

/// `POST /ui/keys/{id}/revoke`
pub async fn revoke_key(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
    Path(id): Path<String>,
    request: Request,
) -> PageResult {
    viewer.pressed(Role::Admin, request).await?;
    let live = state.manager.revoke_key(viewer.actor(), &id).await?;
    state.auth.keys_changed(live);
    Ok(see_other("/ui/keys"))
}
