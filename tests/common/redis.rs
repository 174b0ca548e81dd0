//! A throwaway `redis-server` for tests: temp dir, free loopback port,
//! `--save '' --appendonly no`, killed on drop.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// A throwaway redis-server, killed on drop.
pub struct Redis {
    pub port: u16,
    dir: tempfile::TempDir,
    extra: Vec<&'static str>,
    child: Option<Child>,
}

impl Redis {
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self::start_on(port, Vec::new())
    }

    pub fn start_on(port: u16, extra: Vec<&'static str>) -> Self {
        let mut r = Redis {
            port,
            dir: tempfile::tempdir().unwrap(),
            extra,
            child: None,
        };
        r.spawn();
        r
    }

    /// A cluster node: its bus port (port + 10000) must be free too.
    pub fn start_cluster_node() -> Self {
        Self::start_cluster_node_with(vec![])
    }

    /// A cluster node with extra `redis-server` arguments.
    pub fn start_cluster_node_with(extra: Vec<&'static str>) -> Self {
        loop {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let Some(bus_port) = port.checked_add(10000) else {
                continue;
            };
            if TcpListener::bind(("127.0.0.1", bus_port)).is_ok() {
                let mut args = vec!["--cluster-enabled", "yes"];
                args.extend(extra.iter().copied());
                return Self::start_on(port, args);
            }
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(&self.extra)
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (scripts/test installs it)");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            if let Ok(client) = redis::Client::open(self.url())
                && let Ok(mut c) = client.get_connection()
                && redis::cmd("PING").query::<String>(&mut c).is_ok()
            {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `GET key` (None when absent).
    pub fn get(&self, key: &str) -> Option<String> {
        let mut c = redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .unwrap();
        redis::cmd("GET").arg(key).query(&mut c).unwrap()
    }

    /// `PTTL key` in ms (-2 when absent, -1 without a TTL).
    pub fn pttl(&self, key: &str) -> i64 {
        let mut c = redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .unwrap();
        redis::cmd("PTTL").arg(key).query(&mut c).unwrap()
    }

    /// How many connections are subscribed to the sharded channel `topic`.
    pub fn shard_subscribers(&self, topic: &str) -> i64 {
        self.try_shard_subscribers(topic).unwrap()
    }

    pub fn try_shard_subscribers(&self, topic: &str) -> redis::RedisResult<i64> {
        let mut c = redis::Client::open(self.url())?.get_connection()?;
        let (_, n): (String, i64) = redis::cmd("PUBSUB")
            .arg("SHARDNUMSUB")
            .arg(topic)
            .query(&mut c)?;
        Ok(n)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Redis Cluster of three masters (no replicas, every slot assigned),
/// made with `redis-cli --cluster create`; waits for `cluster_state:ok`.
pub fn start_cluster() -> Vec<Redis> {
    start_cluster_with(3, 0, vec![])
}

/// A Redis Cluster of `masters` masters with `replicas` replicas each (the
/// first `masters` nodes returned are the masters), `extra` arguments for
/// every `redis-server`.
pub fn start_cluster_with(masters: usize, replicas: usize, extra: Vec<&'static str>) -> Vec<Redis> {
    let nodes: Vec<Redis> = (0..masters * (1 + replicas))
        .map(|_| Redis::start_cluster_node_with(extra.clone()))
        .collect();
    let status = Command::new("redis-cli")
        .arg("--cluster")
        .arg("create")
        .args(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)))
        .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("redis-cli on PATH");
    assert!(status.success(), "redis-cli --cluster create failed");
    let deadline = std::time::Instant::now() + WAIT;
    for n in &nodes {
        loop {
            let mut c = redis::Client::open(n.url())
                .unwrap()
                .get_connection()
                .unwrap();
            let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut c).unwrap();
            if info.contains("cluster_state:ok") {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "cluster not ok");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    nodes
}
