//! etcd's "simple" tokens: a random string and a counter, `"{16 letters}.{n}"`, mapped
//! to a user name in memory.
//!
//! A token is checked against the current [`AuthState`]: it is void once auth was
//! disabled after it was issued, once its user was deleted, added again or given a new
//! password, and after `ttl` without use (etcd's `--auth-token-ttl`, 300 s by default;
//! each use renews it).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::AuthState;
use crate::error::{Error, Result};

/// etcd's default `--auth-token-ttl`.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(300);

const TOKEN_LETTERS: usize = 16;

#[derive(Debug)]
struct TokenEntry {
    user: String,
    /// The auth revision when the token was issued.
    issued_at: u64,
    last_used: Instant,
}

/// The member's simple tokens.
#[derive(Debug)]
pub struct TokenStore {
    ttl: Duration,
    tokens: Mutex<HashMap<String, TokenEntry>>,
    counter: AtomicU64,
}

impl TokenStore {
    pub fn new(ttl: Duration) -> TokenStore {
        TokenStore {
            ttl,
            tokens: Mutex::new(HashMap::new()),
            counter: AtomicU64::new(0),
        }
    }

    /// A new token for `user`, who just gave the right password at `state`.
    pub fn issue(&self, user: &str, state: &AuthState) -> Result<String> {
        let mut bytes = [0u8; TOKEN_LETTERS];
        getrandom::fill(&mut bytes)
            .map_err(|e| Error::Internal(format!("auth: no randomness for a token: {e}")))?;
        let letters: String = bytes
            .iter()
            .map(|b| {
                let i = b % 52;
                char::from(if i < 26 { b'a' + i } else { b'A' + i - 26 })
            })
            .collect();
        let n = self.counter.fetch_add(1, Ordering::Relaxed) + 1;
        let token = format!("{letters}.{n}");
        let now = Instant::now();
        let mut tokens = self.tokens.lock();
        let ttl = self.ttl;
        tokens.retain(|_, e| now.duration_since(e.last_used) < ttl);
        tokens.insert(
            token.clone(),
            TokenEntry {
                user: user.to_string(),
                issued_at: state.revision,
                last_used: now,
            },
        );
        Ok(token)
    }

    /// The user a token stands for at `state`, renewing it; `InvalidAuthToken` if the
    /// token is unknown, expired or void.
    pub fn user(&self, token: &str, state: &AuthState) -> Result<String> {
        let now = Instant::now();
        let mut tokens = self.tokens.lock();
        let Some(e) = tokens.get_mut(token) else {
            return Err(Error::InvalidAuthToken);
        };
        let valid = now.duration_since(e.last_used) < self.ttl
            && e.issued_at >= state.tokens_from
            && state
                .users
                .get(&e.user)
                .is_some_and(|u| e.issued_at >= u.tokens_from);
        if !valid {
            tokens.remove(token);
            return Err(Error::InvalidAuthToken);
        }
        e.last_used = now;
        Ok(e.user.clone())
    }
}
