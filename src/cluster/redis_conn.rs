//! A command connection to Redis (one server or a cluster), separate from the
//! bus's pub/sub connection: presence keys, the stream registry and other
//! plain commands go through it.
//!
//! It connects lazily and reconnects on the next command after an I/O
//! error, so a node starts and serves while Redis is down; every command has
//! a response timeout, so a stalled Redis gives an error, never a hang.

use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::cluster::ClusterClientBuilder;
use ::redis::cluster_async::ClusterConnection;
use ::redis::{
    AsyncConnectionConfig, Client, Cmd, FromRedisValue, Pipeline, RedisError, RedisResult,
};
use tokio::sync::Mutex;

use crate::bus::RedisTarget;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone)]
enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

/// Lazily connected, self-healing Redis command connection. Cheap to share
/// (`Arc` it); commands on one connection are multiplexed, not serialised.
pub struct RedisConn {
    target: RedisTarget,
    conn: Mutex<Option<Conn>>,
}

impl RedisConn {
    pub fn new(target: RedisTarget) -> Self {
        Self {
            target,
            conn: Mutex::new(None),
        }
    }

    async fn get(&self) -> RedisResult<Conn> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let conn = match &self.target {
            RedisTarget::Single(url) => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(CONNECT_TIMEOUT)
                    .set_response_timeout(RESPONSE_TIMEOUT);
                let client = Client::open(url.as_str())?;
                Conn::Single(
                    client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await?,
                )
            }
            RedisTarget::Cluster(nodes) => {
                let client = ClusterClientBuilder::new(nodes.iter().map(String::as_str))
                    .connection_timeout(CONNECT_TIMEOUT)
                    .response_timeout(RESPONSE_TIMEOUT)
                    .retries(2)
                    .build()?;
                Conn::Cluster(client.get_async_connection().await?)
            }
        };
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Forget the connection after an error that may have broken it.
    async fn reset_on(&self, e: &RedisError) {
        if e.is_io_error()
            || e.is_timeout()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_unrecoverable_error()
        {
            *self.conn.lock().await = None;
        }
    }

    /// Run one command.
    pub async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> RedisResult<T> {
        let res = match self.get().await? {
            Conn::Single(mut c) => cmd.query_async(&mut c).await,
            Conn::Cluster(mut c) => cmd.query_async(&mut c).await,
        };
        if let Err(e) = &res {
            self.reset_on(e).await;
        }
        res
    }

    /// Run a pipeline. On a cluster every command of a pipeline must map
    /// to one slot (the redis crate sends it to one node); use
    /// [`RedisConn::batch`] for keys of many slots.
    pub async fn pipe<T: FromRedisValue>(&self, pipe: &Pipeline) -> RedisResult<T> {
        let res = match self.get().await? {
            Conn::Single(mut c) => pipe.query_async(&mut c).await,
            Conn::Cluster(mut c) => pipe.query_async(&mut c).await,
        };
        if let Err(e) = &res {
            self.reset_on(e).await;
        }
        res
    }

    /// Run independent commands, in order on a single Redis (one
    /// pipeline), concurrently on a cluster (each to its key's slot
    /// owner). One result per command.
    pub async fn batch(&self, cmds: &[Cmd]) -> RedisResult<Vec<RedisResult<::redis::Value>>> {
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        let conn = self.get().await?;
        let res = match conn {
            Conn::Single(mut c) => {
                let mut pipe = ::redis::pipe();
                for cmd in cmds {
                    pipe.add_command(cmd.clone());
                }
                // One failed command fails the whole pipeline (redis 0.32).
                pipe.query_async::<Vec<::redis::Value>>(&mut c)
                    .await
                    .map(|values| values.into_iter().map(Ok).collect())
            }
            Conn::Cluster(c) => {
                let futs = cmds.iter().map(|cmd| {
                    let mut c = c.clone();
                    async move { cmd.query_async::<::redis::Value>(&mut c).await }
                });
                Ok(futures_util::future::join_all(futs).await)
            }
        };
        match &res {
            Err(e) => self.reset_on(e).await,
            Ok(results) => {
                if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
                    self.reset_on(e).await;
                }
            }
        }
        res
    }
}
