//! TLS from etcd's flags, on rustls (ring): the client port's `--cert-file`,
//! `--key-file`, `--trusted-ca-file`, `--client-cert-auth`, `--client-crl-file` and
//! `--auto-tls`, and their `--peer-*` twins, which take the same [`TlsConfig`].
//!
//! Everything here is shared by the client listener and the peer transport:
//!
//! * [`server_config`]: the `rustls::ServerConfig` of a listener (the certificate chain
//!   and key; with `client_cert_auth`, client certificates must chain to the trusted CA
//!   and not be revoked by the CRL).
//! * [`client_config`]: the `rustls::ClientConfig` of a dialer (the trusted CA verifies
//!   the server; the same certificate and key, when given, are presented as the client
//!   certificate, as etcd's peers do).
//! * [`self_signed`]: etcd's `SelfCert` for `--auto-tls` / `--peer-auto-tls`.
//! * [`peer_client_config`]: the same for dialing peers; with `--peer-auto-tls` and no
//!   CA, peers' self-signed certificates are accepted unverified (`tls/verify.rs`), as
//!   etcd's are.
//! * [`incoming`] (`tls/accept.rs`): the accept loop that hands tonic handshaken connections,
//!   with the client certificate's Common Name in each request's extensions (and, on the
//!   peer port, refuses certificates without `--peer-cert-allowed-cn`).
//! * [`PeerConnector`] (`tls/dial.rs`): how the peer transport dials https peer URLs.
//! * [`common_name`]: the subject CN of a certificate, etcd's user name for
//!   `--client-cert-auth`.
//!
//! Errors name the file and say what was wrong with it, in Go's words where etcd would
//! print Go's (`open …: no such file or directory`, `failed to find any PEM data …`).

mod accept;
mod der;
mod dial;
mod verify;

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

pub use accept::{incoming, incoming_peers, TlsConn, TlsConnInfo, HANDSHAKE_TIMEOUT};
pub use der::common_name;
pub use dial::{PeerConnector, PeerStream};

use crate::config::TlsConfig;

/// ALPN protocols a listener offers: HTTP/2 for gRPC, HTTP/1.1 for `/health`,
/// `/version` and `/metrics`, which share the client port.
pub const ALPN_SERVER: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The file names `--auto-tls` writes (etcd's).
pub const SELF_CERT_FILE: &str = "cert.pem";
pub const SELF_KEY_FILE: &str = "key.pem";

/// The TLS of the peer port: what its listener serves, how peers are dialed, and the
/// Common Name peers' certificates must carry (`--peer-cert-allowed-cn`).
#[derive(Debug, Clone, Default)]
pub struct PeerTls {
    pub server: Option<Arc<ServerConfig>>,
    pub client: Option<Arc<ClientConfig>>,
    pub allowed_cn: Option<Arc<str>>,
}

/// Why TLS could not be set up; the message names the file or flag concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError(pub String);

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

impl From<TlsError> for crate::error::Error {
    fn from(e: TlsError) -> crate::error::Error {
        crate::error::Error::Internal(e.0)
    }
}

pub type Result<T, E = TlsError> = std::result::Result<T, E>;

/// The one crypto provider mnemo uses (no process-wide default is installed).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>> {
    // Go's wording: "open /etc/etcd/server.crt: no such file or directory".
    std::fs::read(path).map_err(|e| TlsError(format!("open {}: {e}", path.display())))
}

/// Every certificate of a PEM file, in order (a chain: the leaf first).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError(format!("{}: invalid certificate PEM: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(TlsError(format!(
            "{}: tls: failed to find any PEM data in certificate input",
            path.display()
        )));
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 RSA or SEC1 EC).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError(format!(
            "{}: tls: failed to find any PEM data in key input",
            path.display()
        )),
        e => TlsError(format!("{}: invalid private key PEM: {e}", path.display())),
    })
}

/// A CA bundle (PEM, one or more certificates) as trust anchors.
pub fn load_roots(path: &Path) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots
            .add(cert)
            .map_err(|e| TlsError(format!("{}: invalid CA certificate: {e}", path.display())))?;
    }
    Ok(roots)
}

/// Certificate revocation lists: PEM (`X509 CRL` blocks) or one DER list.
pub fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>> {
    let bytes = read(path)?;
    let crls = CertificateRevocationListDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError(format!("{}: invalid CRL PEM: {e}", path.display())))?;
    if crls.is_empty() {
        return Ok(vec![CertificateRevocationListDer::from(bytes)]);
    }
    Ok(crls)
}

fn required<'a>(file: &'a Option<PathBuf>, what: &str) -> Result<&'a Path> {
    file.as_deref()
        .ok_or_else(|| TlsError(format!("TLS {what} file is not given")))
}

/// The server side of `tls`: its certificate chain and key, ALPN [`ALPN_SERVER`], and
/// with `client_cert_auth` a required client certificate that chains to
/// `trusted_ca_file` (and is not revoked by `crl_file`). Without `client_cert_auth` no
/// client certificate is asked for, even with a trusted CA (etcd's `ServerConfig`).
///
/// `allowed_cn` is enforced by the accept loop ([`incoming_peers`]);
/// `allowed_hostname` and `skip_client_san_verification` are not enforced, and
/// [`check_supported`] refuses them.
pub fn server_config(tls: &TlsConfig) -> Result<ServerConfig> {
    check_supported(tls)?;
    let certs = load_certs(required(&tls.cert_file, "certificate")?)?;
    let key_path = required(&tls.key_file, "key")?;
    let key = load_key(key_path)?;
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(format!("TLS versions: {e}")))?;
    let builder = if tls.client_cert_auth {
        let ca = tls.trusted_ca_file.as_deref().ok_or_else(|| {
            TlsError(
                "client certificate authentication needs a trusted CA file \
                 (--trusted-ca-file, --peer-trusted-ca-file); mnemo does not trust the \
                 system's CAs for client certificates"
                    .to_string(),
            )
        })?;
        let roots = Arc::new(load_roots(ca)?);
        let mut verifier = WebPkiClientVerifier::builder_with_provider(roots, provider);
        if let Some(crl) = &tls.crl_file {
            verifier = verifier.with_crls(load_crls(crl)?);
        }
        let verifier = verifier
            .build()
            .map_err(|e| TlsError(format!("{}: {e}", ca.display())))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        TlsError(format!(
            "{} and {}: {e}",
            tls.cert_file.as_deref().unwrap_or(key_path).display(),
            key_path.display()
        ))
    })?;
    config.alpn_protocols = ALPN_SERVER.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// The dialing side of `tls`: servers must present a certificate that chains to
/// `trusted_ca_file`; `cert_file`/`key_file`, when given, are the client certificate.
/// No ALPN is set: the caller sets `alpn_protocols` (`h2` for gRPC).
pub fn client_config(tls: &TlsConfig) -> Result<ClientConfig> {
    check_supported(tls)?;
    let ca = tls.trusted_ca_file.as_deref().ok_or_else(|| {
        TlsError("a TLS client needs a trusted CA file to verify servers with".to_string())
    })?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(format!("TLS versions: {e}")))?
        .with_root_certificates(load_roots(ca)?);
    match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
            .map_err(|e| TlsError(format!("{} and {}: {e}", cert.display(), key.display()))),
        _ => Ok(builder.with_no_client_auth()),
    }
}

/// The dialing side of the peer TLS `tls`, ALPN `h2`: peers' certificates must chain to
/// `trusted_ca_file`, or with `auto_tls` and no CA are taken unverified (etcd's peers
/// skip verification of self-signed peers the same way). The member's own certificate
/// is its client certificate.
pub fn peer_client_config(tls: &TlsConfig) -> Result<ClientConfig> {
    let mut config = if tls.trusted_ca_file.is_some() {
        client_config(tls)?
    } else if tls.auto_tls {
        check_supported(tls)?;
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError(format!("TLS versions: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verify::AnyServerCert::new(provider)));
        match (&tls.cert_file, &tls.key_file) {
            (Some(cert), Some(key)) => builder
                .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
                .map_err(|e| TlsError(format!("{} and {}: {e}", cert.display(), key.display())))?,
            _ => builder.with_no_client_auth(),
        }
    } else {
        return Err(TlsError(
            "https peer URLs need --peer-trusted-ca-file to verify the other members with \
             (or --peer-auto-tls); mnemo does not trust the system's CAs for peers"
                .to_string(),
        ));
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// Refuses the settings mnemo parses but does not enforce yet, rather than ignore them.
pub fn check_supported(tls: &TlsConfig) -> Result<()> {
    let unsupported = [
        (
            tls.allowed_hostname.is_some(),
            "--client-cert-allowed-hostname / --peer-cert-allowed-hostname",
        ),
        (
            tls.skip_client_san_verification,
            "--experimental-peer-skip-client-san-verification",
        ),
    ];
    match unsupported.iter().find(|(given, _)| *given) {
        Some((_, what)) => Err(TlsError(format!("{what} is not supported by mnemo"))),
        None => Ok(()),
    }
}

/// etcd's `SelfCert` (`--auto-tls`): a self-signed certificate for `hosts` (IP
/// addresses or DNS names, without ports) in `dir/cert.pem` and `dir/key.pem` (mode
/// 0600, the directory 0700), returned as `tls` with the two files set. Files left by an
/// earlier start are used again, as etcd does. Clients cannot verify such a certificate
/// against a CA they know; etcd's clients skip verification for it.
///
/// The key is ECDSA P-256 (etcd uses P-521, which rustls does not offer), organisation
/// `etcd`, usage server and client auth; rcgen's default validity.
pub fn self_signed(dir: &Path, hosts: &[String], tls: &TlsConfig) -> Result<TlsConfig> {
    let cert_path = dir.join(SELF_CERT_FILE);
    let key_path = dir.join(SELF_KEY_FILE);
    let with_files = TlsConfig {
        cert_file: Some(cert_path.clone()),
        key_file: Some(key_path.clone()),
        ..tls.clone()
    };
    if cert_path.is_file() && key_path.is_file() {
        return Ok(with_files);
    }
    let (cert_pem, key_pem) = generate_self_signed(hosts)?;
    create_private_dir(dir)?;
    write_file(&cert_path, cert_pem.as_bytes(), 0o644)?;
    write_file(&key_path, key_pem.as_bytes(), 0o600)?;
    Ok(with_files)
}

/// A self-signed certificate and its key, both PEM, for `hosts`.
pub fn generate_self_signed(hosts: &[String]) -> Result<(String, String)> {
    use rcgen::{
        CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair,
        KeyUsagePurpose,
    };
    let failed = |e: rcgen::Error| TlsError(format!("generating a self-signed certificate: {e}"));
    let mut params = CertificateParams::new(hosts.to_vec()).map_err(failed)?;
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "etcd");
    params.distinguished_name = name;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate().map_err(failed)?;
    let cert = params.self_signed(&key).map_err(failed)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| TlsError(format!("creating {}: {e}", dir.display())))
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let failed = |e: std::io::Error| TlsError(format!("writing {}: {e}", path.display()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(failed)?;
    file.write_all(bytes).map_err(failed)?;
    file.sync_all().map_err(failed)
}

#[cfg(test)]
mod tests;
