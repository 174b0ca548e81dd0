//! In-process bus of a single node: a publish reaches this node's
//! subscribers of the topic, and nothing else.

use std::sync::Arc;

use bytes::Bytes;

use super::{BusError, BusMessage, Registry, Subscription, check_node_id};

#[derive(Clone)]
pub struct LocalBus {
    node_id: Bytes,
    registry: Arc<Registry>,
}

impl LocalBus {
    pub fn new(node_id: &str) -> Result<Self, BusError> {
        check_node_id(node_id)?;
        Ok(Self {
            node_id: Bytes::copy_from_slice(node_id.as_bytes()),
            registry: Registry::new(None),
        })
    }

    /// A local bus whose registry wakes `changed` on a topic's first and
    /// last subscriber (the Redis bus keeps its subscriptions that way).
    pub(crate) fn with_registry(node_id: Bytes, registry: Arc<Registry>) -> Self {
        Self { node_id, registry }
    }

    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn publish(&self, topic: &str, frame: Bytes) {
        self.registry.deliver(
            topic,
            BusMessage {
                origin: self.node_id.clone(),
                frame,
            },
        );
    }

    pub fn subscribe(&self, topic: &str) -> Subscription {
        self.registry.subscribe(topic)
    }

    pub fn node_id(&self) -> &str {
        // Built from a &str, so always UTF-8.
        std::str::from_utf8(&self.node_id).unwrap_or_default()
    }
}
