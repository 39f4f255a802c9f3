//! The queue between the hub and one watch stream.
//!
//! Writers (`notify`, the sync thread, control calls) never wait on it: event responses
//! are refused once `capacity` of them are queued, and the refused watcher is moved
//! aside to catch up from history later. Control responses (created, canceled,
//! compacted, requested progress) are always accepted, so that they keep their place in
//! the order. When the reader drains a queue that refused something, it wakes the sync
//! thread.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};
use tokio::sync::Notify;

use super::{StreamItem, WatchUpdate};

/// Wakes the sync thread. `dirty` is set under the mutex before the notify, and the
/// thread clears it before each pass, so a wake-up during a pass is never lost.
#[derive(Debug, Default)]
pub(super) struct SyncSignal {
    state: Mutex<SignalState>,
    cv: Condvar,
}

#[derive(Debug, Default)]
struct SignalState {
    dirty: bool,
    shutdown: bool,
}

impl SyncSignal {
    pub(super) fn wake(&self) {
        self.state.lock().dirty = true;
        self.cv.notify_one();
    }

    pub(super) fn shutdown(&self) {
        self.state.lock().shutdown = true;
        self.cv.notify_one();
    }

    pub(super) fn is_shutdown(&self) -> bool {
        self.state.lock().shutdown
    }

    /// Blocks until woken; false once shut down.
    pub(super) fn wait(&self) -> bool {
        let mut state = self.state.lock();
        while !state.dirty && !state.shutdown {
            self.cv.wait(&mut state);
        }
        state.dirty = false;
        !state.shutdown
    }
}

#[derive(Debug)]
pub(super) struct Outbox {
    state: Mutex<OutboxState>,
    readable: Notify,
    capacity: usize,
    signal: Arc<SyncSignal>,
}

#[derive(Debug, Default)]
struct OutboxState {
    items: VecDeque<Queued>,
    /// Queued items that count against the capacity.
    bounded: usize,
    /// A bounded push was refused since the reader last woke the sync thread.
    refused: bool,
    closed: bool,
}

#[derive(Debug)]
struct Queued {
    item: StreamItem,
    bounded: bool,
}

impl Outbox {
    pub(super) fn new(capacity: usize, signal: Arc<SyncSignal>) -> Outbox {
        Outbox {
            state: Mutex::new(OutboxState::default()),
            readable: Notify::new(),
            capacity: capacity.max(1),
            signal,
        }
    }

    /// Queues an event or progress response unless `capacity` are already queued; the
    /// item comes back when refused. A closed outbox swallows everything.
    pub(super) fn push_bounded(&self, update: WatchUpdate) -> Result<(), WatchUpdate> {
        {
            let mut state = self.state.lock();
            if state.closed {
                return Ok(());
            }
            if state.bounded >= self.capacity {
                state.refused = true;
                return Err(update);
            }
            state.bounded += 1;
            state.items.push_back(Queued {
                item: StreamItem::Update(update),
                bounded: true,
            });
        }
        self.readable.notify_one();
        Ok(())
    }

    /// Queues a control response regardless of the capacity.
    pub(super) fn push_control(&self, item: StreamItem) {
        {
            let mut state = self.state.lock();
            if state.closed {
                return;
            }
            state.items.push_back(Queued {
                item,
                bounded: false,
            });
        }
        self.readable.notify_one();
    }

    /// Drops queued event and progress responses of one watcher (it was just canceled,
    /// and its id may be reused by the next create).
    pub(super) fn purge(&self, watch_id: i64) {
        let mut state = self.state.lock();
        let before = state.items.len();
        state.items.retain(|q| match &q.item {
            StreamItem::Update(u) => u.watch_id != watch_id,
            _ => true,
        });
        if state.items.len() != before {
            state.bounded = state.items.iter().filter(|q| q.bounded).count();
        }
    }

    pub(super) fn close(&self) {
        let mut state = self.state.lock();
        state.closed = true;
        state.items.clear();
        state.bounded = 0;
        drop(state);
        self.readable.notify_one();
    }

    /// The next item without waiting.
    pub(super) fn try_pop(&self) -> Popped {
        let mut wake = false;
        let popped = {
            let mut state = self.state.lock();
            match state.items.pop_front() {
                Some(q) => {
                    if q.bounded {
                        state.bounded -= 1;
                    }
                    if state.refused && state.bounded <= self.capacity / 2 {
                        state.refused = false;
                        wake = true;
                    }
                    Popped::Item(q.item)
                }
                None if state.closed => Popped::Closed,
                None => Popped::Empty,
            }
        };
        if wake {
            self.signal.wake();
        }
        popped
    }

    pub(super) async fn pop(&self) -> Option<StreamItem> {
        loop {
            // notify_one stores a permit when nobody waits, so a push between the
            // check and the await is not lost.
            match self.try_pop() {
                Popped::Item(item) => return Some(item),
                Popped::Closed => return None,
                Popped::Empty => self.readable.notified().await,
            }
        }
    }
}

pub(super) enum Popped {
    Item(StreamItem),
    Empty,
    Closed,
}
