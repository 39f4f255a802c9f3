#![allow(clippy::unwrap_used)]

use super::*;
use rcgen::{CertificateParams, DnType, KeyPair};

/// A CA and a leaf it signed with subject CN `cn`, as PEM files in `dir`.
fn write_ca_and_leaf(dir: &Path, cn: &str) -> TlsConfig {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    let leaf = params.signed_by(&key, &ca, &ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("leaf.pem"), leaf.pem()).unwrap();
    std::fs::write(dir.join("leaf-key.pem"), key.serialize_pem()).unwrap();
    TlsConfig {
        cert_file: Some(dir.join("leaf.pem")),
        key_file: Some(dir.join("leaf-key.pem")),
        trusted_ca_file: Some(dir.join("ca.pem")),
        ..TlsConfig::default()
    }
}

#[test]
fn common_name_of_generated_certificates() {
    for cn in ["root", "unknown-user", "ünïcode user", ""] {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "etcd");
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(common_name(cert.der()).as_deref(), Some(cn));
    }
    // No CN attribute at all.
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "etcd");
    let cert = params.self_signed(&key).unwrap();
    assert_eq!(common_name(cert.der()), None);
}

#[test]
fn common_name_of_garbage_is_none() {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, "root");
    let der = params.self_signed(&key).unwrap().der().to_vec();
    // Every truncation is refused or read without panicking; none yields a wrong name.
    for len in 0..der.len() {
        let got = common_name(&der[..len]);
        assert!(
            got.is_none() || got.as_deref() == Some("root"),
            "{len}: {got:?}"
        );
    }
    assert_eq!(common_name(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
    assert_eq!(common_name(b"not a certificate"), None);
}

#[test]
fn server_and_client_configs_load() {
    let dir = tempfile::tempdir().unwrap();
    let mut tls = write_ca_and_leaf(dir.path(), "root");
    let server = server_config(&tls).unwrap();
    assert_eq!(
        server.alpn_protocols,
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    );
    tls.client_cert_auth = true;
    server_config(&tls).unwrap();
    let client = client_config(&tls).unwrap();
    assert!(client.client_auth_cert_resolver.has_certs());
    let no_cert = TlsConfig {
        cert_file: None,
        key_file: None,
        ..tls.clone()
    };
    let client = client_config(&no_cert).unwrap();
    assert!(!client.client_auth_cert_resolver.has_certs());
}

#[test]
fn errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let tls = write_ca_and_leaf(dir.path(), "root");
    let missing = dir.path().join("missing.pem");
    let err = server_config(&TlsConfig {
        cert_file: Some(missing.clone()),
        ..tls.clone()
    })
    .unwrap_err();
    assert!(
        err.0.starts_with(&format!("open {}: ", missing.display())),
        "{err}"
    );

    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "no PEM here\n").unwrap();
    let err = server_config(&TlsConfig {
        cert_file: Some(empty.clone()),
        ..tls.clone()
    })
    .unwrap_err();
    assert_eq!(
        err.0,
        format!(
            "{}: tls: failed to find any PEM data in certificate input",
            empty.display()
        )
    );
    let err = server_config(&TlsConfig {
        key_file: Some(empty.clone()),
        ..tls.clone()
    })
    .unwrap_err();
    assert_eq!(
        err.0,
        format!(
            "{}: tls: failed to find any PEM data in key input",
            empty.display()
        )
    );

    // A key that does not belong to the certificate.
    let other = dir.path().join("other-key.pem");
    std::fs::write(&other, KeyPair::generate().unwrap().serialize_pem()).unwrap();
    let err = server_config(&TlsConfig {
        key_file: Some(other.clone()),
        ..tls.clone()
    })
    .unwrap_err();
    assert!(err.0.contains(&other.display().to_string()), "{err}");

    let err = server_config(&TlsConfig {
        client_cert_auth: true,
        trusted_ca_file: None,
        ..tls.clone()
    })
    .unwrap_err();
    assert!(err.0.contains("--trusted-ca-file"), "{err}");

    let err = server_config(&TlsConfig {
        allowed_hostname: Some("x".to_string()),
        ..tls
    })
    .unwrap_err();
    assert!(err.0.ends_with("not supported by mnemo"), "{err}");
}

#[test]
fn self_signed_writes_private_files_and_reuses_them() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let fixtures = dir.path().join("fixtures").join("client");
    let hosts = vec!["127.0.0.1".to_string(), "localhost".to_string()];
    let tls = TlsConfig {
        auto_tls: true,
        ..TlsConfig::default()
    };
    let generated = self_signed(&fixtures, &hosts, &tls).unwrap();
    let cert = fixtures.join(SELF_CERT_FILE);
    let key = fixtures.join(SELF_KEY_FILE);
    assert_eq!(generated.cert_file.as_deref(), Some(cert.as_path()));
    assert_eq!(generated.key_file.as_deref(), Some(key.as_path()));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&fixtures), 0o700);
    server_config(&generated).unwrap();
    let first = std::fs::read(&cert).unwrap();
    self_signed(&fixtures, &hosts, &tls).unwrap();
    assert_eq!(
        std::fs::read(&cert).unwrap(),
        first,
        "a second start reuses the files"
    );
}

#[test]
fn peer_client_config_needs_a_ca_or_auto_tls() {
    let dir = tempfile::tempdir().unwrap();
    let tls = write_ca_and_leaf(dir.path(), "peer");
    let verified = peer_client_config(&tls).unwrap();
    assert_eq!(verified.alpn_protocols, vec![b"h2".to_vec()]);
    assert!(verified.client_auth_cert_resolver.has_certs());

    let no_ca = TlsConfig {
        trusted_ca_file: None,
        ..tls.clone()
    };
    let err = peer_client_config(&no_ca).unwrap_err();
    assert!(err.0.contains("--peer-trusted-ca-file"), "{err}");

    // Self-signed peers: no CA, the member's own certificate still presented.
    let auto = TlsConfig {
        auto_tls: true,
        ..no_ca
    };
    let unverified = peer_client_config(&auto).unwrap();
    assert_eq!(unverified.alpn_protocols, vec![b"h2".to_vec()]);
    assert!(unverified.client_auth_cert_resolver.has_certs());
}
