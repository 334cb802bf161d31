//! Shared state by type, for `State<T>`, and the cached typed config.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::Service;
use crate::error::ConfigError;

/// Provided state by type, keyed with a hasher that takes the `TypeId`'s
/// bits (already a hash) instead of SipHash.
pub(crate) type StateMap =
    HashMap<TypeId, Arc<dyn Any + Send + Sync>, std::hash::BuildHasherDefault<TypeIdHasher>>;

/// A hasher for `TypeId` keys.
#[derive(Default)]
pub(crate) struct TypeIdHasher(u64);

impl std::hash::Hasher for TypeIdHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Not used by `TypeId` today; stays correct if that changes.
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 ^= value;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl Service {
    /// Makes `value` available to handlers as [`State<T>`](crate::State)
    /// (replacing an earlier value of the same type). Provide state in
    /// start-up code: a route resolves its `State<T>` once, when it is
    /// subscribed.
    pub fn provide<T: Send + Sync + 'static>(&self, value: T) {
        self.provide_arc(Arc::new(value));
    }

    /// Like [`Service::provide`] for a value already in an `Arc`.
    pub fn provide_arc<T: Send + Sync + 'static>(&self, value: Arc<T>) {
        self.inner
            .states
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(TypeId::of::<T>(), value);
    }

    /// The state of type `T`, if provided.
    pub fn state<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        let states = self.inner.states.read().unwrap_or_else(|e| e.into_inner());
        states
            .get(&TypeId::of::<T>())
            .cloned()
            .and_then(|any| any.downcast::<T>().ok())
    }

    /// The configuration decoded into `T` (see
    /// [`Config::typed`](crate::Config::typed)); decoded once per type and
    /// cached.
    pub fn typed_config<T>(&self) -> Result<Arc<T>, ConfigError>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        struct Cached<T>(Arc<T>);
        if let Some(cached) = self.state::<Cached<T>>() {
            return Ok(cached.0.clone());
        }
        let value = Arc::new(self.inner.config.typed::<T>()?);
        self.provide(Cached(value.clone()));
        Ok(value)
    }
}
