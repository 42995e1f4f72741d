//! `auth::jwt::OidcVerifier` against a small OIDC issuer served from the test itself
//! (discovery document + JWKS on 127.0.0.1:0), with tokens signed by the fixed test keys in
//! `tests/fixtures/`.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use lectern_server::auth::jwt::{JwtError, OidcConfig, OidcVerifier, Verified};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const RSA_PEM: &str = include_str!("fixtures/jwt-rsa.pem");
const EC_PEM: &str = include_str!("fixtures/jwt-ec.pem");
const JWKS: &str = include_str!("fixtures/jwt-jwks.json");
const AUDIENCE: &str = "lectern";

/// The test issuer: what it serves and how often it was asked.
struct Issuer {
    url: String,
    jwks: Mutex<Value>,
    discovery_hits: AtomicUsize,
    jwks_hits: AtomicUsize,
}

async fn discovery(State(issuer): State<Arc<Issuer>>) -> Json<Value> {
    issuer.discovery_hits.fetch_add(1, Ordering::SeqCst);
    Json(json!({"issuer": issuer.url, "jwks_uri": format!("{}/keys", issuer.url)}))
}

async fn jwks(State(issuer): State<Arc<Issuer>>) -> Json<Value> {
    issuer.jwks_hits.fetch_add(1, Ordering::SeqCst);
    Json(issuer.jwks.lock().unwrap().clone())
}

/// Serves the discovery document and the key set of the fixtures under `/realms/test`.
async fn start_issuer() -> Arc<Issuer> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/realms/test", listener.local_addr().unwrap());
    let issuer = Arc::new(Issuer {
        url,
        jwks: Mutex::new(serde_json::from_str(JWKS).unwrap()),
        discovery_hits: AtomicUsize::new(0),
        jwks_hits: AtomicUsize::new(0),
    });
    let app = Router::new()
        .route("/realms/test/.well-known/openid-configuration", get(discovery))
        .route("/realms/test/keys", get(jwks))
        .with_state(issuer.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    issuer
}

fn verifier(issuer: &Issuer) -> OidcVerifier {
    OidcVerifier::new(OidcConfig::new(&issuer.url, AUDIENCE)).unwrap()
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// The DER body of a one-section PEM file.
fn pem_to_der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(body).unwrap()
}

fn rsa_key() -> EncodingKey {
    EncodingKey::from_rsa_der(&pem_to_der(RSA_PEM))
}

fn ec_key() -> EncodingKey {
    EncodingKey::from_ec_der(&pem_to_der(EC_PEM))
}

/// Claims that pass, for `issuer`, valid for the next five minutes.
fn good_claims(issuer: &Issuer) -> Value {
    json!({
        "iss": issuer.url,
        "aud": AUDIENCE,
        "sub": "user-42",
        "iat": now(),
        "exp": now() + 300,
        "role": ["reader", "admin"],
    })
}

fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn rs256(claims: &Value) -> String {
    sign(Algorithm::RS256, Some("rsa-1"), claims, &rsa_key())
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Checks a refusal and that its message does not repeat the token or its parts.
async fn refused(verifier: &OidcVerifier, token: &str) -> JwtError {
    let err = verifier.verify(token).await.expect_err("the token should be refused");
    let message = err.to_string();
    for part in token.split('.').filter(|p| p.len() > 8) {
        assert!(!message.contains(part), "the error repeats the token: {message}");
    }
    err
}

#[tokio::test]
async fn a_good_token_gives_the_subject_and_roles() {
    let issuer = start_issuer().await;
    let v = verifier(&issuer);
    let verified = v.verify(&rs256(&good_claims(&issuer))).await.unwrap();
    assert_eq!(verified, Verified { subject: "user-42".into(), roles: vec!["reader".into(), "admin".into()] });

    // ES256 with the EC key, a single role as a string, `aud` as a list containing ours.
    let mut claims = good_claims(&issuer);
    claims["role"] = json!("operator");
    claims["aud"] = json!(["other", AUDIENCE]);
    let verified = v.verify(&sign(Algorithm::ES256, Some("ec-1"), &claims, &ec_key())).await.unwrap();
    assert_eq!(verified.roles, ["operator"]);

    // No role claim: authenticated, no roles.
    let mut claims = good_claims(&issuer);
    claims.as_object_mut().unwrap().remove("role");
    assert!(v.verify(&rs256(&claims)).await.unwrap().roles.is_empty());

    // One discovery and one key set fetch served all of that.
    assert_eq!(issuer.discovery_hits.load(Ordering::SeqCst), 1);
    assert_eq!(issuer.jwks_hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn roles_from_a_nested_claim_path() {
    let issuer = start_issuer().await;
    let mut config = OidcConfig::new(&issuer.url, AUDIENCE);
    config.role_claim = "realm_access.roles".into();
    let v = OidcVerifier::new(config).unwrap();
    let mut claims = good_claims(&issuer);
    claims["realm_access"] = json!({"roles": ["ml-admin", "viewer"]});
    let verified = v.verify(&rs256(&claims)).await.unwrap();
    assert_eq!(verified.roles, ["ml-admin", "viewer"]);

    claims["realm_access"] = json!({"roles": 7});
    assert_eq!(refused(&v, &rs256(&claims)).await, JwtError::InvalidClaim("realm_access.roles".into()));
}

#[tokio::test]
async fn a_jwks_url_given_directly_skips_discovery() {
    let issuer = start_issuer().await;
    let mut config = OidcConfig::new(&issuer.url, AUDIENCE);
    config.jwks_url = Some(format!("{}/keys", issuer.url));
    let v = OidcVerifier::new(config).unwrap();
    assert_eq!(v.refresh_keys().await.unwrap(), 2);
    assert!(v.verify(&rs256(&good_claims(&issuer))).await.is_ok());
    assert_eq!(issuer.discovery_hits.load(Ordering::SeqCst), 0);
    assert_eq!(issuer.jwks_hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn expired_and_not_yet_valid_tokens_are_refused() {
    let issuer = start_issuer().await;
    let v = verifier(&issuer);
    let mut claims = good_claims(&issuer);
    claims["exp"] = json!(now() - 3600);
    assert_eq!(refused(&v, &rs256(&claims)).await, JwtError::Expired);

    // Within the 30 s leeway still passes.
    claims["exp"] = json!(now() - 5);
    assert!(v.verify(&rs256(&claims)).await.is_ok());

    let mut claims = good_claims(&issuer);
    claims["nbf"] = json!(now() + 3600);
    assert_eq!(refused(&v, &rs256(&claims)).await, JwtError::NotYetValid);

    let mut claims = good_claims(&issuer);
    claims.as_object_mut().unwrap().remove("exp");
    assert_eq!(refused(&v, &rs256(&claims)).await, JwtError::MissingClaim("exp".into()));
}

#[tokio::test]
async fn wrong_issuer_audience_or_missing_subject_is_refused() {
    let issuer = start_issuer().await;
    let v = verifier(&issuer);

    let mut claims = good_claims(&issuer);
    claims["iss"] = json!("https://evil.example");
    assert_eq!(refused(&v, &rs256(&claims)).await, JwtError::WrongIssuer(issuer.url.clone()));
    // A list that contains the issuer is not an issuer.
    claims["iss"] = json!([issuer.url, "https://evil.example"]);
    assert_eq!(refused(&v, &rs256(&claims)).await, JwtError::WrongIssuer(issuer.url.clone()));

    let mut claims = good_claims(&issuer);
    claims["aud"] = json!("someone-else");
    assert_eq!(refused(&v, &rs256(&claims)).await, JwtError::WrongAudience(AUDIENCE.into()));
    claims["aud"] = json!(["a", "b"]);
    assert_eq!(refused(&v, &rs256(&claims)).await, JwtError::WrongAudience(AUDIENCE.into()));
    claims.as_object_mut().unwrap().remove("aud");
    assert_eq!(refused(&v, &rs256(&claims)).await, JwtError::MissingClaim("aud".into()));

    let mut claims = good_claims(&issuer);
    claims.as_object_mut().unwrap().remove("sub");
    assert_eq!(refused(&v, &rs256(&claims)).await, JwtError::MissingClaim("sub".into()));
}

#[tokio::test]
async fn bad_signatures_are_refused() {
    let issuer = start_issuer().await;
    let v = verifier(&issuer);
    let good = rs256(&good_claims(&issuer));

    // Someone swaps in their own claims and keeps the signature.
    let mut forged_claims = good_claims(&issuer);
    forged_claims["role"] = json!(["admin", "superuser"]);
    let forged_payload = b64(serde_json::to_string(&forged_claims).unwrap().as_bytes());
    let parts: Vec<&str> = good.split('.').collect();
    let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    assert_eq!(refused(&v, &forged).await, JwtError::BadSignature);

    // A signature by the EC key, presented as the RSA key's: the algorithm does not fit the key.
    let wrong_key = sign(Algorithm::ES256, Some("rsa-1"), &good_claims(&issuer), &ec_key());
    assert!(matches!(refused(&v, &wrong_key).await, JwtError::AlgorithmMismatch { .. }));

    // A garbage signature.
    let garbage = format!("{}.{}.{}", parts[0], parts[1], b64(&[7u8; 256]));
    assert_eq!(refused(&v, &garbage).await, JwtError::BadSignature);

    // RS384 with the RSA key is refused because its JWK says `alg: RS256`.
    let rs384 = sign(Algorithm::RS384, Some("rsa-1"), &good_claims(&issuer), &rsa_key());
    assert!(matches!(refused(&v, &rs384).await, JwtError::AlgorithmMismatch { .. }));
}

#[tokio::test]
async fn alg_none_and_hmac_are_refused() {
    let issuer = start_issuer().await;
    let v = verifier(&issuer);
    let claims = b64(serde_json::to_string(&good_claims(&issuer)).unwrap().as_bytes());

    for alg in ["none", "None", "NONE"] {
        let header = b64(format!(r#"{{"alg":"{alg}","typ":"JWT","kid":"rsa-1"}}"#).as_bytes());
        let unsigned = format!("{header}.{claims}.");
        assert_eq!(refused(&v, &unsigned).await, JwtError::UnsupportedAlgorithm(alg.into()));
    }

    // HS256 keyed with the RSA public key's JWK text (the classic algorithm confusion).
    let hmac = sign(Algorithm::HS256, Some("rsa-1"), &good_claims(&issuer), &EncodingKey::from_secret(JWKS.as_bytes()));
    assert_eq!(refused(&v, &hmac).await, JwtError::UnsupportedAlgorithm("HS256".into()));

    // A header marking parameters critical.
    let header = b64(br#"{"alg":"RS256","kid":"rsa-1","crit":["exp"]}"#);
    let parts: Vec<String> = rs256(&good_claims(&issuer)).split('.').map(str::to_owned).collect();
    assert_eq!(refused(&v, &format!("{header}.{}.{}", parts[1], parts[2])).await, JwtError::CriticalHeader);

    assert_eq!(refused(&v, "not-a-token").await, JwtError::Malformed);
    // None of that needed the issuer.
    assert_eq!(issuer.jwks_hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn unknown_key_ids_refetch_at_most_once_per_interval() {
    let issuer = start_issuer().await;
    let v = verifier(&issuer);
    assert!(v.verify(&rs256(&good_claims(&issuer))).await.is_ok());
    assert_eq!(issuer.jwks_hits.load(Ordering::SeqCst), 1);

    // Unknown kids right after a fetch: refused without asking the issuer again.
    for kid in ["rotated-1", "made-up-2", "made-up-3"] {
        let token = sign(Algorithm::RS256, Some(kid), &good_claims(&issuer), &rsa_key());
        assert_eq!(refused(&v, &token).await, JwtError::UnknownKeyId(kid.into()));
    }
    assert_eq!(issuer.jwks_hits.load(Ordering::SeqCst), 1);

    // No kid and two keys in the set: RS256 fits only the RSA key, so it is used.
    assert!(v.verify(&sign(Algorithm::RS256, None, &good_claims(&issuer), &rsa_key())).await.is_ok());
}

#[tokio::test]
async fn a_rotated_key_is_found_by_refetching() {
    let issuer = start_issuer().await;
    let mut config = OidcConfig::new(&issuer.url, AUDIENCE);
    config.min_refresh_interval = Duration::ZERO;
    let v = OidcVerifier::new(config).unwrap();
    assert!(v.verify(&rs256(&good_claims(&issuer))).await.is_ok());

    // The issuer publishes the same RSA key under a new kid.
    let token = sign(Algorithm::RS256, Some("rsa-2"), &good_claims(&issuer), &rsa_key());
    assert_eq!(refused(&v, &token).await, JwtError::UnknownKeyId("rsa-2".into()));
    {
        let mut jwks = issuer.jwks.lock().unwrap();
        let mut rotated = jwks["keys"][0].clone();
        rotated["kid"] = json!("rsa-2");
        jwks["keys"].as_array_mut().unwrap().push(rotated);
    }
    assert!(v.verify(&token).await.is_ok());
    assert_eq!(issuer.jwks_hits.load(Ordering::SeqCst), 3);
    // The discovery document is read once, not on every key set fetch.
    assert_eq!(issuer.discovery_hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_unreachable_issuer_is_reported_as_unavailable() {
    // A port that was free a moment ago: nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/realms/none");
    let v = OidcVerifier::new(OidcConfig::new(&url, AUDIENCE)).unwrap();
    let claims = json!({"iss": url, "aud": AUDIENCE, "sub": "x", "exp": now() + 60});
    let err = v.verify(&rs256(&claims)).await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(v.refresh_keys().await.unwrap_err().is_unavailable());
}

#[tokio::test]
async fn a_discovery_document_for_another_issuer_is_refused() {
    let issuer = start_issuer().await;
    // Same server, but configured with a different issuer name than it announces.
    let other = format!("{}/", issuer.url);
    let v = OidcVerifier::new(OidcConfig::new(&other, AUDIENCE)).unwrap();
    let err = v.refresh_keys().await.unwrap_err();
    assert!(err.is_unavailable() && err.to_string().contains("names the issuer"), "{err}");
}
