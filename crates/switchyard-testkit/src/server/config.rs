//! The configuration file of a server or sentinel.

use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;

use super::{CONF_FILE, Mode, RedisServer};
use crate::error::TestkitError;
use crate::options::Persistence;
use crate::process::quote;

impl RedisServer {
    /// Writes the config file for the current ports.
    pub(super) fn write_config(&self) -> Result<PathBuf, TestkitError> {
        let path = self.dir().join(CONF_FILE);
        let conf = match &self.mode {
            Mode::Server => self.server_config(),
            // Written once: the sentinel keeps what it learned in this file.
            Mode::Sentinel { .. } if path.exists() => return Ok(path),
            Mode::Sentinel { conf } => {
                let mut text = self.common_config();
                self.auth_and_tls_config(&mut text);
                for (name, value) in &self.opts.extra_args {
                    config_line(&mut text, name, value);
                }
                text.push_str(conf);
                text
            }
        };
        fs::write(&path, conf)
            .map_err(|e| TestkitError::io(format!("writing {}", path.display()), e))?;
        Ok(path)
    }

    /// Removes a sentinel's config file (written for a port that turned
    /// out to be taken), so that the next start writes it for a new one.
    pub(super) fn remove_sentinel_config(&self) -> Result<(), TestkitError> {
        let path = self.dir().join(CONF_FILE);
        if !matches!(self.mode, Mode::Sentinel { .. }) || !path.exists() {
            return Ok(());
        }
        fs::remove_file(&path)
            .map_err(|e| TestkitError::io(format!("removing {}", path.display()), e))
    }

    /// The directives of both modes: ports, address, directory, logging.
    fn common_config(&self) -> String {
        let mut conf = String::new();
        let mut line = |name: &str, value: &str| config_line(&mut conf, name, value);
        let plain_port = if self.opts.tls_only() { 0 } else { self.port };
        line("port", &plain_port.to_string());
        line("bind", "127.0.0.1");
        line("dir", &self.dir().to_string_lossy());
        line("daemonize", "no");
        line("protected-mode", "no");
        line("logfile", "");
        conf
    }

    /// The directives both modes take from the options: `requirepass`, and
    /// with TLS the `tls-*` ones. The client certificate is also what the
    /// process presents when it connects to another one (replication,
    /// Sentinel links): the server certificate is for servers only.
    fn auth_and_tls_config(&self, conf: &mut String) {
        let mut line = |name: &str, value: &str| config_line(conf, name, value);
        if let Some(password) = &self.opts.password {
            line("requirepass", password);
        }
        if let (Some(tls), Some(tls_port), Some(pki)) = (&self.opts.tls, self.tls_port, &self.pki) {
            let server = pki.server_certificate(tls.server_certificate);
            line("tls-port", &tls_port.to_string());
            line("tls-cert-file", &server.cert.to_string_lossy());
            line("tls-key-file", &server.key.to_string_lossy());
            line("tls-client-cert-file", &pki.client().cert.to_string_lossy());
            line("tls-client-key-file", &pki.client().key.to_string_lossy());
            line("tls-ca-cert-file", &pki.ca_cert().to_string_lossy());
            line("tls-auth-clients", tls.client_auth.directive());
        }
    }

    /// The config of a data server, from the options.
    fn server_config(&self) -> String {
        let mut conf = self.common_config();
        let mut line = |name: &str, value: &str| config_line(&mut conf, name, value);
        match self.opts.persistence {
            Persistence::None => {
                line("save", "");
                line("appendonly", "no");
            }
            Persistence::Aof => {
                line("save", "");
                line("appendonly", "yes");
            }
            Persistence::Rdb => {
                line("appendonly", "no");
            }
        }
        if let Some(policy) = &self.opts.maxmemory_policy {
            line("maxmemory-policy", policy);
        }
        self.auth_and_tls_config(&mut conf);
        let mut line = |name: &str, value: &str| config_line(&mut conf, name, value);
        if let (Some(_), Some((user, pass))) = (self.opts.replica_of, self.opts.credentials()) {
            if let Some(user) = user {
                line("masteruser", user);
            }
            line("masterauth", pass);
        }
        for (name, value) in &self.opts.extra_args {
            line(name, value);
        }
        if let Some(primary) = self.opts.replica_of {
            let _ = writeln!(
                conf,
                "replicaof {} {}",
                quote(&primary.ip().to_string()),
                primary.port()
            );
        }
        if let Some((user, pass)) = &self.opts.acl_user {
            let _ = writeln!(
                conf,
                "user {} on {} ~* &* +@all",
                quote(user),
                quote(&format!(">{pass}"))
            );
        }
        conf
    }
}

/// Appends `name "value"` to a config file's text.
fn config_line(conf: &mut String, name: &str, value: &str) {
    conf.push_str(name);
    conf.push(' ');
    conf.push_str(&quote(value));
    conf.push('\n');
}
