//! RTMP ingest: blackboxes publish live video at
//! `rtmp://HOST:1935/live/{vehicle_id}-{channel}?token={device_token}`.
//!
//! Specifications: Adobe *Real-Time Messaging Protocol* (RTMP) 1.0
//! (<https://rtmp.veriskope.com/docs/spec/>) for the handshake, chunk
//! stream and commands; the message payloads are FLV tag bodies (Adobe FLV
//! spec v10.1 Annex E, Enhanced RTMP for `hvc1`), read by
//! [`crate::media::flv`]. The handshake, chunking and command state machine
//! are `rml_rtmp`'s (see docs/DECISIONS.md); this module is the socket
//! loop, authentication and limits around it.
//!
//! - `connect` must name the application `live`; its query (from the
//!   tcUrl/app, e.g. `live?token=...`) may carry the token.
//! - `publish` names the stream key `{vehicle_id}-{channel}`, optionally
//!   followed by `?token=...` (ffmpeg sends the URL's query there). The
//!   token must be the vehicle's device token (stored hashed). Anything
//!   else: an `onStatus` error, then the connection is closed.
//! - One publisher per key: a second publish replaces the first, whose
//!   connection is closed ([`Publisher::replaced`]).
//! - Limits: the handshake and publish must complete within
//!   `rtmp.handshake_timeout_secs`; a publisher silent for
//!   `rtmp.read_timeout_secs` is closed; a client may send at most
//!   `rtmp.max_unauthenticated_bytes` before its publish is accepted and
//!   announce chunks of at most `rtmp.max_chunk_size`. An RTMP message is
//!   at most 16 MiB by its 24-bit length field, so that bounds what one
//!   publisher can make the node buffer. Garbage closes the connection.
//! - Playing over RTMP is refused: viewers use HTTP-FLV, WS-FLV or HLS.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult, StreamMetadata,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument as _;

use crate::auth::JwtKeys;
use crate::config::RtmpConfig;
use crate::live::ports::PublishAuth;
use crate::live::stream::{Publisher, PublisherInfo, StreamKey, Streams};
use crate::media::flv::{self, Metadata};

/// The application name publishers connect to.
pub const APP: &str = "live";

/// Why an RTMP connection ended early.
#[derive(Debug, thiserror::Error)]
pub enum RtmpError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("timed out: {0}")]
    Timeout(&'static str),
    #[error("handshake: {0}")]
    Handshake(String),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("limit: {0}")]
    Limit(&'static str),
    #[error("refused: {0}")]
    Refused(&'static str),
}

/// What every RTMP connection needs.
#[derive(Clone)]
pub struct RtmpContext {
    pub streams: Streams,
    /// Device tokens (the vehicles').
    pub auth: Arc<dyn PublishAuth>,
    pub config: RtmpConfig,
    /// Verifies the publish tokens of on-demand `live.start` URLs.
    pub jwt: JwtKeys,
}

/// Accept publishers on `listener` until `stop` turns true. Connections
/// run on the calling arbiter. Must run inside an actix System.
pub async fn run(
    listener: std::net::TcpListener,
    ctx: RtmpContext,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let ctx = Arc::new(ctx);
    let connections = tokio_util::task::TaskTracker::new();
    let stop_conns = stop.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let _ = socket.set_nodelay(true);
                    let ctx = ctx.clone();
                    let span = tracing::info_span!("rtmp", %peer);
                    let mut stop = stop_conns.clone();
                    actix_rt::spawn(connections.track_future(async move {
                        tokio::select! {
                            res = connection(socket, peer, ctx) => match res {
                                Ok(()) => tracing::debug!("connection closed"),
                                Err(e) => tracing::info!(error = %e, "connection closed"),
                            },
                            _ = stop.wait_for(|s| *s) => {}
                        }
                    }.instrument(span)));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "RTMP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    connections.close();
    let _ = tokio::time::timeout(Duration::from_secs(2), connections.wait()).await;
    Ok(())
}

/// Read buffer per connection.
const READ_BUF: usize = 64 * 1024;

/// One publisher's connection: the handshake, then RTMP messages until
/// it leaves, breaks a limit or is replaced.
async fn connection(
    mut socket: TcpStream,
    peer: SocketAddr,
    ctx: Arc<RtmpContext>,
) -> Result<(), RtmpError> {
    let start_deadline =
        Instant::now() + Duration::from_secs(ctx.config.handshake_timeout_secs.max(1));
    let mut buf = vec![0u8; READ_BUF];
    let Some((received, remaining)) =
        handshake(&mut socket, &mut buf, &ctx.config, start_deadline).await?
    else {
        return Ok(());
    };
    let (session, results) = ServerSession::new(ServerSessionConfig::new())
        .map_err(|e| RtmpError::Protocol(format!("{e:?}")))?;
    let mut conn = Conn {
        ctx: ctx.clone(),
        peer,
        session,
        publisher: None,
        app_token: None,
        received_unauthenticated: received,
        out: Vec::new(),
        media_errors: 0,
    };
    conn.outbound(results);
    let res = conn.input(&remaining).await;
    conn.flush(&mut socket).await?;
    res?;
    conn.serve(&mut socket, &mut buf, start_deadline).await
}

/// The RTMP handshake, by `start_deadline`: the bytes received and those
/// past the handshake, or `None` when the client left first.
async fn handshake(
    socket: &mut TcpStream,
    buf: &mut [u8],
    config: &RtmpConfig,
    start_deadline: Instant,
) -> Result<Option<(usize, Vec<u8>)>, RtmpError> {
    let mut handshake = Handshake::new(PeerType::Server);
    let mut received = 0usize;
    loop {
        let n = tokio::time::timeout_at(start_deadline, socket.read(buf))
            .await
            .map_err(|_| RtmpError::Timeout("handshake"))??;
        if n == 0 {
            return Ok(None);
        }
        received += n;
        if received > config.max_unauthenticated_bytes.max(8192) {
            return Err(RtmpError::Limit("handshake too long"));
        }
        match handshake.process_bytes(&buf[..n]) {
            Ok(HandshakeProcessResult::InProgress { response_bytes }) => {
                socket.write_all(&response_bytes).await?;
            }
            Ok(HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            }) => {
                socket.write_all(&response_bytes).await?;
                return Ok(Some((received, remaining_bytes)));
            }
            Err(e) => return Err(RtmpError::Handshake(format!("{e:?}"))),
        }
    }
}

struct Conn {
    ctx: Arc<RtmpContext>,
    peer: SocketAddr,
    session: ServerSession,
    publisher: Option<Publisher>,
    /// A token given in the `connect` app name / tcUrl query.
    app_token: Option<String>,
    /// Bytes received while no publish was accepted; `usize::MAX` marks
    /// "published once" (the budget no longer applies).
    received_unauthenticated: usize,
    out: Vec<u8>,
    media_errors: u64,
}

/// Splits `name?query`.
fn split_query(s: &str) -> (&str, &str) {
    s.split_once('?').unwrap_or((s, ""))
}

/// The `token` parameter of a query string.
fn token_in(query: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "token")
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty())
}

fn to_metadata(m: &StreamMetadata) -> Metadata {
    Metadata {
        width: m.video_width,
        height: m.video_height,
        frame_rate: m.video_frame_rate.map(f64::from),
        video_codec: None,
        video_data_rate_kbps: m.video_bitrate_kbps.map(f64::from),
        audio_sample_rate: m.audio_sample_rate,
        audio_channels: m.audio_channels.and_then(|c| u8::try_from(c).ok()),
    }
}

impl Conn {
    /// Read and handle messages until the client leaves, a limit or
    /// timeout is hit, or another publisher takes the stream.
    async fn serve(
        &mut self,
        socket: &mut TcpStream,
        buf: &mut [u8],
        start_deadline: Instant,
    ) -> Result<(), RtmpError> {
        let read_timeout = Duration::from_secs(self.ctx.config.read_timeout_secs.max(1));
        loop {
            // Before its first publish a client has until the start
            // deadline; then each read has the read timeout.
            let deadline = if self.publisher.is_some() || self.published_once() {
                Instant::now() + read_timeout
            } else {
                start_deadline
            };
            let what = if self.publisher.is_some() {
                "read"
            } else {
                "publish"
            };
            let read = tokio::select! {
                read = tokio::time::timeout_at(deadline, socket.read(buf)) => read,
                () = self.replaced() => {
                    tracing::info!("another publisher took the stream: closing");
                    return Ok(());
                }
            };
            let n = read.map_err(|_| RtmpError::Timeout(what))??;
            if n == 0 {
                return Ok(());
            }
            let res = self.input(&buf[..n]).await;
            self.flush(socket).await?;
            res?;
            // Read on only once the stream keeps up (back-pressure through
            // TCP).
            if let Some(publisher) = &self.publisher {
                publisher.ready().await;
            }
        }
    }

    fn published_once(&self) -> bool {
        self.received_unauthenticated == usize::MAX
    }

    async fn replaced(&mut self) {
        match &mut self.publisher {
            Some(p) => p.replaced().await,
            None => std::future::pending().await,
        }
    }

    fn outbound(&mut self, results: Vec<ServerSessionResult>) {
        for r in results {
            if let ServerSessionResult::OutboundResponse(packet) = r {
                self.out.extend_from_slice(&packet.bytes);
            }
        }
    }

    async fn flush(&mut self, socket: &mut TcpStream) -> Result<(), RtmpError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        tokio::time::timeout(Duration::from_secs(10), socket.write_all(&out))
            .await
            .map_err(|_| RtmpError::Timeout("write"))??;
        Ok(())
    }

    async fn input(&mut self, bytes: &[u8]) -> Result<(), RtmpError> {
        if bytes.is_empty() {
            return Ok(());
        }
        match &self.publisher {
            Some(p) => p.bytes_in(bytes.len() as u64),
            None if !self.published_once() => {
                self.received_unauthenticated += bytes.len();
                if self.received_unauthenticated > self.ctx.config.max_unauthenticated_bytes {
                    return Err(RtmpError::Limit("too many bytes before publish"));
                }
            }
            None => {}
        }
        // rml_rtmp is not meant to panic, but this is network input: a
        // panic in the parser closes this connection only.
        let session = &mut self.session;
        let results =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| session.handle_input(bytes)))
                .map_err(|_| RtmpError::Protocol("the chunk parser failed".into()))?
                .map_err(|e| RtmpError::Protocol(format!("{e}")))?;
        for result in results {
            match result {
                ServerSessionResult::OutboundResponse(packet) => {
                    self.out.extend_from_slice(&packet.bytes);
                }
                ServerSessionResult::RaisedEvent(event) => self.event(event).await?,
                ServerSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
        Ok(())
    }

    fn reject(&mut self, request_id: u32, code: &str, description: &str) {
        if let Ok(results) = self.session.reject_request(request_id, code, description) {
            self.outbound(results);
        }
    }

    fn accept(&mut self, request_id: u32) -> Result<(), RtmpError> {
        let results = self
            .session
            .accept_request(request_id)
            .map_err(|e| RtmpError::Protocol(format!("{e}")))?;
        self.outbound(results);
        Ok(())
    }

    async fn event(&mut self, event: ServerSessionEvent) -> Result<(), RtmpError> {
        match event {
            ServerSessionEvent::ClientChunkSizeChanged { new_chunk_size }
                if new_chunk_size > self.ctx.config.max_chunk_size =>
            {
                return Err(RtmpError::Limit("chunk size"));
            }
            ServerSessionEvent::ConnectionRequested {
                request_id,
                app_name,
            } => {
                let (app, query) = split_query(&app_name);
                if app.trim_end_matches('/') != APP {
                    self.reject(
                        request_id,
                        "NetConnection.Connect.Rejected",
                        "unknown application",
                    );
                    return Err(RtmpError::Refused("unknown application"));
                }
                self.app_token = token_in(query);
                self.accept(request_id)?;
            }
            ServerSessionEvent::ReleaseStreamRequested { request_id, .. } => {
                self.accept(request_id)?;
            }
            ServerSessionEvent::PublishStreamRequested {
                request_id,
                stream_key,
                ..
            } => self.publish(request_id, &stream_key).await?,
            ServerSessionEvent::PublishStreamFinished { .. } => {
                if let Some(p) = self.publisher.take() {
                    tracing::info!(stream = %p.key(), "publish finished");
                }
            }
            ServerSessionEvent::StreamMetadataChanged { metadata, .. } => {
                if let Some(p) = &self.publisher {
                    p.metadata(to_metadata(&metadata));
                }
            }
            ServerSessionEvent::VideoDataReceived {
                data, timestamp, ..
            } => self.media(true, timestamp.value, data),
            ServerSessionEvent::AudioDataReceived {
                data, timestamp, ..
            } => self.media(false, timestamp.value, data),
            ServerSessionEvent::PlayStreamRequested { request_id, .. } => {
                self.reject(
                    request_id,
                    "NetStream.Play.Failed",
                    "play over RTMP is not offered: use HTTP-FLV, WebSocket-FLV or HLS",
                );
                return Err(RtmpError::Refused("play over RTMP"));
            }
            _ => {}
        }
        Ok(())
    }

    fn media(&mut self, video: bool, timestamp_ms: u32, data: Bytes) {
        let Some(publisher) = &self.publisher else {
            return;
        };
        let parsed = if video {
            flv::parse_video_tag(timestamp_ms, data)
        } else {
            flv::parse_audio_tag(timestamp_ms, data)
        };
        match parsed {
            Ok(Some(payload)) => publisher.push(payload),
            Ok(None) => {}
            Err(e) => {
                self.media_errors += 1;
                if self.media_errors.is_power_of_two() {
                    tracing::warn!(stream = %publisher.key(), error = %e, count = self.media_errors, "media payload dropped");
                }
            }
        }
    }

    async fn publish(&mut self, request_id: u32, stream_key: &str) -> Result<(), RtmpError> {
        let refuse = |this: &mut Self, code: &str, why: &'static str| {
            this.ctx.streams.metrics().publish_refused.inc();
            this.reject(request_id, code, why);
            tracing::info!(key = %stream_key, reason = why, "publish refused");
            Err(RtmpError::Refused(why))
        };
        if self.publisher.is_some() {
            return refuse(
                self,
                "NetStream.Publish.BadConnection",
                "already publishing",
            );
        }
        let (name, query) = split_query(stream_key);
        let Some(key) = StreamKey::parse(name) else {
            return refuse(self, "NetStream.Publish.BadName", "bad stream key");
        };
        let Some(token) = token_in(query).or_else(|| self.app_token.clone()) else {
            return refuse(self, "NetStream.Publish.Unauthorized", "no token");
        };
        if token.len() > 1024 {
            return refuse(self, "NetStream.Publish.Unauthorized", "bad token");
        }
        // A publish token the hub issued for exactly this stream key (an
        // on-demand `live.start`), or else the vehicle's device token.
        let signed = self
            .ctx
            .jwt
            .verify_publish(&token)
            .is_some_and(|k| k == key.to_string());
        let found = if signed {
            Ok(None)
        } else {
            self.ctx.auth.device_token_vehicle(token).await
        };
        let vehicle = match found {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "publish: database error");
                self.reject(request_id, "NetStream.Publish.Failed", "unavailable");
                return Err(RtmpError::Refused("database unavailable"));
            }
        };
        match vehicle {
            _ if signed => {}
            Some(v) if v == key.vehicle_id => {}
            Some(_) => {
                return refuse(
                    self,
                    "NetStream.Publish.Unauthorized",
                    "the token is not this vehicle's",
                );
            }
            None => return refuse(self, "NetStream.Publish.Unauthorized", "bad token"),
        }
        let info = PublisherInfo {
            protocol: "rtmp",
            remote: Some(self.peer),
        };
        let publisher = match self.ctx.streams.publish(key.clone(), info).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(stream = %key, error = %e, "publish failed");
                self.reject(request_id, "NetStream.Publish.Failed", "unavailable");
                return Err(RtmpError::Refused("stream unavailable"));
            }
        };
        self.accept(request_id)?;
        tracing::info!(stream = %key, vehicle = key.vehicle_id, "publishing");
        self.publisher = Some(publisher);
        self.received_unauthenticated = usize::MAX;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_from_queries() {
        assert_eq!(split_query("5-front?token=abc"), ("5-front", "token=abc"));
        assert_eq!(split_query("live"), ("live", ""));
        assert_eq!(token_in("a=1&token=xyz"), Some("xyz".into()));
        assert_eq!(token_in("token="), None);
        assert_eq!(token_in(""), None);
    }
}
