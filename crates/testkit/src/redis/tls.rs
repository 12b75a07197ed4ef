//! A redis-server that speaks only TLS, with a CA made for the test (openssl): the
//! server's certificate and a client certificate signed by it, and a second CA that
//! signed neither.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::RedisServer;
use crate::real_part;

/// A TLS-only server and the files a client needs, removed on drop.
#[derive(Debug)]
pub struct TlsRedis {
    /// The server (its `port` is the TLS port).
    pub server: RedisServer,
    dir: tempfile::TempDir,
}

impl TlsRedis {
    /// Makes the CAs and certificates and starts the server with `args` added (e.g.
    /// `["--tls-auth-clients", "yes"]`; by default a client certificate is optional);
    /// `None` (after printing why) when openssl or redis-server cannot be had outside CI.
    ///
    /// # Panics
    ///
    /// Under `CI=true` when it cannot start.
    pub fn start(args: &[&str]) -> Option<Self> {
        match Self::try_start(args) {
            Ok(tls) => Some(tls),
            Err(why) => real_part::unavailable(
                "TLS redis-server",
                &why,
                "install Debian's redis-server and openssl",
            ),
        }
    }

    fn try_start(args: &[&str]) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("no temp dir: {e}"))?;
        let d = dir.path();
        make_ca(d, "ca")?;
        make_ca(d, "other-ca")?;
        make_signed(
            d,
            "server",
            "ca",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        )?;
        make_signed(d, "client", "ca", "extendedKeyUsage=clientAuth\n")?;
        let port = super::free_port();
        let path = |name: &str| d.join(name).display().to_string();
        let mut all = vec![
            "--tls-port".to_owned(),
            port.to_string(),
            "--tls-cert-file".to_owned(),
            path("server.crt"),
            "--tls-key-file".to_owned(),
            path("server.key"),
            "--tls-ca-cert-file".to_owned(),
            path("ca.crt"),
            "--tls-auth-clients".to_owned(),
            "optional".to_owned(),
        ];
        all.extend(args.iter().map(|s| (*s).to_owned()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let server = RedisServer::start_on(port, &all).ok_or("the TLS server did not start")?;
        Ok(TlsRedis { server, dir })
    }

    /// Its URL, `rediss://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.server.port)
    }

    /// The PEM file of `name`: `ca.crt` (the CA that signed the server's certificate),
    /// `other-ca.crt` (one that did not), `client.crt` and `client.key`.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn openssl(dir: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run openssl: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "openssl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A self-signed CA: `name.key`, `name.crt` (P-256, valid two days).
fn make_ca(dir: &Path, name: &str) -> Result<(), String> {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
            "-days",
            "2",
            "-subj",
            &format!("/CN=backstop test {name}"),
        ],
    )
}

/// A certificate `name.crt` (key `name.key`) signed by CA `ca`, with `extensions`.
fn make_signed(dir: &Path, name: &str, ca: &str, extensions: &str) -> Result<(), String> {
    let ext = format!("{name}.ext");
    std::fs::write(dir.join(&ext), extensions).map_err(|e| e.to_string())?;
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={name}"),
        ],
    )?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            &format!("{name}.crt"),
            "-days",
            "2",
            "-extfile",
            &ext,
        ],
    )
}
