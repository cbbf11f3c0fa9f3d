//! A real OpenLDAP server (Debian's `slapd`) for the directory tests: its
//! own config and database in a temp dir, loaded from
//! `tests/fixtures/ldap/users.ldif` with `slapadd`, listening on loopback
//! ports (plain, and ldaps with a certificate from a test CA, which also
//! serves StartTLS). Run as the current user in the foreground, never the
//! system service. Killed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::eventually::{eventually_blocking, poll_blocking};

/// The directory's base, service account and root (which edits entries).
pub const BASE_DN: &str = "dc=example,dc=com";
pub const SERVICE_DN: &str = "cn=portcullis,ou=services,dc=example,dc=com";
pub const SERVICE_PASSWORD: &str = "service-password";
const ROOT_DN: &str = "cn=admin,dc=example,dc=com";
const ROOT_PASSWORD: &str = "admin-password";

pub struct Slapd {
    child: Option<Child>,
    pub port: u16,
    pub tls_port: u16,
    dir: tempfile::TempDir,
    /// The test CA that signed the server's certificate (PEM).
    pub ca_file: PathBuf,
    /// Another CA, which signed nothing the server presents.
    pub wrong_ca_file: PathBuf,
}

/// Where a binary of OpenLDAP's is: on PATH, or in /usr/sbin (not on a
/// normal user's PATH).
fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ldap")
}

impl Slapd {
    /// Starts a directory, or says why it cannot (slapd or ldap-utils missing).
    pub fn start() -> Result<Slapd, String> {
        let slapd = find("slapd").ok_or("slapd is not installed (apt-get install slapd)")?;
        let slapadd = find("slapadd").ok_or("slapadd is not installed (apt-get install slapd)")?;
        find("ldapmodify").ok_or("ldapmodify is not installed (apt-get install ldap-utils)")?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let d = dir.path();
        std::fs::create_dir(d.join("db")).map_err(|e| e.to_string())?;
        let (ca_file, wrong_ca_file) = write_tls(d);
        let conf = format!(
            r#"include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include {schema}
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {d}/slapd.pid
argsfile {d}/slapd.args
TLSCACertificateFile {d}/ca.pem
TLSCertificateFile {d}/server.pem
TLSCertificateKeyFile {d}/server.key
database mdb
maxsize 10485760
suffix "{BASE_DN}"
rootdn "{ROOT_DN}"
rootpw {ROOT_PASSWORD}
directory {d}/db
access to attrs=userPassword by self write by anonymous auth by * none
access to * by * read
"#,
            schema = fixtures().join("test.schema").display(),
            d = d.display(),
        );
        std::fs::write(d.join("slapd.conf"), conf).map_err(|e| e.to_string())?;
        let out = Command::new(&slapadd)
            .arg("-f")
            .arg(d.join("slapd.conf"))
            .arg("-l")
            .arg(fixtures().join("users.ldif"))
            .output()
            .map_err(|e| format!("slapadd: {e}"))?;
        if !out.status.success() {
            return Err(format!("slapadd failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
        let mut s = Slapd { child: None, port: 0, tls_port: 0, dir, ca_file, wrong_ca_file };
        // A port free a moment ago may be taken by another test's server
        // first: this one then exits, and is started again on other ports.
        for _ in 0..10 {
            (s.port, s.tls_port) = (free_port()?, free_port()?);
            match s.spawn(&slapd) {
                Ok(child) => {
                    s.child = Some(child);
                    return Ok(s);
                }
                Err(Spawn::Exited) => continue,
                Err(Spawn::Failed(why)) => return Err(why),
            }
        }
        Err("slapd could not listen on ten pairs of free ports in a row".into())
    }

    /// A directory for `test`, or None after recording why it is skipped
    /// (a failure under `PORTCULLIS_REQUIRE_SERVICES=1`).
    pub fn or_skip() -> Option<Slapd> {
        match Slapd::start() {
            Ok(s) => Some(s),
            Err(why) => {
                super::skip::skip(&why);
                None
            }
        }
    }

    /// Starts slapd and waits until it is serving: its pid file written (it
    /// is, once its listeners are open) and both ports answering. A server
    /// that exits first could not have its ports.
    fn spawn(&self, slapd: &Path) -> Result<Child, Spawn> {
        let urls = format!("ldap://127.0.0.1:{}/ ldaps://127.0.0.1:{}/", self.port, self.tls_port);
        let pid_file = self.dir.path().join("slapd.pid");
        let _ = std::fs::remove_file(&pid_file);
        let log = std::fs::File::create(self.dir.path().join("slapd.log")).map_err(|e| Spawn::Failed(e.to_string()))?;
        // -d keeps it in the foreground (it never forks), so it is ours to kill.
        let mut child = Command::new(slapd)
            .arg("-f")
            .arg(self.dir.path().join("slapd.conf"))
            .args(["-h", &urls, "-d", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| Spawn::Failed(format!("slapd: {e}")))?;
        let ours = child.id().to_string();
        let up = poll_blocking(Duration::from_secs(10), || {
            if let Ok(Some(_)) = child.try_wait() {
                return Some(false);
            }
            let serving = std::fs::read_to_string(&pid_file).is_ok_and(|p| p.trim() == ours)
                && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && std::net::TcpStream::connect(("127.0.0.1", self.tls_port)).is_ok();
            serving.then_some(true)
        });
        match up {
            Some(true) => Ok(child),
            Some(false) => Err(Spawn::Exited),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                Err(Spawn::Failed("slapd did not listen within 10 s".into()))
            }
        }
    }

    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    pub fn ldaps_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.tls_port)
    }

    /// Kills the server (SIGKILL): connections drop, nothing answers.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same ports and database.
    pub fn restart(&mut self) {
        self.kill();
        let slapd = find("slapd").expect("slapd");
        match self.spawn(&slapd) {
            Ok(child) => self.child = Some(child),
            Err(Spawn::Exited) => panic!("slapd could not listen on its ports again (taken meanwhile)"),
            Err(Spawn::Failed(why)) => panic!("slapd did not restart: {why}"),
        }
    }

    /// Stops (SIGSTOP) or continues (SIGCONT) the server: a directory that
    /// accepts connections and never answers.
    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let ok = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().expect("kill");
        assert!(ok.success());
        // A stop takes effect thread by thread, when each is next scheduled:
        // on a busy machine one may still answer a request meanwhile. Wait
        // until every thread is stopped.
        if sig == "STOP" {
            eventually_blocking("slapd's threads to stop", Duration::from_secs(10), || {
                all_threads_stopped(pid).then_some(())
            });
        }
    }

    /// Applies an LDIF change (ldapmodify as the directory's root).
    pub fn modify(&self, ldif: &str) {
        use std::io::Write;
        let mut child = Command::new(find("ldapmodify").expect("ldapmodify"))
            .args(["-x", "-H", &self.url(), "-D", ROOT_DN, "-w", ROOT_PASSWORD])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ldapmodify");
        child.stdin.take().expect("stdin").write_all(ldif.as_bytes()).expect("write ldif");
        let out = child.wait_with_output().expect("ldapmodify");
        assert!(out.status.success(), "ldapmodify failed: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            // A stopped server must be continued to die of SIGKILL promptly.
            let _ = Command::new("kill").args(["-CONT", &c.id().to_string()]).status();
        }
        self.kill();
    }
}

/// Whether every thread of process `pid` is stopped (state `T` in /proc).
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return false };
    tasks.filter_map(Result::ok).all(|t| {
        std::fs::read_to_string(t.path().join("stat"))
            .ok()
            .and_then(|stat| stat.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with('T')))
            .unwrap_or(false)
    })
}

/// Why slapd did not start serving.
enum Spawn {
    /// It exited: its ports were taken (or its config refused).
    Exited,
    Failed(String),
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// A test CA and a server certificate it signs for 127.0.0.1 and
/// localhost, written where slapd.conf expects them; and a second CA that
/// signed nothing. Returns (CA PEM, other CA PEM).
fn write_tls(d: &Path) -> (PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let ca = |name: &str| {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("ca")
    };
    let issuer = ca("Portcullis test directory CA");
    let other = ca("Some other CA");
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).expect("params");
    params.distinguished_name.push(DnType::CommonName, "127.0.0.1");
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, &issuer).expect("server cert");
    std::fs::write(d.join("ca.pem"), issuer.pem()).expect("ca");
    std::fs::write(d.join("other-ca.pem"), other.pem()).expect("other ca");
    std::fs::write(d.join("server.pem"), cert.pem()).expect("cert");
    std::fs::write(d.join("server.key"), key.serialize_pem()).expect("key");
    (d.join("ca.pem"), d.join("other-ca.pem"))
}
