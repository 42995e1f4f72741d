//! OpenID Connect access tokens: verifies a bearer JWT against an issuer's published keys.
//!
//! An [`OidcVerifier`] knows one issuer and one audience. Its signing keys come from the
//! issuer's JWKS: the `jwks_uri` of `{issuer}/.well-known/openid-configuration`, or a
//! `jwks_url` given directly. The key set is fetched on first use (or with
//! [`OidcVerifier::refresh_keys`] at start-up), kept, and fetched again when a token names a key
//! id the set lacks (key rotation) or when the set is older than `max_key_age`; fetches are at
//! most one per `min_refresh_interval` (30 s), so tokens with made-up key ids cannot make the
//! server hammer the issuer.
//!
//! Accepted: the asymmetric algorithms (RS256/384/512, PS256/384/512, ES256, ES384, EdDSA) that
//! the named key allows (its `alg` if the JWKS gives one, else its key type and curve). Never
//! `none`, never HMAC (a JWKS holds public keys; HMAC with one would let anybody sign).
//! Checked: the signature, `exp` (required) and `nbf` with a small leeway, `iss` equal to the
//! issuer, `aud` containing the audience, `sub` present.
//!
//! The result is the subject and the role names read from a claim (default `role`; a dotted
//! path such as `realm_access.roles` reaches into nested objects) holding a string or a list
//! of strings. Errors say what failed and never contain the token.

use base64::Engine as _;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Tokens longer than this are refused before any parsing.
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Discovery documents and key sets larger than this are refused.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// What an [`OidcVerifier`] checks, and where it gets the keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcConfig {
    /// The issuer URL; tokens' `iss` must equal it exactly.
    pub issuer: String,
    /// The audience; tokens' `aud` (a string or a list) must contain it.
    pub audience: String,
    /// The claim holding the role names, a dotted path for nested claims
    /// (`realm_access.roles`). A top-level claim whose name itself contains dots
    /// (`https://example.com/roles`) is found too: the whole name is tried first.
    pub role_claim: String,
    /// The key set URL; `None`: the `jwks_uri` of the issuer's discovery document.
    pub jwks_url: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
    /// Fewest time between two fetches of the key set (unknown key ids, failures).
    pub min_refresh_interval: Duration,
    /// A key set older than this is fetched again on the next verification.
    pub max_key_age: Duration,
    /// Time limit of each HTTP request to the issuer.
    pub http_timeout: Duration,
}

impl OidcConfig {
    /// Defaults: role claim `role`, keys found by discovery, 30 s leeway, refetch at most every
    /// 30 s and at least every hour, 10 s HTTP time limit.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        OidcConfig {
            issuer: issuer.into(),
            audience: audience.into(),
            role_claim: "role".into(),
            jwks_url: None,
            leeway: Duration::from_secs(30),
            min_refresh_interval: Duration::from_secs(30),
            max_key_age: Duration::from_secs(3600),
            http_timeout: Duration::from_secs(10),
        }
    }
}

/// A verified token: who, and with which roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The `sub` claim.
    pub subject: String,
    /// The role names of the role claim, in order; empty when the token has no such claim.
    pub roles: Vec<String>,
}

/// Why a token was refused, or why it could not be checked. No variant holds the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token's algorithm {0:?} is not accepted")]
    UnsupportedAlgorithm(String),
    #[error("the token marks header parameters as critical (crit), which are not supported")]
    CriticalHeader,
    #[error("the token names no key id (kid) and no single key of the issuer fits it")]
    MissingKeyId,
    #[error("the token's key id {0:?} is not among the issuer's keys")]
    UnknownKeyId(String),
    #[error("the token's algorithm {alg} does not fit the issuer's key {kid:?}")]
    AlgorithmMismatch { alg: String, kid: String },
    #[error("the token's signature is invalid")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    #[error("the token's issuer is not {0}")]
    WrongIssuer(String),
    #[error("the token's audience does not include {0}")]
    WrongAudience(String),
    #[error("the token has no {0} claim")]
    MissingClaim(String),
    #[error("the token's {0} claim is not a string or a list of strings")]
    InvalidClaim(String),
    #[error("cannot get the issuer's signing keys: {0}")]
    KeysUnavailable(String),
    #[error("invalid OIDC configuration: {0}")]
    Config(String),
}

impl JwtError {
    /// True when the token could not be checked because the issuer's keys are out of reach
    /// (a server-side condition, 503), false when the token itself was refused (401).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, JwtError::KeysUnavailable(_))
    }
}

/// One usable verification key of the key set.
struct Key {
    kid: Option<String>,
    /// The one algorithm the JWKS allows for this key, if it names one.
    alg: Option<Algorithm>,
    family: Family,
    decoding: DecodingKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Rsa,
    /// An EC key: the algorithm its curve implies.
    Ec(Algorithm),
    Ed,
}

impl Key {
    fn accepts(&self, alg: Algorithm) -> bool {
        let family_ok = match self.family {
            Family::Rsa => matches!(
                alg,
                Algorithm::RS256
                    | Algorithm::RS384
                    | Algorithm::RS512
                    | Algorithm::PS256
                    | Algorithm::PS384
                    | Algorithm::PS512
            ),
            Family::Ec(curve_alg) => alg == curve_alg,
            Family::Ed => alg == Algorithm::EdDSA,
        };
        family_ok && self.alg.is_none_or(|a| a == alg)
    }

    /// A verification key from a JWK, or why it is skipped.
    fn from_jwk(jwk: &Jwk) -> Result<Key, String> {
        if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
            return Err("not a signing key (use)".into());
        }
        let family = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Family::Rsa,
            AlgorithmParameters::EllipticCurve(p) => match p.curve {
                EllipticCurve::P256 => Family::Ec(Algorithm::ES256),
                EllipticCurve::P384 => Family::Ec(Algorithm::ES384),
                ref other => return Err(format!("unsupported curve {other:?}")),
            },
            AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => Family::Ed,
            AlgorithmParameters::OctetKeyPair(p) => return Err(format!("unsupported curve {:?}", p.curve)),
            AlgorithmParameters::OctetKey(_) => return Err("symmetric keys are not accepted".into()),
        };
        let alg = match jwk.common.key_algorithm {
            None => None,
            Some(ka) => Some(
                Algorithm::from_str(&ka.to_string()).map_err(|_| format!("algorithm {ka} is not for signatures"))?,
            ),
        };
        let decoding = DecodingKey::from_jwk(jwk).map_err(|e| format!("unusable key: {e}"))?;
        let key = Key { kid: jwk.common.key_id.clone(), alg, family, decoding };
        if let Some(a) = alg {
            if !key.accepts(a) {
                return Err(format!("algorithm {a:?} does not fit the key type"));
            }
        }
        Ok(key)
    }
}

/// The key set as last fetched, replaced whole on each fetch.
#[derive(Default)]
struct KeySet {
    keys: Vec<Arc<Key>>,
    /// When the current keys were fetched.
    fetched_at: Option<Instant>,
    /// When a fetch was last tried, successful or not.
    attempted_at: Option<Instant>,
    /// Why the last fetch failed, if it did.
    last_error: Option<String>,
}

enum Lookup {
    Found(Arc<Key>),
    Unknown,
    Mismatch(String),
}

impl KeySet {
    fn lookup(&self, kid: Option<&str>, alg: Algorithm) -> Lookup {
        match kid {
            Some(kid) => {
                let mut named = self.keys.iter().filter(|k| k.kid.as_deref() == Some(kid)).peekable();
                if named.peek().is_none() {
                    return Lookup::Unknown;
                }
                match named.find(|k| k.accepts(alg)) {
                    Some(k) => Lookup::Found(k.clone()),
                    None => Lookup::Mismatch(kid.to_owned()),
                }
            }
            None => {
                let mut fitting = self.keys.iter().filter(|k| k.accepts(alg));
                match (fitting.next(), fitting.next()) {
                    (Some(k), None) => Lookup::Found(k.clone()),
                    _ => Lookup::Unknown,
                }
            }
        }
    }
}

/// Verifies access tokens of one OIDC issuer. Share it (`Arc`) between requests.
pub struct OidcVerifier {
    config: OidcConfig,
    client: reqwest::Client,
    keys: RwLock<Arc<KeySet>>,
    /// Held while fetching (one fetch at a time); caches the discovered `jwks_uri`.
    fetch: tokio::sync::Mutex<Option<String>>,
}

impl std::fmt::Debug for OidcVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcVerifier").field("config", &self.config).finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Discovery {
    issuer: Option<String>,
    jwks_uri: Option<String>,
}

#[derive(Deserialize)]
struct RawKeySet {
    keys: Vec<Value>,
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
}

impl OidcVerifier {
    /// A verifier; nothing is fetched until the first token (or [`OidcVerifier::refresh_keys`]).
    pub fn new(config: OidcConfig) -> Result<Self, JwtError> {
        if config.issuer.trim().is_empty() {
            return Err(JwtError::Config("the issuer is empty".into()));
        }
        if config.audience.trim().is_empty() {
            return Err(JwtError::Config("the audience is empty".into()));
        }
        if config.role_claim.trim().is_empty() {
            return Err(JwtError::Config("the role claim is empty".into()));
        }
        let client = reqwest::Client::builder()
            .timeout(config.http_timeout)
            .build()
            .map_err(|e| JwtError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(OidcVerifier { config, client, keys: RwLock::new(Arc::default()), fetch: tokio::sync::Mutex::new(None) })
    }

    /// The configuration.
    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    /// Fetches the key set now (for example at start-up, to fail early), whatever the time of
    /// the last fetch; returns how many usable keys it holds.
    pub async fn refresh_keys(&self) -> Result<usize, JwtError> {
        let seen = self.snapshot().attempted_at;
        self.refresh(seen).await;
        let keys = self.snapshot();
        match &keys.last_error {
            Some(e) => Err(JwtError::KeysUnavailable(e.clone())),
            None => Ok(keys.keys.len()),
        }
    }

    /// Verifies a token (the part after `Bearer `): signature, expiry, issuer, audience.
    pub async fn verify(&self, token: &str) -> Result<Verified, JwtError> {
        let token = token.trim();
        let header = parse_header(token)?;
        if header.crit.is_some() {
            return Err(JwtError::CriticalHeader);
        }
        let alg = accepted_algorithm(&header.alg)?;
        let key = self.key_for(header.kid.as_deref(), alg).await?;

        let mut validation = Validation::new(alg);
        validation.leeway = self.config.leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding, &validation)
            .map_err(|e| self.map_error(e, alg, key.kid.as_deref()))?
            .claims;

        // jsonwebtoken also accepts an `iss` list that contains the issuer; OIDC wants a string.
        if claims.get("iss").and_then(Value::as_str) != Some(self.config.issuer.as_str()) {
            return Err(JwtError::WrongIssuer(self.config.issuer.clone()));
        }
        let subject = match claims.get("sub") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::String(_)) | None => return Err(JwtError::MissingClaim("sub".into())),
            Some(_) => return Err(JwtError::InvalidClaim("sub".into())),
        };
        let roles = roles(&claims, &self.config.role_claim)?;
        Ok(Verified { subject, roles })
    }

    fn map_error(&self, e: jsonwebtoken::errors::Error, alg: Algorithm, kid: Option<&str>) -> JwtError {
        use jsonwebtoken::errors::ErrorKind as K;
        match e.into_kind() {
            K::ExpiredSignature => JwtError::Expired,
            K::ImmatureSignature => JwtError::NotYetValid,
            K::InvalidIssuer => JwtError::WrongIssuer(self.config.issuer.clone()),
            K::InvalidAudience => JwtError::WrongAudience(self.config.audience.clone()),
            K::MissingRequiredClaim(c) => JwtError::MissingClaim(c),
            K::InvalidAlgorithm => {
                JwtError::AlgorithmMismatch { alg: format!("{alg:?}"), kid: kid.unwrap_or_default().to_owned() }
            }
            K::InvalidSignature | K::Crypto(_) | K::InvalidRsaKey(_) | K::InvalidEcdsaKey | K::InvalidKeyFormat => {
                JwtError::BadSignature
            }
            // Base64, JSON, UTF-8, shape: the token (or its claims) cannot be read.
            _ => JwtError::Malformed,
        }
    }

    fn snapshot(&self) -> Arc<KeySet> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The key for a token's `kid` and `alg`, fetching the key set when needed and allowed.
    async fn key_for(&self, kid: Option<&str>, alg: Algorithm) -> Result<Arc<Key>, JwtError> {
        let keys = self.snapshot();
        let now = Instant::now();
        let fresh = keys.fetched_at.is_some_and(|t| now.saturating_duration_since(t) < self.config.max_key_age);
        let found = keys.lookup(kid, alg);
        if fresh {
            if let Some(result) = settled(found, alg) {
                return result;
            }
        }
        // Stale, or the key is unknown: fetch again if the last attempt is old enough.
        let may_fetch =
            keys.attempted_at.is_none_or(|t| now.saturating_duration_since(t) >= self.config.min_refresh_interval);
        let keys = if may_fetch {
            self.refresh(keys.attempted_at).await;
            self.snapshot()
        } else {
            keys
        };
        if keys.fetched_at.is_none() {
            let why = keys.last_error.clone().unwrap_or_else(|| "not fetched yet".into());
            return Err(JwtError::KeysUnavailable(why));
        }
        match settled(keys.lookup(kid, alg), alg) {
            Some(result) => result,
            None => Err(match kid {
                Some(kid) => JwtError::UnknownKeyId(kid.to_owned()),
                None => JwtError::MissingKeyId,
            }),
        }
    }

    /// Fetches the key set unless another task did since `seen` (the attempt time the caller
    /// saw). Failures are recorded in the key set (the old keys stay in use).
    async fn refresh(&self, seen: Option<Instant>) {
        let mut jwks_uri = self.fetch.lock().await;
        if self.snapshot().attempted_at != seen {
            return; // fetched (or tried) while this task waited for the lock
        }
        let started = Instant::now();
        let result = self.fetch_keys(&mut jwks_uri).await;
        let mut slot = self.keys.write().unwrap_or_else(|p| p.into_inner());
        let mut next = KeySet {
            keys: slot.keys.clone(),
            fetched_at: slot.fetched_at,
            attempted_at: Some(started),
            last_error: None,
        };
        match result {
            Ok(keys) => {
                tracing::debug!(issuer = %self.config.issuer, keys = keys.len(), "fetched the issuer's signing keys");
                next.keys = keys;
                next.fetched_at = Some(started);
            }
            Err(e) => {
                tracing::warn!(issuer = %self.config.issuer, error = %e, "cannot fetch the issuer's signing keys");
                next.last_error = Some(e);
            }
        }
        *slot = Arc::new(next);
    }

    async fn fetch_keys(&self, jwks_uri: &mut Option<String>) -> Result<Vec<Arc<Key>>, String> {
        let url = match (&self.config.jwks_url, jwks_uri.as_ref()) {
            (Some(url), _) | (None, Some(url)) => url.clone(),
            (None, None) => {
                let url = self.discover().await?;
                *jwks_uri = Some(url.clone());
                url
            }
        };
        let raw: RawKeySet = match self.get_json(&url).await {
            Ok(raw) => raw,
            Err(e) => {
                // The discovery document may have moved the key set: look again next time.
                *jwks_uri = None;
                return Err(e);
            }
        };
        let mut keys = Vec::new();
        for value in raw.keys {
            let kid = value.get("kid").and_then(Value::as_str).unwrap_or("").to_owned();
            match serde_json::from_value::<Jwk>(value).map_err(|e| e.to_string()).and_then(|jwk| Key::from_jwk(&jwk)) {
                Ok(key) => keys.push(Arc::new(key)),
                Err(why) => tracing::debug!(%url, kid = %kid, %why, "skipping a key of the key set"),
            }
        }
        if keys.is_empty() {
            return Err(format!("the key set at {url} has no usable signing key"));
        }
        Ok(keys)
    }

    async fn discover(&self) -> Result<String, String> {
        let url = format!("{}/.well-known/openid-configuration", self.config.issuer.trim_end_matches('/'));
        let doc: Discovery = self.get_json(&url).await?;
        if let Some(issuer) = &doc.issuer {
            if issuer != &self.config.issuer {
                return Err(format!("{url} names the issuer {issuer:?}, not {:?}", self.config.issuer));
            }
        }
        doc.jwks_uri.ok_or_else(|| format!("{url} has no jwks_uri"))
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, String> {
        let mut response = self
            .client
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| format!("GET {url}: {e}"))?;
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| format!("GET {url}: {e}"))? {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(format!("GET {url}: the document is larger than {MAX_DOCUMENT_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| format!("GET {url}: invalid JSON document: {e}"))
    }
}

/// `Some` when the lookup settles the matter (found, or a key that does not fit), `None` when
/// the key is unknown (a fetch may help).
fn settled(found: Lookup, alg: Algorithm) -> Option<Result<Arc<Key>, JwtError>> {
    match found {
        Lookup::Found(key) => Some(Ok(key)),
        Lookup::Mismatch(kid) => Some(Err(JwtError::AlgorithmMismatch { alg: format!("{alg:?}"), kid })),
        Lookup::Unknown => None,
    }
}

/// The header of a compact JWS, read without trusting it.
fn parse_header(token: &str) -> Result<RawHeader, JwtError> {
    if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
        return Err(JwtError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(_payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header).map_err(|_| JwtError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed)
}

/// The algorithm of a token header, if it is one this verifier accepts at all.
fn accepted_algorithm(name: &str) -> Result<Algorithm, JwtError> {
    match Algorithm::from_str(name) {
        Ok(Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) | Err(_) => {
            Err(JwtError::UnsupportedAlgorithm(name.chars().take(32).collect()))
        }
        Ok(alg) => Ok(alg),
    }
}

/// The claim at `path`: the top-level claim of that exact name, else the dotted path.
fn claim_at<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(value) = claims.get(path) {
        return Some(value);
    }
    let mut segments = path.split('.');
    let mut value = claims.get(segments.next()?)?;
    for segment in segments {
        value = value.as_object()?.get(segment)?;
    }
    Some(value)
}

/// The role names at `path`: a string is one role, a list of strings is several, an absent
/// (or null) claim is none.
fn roles(claims: &Map<String, Value>, path: &str) -> Result<Vec<String>, JwtError> {
    match claim_at(claims, path) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(role)) => Ok(if role.is_empty() { Vec::new() } else { vec![role.clone()] }),
        Some(Value::Array(items)) => items
            .iter()
            .filter(|item| !matches!(item, Value::String(s) if s.is_empty()))
            .map(|item| item.as_str().map(str::to_owned).ok_or_else(|| JwtError::InvalidClaim(path.to_owned())))
            .collect(),
        Some(_) => Err(JwtError::InvalidClaim(path.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn roles_from_flat_nested_and_dotted_claims() {
        let c = claims(json!({
            "role": "admin",
            "realm_access": {"roles": ["reader", "writer"]},
            "https://example.com/roles": ["ops"],
            "n": 3,
            "mixed": ["a", 1],
        }));
        assert_eq!(roles(&c, "role").unwrap(), ["admin"]);
        assert_eq!(roles(&c, "realm_access.roles").unwrap(), ["reader", "writer"]);
        assert_eq!(roles(&c, "https://example.com/roles").unwrap(), ["ops"]);
        assert!(roles(&c, "absent").unwrap().is_empty());
        assert!(roles(&c, "realm_access.absent").unwrap().is_empty());
        assert!(roles(&c, "role.deeper").unwrap().is_empty());
        assert_eq!(roles(&c, "n"), Err(JwtError::InvalidClaim("n".into())));
        assert_eq!(roles(&c, "mixed"), Err(JwtError::InvalidClaim("mixed".into())));
    }

    #[test]
    fn only_asymmetric_algorithms_are_accepted() {
        assert_eq!(accepted_algorithm("RS256"), Ok(Algorithm::RS256));
        assert_eq!(accepted_algorithm("ES256"), Ok(Algorithm::ES256));
        assert_eq!(accepted_algorithm("EdDSA"), Ok(Algorithm::EdDSA));
        for bad in ["none", "None", "HS256", "HS512", "", "RS1"] {
            assert!(matches!(accepted_algorithm(bad), Err(JwtError::UnsupportedAlgorithm(_))), "{bad}");
        }
    }

    #[test]
    fn malformed_tokens() {
        for bad in ["", "abc", "a.b", "a.b.c.d", "!!.e30.sig", &"a".repeat(MAX_TOKEN_BYTES + 1)] {
            assert!(matches!(parse_header(bad), Err(JwtError::Malformed)), "{bad:.20}");
        }
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","kid":"k"}"#);
        let parsed = parse_header(&format!("{header}.e30.c2ln")).unwrap();
        assert_eq!((parsed.alg.as_str(), parsed.kid.as_deref()), ("RS256", Some("k")));
    }

    #[test]
    fn a_config_needs_issuer_audience_and_role_claim() {
        assert!(OidcVerifier::new(OidcConfig::new("", "aud")).is_err());
        assert!(OidcVerifier::new(OidcConfig::new("https://issuer", " ")).is_err());
        let mut config = OidcConfig::new("https://issuer", "aud");
        config.role_claim = String::new();
        assert!(matches!(OidcVerifier::new(config), Err(JwtError::Config(_))));
        assert!(OidcVerifier::new(OidcConfig::new("https://issuer", "aud")).is_ok());
    }
}
