//! HTTPS without a proxy: rustls (with the `ring` provider) in front of the same application.
//!
//! [`load`] reads a PEM certificate chain and a PEM private key (PKCS#8, PKCS#1 RSA or SEC1
//! EC), with errors that name the file at fault. The accept loop ([`crate::listen::serve`])
//! does each TLS handshake in its own task (a failed or stalled handshake only drops that
//! connection, logged at debug).

use anyhow::Context;
use std::path::Path;
use std::sync::Arc;
use tokio_rustls::rustls::pki_types::pem::{self, PemObject};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

/// The server's TLS configuration from a PEM certificate chain and a PEM private key.
pub fn load(cert_path: &Path, key_path: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    let certs = load_certs(cert_path)?;
    let key = load_key(key_path)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| anyhow::anyhow!("the private key in TLS key file {} is not usable: {e}", key_path.display()))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("cannot set up TLS")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            anyhow::anyhow!(
                "TLS certificate file {} and key file {} do not go together: {e}",
                cert_path.display(),
                key_path.display()
            )
        })?;
    // The router speaks HTTP/1.1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {what} {}", path.display()))
}

fn load_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = read(path, "TLS certificate file")?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("invalid PEM in TLS certificate file {}: {e}", path.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "TLS certificate file {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
        path.display()
    );
    Ok(certs)
}

fn load_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    let pem = read(path, "TLS key file")?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        pem::Error::NoItemsFound => anyhow::anyhow!(
            "TLS key file {} holds no PEM private key (PKCS#8, RSA or EC; an encrypted key must be decrypted first)",
            path.display()
        ),
        e => anyhow::anyhow!("invalid PEM in TLS key file {}: {e}", path.display()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listen::{serve, ConnectionLimits};
    use axum::routing::get;
    use lectern_server::conn::Timeouts;
    use std::path::PathBuf;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    // A self-signed P-256 certificate for localhost and 127.0.0.1 (valid until 2126), its key
    // as PKCS#8 and as SEC1, and another key; made once with openssl, for these tests only.
    const CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBmDCCAT6gAwIBAgIUc9XkalQDf1RqYxFcHZOIsYtIO5owCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTEyMzE4MzUzOVoYDzIxMjYxMDMw
MTgzNTM5WjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAAQ4HqU6wWeEdLuXeRolh/VfekYJTm29U4zJE27E/GW58llodM1Z8jEV
BavIzRk0LXo+pBkONhH1Q1W+kTV2h3l/o2wwajAdBgNVHQ4EFgQUUBE4Jfbp6BVc
wrYfL/Z8N2Pzdp8wHwYDVR0jBBgwFoAUUBE4Jfbp6BVcwrYfL/Z8N2Pzdp8wGgYD
VR0RBBMwEYIJbG9jYWxob3N0hwR/AAABMAwGA1UdEwEB/wQCMAAwCgYIKoZIzj0E
AwIDSAAwRQIgG/Ib8Ich0+ul4MsZXR5RLO9FK6hLZi5G71yyqLi4KuUCIQCK6Z/Z
FAaDTXKX1k9NpAs+w2UIQfUj5uoqb2YpnVjePg==
-----END CERTIFICATE-----
";
    const KEY_PKCS8: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg7HMvvMLSNZHpm1nY
lnRyg8eyTiwwa+Nu52LIaF0r1jihRANCAAQ4HqU6wWeEdLuXeRolh/VfekYJTm29
U4zJE27E/GW58llodM1Z8jEVBavIzRk0LXo+pBkONhH1Q1W+kTV2h3l/
-----END PRIVATE KEY-----
";
    const KEY_SEC1: &str = "-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIOxzL7zC0jWR6ZtZ2JZ0coPHsk4sMGvjbudiyGhdK9Y4oAoGCCqGSM49
AwEHoUQDQgAEOB6lOsFnhHS7l3kaJYf1X3pGCU5tvVOMyRNuxPxlufJZaHTNWfIx
FQWryM0ZNC16PqQZDjYR9UNVvpE1dod5fw==
-----END EC PRIVATE KEY-----
";
    const OTHER_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgOCVxRce4uaw9nALW
1054wXtBqOVg3eXM3y8ze+QCubShRANCAAThPJHFHY+ljuHQ5hUzMCawUDELorBF
/ZuvM1mqYkbX3ozSINm2xIyuBBSnWZL5u7cIz/N3Gnf5coZZfJt1vFOU
-----END PRIVATE KEY-----
";

    /// A temporary folder holding the named files, removed on drop.
    struct Files(PathBuf);

    impl Files {
        fn new(name: &str, files: &[(&str, &str)]) -> Files {
            let dir = std::env::temp_dir().join(format!("lectern-tls-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            for (file, text) in files {
                std::fs::write(dir.join(file), text).unwrap();
            }
            Files(dir)
        }
        fn path(&self, file: &str) -> PathBuf {
            self.0.join(file)
        }
        fn load(&self, cert: &str, key: &str) -> anyhow::Result<Arc<ServerConfig>> {
            load(&self.path(cert), &self.path(key))
        }
    }

    impl Drop for Files {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn error_of(result: anyhow::Result<Arc<ServerConfig>>) -> String {
        format!("{:#}", result.expect_err("loading should fail"))
    }

    #[test]
    fn a_certificate_and_its_key_load_as_pkcs8_or_sec1() {
        let f = Files::new("ok", &[("cert.pem", CERT), ("key.pem", KEY_PKCS8), ("sec1.pem", KEY_SEC1)]);
        let config = f.load("cert.pem", "key.pem").unwrap();
        assert_eq!(config.alpn_protocols, [b"http/1.1".to_vec()]);
        f.load("cert.pem", "sec1.pem").unwrap();
        // A chain file may carry other sections (here the key too): the certificates are taken.
        std::fs::write(f.path("both.pem"), format!("{CERT}{KEY_PKCS8}")).unwrap();
        f.load("both.pem", "both.pem").unwrap();
    }

    #[test]
    fn missing_files_are_named() {
        let f = Files::new("missing", &[("cert.pem", CERT), ("key.pem", KEY_PKCS8)]);
        let e = error_of(f.load("nope.pem", "key.pem"));
        assert!(e.contains("cannot read TLS certificate file") && e.contains("nope.pem"), "{e}");
        let e = error_of(f.load("cert.pem", "nokey.pem"));
        assert!(e.contains("cannot read TLS key file") && e.contains("nokey.pem"), "{e}");
    }

    #[test]
    fn files_without_the_expected_pem_are_named() {
        let f =
            Files::new("garbage", &[("cert.pem", CERT), ("key.pem", KEY_PKCS8), ("garbage.pem", "this is not PEM\n")]);
        let e = error_of(f.load("cert.pem", "garbage.pem"));
        assert!(e.contains("TLS key file") && e.contains("garbage.pem") && e.contains("no PEM private key"), "{e}");
        // The certificate given as the key, and the key given as the certificate.
        let e = error_of(f.load("cert.pem", "cert.pem"));
        assert!(e.contains("TLS key file") && e.contains("no PEM private key"), "{e}");
        let e = error_of(f.load("key.pem", "key.pem"));
        assert!(e.contains("TLS certificate file") && e.contains("key.pem") && e.contains("no PEM certificate"), "{e}");
    }

    #[test]
    fn broken_pem_and_unusable_keys_are_named() {
        let truncated = &KEY_PKCS8[..KEY_PKCS8.find("-----END").unwrap()];
        let bad_base64 = "-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n";
        let not_a_key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        let f = Files::new(
            "broken",
            &[("cert.pem", CERT), ("truncated.pem", truncated), ("b64.pem", bad_base64), ("notakey.pem", not_a_key)],
        );
        for (file, expected) in
            [("truncated.pem", "invalid PEM"), ("b64.pem", "invalid PEM"), ("notakey.pem", "is not usable")]
        {
            let e = error_of(f.load("cert.pem", file));
            assert!(e.contains(expected) && e.contains(file), "{file}: {e}");
        }
        let truncated_cert = &CERT[..CERT.len() / 2];
        std::fs::write(f.path("halfcert.pem"), truncated_cert).unwrap();
        let e = error_of(load(&f.path("halfcert.pem"), &f.path("truncated.pem")));
        assert!(e.contains("invalid PEM in TLS certificate file") && e.contains("halfcert.pem"), "{e}");
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let f = Files::new("mismatch", &[("cert.pem", CERT), ("other.pem", OTHER_KEY)]);
        let e = error_of(f.load("cert.pem", "other.pem"));
        assert!(e.contains("do not go together") && e.contains("cert.pem") && e.contains("other.pem"), "{e}");
    }

    /// One request over TLS with rustls as the client, trusting the test certificate.
    async fn https_get(address: std::net::SocketAddr) -> String {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(CERT.as_bytes()).unwrap()).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        tls.write_all(b"GET /hello HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n").await.unwrap();
        let mut response = String::new();
        tls.read_to_string(&mut response).await.unwrap();
        response
    }

    #[tokio::test]
    async fn serves_https_survives_bad_handshakes_and_shuts_down() {
        let f = Files::new("serve", &[("cert.pem", CERT), ("key.pem", KEY_PKCS8)]);
        let config = f.load("cert.pem", "key.pem").unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let app = axum::Router::new().route("/hello", get(|| async { "hello over tls" }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let limits = ConnectionLimits {
            timeouts: Timeouts { header_read: Duration::from_secs(10), idle: Duration::from_secs(60) },
            max_connections: 16,
        };
        let server = tokio::spawn(serve(listener, Some(config), app, limits, async move {
            let _ = stopped.await;
        }));

        let response = https_get(address).await;
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        assert!(response.ends_with("hello over tls"), "{response}");

        // Plain HTTP to the TLS port: that connection fails, the server goes on.
        let mut plain = tokio::net::TcpStream::connect(address).await.unwrap();
        plain.write_all(b"GET /hello HTTP/1.1\r\nhost: localhost\r\n\r\n").await.unwrap();
        let mut answer = Vec::new();
        let _ = plain.read_to_end(&mut answer).await;
        assert!(!String::from_utf8_lossy(&answer).contains("hello over tls"));
        assert!(https_get(address).await.ends_with("hello over tls"));

        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), server).await.expect("shut down in time").unwrap().unwrap();
        assert!(tokio::net::TcpStream::connect(address).await.is_err(), "the port is closed after shutdown");
    }
}
