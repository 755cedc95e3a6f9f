//! The bundle store: immutable snapshots swapped atomically, and the admins' condition assertions.
//!
//! Readers take the current map without a lock ([`arc_swap::ArcSwap`]) and keep an
//! `Arc<Loaded>` for the whole request, so a request in flight finishes on the version it
//! started with while a registration or reload swaps in a new map. Writers are serialised by a
//! mutex and build the next map from the current one (copy on write: registrations are rare,
//! evaluations are not).
//!
//! INVARIANT: a bundle in the map compiled without errors; nothing replaces it unless its
//! replacement did too (failures are refused before they reach [`Store::put`]).

use crate::engine::Engine;
use arc_swap::ArcSwap;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use verdict_runtime::signature::KeyId;

/// Where a bundle came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Registered through the API (`POST`/`PUT /bundles`).
    Api,
    /// Registered from a Decision Card (`POST /bundles/from-decision-card`).
    Card,
    /// Loaded from a file given on the command line or found in the watched directory.
    File(PathBuf),
    /// Pushed to Redis and followed there (`--bundles-from`, see [`crate::source`]).
    Redis,
}

impl Origin {
    pub fn describe(&self) -> String {
        match self {
            Origin::Api => "api".into(),
            Origin::Card => "decision-card".into(),
            Origin::File(p) => format!("file:{}", p.display()),
            Origin::Redis => "redis".into(),
        }
    }
}

/// A compiled bundle as the service holds it.
#[derive(Debug)]
pub struct Loaded {
    pub engine: Engine,
    /// The bundle in the reference JSON format (what `GET /bundles/{id}` returns).
    pub json: Value,
    pub origin: Origin,
    /// What its evaluations have been costing (see [`crate::pool::Cost`]).
    pub cost: crate::pool::Cost,
    /// `sha256:` of the bytes this bundle was loaded from (the artifact file, signature included,
    /// or the source text): what audit lines and `GET /bundles/{id}` report, since an artifact's
    /// own fingerprint is only what the artifact claims.
    pub digest: String,
    /// The trusted key whose signature verified, for an artifact loaded under trusted keys.
    pub signer: Option<KeyId>,
    /// The request paths its decisions read: what their audit lines record of each request.
    pub inputs: crate::inputs::Inputs,
    /// Whether the audit log has the `evaluation_inputs` event of this bundle (written with its
    /// first evaluation).
    pub inputs_logged: std::sync::atomic::AtomicBool,
}

impl Loaded {
    /// A bundle loaded from bytes with this digest (`signer`: the trusted key that signed it).
    pub fn new(engine: Engine, json: Value, origin: Origin, digest: String, signer: Option<KeyId>) -> Loaded {
        let inputs = engine.inputs();
        Loaded {
            engine,
            json,
            origin,
            cost: crate::pool::Cost::default(),
            digest,
            signer,
            inputs,
            inputs_logged: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub fn id(&self) -> &str {
        self.engine.id()
    }

    pub fn version(&self) -> &str {
        self.engine.version()
    }
}

/// How a bundle is put into the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    /// Only if the id is free (`POST`): otherwise [`PutError::Exists`].
    Create,
    /// Create or replace an API or card bundle (`PUT /bundles/{id}`); a file's bundle is the
    /// file's to change, and a bundle from Redis is Redis's.
    Upsert,
    /// Create or replace the bundle of a file (reloads) or from Redis; a bundle of another origin
    /// keeps its id.
    File,
}

/// Why the store refused a bundle: one message wherever it is reported (answers, logs, the
/// audit log, a replica's status key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PutError {
    /// `POST` of an id that is taken (the reference's text, which answers 409 with it).
    #[error("bundle ID is already registered")]
    Exists,
    /// The id belongs to a bundle of another origin.
    #[error("bundle id `{bundle_id}` is already registered by {}", .origin.describe())]
    OwnedBy { bundle_id: String, origin: Origin },
    /// The store holds its most bundles already.
    #[error("bundle store is full ({max} bundles)")]
    Full { max: usize },
}

/// What a successful put did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Replaced,
}

#[derive(Debug)]
pub struct Store {
    bundles: ArcSwap<BTreeMap<String, Arc<Loaded>>>,
    writer: Mutex<()>,
    /// `(bundle id, condition id)` → (satisfied, valid until).
    conditions: Mutex<HashMap<(String, String), (bool, jiff::Timestamp)>>,
    max_bundles: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks cannot leave the data half-written (each critical
    // section is a single insert or swap), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Store {
    pub fn new(max_bundles: usize) -> Store {
        Store {
            bundles: ArcSwap::from_pointee(BTreeMap::new()),
            writer: Mutex::new(()),
            conditions: Mutex::new(HashMap::new()),
            max_bundles,
        }
    }

    pub fn get(&self, id: &str) -> Option<Arc<Loaded>> {
        self.bundles.load().get(id).cloned()
    }

    pub fn ids(&self) -> Vec<String> {
        self.bundles.load().keys().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.bundles.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Puts a bundle in; the swap is atomic for readers.
    pub fn put(&self, loaded: Loaded, how: Put) -> Result<Outcome, PutError> {
        self.put_shared(Arc::new(loaded), how)
    }

    /// [`Store::put`] of a bundle that is also held elsewhere (a promoted shadow candidate).
    pub fn put_shared(&self, loaded: Arc<Loaded>, how: Put) -> Result<Outcome, PutError> {
        let _w = lock(&self.writer);
        let current = self.bundles.load_full();
        let id = loaded.id().to_owned();
        let outcome = match current.get(&id) {
            None if current.len() >= self.max_bundles => return Err(PutError::Full { max: self.max_bundles }),
            None => Outcome::Created,
            Some(old) => match how {
                Put::Create => return Err(PutError::Exists),
                Put::Upsert if matches!(old.origin, Origin::File(_) | Origin::Redis) => {
                    return Err(PutError::OwnedBy { bundle_id: id, origin: old.origin.clone() });
                }
                Put::File if old.origin != loaded.origin => {
                    return Err(PutError::OwnedBy { bundle_id: id, origin: old.origin.clone() });
                }
                _ => Outcome::Replaced,
            },
        };
        let mut next = (*current).clone();
        next.insert(id.clone(), loaded);
        self.bundles.store(Arc::new(next));
        if outcome == Outcome::Replaced {
            // A replaced bundle may be a different card: its conditions must be asserted again.
            lock(&self.conditions).retain(|(b, _), _| *b != id);
        }
        Ok(outcome)
    }

    /// Removes a bundle if it still has this origin.
    pub fn remove_if(&self, id: &str, origin: &Origin) -> bool {
        let _w = lock(&self.writer);
        let current = self.bundles.load_full();
        if current.get(id).is_none_or(|b| b.origin != *origin) {
            return false;
        }
        let mut next = (*current).clone();
        next.remove(id);
        self.bundles.store(Arc::new(next));
        lock(&self.conditions).retain(|(b, _), _| b != id);
        true
    }

    pub fn set_condition(&self, bundle_id: &str, condition_id: &str, satisfied: bool, until: jiff::Timestamp) {
        lock(&self.conditions).insert((bundle_id.to_owned(), condition_id.to_owned()), (satisfied, until));
    }

    /// `{condition id: true}` for every condition of `ids` asserted satisfied and not expired at `now`.
    pub fn condition_snapshot(&self, bundle_id: &str, ids: &[String], now: jiff::Timestamp) -> Map<String, Value> {
        let conditions = lock(&self.conditions);
        let mut out = Map::new();
        for cid in ids {
            if let Some((true, until)) = conditions.get(&(bundle_id.to_owned(), cid.clone()))
                && *until > now
            {
                out.insert(cid.clone(), Value::Bool(true));
            }
        }
        out
    }
}
