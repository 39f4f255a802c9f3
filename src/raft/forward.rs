//! Followers' client writes: the command goes to the leader, and the follower answers
//! its client when it applies the entry itself (as etcd's followers do), so the answer
//! is this member's own apply result and a read here right after sees the write.
//!
//! A forwarded [`Command`](crate::command::Command) carries `forwarded_by` (this member)
//! and a `forward_id`; [`Waiters`] maps the id to the client waiting for it, and the state
//! machine hands it the response when it applies a command this member forwarded.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::command::CommandResponse;

/// Clients waiting for commands this member forwarded to the leader.
#[derive(Debug)]
pub struct Waiters {
    member_id: u64,
    next: AtomicU64,
    pending: AtomicUsize,
    waiting: Mutex<HashMap<u64, oneshot::Sender<CommandResponse>>>,
}

impl Waiters {
    /// Ids start from the clock, so a restarted member does not reuse the ids of commands
    /// its previous run forwarded (their entries may still be applied after the restart).
    pub fn new(member_id: u64) -> Waiters {
        let start = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            .max(1);
        Waiters {
            member_id,
            next: AtomicU64::new(start),
            pending: AtomicUsize::new(0),
            waiting: Mutex::new(HashMap::new()),
        }
    }

    /// The member whose forwarded commands these are.
    pub fn member_id(&self) -> u64 {
        self.member_id
    }

    /// A new wait id and the receiver its response will arrive on.
    pub fn register(&self) -> (u64, oneshot::Receiver<CommandResponse>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().insert(id, tx);
        self.pending.fetch_add(1, Ordering::Relaxed);
        (id, rx)
    }

    /// Forgets a wait (the forward failed or the client gave up).
    pub fn cancel(&self, id: u64) {
        if self.waiting.lock().remove(&id).is_some() {
            self.pending.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Whether any forwarded command is waiting: the state machine looks at commands only
    /// then.
    pub fn any(&self) -> bool {
        self.pending.load(Ordering::Relaxed) > 0
    }

    /// Hands `response` to whoever waits for `id`, if anyone still does.
    pub fn deliver(&self, id: u64, response: CommandResponse) {
        let tx = self.waiting.lock().remove(&id);
        if let Some(tx) = tx {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            let _ = tx.send(response);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn delivers_once_to_the_registered_waiter() {
        let w = Waiters::new(7);
        let (a, mut rx_a) = w.register();
        let (b, rx_b) = w.register();
        assert_ne!(a, b);
        assert!(w.any());
        w.deliver(a, CommandResponse::Error(crate::error::Error::NoLeader));
        w.deliver(a, CommandResponse::Error(crate::error::Error::Timeout));
        assert!(matches!(
            rx_a.try_recv().unwrap(),
            CommandResponse::Error(crate::error::Error::NoLeader)
        ));
        w.cancel(b);
        assert!(!w.any());
        drop(rx_b);
    }
}
