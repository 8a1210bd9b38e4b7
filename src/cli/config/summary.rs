//! What `check-config` prints on success: one `key: value` line per fact. Secrets are
//! never shown: token files appear by path only.

use super::duration::display;
use super::{ControlListen, DaemonConfig};
use crate::cli::logging::LogFormat;
use crate::session::History;
use std::fmt::Write;

impl DaemonConfig {
    /// One line per fact, each ending in a newline.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let mut line = |k: &str, v: String| {
            let _ = writeln!(s, "{k}: {v}");
        };
        line("config", self.config_path.display().to_string());
        let how = match (&self.target.region, &self.target.endpoint) {
            (Some(r), _) if self.target.fips => format!(" (region {r}, FIPS)"),
            (Some(r), _) if self.target.dual_stack => format!(" (region {r}, dual-stack)"),
            (Some(r), _) => format!(" (region {r})"),
            _ => " (explicit endpoint)".to_string(),
        };
        line("endpoint", format!("{}{how}", self.endpoint.base()));
        line("state_dir", self.state_dir.display().to_string());
        for (k, v) in super::egress::summary(&self.egress) {
            line(k, v);
        }
        line("heartbeat_interval", display(self.heartbeat_interval));
        line("shutdown_timeout", display(self.shutdown_timeout));
        line("stdout", self.stdout.to_string());
        line("control.listen", self.control.listen.to_string());
        if let Some(t) = &self.control.token_file {
            line("control.token_file", t.display().to_string());
        }
        if matches!(self.control.listen, ControlListen::Tcp(_)) {
            line("control.allow_remote", self.control.allow_remote.to_string());
        }
        line(
            "http.listen",
            self.http
                .listen
                .map_or_else(|| "off".to_string(), |a| a.to_string()),
        );
        line("http.readyz_grace", display(self.http.readyz_grace));
        line(
            "http.metrics_per_session",
            self.http.metrics_per_session.to_string(),
        );
        line("journal.fsync", self.journal.fsync.as_str().to_string());
        line("journal.retention", display(self.journal.retention));
        let format = match self.log.format {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        };
        line("log.format", format.to_string());
        line("log.level", self.log.level.clone());
        for (op, l) in &self.limits {
            let shared = if l.bucket != *op {
                format!(" (shared bucket {})", l.bucket)
            } else {
                String::new()
            };
            line(
                &format!("limits.{op}"),
                format!("{}/s burst {}{shared}", l.rate, l.burst),
            );
        }
        let cap = &self.capacity;
        line("limits.max_sessions", cap.max_sessions.to_string());
        line("limits.max_body", cap.max_body.to_string());
        line("limits.max_connections", cap.max_connections.to_string());
        line("limits.max_streams", cap.max_streams.to_string());
        line("limits.header_timeout", display(cap.header_timeout));
        line("limits.idle_timeout", display(cap.idle_timeout));
        if let Some(c) = &self.cluster {
            line("cluster.nats", c.nats.clone());
            line("cluster.instance", c.instance.clone());
            line("cluster.bucket", c.bucket.clone());
            line("cluster.stream", c.stream.clone());
            line("cluster.subject", c.subject.clone());
            line("cluster.instance_ttl", display(c.instance_ttl));
        }
        for c in &self.consumers {
            let target = match &c.target {
                crate::sink::consumer::TargetConfig::Webhook(w) => format!("POST {}", w.url),
                crate::sink::consumer::TargetConfig::Nats(n) => {
                    format!("{} stream {} subject {}", n.url, n.stream, n.subject)
                }
            };
            let only = c.common.sessions.as_ref().map_or(String::new(), |s| {
                format!(" sessions {}", s.iter().cloned().collect::<Vec<_>>().join(","))
            });
            line(
                &format!("consumer {}", c.common.name),
                format!("{} {target}{only}", c.common.kind),
            );
        }
        line("sessions", self.sessions.len().to_string());
        for sess in &self.sessions {
            let history = match sess.history {
                History::All => "all",
                History::None => "none",
            };
            let labels = if sess.labels.is_empty() {
                String::new()
            } else {
                let l: Vec<String> = sess.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!(" labels {}", l.join(","))
            };
            line(
                &format!("session {}", sess.name),
                format!(
                    "token file {} history {history}{labels}",
                    sess.participant_token_file.display()
                ),
            );
        }
        s
    }
}
