//! A connection's outbound queue and its WebSocket writer.
//!
//! Policy for a client that reads too slowly (stated in
//! `docs/REALTIME.md`): frames queue in order; once more than
//! `queue_soft_frames` are waiting, a coalescible frame (a vehicle's live
//! position) replaces the queued frame with the same key instead of adding
//! one (the client gets the newest position); acks, events and presence
//! are never dropped; a client whose queue passes `queue_hard_bytes`, or
//! stays above the soft limit for `slow_timeout`, is disconnected.
//!
//! The writer takes everything queued at each wakeup, feeds it to the
//! WebSocket and flushes once: under load many frames share one write.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Instant;

use futures_util::SinkExt as _;
use futures_util::stream::SplitSink;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::frame::{Frame, FrameClass};
use super::server::EngineConfig;

pub(crate) type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// What happened to a pushed frame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pushed {
    Queued,
    Coalesced,
    /// The client is too far behind: close it.
    TooSlow,
}

#[derive(Default)]
pub(crate) struct OutQueue {
    frames: VecDeque<Frame>,
    bytes: usize,
    over_soft_since: Option<Instant>,
    /// No more frames: the writer sends a close frame and ends.
    pub closed: bool,
    /// The close frame's code, if not a plain close.
    pub close_code: Option<CloseCode>,
}

impl OutQueue {
    pub fn push(&mut self, frame: Frame, config: &EngineConfig) -> Pushed {
        if self.frames.len() >= config.queue_soft_frames {
            if let Some(since) = self.over_soft_since
                && since.elapsed() > config.slow_timeout
            {
                return Pushed::TooSlow;
            }
            if let FrameClass::Coalesce(key) = frame.class
                && let Some(old) = self
                    .frames
                    .iter_mut()
                    .rev()
                    .find(|f| f.class == FrameClass::Coalesce(key))
            {
                self.bytes = self.bytes - old.len() + frame.len();
                *old = frame;
                return Pushed::Coalesced;
            }
        } else {
            self.over_soft_since = None;
        }
        self.bytes += frame.len();
        self.frames.push_back(frame);
        if self.frames.len() >= config.queue_soft_frames && self.over_soft_since.is_none() {
            self.over_soft_since = Some(Instant::now());
        }
        if self.bytes > config.queue_hard_bytes {
            return Pushed::TooSlow;
        }
        Pushed::Queued
    }

    /// Everything queued, oldest first.
    pub fn take(&mut self) -> VecDeque<Frame> {
        self.bytes = 0;
        std::mem::take(&mut self.frames)
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
}

/// The queue shared by a connection actor and its writer (same thread).
#[derive(Clone, Default)]
pub(crate) struct SharedQueue {
    pub queue: Rc<RefCell<OutQueue>>,
    /// The writer, while it sleeps on an empty queue: a push wakes it
    /// once; pushes while it is scheduled or writing cost nothing more.
    writer: Rc<Cell<Option<Waker>>>,
}

impl SharedQueue {
    pub fn push(&self, frame: Frame, config: &EngineConfig) -> Pushed {
        let pushed = self.queue.borrow_mut().push(frame, config);
        self.wake_writer();
        pushed
    }

    /// No more frames; on WebSocket, close with `code` (none: no code).
    pub fn close(&self, code: Option<CloseCode>) {
        {
            let mut q = self.queue.borrow_mut();
            q.closed = true;
            q.close_code = code;
        }
        self.wake_writer();
    }

    fn wake_writer(&self) {
        if let Some(waker) = self.writer.take() {
            waker.wake();
        }
    }

    /// Until there is something to write, or the queue is closed.
    async fn ready(&self) {
        std::future::poll_fn(|cx| {
            let q = self.queue.borrow();
            if q.is_empty() && !q.closed {
                self.writer.set(Some(cx.waker().clone()));
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await;
    }
}

/// Write queued frames to the WebSocket until the queue closes or the
/// socket fails. Returns when done; the read side notices the close.
pub(crate) async fn ws_writer(mut sink: SplitSink<Ws, Message>, shared: SharedQueue) {
    loop {
        let (batch, closed, code) = {
            let mut q = shared.queue.borrow_mut();
            (q.take(), q.closed, q.close_code)
        };
        if batch.is_empty() {
            if closed {
                let frame = code.map(|code| CloseFrame {
                    code,
                    reason: Default::default(),
                });
                let _ = sink.send(Message::Close(frame)).await;
                let _ = sink.close().await;
                return;
            }
            shared.ready().await;
            continue;
        }
        for frame in batch {
            if !frame.text.is_empty() && sink.feed(Message::Text(frame.text)).await.is_err() {
                return;
            }
            for part in frame.binary {
                if sink.feed(Message::Binary(part)).await.is_err() {
                    return;
                }
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(text: &'static str, class: FrameClass) -> Frame {
        let mut f = Frame::engine_text(text);
        f.class = class;
        f
    }

    #[test]
    fn coalesces_only_past_the_soft_limit_and_never_drops_kept_frames() {
        let config = EngineConfig {
            queue_soft_frames: 2,
            queue_hard_bytes: 1000,
            ..EngineConfig::default()
        };
        let mut q = OutQueue::default();
        assert_eq!(
            q.push(frame("4a", FrameClass::Coalesce(1)), &config),
            Pushed::Queued
        );
        assert_eq!(
            q.push(frame("4b", FrameClass::Coalesce(1)), &config),
            Pushed::Queued
        );
        // Past the soft limit: the newest position replaces the queued one.
        assert_eq!(
            q.push(frame("4c", FrameClass::Coalesce(1)), &config),
            Pushed::Coalesced
        );
        assert_eq!(
            q.push(frame("4e", FrameClass::Keep), &config),
            Pushed::Queued
        );
        assert_eq!(
            q.push(frame("4f", FrameClass::Coalesce(2)), &config),
            Pushed::Queued
        );
        let texts: Vec<String> = q.take().into_iter().map(|f| f.text.to_string()).collect();
        assert_eq!(texts, ["4a", "4c", "4e", "4f"]);
        assert!(q.is_empty());
    }

    #[test]
    fn too_many_bytes_is_too_slow() {
        let config = EngineConfig {
            queue_soft_frames: 100,
            queue_hard_bytes: 10,
            ..EngineConfig::default()
        };
        let mut q = OutQueue::default();
        assert_eq!(
            q.push(frame("4aaaa", FrameClass::Keep), &config),
            Pushed::Queued
        );
        assert_eq!(
            q.push(frame("4aaaaaaa", FrameClass::Keep), &config),
            Pushed::TooSlow
        );
    }

    #[test]
    fn staying_behind_past_the_timeout_is_too_slow() {
        let config = EngineConfig {
            queue_soft_frames: 1,
            slow_timeout: std::time::Duration::ZERO,
            ..EngineConfig::default()
        };
        let mut q = OutQueue::default();
        assert_eq!(
            q.push(frame("4a", FrameClass::Keep), &config),
            Pushed::Queued
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert_eq!(
            q.push(frame("4b", FrameClass::Keep), &config),
            Pushed::TooSlow
        );
    }
}
