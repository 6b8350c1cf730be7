//! Agent log lines: one writer that stores them off the request path, and a broadcast that the
//! proxy's console (and later the inline approver) follows.
//!
//! The writer drains its queue before it stops, so a clean shutdown loses no line.

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};

use crate::store::{NewLog, Store};

/// Sends log lines to the writer and to live followers.
#[derive(Debug, Clone)]
pub struct LogSink {
    queue: mpsc::Sender<NewLog>,
    live: broadcast::Sender<Arc<NewLog>>,
}

/// The writer task; await [`LogWriter::finish`] after every [`LogSink`] is dropped.
#[derive(Debug)]
pub struct LogWriter {
    handle: tokio::task::JoinHandle<()>,
}

impl LogWriter {
    /// Waits for the queue to be written out.
    pub async fn finish(self) {
        let _ = self.handle.await;
    }
}

/// Starts the writer over `store`.
pub fn start(store: Arc<Store>) -> (LogSink, LogWriter) {
    let (queue, mut rx) = mpsc::channel::<NewLog>(4096);
    let (live, _) = broadcast::channel(1024);
    let handle = tokio::task::spawn_blocking(move || {
        let mut batch = Vec::with_capacity(256);
        while let Some(first) = rx.blocking_recv() {
            batch.push(first);
            while batch.len() < 256 {
                match rx.try_recv() {
                    Ok(l) => batch.push(l),
                    Err(_) => break,
                }
            }
            if let Err(e) = store.insert_logs(&batch) {
                tracing::error!(error = %e, lines = batch.len(), "cannot store agent log lines");
            }
            batch.clear();
        }
    });
    (LogSink { queue, live }, LogWriter { handle })
}

impl LogSink {
    /// Queues a line for storage and shows it to followers. Waits only if the queue is full.
    pub async fn send(&self, line: NewLog) {
        let line = Arc::new(line);
        let _ = self.live.send(line.clone());
        let _ = self.queue.send(Arc::unwrap_or_clone(line)).await;
    }

    /// Follows new lines as they arrive.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<NewLog>> {
        self.live.subscribe()
    }
}
