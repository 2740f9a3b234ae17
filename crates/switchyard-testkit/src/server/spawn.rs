//! Spawning the process and waiting until it answers.

use std::fs::OpenOptions;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Instant;

use super::{Mode, PROBE_TIMEOUT, RedisServer};
use crate::error::TestkitError;
use crate::process::{POLL_INTERVAL, info_field, kill_child};
use crate::resp::RespValue;

/// The outcome of one attempt to spawn the server.
pub(super) enum Attempt {
    Ready(Child),
    PortTaken(String),
}

impl RedisServer {
    /// Spawns the process on `self.port` and waits until it is ready, it
    /// exits, or the startup deadline passes.
    pub(super) fn spawn_and_wait(&self) -> Result<Attempt, TestkitError> {
        let conf = self.write_config()?;
        let log_path = self.log_path();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| TestkitError::io(format!("opening {}", log_path.display()), e))?;
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let log_err = log
            .try_clone()
            .map_err(|e| TestkitError::io("duplicating the log file handle", e))?;
        let mut command = Command::new(&self.binary);
        command.arg(&conf);
        if matches!(self.mode, Mode::Sentinel { .. }) {
            command.arg("--sentinel");
        }
        let mut child = command
            .current_dir(self.dir())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn()
            .map_err(|e| TestkitError::io(format!("spawning {}", self.binary.display()), e))?;
        let pid = child.id();
        tracing::debug!(port = self.port, pid, "spawned redis-server");

        let deadline = Instant::now() + self.opts.startup_timeout;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    let tail = self.log_tail(log_start);
                    if tail.contains("Address already in use") {
                        return Ok(Attempt::PortTaken(format!(
                            "redis-server exited ({status})"
                        )));
                    }
                    return Err(TestkitError::Startup {
                        message: format!("redis-server exited during startup ({status})"),
                        log_tail: tail,
                    });
                }
                Ok(None) => {}
                Err(e) => {
                    kill_child(&mut child);
                    return Err(TestkitError::io("checking the redis-server process", e));
                }
            }
            let last_probe = match self.probe() {
                Ok(Some(server_pid)) if server_pid == pid => return Ok(Attempt::Ready(child)),
                Ok(Some(other)) => {
                    // Someone else's server answers on this port.
                    kill_child(&mut child);
                    return Ok(Attempt::PortTaken(format!(
                        "port {} answered by another redis-server (pid {other})",
                        self.port
                    )));
                }
                Ok(None) => String::from("server is loading"),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                kill_child(&mut child);
                return Err(TestkitError::Startup {
                    message: format!(
                        "no PONG within {:?} on port {} (last probe: {last_probe})",
                        self.opts.startup_timeout, self.port
                    ),
                    log_tail: self.log_tail(log_start),
                });
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// One readiness probe: `Ok(Some(pid))` once `PING` answers `PONG`
    /// (with the `process_id` of the server that answered), `Ok(None)` while
    /// it is loading, `Err` when it is not reachable yet.
    fn probe(&self) -> Result<Option<u32>, TestkitError> {
        let mut conn = self.open(PROBE_TIMEOUT)?;
        match conn.command_raw(&["PING"])? {
            RespValue::Simple(s) if s == "PONG" => {}
            RespValue::Error(e) if e.starts_with("LOADING") => return Ok(None),
            other => {
                return Err(TestkitError::Protocol(format!(
                    "unexpected PING reply {other:?}"
                )));
            }
        }
        let info = conn.command(&["INFO", "server"])?;
        info.as_str()
            .and_then(|text| info_field(text, "process_id"))
            .and_then(|pid| pid.parse().ok())
            .map(Some)
            .ok_or_else(|| TestkitError::Protocol("INFO server has no process_id".into()))
    }
}
