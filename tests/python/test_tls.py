"""HTTPS served directly by `lectern serve --tls-cert FILE --tls-key FILE` (rustls).

A self-signed certificate for 127.0.0.1 and localhost is made at test time with the
`cryptography` library (a dependency of PyJWT[crypto] in tests/requirements.txt), so nothing
outside the venv is needed; `requests` trusts exactly that certificate (verify=cert file).
"""
from __future__ import annotations

import datetime
import ipaddress
import os
import signal
import subprocess
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import copy_models, lectern_binary

IRIS_REQUEST = {
    "id": "tls",
    "inputs": [{"name": "X", "datatype": "FP32", "shape": [2, 4],
                "data": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}],
    "outputs": [{"name": "output_label"}],
}


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed P-256 certificate for 127.0.0.1 and localhost, and its PKCS#8 key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert, key_file = folder / "cert.pem", folder / "key.pem"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert, key_file


@pytest.fixture
def tls_files(tmp_path) -> tuple[Path, Path]:
    return make_certificate(tmp_path / "tls")


def tls_args(cert: Path, key: Path) -> list[str]:
    return ["--tls-cert", str(cert), "--tls-key", str(key)]


def run_serve_expecting_failure(tmp_path: Path, extra_args: list[str]) -> subprocess.CompletedProcess:
    """Runs `lectern serve` that must refuse to start; returns the finished process."""
    root = tmp_path / "failing"
    root.mkdir(exist_ok=True)
    models = root / "models"
    if not models.exists():
        copy_models(models)
    data = root / "data"
    data.mkdir(exist_ok=True)
    proc = subprocess.run(
        [str(lectern_binary()), "serve", "--models", str(models), "--listen", "127.0.0.1:0",
         "--data", str(data), *extra_args],
        cwd=str(data), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("LECTERN_")},
    )
    assert proc.returncode != 0, f"lectern serve started anyway: {proc.stdout!r} {proc.stderr!r}"
    assert "lectern listening on" not in proc.stdout
    return proc


def test_https_serves_health_and_inference(start_server, tls_files):
    cert, key = tls_files
    srv = start_server(extra_args=tls_args(cert, key))
    assert srv.url.startswith("https://127.0.0.1:"), srv.url

    r = srv.get("/v2/health/ready", verify=str(cert))
    assert r.status_code == 200 and r.json() == {"ready": True}

    r = srv.post("/v2/models/iris-logreg/infer", json=IRIS_REQUEST, verify=str(cert))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == "tls" and body["model_name"] == "iris-logreg"
    (label,) = [o for o in body["outputs"] if o["name"] == "output_label"]
    assert label["shape"] == [2] and len(label["data"]) == 2

    # localhost is in the certificate too.
    port = srv.host_port.rsplit(":", 1)[1]
    r = requests.get(f"https://localhost:{port}/v2/health/live", verify=str(cert), timeout=30)
    assert r.status_code == 200 and r.json() == {"live": True}


def test_plain_http_and_untrusted_clients_fail_without_harming_the_server(start_server, tls_files):
    cert, key = tls_files
    srv = start_server(extra_args=tls_args(cert, key))

    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://{srv.host_port}/v2/health/ready", timeout=10)
    # A client that does not trust the certificate refuses the connection.
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(srv.url + "/v2/health/ready", timeout=10)

    # The server is unharmed: the next (trusting) client is served.
    r = srv.get("/v2/health/ready", verify=str(cert))
    assert r.status_code == 200
    assert srv.is_running()


def test_tls_files_from_the_environment_and_from_the_config_file(start_server, start_config_server, tmp_path):
    cert, key = make_certificate(tmp_path / "env-tls")
    srv = start_server(env={"LECTERN_TLS_CERT": str(cert), "LECTERN_TLS_KEY": str(key)})
    assert srv.url.startswith("https://")
    assert srv.get("/v2/health/ready", verify=str(cert)).status_code == 200

    # In the config file, paths are relative to the file's folder.
    folder = tmp_path / "configured"
    copy_models(folder / "models")
    cert, _ = make_certificate(folder / "tls")
    config = folder / "lectern.toml"
    config.write_text('[server]\ntls_cert = "tls/cert.pem"\ntls_key = "tls/key.pem"\n'
                      '[repository]\nmodels = "models"\n')
    srv = start_config_server(config)
    assert srv.url.startswith("https://")
    assert srv.get("/v2/health/ready", verify=str(cert)).status_code == 200


def test_sigterm_stops_an_https_server_cleanly(start_server, tls_files):
    cert, key = tls_files
    srv = start_server(extra_args=tls_args(cert, key))
    # An idle keep-alive connection must not hold the shutdown up.
    session = requests.Session()
    assert session.get(srv.url + "/v2/health/live", verify=str(cert), timeout=30).status_code == 200
    srv.proc.send_signal(signal.SIGTERM)
    assert srv.proc.wait(timeout=15) == 0, srv.stderr_text()[-2000:]
    session.close()


def test_missing_or_garbage_key_files_stop_start_up_naming_the_file(tmp_path, tls_files):
    cert, key = tls_files
    missing = tmp_path / "no-such-key.pem"
    proc = run_serve_expecting_failure(tmp_path, tls_args(cert, missing))
    assert str(missing) in proc.stderr and "TLS key file" in proc.stderr, proc.stderr

    garbage = tmp_path / "garbage-key.pem"
    garbage.write_text("this is not a key\n")
    proc = run_serve_expecting_failure(tmp_path, tls_args(cert, garbage))
    assert str(garbage) in proc.stderr and "no PEM private key" in proc.stderr, proc.stderr

    # The certificate given as the key file (a common slip).
    proc = run_serve_expecting_failure(tmp_path, tls_args(cert, cert))
    assert str(cert) in proc.stderr and "TLS key file" in proc.stderr, proc.stderr

    # A key of another certificate.
    _, other_key = make_certificate(tmp_path / "other")
    proc = run_serve_expecting_failure(tmp_path, tls_args(cert, other_key))
    assert "do not go together" in proc.stderr and str(other_key) in proc.stderr, proc.stderr


def test_a_certificate_without_a_key_is_a_start_up_error(tmp_path, tls_files):
    cert, key = tls_files
    proc = run_serve_expecting_failure(tmp_path, ["--tls-cert", str(cert)])
    assert "--tls-key" in proc.stderr, proc.stderr
    proc = run_serve_expecting_failure(tmp_path, ["--tls-key", str(key)])
    assert "--tls-cert" in proc.stderr, proc.stderr
