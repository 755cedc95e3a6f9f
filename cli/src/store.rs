//! The `--store` flag of `verdict serve` and `verdict eval`: `memory` (this process's state,
//! empty at the start) or `redis://[:password@]host[:port][/db]` (state series, holds and
//! decisions shared with every process on that Redis, through `verdict-store-redis`).

use verdict_runtime::state::{MemoryStore, StateStore};
use verdict_store_redis::{Options, RedisStore};

/// A store named by `--store`.
pub enum Store {
    Memory,
    /// A Redis store and its URL without the password (for logs).
    Redis(Box<RedisStore>, String),
}

/// Reads `--store`; the error is one line for the user (never with the URL's password).
pub fn parse(spec: Option<&str>) -> Result<Store, String> {
    match spec {
        None | Some("memory") => Ok(Store::Memory),
        Some(url) if url.starts_with("redis://") || url.starts_with("redis+unix://") => {
            let store = RedisStore::open(url, Options::default()).map_err(|e| format!("`--store`: {e}"))?;
            Ok(Store::Redis(Box::new(store), redacted(url)))
        }
        Some(other) => {
            Err(format!("`--store {}`: expected `memory` or a `redis://HOST:PORT[/DB]` URL", redacted(other)))
        }
    }
}

impl Store {
    /// The store as the runtime's interface.
    pub fn boxed(self) -> Box<dyn StateStore> {
        match self {
            Store::Memory => Box::new(MemoryStore::new()),
            Store::Redis(s, _) => s,
        }
    }
}

/// A URL without the user information (`redis://:secret@host/` → `redis://host/`).
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://{host}{path}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn passwords_never_reach_the_logs() {
        assert_eq!(redacted("redis://:s3cret@10.0.0.1:6379/2"), "redis://10.0.0.1:6379/2");
        assert_eq!(redacted("redis://user:p@ss@host"), "redis://host");
        assert_eq!(redacted("redis://host:6379"), "redis://host:6379");
        assert_eq!(redacted("memory"), "memory");
    }
}
