//! Agent log lines: stored off the request path by a [`writer`](crate::writer), and broadcast to
//! live followers (the proxy's console, later the inline approver).

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};

use crate::{
    store::{NewLog, Store},
    writer::{self, Writer},
};

/// Sends log lines to the writer and to live followers.
#[derive(Debug, Clone)]
pub struct LogSink {
    queue: mpsc::UnboundedSender<NewLog>,
    live: broadcast::Sender<Arc<NewLog>>,
}

/// Starts the log writer over `store`.
pub fn start(store: Arc<Store>) -> (LogSink, Writer) {
    let (queue, writer) = writer::start(store, "agent log lines", Store::insert_logs);
    let (live, _) = broadcast::channel(1024);
    (LogSink { queue, live }, writer)
}

impl LogSink {
    /// Queues a line for storage and shows it to followers.
    pub fn send(&self, line: NewLog) {
        let line = Arc::new(line);
        let _ = self.live.send(line.clone());
        let _ = self.queue.send(Arc::unwrap_or_clone(line));
    }

    /// Follows new lines as they arrive.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<NewLog>> {
        self.live.subscribe()
    }
}
