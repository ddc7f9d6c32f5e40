//! The metrics endpoint as operators use it: a real Prometheus server (Debian's
//! `prometheus`, scripts/setup-metrics.sh) scrapes butterflyd's `--metrics` endpoint and
//! answers PromQL queries with per-NIC counters; `promtool check metrics` finds nothing to
//! say about the exposition; every query of the example Grafana dashboard
//! (dist/grafana/butterflyd.json) is valid PromQL over series the daemon exports.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Where the daemons of this test serve their metrics (each in its own host namespace).
const METRICS: &str = "127.0.0.1:9991";

/// A child process killed (and reaped) on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `curl -s URL` inside namespace `ns`: the body, or `None` when nothing answers.
fn get(ns: &str, url: &str) -> Option<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "curl", "-s", "-f", "--max-time", "5", url])
        .output()
        .unwrap();
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A PromQL query through Prometheus's HTTP API: the `data.result` array (the query must
/// succeed).
fn query(ns: &str, prom: &str, promql: &str) -> Vec<serde_json::Value> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "curl", "-s", "--max-time", "5", "-G"])
        .arg(format!("http://{prom}/api/v1/query"))
        .args(["--data-urlencode", &format!("query={promql}")])
        .output()
        .unwrap();
    let body = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{promql}: not JSON ({e}): {body}"));
    assert_eq!(v["status"], "success", "{promql}: {body}");
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// Polls `f` every 250 ms for up to `within`.
fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Every `expr` of the dashboard's panels and variables (`query`), in order.
fn dashboard_queries(dash: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    for p in dash["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().expect("targets") {
            out.push(t["expr"].as_str().expect("expr").to_string());
        }
    }
    for v in dash["templating"]["list"].as_array().expect("templating") {
        if v["type"] == "query" {
            out.push(v["query"].as_str().expect("query").to_string());
        }
    }
    out
}

/// The metric names (`butterfly_…`) a query refers to.
fn series_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("butterfly_") {
        let tail = &rest[i..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        names.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

#[test]
fn prometheus_scrapes_per_nic_counters_and_the_dashboard_queries_work() {
    let t0 = Instant::now();
    let mut t = two_hosts_with(false, &["--metrics", METRICS]);
    let host = t.h[0].netns.clone().unwrap();
    let tag = t.tag % 10_000;
    let a = t.vm(0, "ma", 61, "10.61.0.1", "52:54:00:61:00:01");
    let _b = t.vm(0, "mb", 61, "10.61.0.2", "52:54:00:61:00:02");
    // A NIC in a group without rules: what is sent to it is dropped by its firewall.
    let _c = t.vm_with(0, "mc", 61, Some("10.61.0.3"), "52:54:00:61:00:03", &["--sg", "closed"]);
    let (ok, out) = ping(&a, "10.61.0.2", "5");
    assert!(ok, "{out}");
    let (ok, _) = ping(&a, "10.61.0.3", "2");
    assert!(!ok, "the closed NIC's firewall drops the pings");
    let nic_a = format!("vm-ma{tag}");

    // The exposition is clean for promtool (names, types, help, units, duplicates).
    let scrape = get(&host, &format!("http://{METRICS}/metrics")).expect("the metrics endpoint answers");
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (scripts/setup-metrics.sh installs prometheus)");
    {
        use std::io::Write;
        check.stdin.take().unwrap().write_all(scrape.as_bytes()).unwrap();
    }
    let out = check.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics:\n{said}");

    // Prometheus in the daemon's host namespace, scraping it every second.
    let dir = tempfile::tempdir().unwrap();
    let prom = format!("127.0.0.1:{}", free_port());
    let conf = dir.path().join("prometheus.yml");
    std::fs::write(
        &conf,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: butterflyd\n    static_configs:\n      - targets: ['{METRICS}']\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let _prometheus = Killed(
        Command::new("ip")
            .args(["netns", "exec", &host, "prometheus"])
            .arg(format!("--config.file={}", conf.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={prom}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("prometheus (scripts/setup-metrics.sh installs it)"),
    );
    let plog = || std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
    assert!(
        eventually(Duration::from_secs(15), || get(&host, &format!("http://{prom}/-/ready")).is_some()),
        "Prometheus did not start:\n{}",
        plog()
    );
    // The target is up: Prometheus parsed the scrape.
    let up = |r: &Vec<serde_json::Value>| r.first().is_some_and(|s| s["value"][1] == "1");
    assert!(
        eventually(Duration::from_secs(10), || up(&query(&host, &prom, "up{job=\"butterflyd\"}"))),
        "the target is not up: {}",
        get(&host, &format!("http://{prom}/api/v1/targets")).unwrap_or_default()
    );
    // Per-NIC counters, through PromQL: VM a sent its pings out of its NIC.
    let sent = format!("sum(butterfly_brick_packets_total{{brick=\"{nic_a}\",dir=\"out\"}})");
    let mut got = Vec::new();
    assert!(
        eventually(Duration::from_secs(10), || {
            got = query(&host, &prom, &sent);
            got.first().and_then(|s| s["value"][1].as_str()?.parse::<f64>().ok()).is_some_and(|n| n >= 5.0)
        }),
        "{sent}: {got:?}"
    );
    let per_nic = query(&host, &prom, "count by (brick) (butterfly_brick_packets_total{brick=~\"vm-.*\"})");
    assert_eq!(per_nic.len(), 3, "one series set per NIC: {per_nic:?}");
    let dropped = query(&host, &prom, "sum by (brick, reason) (butterfly_brick_drops_total) > 0");
    assert!(
        dropped.iter().any(|s| s["metric"]["brick"] == format!("fw-mc{tag}")),
        "the closed NIC's firewall drops, by reason: {dropped:?}"
    );

    // The dashboard: JSON, every query valid PromQL over series in the scrape, answering
    // with data (Grafana's variables given values first).
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../dist/grafana/butterflyd.json");
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).expect("the dashboard is JSON");
    let queries = dashboard_queries(&dash);
    // Rates need two samples in their window.
    let samples = |r: &Vec<serde_json::Value>| {
        r.first().and_then(|s| s["value"][1].as_str()?.parse::<f64>().ok()).is_some_and(|n| n >= 3.0)
    };
    assert!(eventually(Duration::from_secs(10), || samples(&query(
        &host,
        &prom,
        "count_over_time(up{job=\"butterflyd\"}[1m])"
    ))));
    assert!(queries.len() >= 6, "{queries:?}");
    for q in &queries {
        let names = series_names(q);
        assert!(!names.is_empty(), "{q} names no butterfly series");
        for n in names {
            assert!(scrape.contains(&format!("\n{n}{{")), "{q}: {n} is not in a scrape");
        }
        if q.starts_with("label_values(") {
            continue; // Grafana's own function; its selector is checked above
        }
        let promql = q.replace("$__rate_interval", "1m").replace("$instance", ".*").replace("$nic", "vm-.*");
        let result = query(&host, &prom, &promql);
        // A rate needs two scrapes of traffic; the rest answer at once.
        let wants_data = !promql.contains("rate(") || promql.contains("dir=");
        if wants_data {
            assert!(!result.is_empty(), "{promql}: no data");
        }
    }
    eprintln!("metrics_prometheus: {:.1} s", t0.elapsed().as_secs_f64());
}
