//! The bus: in-process, and over a real `redis-server` (sharded pub/sub)
//! started by each test on a free loopback port.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::redis::Redis;

use bytes::Bytes;
use roadhub::bus::{Bus, BusStatus, LocalBus, RedisBus, RedisTarget, Subscription};
use tokio::time::{Instant, sleep, timeout};

const WAIT: Duration = Duration::from_secs(10);

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        sleep(Duration::from_millis(20)).await;
    }
}

async fn recv(sub: &mut Subscription) -> (String, Bytes) {
    let m = timeout(WAIT, sub.recv())
        .await
        .expect("a message in time")
        .expect("bus alive");
    (String::from_utf8(m.origin.to_vec()).unwrap(), m.frame)
}

/// Nothing more arrives within a short while.
async fn quiet(sub: &mut Subscription) {
    if let Ok(m) = timeout(Duration::from_millis(300), sub.recv()).await {
        panic!("unexpected message {m:?}");
    }
}

fn redis_bus(id: &str, r: &Redis) -> Bus {
    Bus::Redis(RedisBus::new(id, RedisTarget::Single(r.url())).unwrap())
}

#[tokio::test]
async fn local_bus_delivers_to_topic_subscribers_only() {
    let bus = Bus::Local(LocalBus::new("solo").unwrap());
    assert_eq!(bus.status(), BusStatus::Local);
    let mut a = bus.subscribe("vehicle:1");
    let mut b = bus.subscribe("vehicle:1");
    let mut other = bus.subscribe("vehicle:2");
    bus.publish("vehicle:1", Bytes::from_static(b"frame"));
    assert_eq!(
        recv(&mut a).await,
        ("solo".into(), Bytes::from_static(b"frame"))
    );
    assert_eq!(
        recv(&mut b).await,
        ("solo".into(), Bytes::from_static(b"frame"))
    );
    quiet(&mut other).await;
    quiet(&mut a).await;
}

#[tokio::test]
async fn a_subscriber_that_falls_behind_loses_the_oldest_and_is_counted() {
    let bus = Bus::Local(LocalBus::new("solo").unwrap());
    let mut slow = bus.subscribe("vehicle:1");
    assert!(*slow.ready().borrow(), "the local bus is ready at once");
    let extra = 10u64;
    for i in 0..roadhub::bus::SUBSCRIPTION_CAPACITY as u64 + extra {
        bus.publish("vehicle:1", Bytes::from(i.to_string()));
    }
    // The first message received is the oldest kept.
    let (_, frame) = recv(&mut slow).await;
    assert_eq!(frame, Bytes::from(extra.to_string()));
    assert_eq!(slow.lagged(), extra);
    assert_eq!(bus.lagged(), extra);
    assert_eq!(bus.dropped(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cross_node_delivery_once_and_refcounted_subscriptions() {
    let r = Redis::start();
    let a = redis_bus("node-a", &r);
    let b = redis_bus("node-b", &r);
    eventually("both connected", || {
        a.status() == BusStatus::Connected && b.status() == BusStatus::Connected
    })
    .await;

    // Only B has members: only B is subscribed in Redis.
    let mut b1 = b.subscribe("vehicle:7");
    eventually("B subscribed", || r.shard_subscribers("vehicle:7") == 1).await;
    a.publish("vehicle:7", Bytes::from_static(b"one"));
    assert_eq!(
        recv(&mut b1).await,
        ("node-a".into(), Bytes::from_static(b"one"))
    );

    // A gets a member: A's own publish reaches it once, B once.
    let mut a1 = a.subscribe("vehicle:7");
    eventually("A subscribed", || r.shard_subscribers("vehicle:7") == 2).await;
    a.publish("vehicle:7", Bytes::from_static(b"two"));
    assert_eq!(
        recv(&mut a1).await,
        ("node-a".into(), Bytes::from_static(b"two"))
    );
    assert_eq!(
        recv(&mut b1).await,
        ("node-a".into(), Bytes::from_static(b"two"))
    );
    quiet(&mut a1).await;
    quiet(&mut b1).await;

    // A second local member on B does not subscribe again; dropping one of
    // two keeps the subscription, dropping the last removes it.
    let b2 = b.subscribe("vehicle:7");
    sleep(Duration::from_millis(200)).await;
    assert_eq!(r.shard_subscribers("vehicle:7"), 2);
    drop(b1);
    sleep(Duration::from_millis(200)).await;
    assert_eq!(r.shard_subscribers("vehicle:7"), 2);
    drop(b2);
    eventually("B unsubscribed", || r.shard_subscribers("vehicle:7") == 1).await;
    drop(a1);
    eventually("A unsubscribed", || r.shard_subscribers("vehicle:7") == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_restores_subscriptions_and_local_delivery_goes_on() {
    let mut r = Redis::start();
    let a = redis_bus("node-a", &r);
    let b = redis_bus("node-b", &r);
    let mut a1 = a.subscribe("user:3");
    let mut b1 = b.subscribe("user:3");
    eventually("both subscribed", || r.shard_subscribers("user:3") == 2).await;

    r.kill();
    eventually("A sees Redis down", || {
        a.status() == BusStatus::Disconnected
    })
    .await;
    a.publish("user:3", Bytes::from_static(b"while down"));
    assert_eq!(
        recv(&mut a1).await,
        ("node-a".into(), Bytes::from_static(b"while down"))
    );
    quiet(&mut b1).await;

    r.spawn();
    eventually("both reconnected", || {
        a.status() == BusStatus::Connected && b.status() == BusStatus::Connected
    })
    .await;
    eventually("subscriptions restored", || {
        r.shard_subscribers("user:3") == 2
    })
    .await;
    a.publish("user:3", Bytes::from_static(b"back"));
    assert_eq!(
        recv(&mut b1).await,
        ("node-a".into(), Bytes::from_static(b"back"))
    );
    assert_eq!(
        recv(&mut a1).await,
        ("node-a".into(), Bytes::from_static(b"back"))
    );
    quiet(&mut a1).await;
}

/// Subscribers of a sharded channel over the whole cluster (a node that
/// does not own the channel's slot answers with a redirect: counted 0).
fn cluster_shard_subscribers(nodes: &[Redis], topic: &str) -> i64 {
    nodes
        .iter()
        .map(|n| n.try_shard_subscribers(topic).unwrap_or(0))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_cross_node_delivery() {
    let nodes = common::redis::start_cluster();
    let seeds: Vec<String> = nodes.iter().map(Redis::url).collect();
    let a = Bus::Redis(RedisBus::new("node-a", RedisTarget::Cluster(seeds.clone())).unwrap());
    let b = Bus::Redis(RedisBus::new("node-b", RedisTarget::Cluster(seeds)).unwrap());
    // Topics spread over the slots of all three masters.
    let topics: Vec<String> = (1..=12).map(|i| format!("vehicle:{i}")).collect();
    let mut a_subs: Vec<Subscription> = topics.iter().map(|t| a.subscribe(t)).collect();
    let mut b_subs: Vec<Subscription> = topics.iter().map(|t| b.subscribe(t)).collect();
    for t in &topics {
        eventually("both subscribed on the slot owner", || {
            cluster_shard_subscribers(&nodes, t) == 2
        })
        .await;
    }
    for t in &topics {
        a.publish(t, Bytes::from(t.clone()));
    }
    for (t, (sa, sb)) in topics.iter().zip(a_subs.iter_mut().zip(b_subs.iter_mut())) {
        assert_eq!(recv(sb).await, ("node-a".into(), Bytes::from(t.clone())));
        assert_eq!(recv(sa).await, ("node-a".into(), Bytes::from(t.clone())));
    }
    for s in a_subs.iter_mut().chain(b_subs.iter_mut()).take(2) {
        quiet(s).await;
    }
    drop(b_subs);
    for t in &topics {
        eventually("B unsubscribed", || {
            cluster_shard_subscribers(&nodes, t) == 1
        })
        .await;
    }
}

/// A master of a Redis Cluster dies: its replica takes over its slots, and
/// the nodes' sharded subscriptions on those slots come back, so rooms go
/// on across nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_failover_keeps_cross_node_delivery() {
    let mut nodes = common::redis::start_cluster_with(3, 1, vec!["--cluster-node-timeout", "1000"]);
    // Wait for the replicas to be attached and in sync.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut c = redis::Client::open(nodes[0].url())
            .unwrap()
            .get_connection()
            .unwrap();
        let info: String = redis::cmd("INFO").arg("replication").query(&mut c).unwrap();
        if info.contains("connected_slaves:1") && info.contains("state=online") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "replica of node 0 not online: {info}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let seeds: Vec<String> = nodes.iter().map(Redis::url).collect();
    let a = Bus::Redis(RedisBus::new("node-a", RedisTarget::Cluster(seeds.clone())).unwrap());
    let b = Bus::Redis(RedisBus::new("node-b", RedisTarget::Cluster(seeds)).unwrap());
    let topics: Vec<String> = (1..=12).map(|i| format!("vehicle:{i}")).collect();
    let mut b_subs: Vec<Subscription> = topics.iter().map(|t| b.subscribe(t)).collect();
    for t in &topics {
        eventually("B subscribed on the slot owner", || {
            cluster_shard_subscribers(&nodes, t) >= 1
        })
        .await;
    }
    for t in &topics {
        a.publish(t, Bytes::from(t.clone()));
    }
    for (t, sb) in topics.iter().zip(b_subs.iter_mut()) {
        assert_eq!(recv(sb).await, ("node-a".into(), Bytes::from(t.clone())));
    }
    // Some of the topics live on master 0.
    let on_master0 = topics
        .iter()
        .filter(|t| nodes[0].try_shard_subscribers(t).unwrap_or(0) == 1)
        .count();
    assert!(on_master0 > 0, "no topic on master 0");
    // Master 0 dies; its replica is promoted within a few node timeouts.
    nodes[0].kill();
    let survivors = &nodes[1..];
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    'ok: loop {
        for n in survivors {
            let ok = redis::Client::open(n.url())
                .and_then(|c| c.get_connection())
                .and_then(|mut c| redis::cmd("CLUSTER").arg("INFO").query::<String>(&mut c))
                .is_ok_and(|i| i.contains("cluster_state:ok"));
            if ok {
                break 'ok;
            }
        }
        assert!(std::time::Instant::now() < deadline, "no failover");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Every topic reaches B again, within a bound (publishes repeated:
    // while the subscriptions are being restored some may be missed).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    for (t, sb) in topics.iter().zip(b_subs.iter_mut()) {
        loop {
            a.publish(t, Bytes::from(format!("again {t}")));
            match tokio::time::timeout(Duration::from_millis(300), sb.recv()).await {
                Ok(Some(m)) if m.frame[..] == *format!("again {t}").as_bytes() => break,
                _ => {}
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{t} never reached node B after the failover"
            );
        }
    }
}
