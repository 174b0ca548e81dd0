//! Live video across nodes: one redis-server, three nodes sharing one
//! database; ffmpeg publishes to node 1's RTMP, viewers play from nodes 2
//! and 3 (HTTP-FLV, WebSocket-FLV and HLS, read by ffprobe and our FLV
//! reader). Each edge pulls the stream from node 1 once, however many
//! viewers it has, and stops when they leave. Every wait is bounded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::live::{
    Ffmpeg, FlvReader, assert_h264_aac_640x360, ffprobe_streams, read_flv_body, read_ws_flv,
};
use common::redis::Redis;
use common::{Session, TestServer, metric};
use futures_util::StreamExt as _;

const SECRET: &str = "cluster-live-test-secret";

fn node(c: &mut roadhub::Config, redis: &Redis, id: &str, db_url: Option<&str>) {
    c.redis.url = Some(redis.url());
    c.node.id = id.into();
    c.node.cluster_secret = Some(SECRET.into());
    c.auth.jwt_secret = Some("cluster-live-test-jwt-".repeat(3));
    c.live.idle_timeout_secs = 2;
    c.live.publisher_grace_secs = 2;
    if let Some(url) = db_url {
        c.database.url = url.to_owned();
    }
}

/// `count` nodes (`node-1`, `node-2`, ...) on `redis` and one database,
/// each also adjusted by `adjust`.
async fn start_nodes(
    redis: &Redis,
    count: usize,
    adjust: impl Fn(&mut roadhub::Config),
) -> Vec<TestServer> {
    let mut nodes: Vec<TestServer> = Vec::with_capacity(count);
    for i in 1..=count {
        let db = nodes.first().map(|n| n.config.database.url.clone());
        nodes.push(
            TestServer::start_with(|c| {
                node(c, redis, &format!("node-{i}"), db.as_deref());
                adjust(c);
            })
            .await,
        );
    }
    nodes
}

/// The node the stream registry names as `key`'s origin.
fn registry_origin(redis: &Redis, key: &str) -> Option<String> {
    let raw = redis.get(&format!("rh:stream:{key}"))?;
    let entry: serde_json::Value = serde_json::from_str(&raw).unwrap();
    entry["node"].as_str().map(str::to_owned)
}

/// ffmpeg publishing `key` to `node`'s RTMP for 60 s, returned once the
/// stream registry names `node` as the origin (bounded wait).
async fn publish_on(redis: &Redis, node: &TestServer, key: &str, token: &str) -> Ffmpeg {
    let ffmpeg = Ffmpeg::publish(
        &format!("rtmp://{}/live/{key}?token={token}", node.rtmp_addr),
        60,
    );
    let id = node.config.node.id.as_str();
    eventually(
        &format!("{id} registered"),
        Duration::from_secs(15),
        || async { registry_origin(redis, key).as_deref() == Some(id) },
    )
    .await;
    ffmpeg
}

/// Wait (up to `within`) until `f` answers true.
async fn eventually<F, Fut>(what: &str, within: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn flv_url(server: &TestServer, key: &str, owner: &Session) -> String {
    format!("{}/live/{key}.flv?token={}", server.base, owner.access)
}

/// Read an HTTP-FLV body for `dur`.
async fn read_flv(url: String, dur: Duration) -> FlvReader {
    let res = reqwest::get(&url).await.unwrap();
    assert_eq!(res.status(), 200, "{url}");
    read_flv_body(res, dur).await
}

fn assert_starts_at_a_keyframe(reader: &FlvReader) {
    let tags = &reader.tags;
    assert_eq!(
        tags.first().map(|t| t.tag_type),
        Some(18),
        "onMetaData first"
    );
    assert!(tags.iter().any(|t| t.is_video_config()), "AVC header");
    let first = tags
        .iter()
        .find(|t| t.is_video() && !t.is_video_config())
        .expect("video frames");
    assert!(first.is_keyframe(), "starts at a keyframe");
    let video = reader.video_timestamps();
    assert!(video.len() > 20, "{} video tags", video.len());
    for w in video.windows(2) {
        assert!(w[1] >= w[0], "video DTS went back: {} then {}", w[0], w[1]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_published_on_one_node_plays_on_every_node_through_one_pull_per_edge() {
    let redis = Redis::start();
    let nodes = start_nodes(&redis, 3, |_| {}).await;
    let (n1, n2, n3) = (&nodes[0], &nodes[1], &nodes[2]);

    let api = n1.api();
    let owner = api.new_user("owner@example.com").await;
    let v = api.new_vehicle(&owner, "EDGE-1").await;
    let vehicle = v["id"].as_i64().unwrap();
    let key = format!("{vehicle}-front");
    let client = reqwest::Client::new();

    // Unknown streams: 404 at once on an edge (nothing published anywhere,
    // the device is not connected).
    let started = Instant::now();
    let res = client.get(flv_url(n2, &key, &owner)).send().await.unwrap();
    assert_eq!(res.status(), 404);
    assert!(started.elapsed() < Duration::from_secs(2));

    let device_token = v["device_token"].as_str().unwrap();
    let _ffmpeg = Ffmpeg::publish(
        &format!("rtmp://{}/live/{key}?token={device_token}", n1.rtmp_addr),
        90,
    );
    eventually(
        "the stream is live on node 1",
        Duration::from_secs(15),
        || {
            let c = client.clone();
            let url = flv_url(n1, &key, &owner);
            async move { c.get(url).send().await.is_ok_and(|r| r.status() == 200) }
        },
    )
    .await;

    // The registry names node 1, with a TTL.
    let entry: serde_json::Value =
        serde_json::from_str(&redis.get(&format!("rh:stream:{key}")).unwrap()).unwrap();
    assert_eq!(entry["node"], "node-1", "{entry}");
    assert_eq!(entry["url"], n1.base.as_str(), "{entry}");
    let ttl = redis.pttl(&format!("rh:stream:{key}"));
    assert!((1..=30_000).contains(&ttl), "PTTL {ttl}");

    // The internal endpoint: the cluster secret, a stream published here.
    let internal = format!("{}/internal/live/{key}.flv", n1.base);
    for secret in [None, Some("wrong")] {
        let mut req = client.get(&internal);
        if let Some(s) = secret {
            req = req.header("x-roadhub-cluster-secret", s);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 401);
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "bad_cluster_secret", "{body}");
    }
    let started = Instant::now();
    for unknown in [
        format!("{}/internal/live/{vehicle}-rear.flv", n1.base),
        format!("{}/internal/live/nonsense.flv", n1.base),
        // Node 2 does not publish it (and does not pull it for this).
        format!("{}/internal/live/{key}.flv", n2.base),
    ] {
        let res = client
            .get(&unknown)
            .header("x-roadhub-cluster-secret", SECRET)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 404, "{unknown}");
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(metric(&n2.base, "roadhub_live_edge_pulls_total").await, 0.0);

    // A viewer on node 2 holds its edge pull open for the whole test.
    let holder = tokio::spawn(read_flv(flv_url(n2, &key, &owner), Duration::from_secs(12)));
    eventually("node 2 pulls", Duration::from_secs(10), || async {
        metric(&n2.base, "roadhub_live_edge_pulls_active").await == 1.0
    })
    .await;

    // ffprobe on node 2 (HTTP-FLV) and several concurrent viewers on
    // node 3 arriving at once, then HLS on node 3.
    let url = flv_url(n2, &key, &owner);
    let probe = tokio::task::spawn_blocking(move || ffprobe_streams(&url));
    let viewers: Vec<_> = (0..5)
        .map(|_| tokio::spawn(read_flv(flv_url(n3, &key, &owner), Duration::from_secs(3))))
        .collect();
    assert_h264_aac_640x360(&probe.await.unwrap());
    for v in viewers {
        assert_starts_at_a_keyframe(&v.await.unwrap());
    }
    // WebSocket-FLV on node 3, from the same pull.
    let ws_url = flv_url(n3, &key, &owner).replacen("http://", "ws://", 1);
    let mut ws_flv = FlvReader::default();
    ws_flv.feed(&read_ws_flv(&ws_url, Duration::from_secs(2)).await);
    assert_starts_at_a_keyframe(&ws_flv);
    let hls = format!("{}/live/{key}/index.m3u8?token={}", n3.base, owner.access);
    let probe = tokio::task::spawn_blocking(move || ffprobe_streams(&hls));
    assert_h264_aac_640x360(&probe.await.unwrap());
    assert_starts_at_a_keyframe(&holder.await.unwrap());

    // Node 1 served one pull per edge, each edge pulled once.
    assert_eq!(
        metric(&n1.base, "roadhub_live_internal_pulls_total").await,
        2.0
    );
    assert_eq!(metric(&n2.base, "roadhub_live_edge_pulls_total").await, 1.0);
    assert_eq!(metric(&n3.base, "roadhub_live_edge_pulls_total").await, 1.0);
    assert_eq!(metric(&n1.base, "roadhub_live_edge_pulls_total").await, 0.0);
    // An edge's bytes are not publisher bytes (usage is the origin's).
    assert_eq!(
        metric(&n2.base, "roadhub_live_received_bytes_total").await,
        0.0
    );
    assert!(metric(&n2.base, "roadhub_live_edge_received_bytes_total").await > 10_000.0);

    // The viewers gone (HLS counts for 10 s), the edges stop pulling and
    // node 1 serves no internal viewer any more.
    eventually("the edge pulls stop", Duration::from_secs(30), || async {
        metric(&n2.base, "roadhub_live_edge_pulls_active").await == 0.0
            && metric(&n3.base, "roadhub_live_edge_pulls_active").await == 0.0
            && metric(&n1.base, "roadhub_live_viewers{protocol=\"internal\"}").await == 0.0
    })
    .await;
    // Node 1 still publishes: its entry stays.
    assert!(redis.get(&format!("rh:stream:{key}")).is_some());

    // The publisher leaves: the entry is deleted.
    drop(_ffmpeg);
    eventually(
        "the registry entry goes",
        Duration::from_secs(10),
        || async { redis.get(&format!("rh:stream:{key}")).is_none() },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_moving_to_another_node_keeps_its_registry_entry() {
    let redis = Redis::start();
    // TTL 3 s: the entry is refreshed every second.
    let nodes = start_nodes(&redis, 2, |c| c.node.presence_ttl_secs = 3).await;
    let (n1, n2) = (&nodes[0], &nodes[1]);
    let api = n1.api();
    let owner = api.new_user("mover@example.com").await;
    let v = api.new_vehicle(&owner, "EDGE-2").await;
    let key = format!("{}-front", v["id"].as_i64().unwrap());
    let token = v["device_token"].as_str().unwrap();
    let rkey = format!("rh:stream:{key}");

    let first = publish_on(&redis, n1, &key, token).await;
    // The device publishes to node 2 as well (it moved): the newest wins
    // and node 1's refreshes do not take the entry back.
    let _second = publish_on(&redis, n2, &key, token).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(registry_origin(&redis, &key).as_deref(), Some("node-2"));
    // Node 1's publisher leaves: its compare-and-delete spares node 2's entry.
    drop(first);
    eventually("node 1 unpublished", Duration::from_secs(10), || async {
        metric(&n1.base, "roadhub_live_publishers").await == 0.0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(registry_origin(&redis, &key).as_deref(), Some("node-2"));
    assert!(redis.pttl(&rkey) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_internal_endpoint_is_404_on_a_single_node() {
    let server = TestServer::start().await;
    let res = reqwest::Client::new()
        .get(format!("{}/internal/live/1-front.flv", server.base))
        .header("x-roadhub-cluster-secret", SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

/// The device's stream moves from node 1 to node 3 (it reconnected there)
/// while a viewer plays it on node 2: node 2's edge pull follows it to
/// node 3 within the grace period and the viewer's FLV goes on, one
/// connection, timestamps never going back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_follows_a_stream_that_moves_to_another_node() {
    let redis = Redis::start();
    let nodes = start_nodes(&redis, 3, |c| c.live.publisher_grace_secs = 8).await;
    let (n1, n2, n3) = (&nodes[0], &nodes[1], &nodes[2]);
    let api = n1.api();
    let owner = api.new_user("follow@example.com").await;
    let v = api.new_vehicle(&owner, "EDGE-3").await;
    let key = format!("{}-front", v["id"].as_i64().unwrap());
    let token = v["device_token"].as_str().unwrap().to_string();

    let first = publish_on(&redis, n1, &key, &token).await;
    // One viewer on node 2, read in the background.
    let url = flv_url(n2, &key, &owner);
    let res = reqwest::get(&url).await.unwrap();
    assert_eq!(res.status(), 200);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<bytes::Bytes>();
    let reader_task = tokio::spawn(async move {
        let mut body = res.bytes_stream();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
        while let Ok(Some(Ok(b))) = tokio::time::timeout_at(deadline, body.next()).await {
            if tx.send(b).is_err() {
                break;
            }
        }
    });
    let mut reader = FlvReader::default();
    let video_frames = |reader: &FlvReader| reader.video_timestamps().len();
    let read_until = async |reader: &mut FlvReader,
                            rx: &mut tokio::sync::mpsc::UnboundedReceiver<bytes::Bytes>,
                            frames: usize,
                            within: Duration| {
        let deadline = tokio::time::Instant::now() + within;
        while video_frames(reader) < frames {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(b)) => reader.feed(&b),
                _ => return false,
            }
        }
        true
    };
    assert!(
        read_until(&mut reader, &mut rx, 30, Duration::from_secs(15)).await,
        "video from node 1 through node 2"
    );
    // The device goes to node 3: node 1's publisher leaves (node 1 holds
    // its viewers for the grace period), node 3 becomes the origin.
    drop(first);
    let _second = publish_on(&redis, n3, &key, &token).await;
    let moved = Instant::now();
    let before = video_frames(&reader);
    // Well within the 8 s grace: the same viewer gets node 3's video.
    assert!(
        read_until(&mut reader, &mut rx, before + 30, Duration::from_secs(6)).await,
        "the viewer on node 2 got no video from node 3 ({} frames, {:?} after the move)",
        video_frames(&reader),
        moved.elapsed()
    );
    eprintln!("video from node 3 after {:?}", moved.elapsed());
    assert_eq!(
        metric(&n3.base, "roadhub_live_internal_pulls_total").await,
        1.0
    );
    assert_eq!(metric(&n2.base, "roadhub_live_edge_pulls_total").await, 1.0);
    let ts = reader.video_timestamps();
    assert!(
        ts.windows(2).all(|w| w[0] <= w[1]),
        "timestamps went back: {ts:?}"
    );
    drop(rx);
    reader_task.abort();
}
