//! A Prometheus server started by a test on a free loopback port, with the test's own
//! configuration and storage, and asked through its HTTP API.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::http;
use crate::real_part;

/// How long a starting server may take to be ready.
const START_BOUND: Duration = Duration::from_secs(30);

/// One series of a query's answer: its labels (`__name__` included) and its value.
pub type Series = (BTreeMap<String, String>, f64);

/// A `prometheus` child process, killed on drop.
#[derive(Debug)]
pub struct Prometheus {
    addr: String,
    child: Child,
    log: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts `prometheus` with `config` (its YAML) and storage in `dir`, on a free
    /// loopback port, and waits until it is ready; `None` (after printing why) outside
    /// CI when it is not installed.
    ///
    /// # Panics
    ///
    /// Under `CI=true` when it is not installed; anywhere when it is but does not start
    /// (its log is printed).
    pub fn start(dir: &Path, config: &str) -> Option<Prometheus> {
        let installed = Command::new("prometheus")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !installed {
            return real_part::unavailable(
                "prometheus",
                "not installed (.ci/promtool.sh installs Debian's prometheus package in CI)",
                "apt-get install prometheus",
            );
        }
        let config_file = dir.join("prometheus.yml");
        std::fs::write(&config_file, config).expect("write prometheus.yml");
        // A port taken between choosing it and the server's bind makes the server exit:
        // try another.
        for _ in 0..3 {
            let addr = format!("127.0.0.1:{}", crate::redis::free_port());
            let log = dir.join(format!("prometheus-{}.log", addr.replace(':', "-")));
            let child = Command::new("prometheus")
                .arg(format!("--config.file={}", config_file.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("data").display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("create the log"))
                .spawn()
                .expect("run prometheus");
            let mut server = Prometheus { addr, child, log };
            if server.ready() {
                return Some(server);
            }
        }
        panic!("prometheus did not start on a free loopback port in 3 tries");
    }

    /// Waits for `/-/ready`; false when the process exited first or the bound passed.
    fn ready(&mut self) -> bool {
        let start = Instant::now();
        while start.elapsed() < START_BOUND {
            if let Ok(Some(status)) = self.child.try_wait() {
                eprintln!("prometheus exited ({status}):\n{}", self.log());
                return false;
            }
            if matches!(http::request(&self.addr, "GET", "/-/ready"), Ok((200, _))) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("prometheus not ready in {START_BOUND:?}:\n{}", self.log());
        false
    }

    /// Its address, `127.0.0.1:port`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GETs an API path (`/api/v1/...`): the `data` of a `success` answer.
    ///
    /// # Errors
    ///
    /// What went wrong: no answer, not JSON, or Prometheus's error (a bad query's
    /// parse error, for one).
    pub fn api(&self, path: &str) -> Result<Value, String> {
        let (status, body) =
            http::request(&self.addr, "GET", path).map_err(|e| format!("{path}: {e}"))?;
        let answer: Value = serde_json::from_str(&body)
            .map_err(|e| format!("{path}: HTTP {status}, not JSON ({e}): {body}"))?;
        if answer["status"] != "success" {
            return Err(format!("{path}: HTTP {status}: {answer}"));
        }
        Ok(answer["data"].clone())
    }

    /// An instant query now: every series of the answer (a scalar as one series without
    /// labels).
    ///
    /// # Errors
    ///
    /// As [`api`](Self::api), or an answer that is not a vector.
    pub fn query(&self, expr: &str) -> Result<Vec<Series>, String> {
        let data = self.api(&format!("/api/v1/query?query={}", http::url_encode(expr)))?;
        if data["resultType"] == "scalar" {
            // `[time, "value"]`: one series without labels.
            let value = serde_json::json!({ "metric": {}, "value": data["result"] });
            return Ok(vec![series_of(&value)]);
        }
        let series = data["result"]
            .as_array()
            .filter(|_| data["resultType"] == "vector")
            .ok_or_else(|| format!("{expr}: neither a vector nor a scalar: {data}"))?;
        Ok(series.iter().map(series_of).collect())
    }

    /// The value of a query that must give exactly one series.
    ///
    /// # Panics
    ///
    /// When it fails or gives another number of series.
    pub fn one(&self, expr: &str) -> f64 {
        let series = self.query(expr).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(series.len(), 1, "{expr}: {series:?}");
        series[0].1
    }

    /// The state of the alerting rule `name` (`inactive`, `pending` or `firing`,
    /// from `/api/v1/rules`) and the states of its active alerts (`/api/v1/alerts`).
    ///
    /// # Panics
    ///
    /// When the API fails or no such rule is loaded.
    pub fn alert_state(&self, name: &str) -> (String, Vec<String>) {
        let rules = self
            .api("/api/v1/rules?type=alert")
            .unwrap_or_else(|e| panic!("{e}"));
        let rule = rules["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("no alerting rule {name}: {rules}"));
        let alerts = self.api("/api/v1/alerts").unwrap_or_else(|e| panic!("{e}"));
        let active = alerts["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["labels"]["alertname"] == name)
            .map(|a| a["state"].as_str().unwrap_or("").to_owned())
            .collect();
        (rule["state"].as_str().unwrap_or("").to_owned(), active)
    }
}

/// A series of a vector answer: `{"metric": {...}, "value": [time, "value"]}`.
fn series_of(series: &Value) -> Series {
    let labels = series["metric"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
        .collect();
    let value = series["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN);
    (labels, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server with no targets still answers: `time()` is one series, a broken query
    /// is Prometheus's parse error.
    #[test]
    fn a_started_server_answers_queries_and_refuses_broken_ones() {
        let dir = tempfile::tempdir().unwrap();
        let config = "global:\n  scrape_interval: 1s\nscrape_configs: []\n";
        let Some(server) = Prometheus::start(dir.path(), config) else {
            return;
        };
        let now = server.one("time()");
        assert!(now > 1.7e9, "{now}");
        let vector = server.query("vector(3)").unwrap();
        assert_eq!(vector.len(), 1);
        assert_eq!(vector[0].1, 3.0);
        let err = server.query("sum(").unwrap_err();
        assert!(err.contains("parse error"), "{err}");
    }
}
