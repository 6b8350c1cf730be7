//! A batching writer: rows sent on a channel are stored by one blocking task, off the request
//! path, in transactions of up to 256 rows. Dropping every sender ends the task after it has
//! written everything still queued, so a clean shutdown loses nothing.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::store::{Store, StoreError};

/// The task; await [`Writer::finish`] once every sender is dropped.
#[derive(Debug)]
pub struct Writer {
    handle: tokio::task::JoinHandle<()>,
}

impl Writer {
    /// Waits for the queue to be written out.
    pub async fn finish(self) {
        let _ = self.handle.await;
    }
}

/// Starts a writer storing `T`s with `insert`; `what` names them in error messages.
pub fn start<T: Send + 'static>(
    store: Arc<Store>,
    what: &'static str,
    insert: fn(&Store, &[T]) -> Result<(), StoreError>,
) -> (mpsc::UnboundedSender<T>, Writer) {
    // Unbounded: producers are already rate-limited per agent, and a full queue must never make
    // a request wait or a row be dropped.
    let (tx, mut rx) = mpsc::unbounded_channel::<T>();
    let handle = tokio::task::spawn_blocking(move || {
        let mut batch = Vec::with_capacity(256);
        while let Some(first) = rx.blocking_recv() {
            batch.push(first);
            // A short pause lets a busy proxy's rows gather into one transaction (one commit, one
            // wake-up) instead of one each; rows are only ever late by this much.
            std::thread::sleep(std::time::Duration::from_millis(5));
            while batch.len() < 256 {
                match rx.try_recv() {
                    Ok(row) => batch.push(row),
                    Err(_) => break,
                }
            }
            if let Err(e) = insert(&store, &batch) {
                tracing::error!(error = %e, rows = batch.len(), "cannot store {what}");
            }
            batch.clear();
        }
    });
    (tx, Writer { handle })
}
