//! Operator-supplied trust anchors: PEM files naming the CAs that sign an
//! internal upstream (`upstream[].ca_file`) or mail relay (`mail.smtp_ca_file`).
//! Config validation and the clients read them with the same function, so a
//! file that passes `check-config` is one the client accepts. Read at start-up.

use std::path::Path;

use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// The certificates of a PEM file meant as trust anchors: at least one, each
/// usable as a root.
pub fn read(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    if !path.is_file() {
        return Err(format!("file {} not found", path.display()));
    }
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: not a PEM certificate file ({e})", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display()));
    }
    let mut roots = RootCertStore::empty();
    for (i, cert) in certs.iter().enumerate() {
        roots
            .add(cert.clone())
            .map_err(|e| format!("{}: certificate {} is not usable as a root: {e}", path.display(), i + 1))?;
    }
    Ok(certs)
}

/// The certificates as a PEM bundle (for clients that take PEM).
pub fn to_pem(certs: &[CertificateDer<'_>]) -> String {
    use base64::Engine as _;
    let mut out = String::new();
    for cert in certs {
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        let b64 = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
        for line in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(line).unwrap_or_default());
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem_file(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path
    }

    fn self_signed_pem() -> String {
        rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("certificate").cert.pem()
    }

    #[test]
    fn a_ca_file_is_read_as_its_certificates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let one = pem_file(dir.path(), "one.pem", &self_signed_pem());
        assert_eq!(read(&one).expect("one certificate").len(), 1);
        let bundle = format!("a comment line\n{}{}", self_signed_pem(), self_signed_pem());
        let two = pem_file(dir.path(), "two.pem", &bundle);
        assert_eq!(read(&two).expect("two certificates").len(), 2);
    }

    #[test]
    fn a_ca_file_without_a_usable_certificate_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing.pem");
        assert!(read(&missing).is_err_and(|e| e.contains("not found")));
        let garbage = pem_file(dir.path(), "garbage.pem", "this is not a certificate\n");
        assert!(read(&garbage).is_err_and(|e| e.contains("no PEM certificate")));
        let key_only =
            pem_file(dir.path(), "key.pem", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
        assert!(read(&key_only).is_err_and(|e| e.contains("no PEM certificate")));
        let bad_der = pem_file(dir.path(), "bad.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
        assert!(read(&bad_der).is_err_and(|e| e.contains("not usable as a root")), "{:?}", read(&bad_der));
        let bad_base64 =
            pem_file(dir.path(), "b64.pem", "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n");
        assert!(read(&bad_base64).is_err());
    }
}
