//! The `[dashboard]` table of the config file.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// How the dashboard is set up.
#[derive(Debug, Clone)]
pub struct DashboardConfig {
    /// `false`: no pages at all.
    pub enabled: bool,
    pub session_ttl: Duration,
    /// The base of the OIDC `redirect_uri` (`https://host[:port]`); `None`: from each request.
    pub public_url: Option<String>,
    /// The Projects page's dataset prefix (`kids-`): projects are private to their creator.
    pub projects: Option<String>,
    /// Per pipeline, the results rows highlighted by default (`column=value`).
    pub highlight: BTreeMap<String, String>,
    /// Per dataset, the columns charted on its page (default: every column).
    pub charts: BTreeMap<String, Vec<String>>,
    /// The OIDC client of the sign-in (from `[auth]`), when one is configured.
    pub oidc_client: Option<OidcClient>,
}

/// The dashboard's OIDC client.
#[derive(Clone)]
pub struct OidcClient {
    pub client_id: String,
    /// From `LECTERN_OIDC_CLIENT_SECRET` only.
    pub client_secret: Option<String>,
}

impl std::fmt::Debug for OidcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secret = self.client_secret.as_ref().map(|_| "(set)");
        f.debug_struct("OidcClient").field("client_id", &self.client_id).field("client_secret", &secret).finish()
    }
}

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig {
            enabled: true,
            session_ttl: Duration::from_secs(12 * 3600),
            public_url: None,
            projects: None,
            highlight: BTreeMap::new(),
            charts: BTreeMap::new(),
            oidc_client: None,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileDashboard {
    enabled: Option<bool>,
    session_ttl: Option<String>,
    public_url: Option<String>,
    projects: Option<String>,
    #[serde(default)]
    highlight: BTreeMap<String, String>,
    #[serde(default)]
    charts: BTreeMap<String, Vec<String>>,
}

#[derive(Deserialize, Default)]
struct File {
    #[serde(default)]
    dashboard: Option<toml::Value>,
}

impl DashboardConfig {
    /// The `[dashboard]` table of the config file's `text` (`file` names it in errors).
    pub fn from_config(text: &str, file: &str) -> Result<Self, String> {
        let parsed: File = toml::from_str(text).map_err(|e| format!("{file}: {e}"))?;
        let Some(table) = parsed.dashboard else { return Ok(Self::default()) };
        let given: FileDashboard = table.try_into().map_err(|e| format!("{file}: [dashboard]: {e}"))?;
        let mut config = DashboardConfig { enabled: given.enabled.unwrap_or(true), ..Self::default() };
        if let Some(ttl) = given.session_ttl {
            config.session_ttl =
                lectern_core::duration::parse(&ttl).map_err(|e| format!("{file}: [dashboard] session_ttl: {e}"))?;
        }
        if let Some(url) = given.public_url {
            let url = url.trim_end_matches('/').to_string();
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!("{file}: [dashboard] public_url must start with http:// or https://"));
            }
            config.public_url = Some(url);
        }
        if let Some(prefix) = given.projects {
            let ok = !prefix.is_empty()
                && prefix.len() <= 40
                && prefix.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
            if !ok {
                return Err(format!("{file}: [dashboard] projects must be a dataset name prefix such as \"kids-\""));
            }
            config.projects = Some(prefix);
        }
        for (pipeline, rule) in &given.highlight {
            if !rule.contains('=') {
                return Err(format!("{file}: [dashboard] highlight.{pipeline}: write column=value"));
            }
        }
        config.highlight = given.highlight;
        config.charts = given.charts;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_read_and_checked() {
        let c = DashboardConfig::from_config("", "f").unwrap();
        assert!(c.enabled && c.projects.is_none());
        let text = "[dashboard]\nsession_ttl = \"2h\"\nprojects = \"kids-\"\nhighlight = { r = \"strength=weak\" }\n\
                    charts = { a = [\"x\", \"y\"] }\n";
        let c = DashboardConfig::from_config(text, "f").unwrap();
        assert_eq!(c.session_ttl, Duration::from_secs(7200));
        assert_eq!(c.projects.as_deref(), Some("kids-"));
        assert_eq!(c.highlight["r"], "strength=weak");
        assert_eq!(c.charts["a"], vec!["x", "y"]);
        for bad in
            ["[dashboard]\nnope = 1", "[dashboard]\nprojects = \"Kids <\"", "[dashboard]\nhighlight = { r = \"x\" }"]
        {
            assert!(DashboardConfig::from_config(bad, "f").is_err(), "{bad}");
        }
    }
}
