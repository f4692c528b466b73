//! The per-owner session table of the backends that keep sessions in this
//! process (the direct backend over given endpoints, and the sandboxed one):
//! who owns each session, when it was made, and the backend's own value.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::errors::ToolError;
use crate::session::BackendSession;

#[derive(Debug)]
struct Entry<T> {
    owner: String,
    created_at: jiff::Timestamp,
    value: T,
}

/// Sessions by id, each visible only to its owner.
#[derive(Debug)]
pub struct Registry<T> {
    sessions: Mutex<HashMap<String, Entry<T>>>,
}

impl<T> Default for Registry<T> {
    fn default() -> Self {
        Registry {
            sessions: Mutex::new(HashMap::new()),
        }
    }
}

impl<T: Clone> Registry<T> {
    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry<T>>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Record session `id` of `owner`, created now.
    pub fn insert(&self, owner: &str, id: &str, value: T) {
        self.table().insert(
            id.to_string(),
            Entry {
                owner: owner.to_string(),
                created_at: jiff::Timestamp::now(),
                value,
            },
        );
    }

    /// The value of `owner`'s session `id`. Errors: `session_not_found`
    /// (also for another owner's session).
    pub fn get(&self, owner: &str, id: &str) -> Result<T, ToolError> {
        match self.table().get(id) {
            Some(e) if e.owner == owner => Ok(e.value.clone()),
            _ => Err(ToolError::session_not_found(id)),
        }
    }

    /// Remove `owner`'s session `id` and return its value. Errors as [`Registry::get`].
    pub fn remove(&self, owner: &str, id: &str) -> Result<T, ToolError> {
        let mut table = self.table();
        match table.get(id) {
            Some(e) if e.owner == owner => Ok(table.remove(id).map(|e| e.value).expect("present")),
            _ => Err(ToolError::session_not_found(id)),
        }
    }

    /// `owner`'s sessions, all ready (they live in this process).
    pub fn list(&self, owner: &str) -> Vec<BackendSession> {
        self.table()
            .iter()
            .filter(|(_, e)| e.owner == owner)
            .map(|(id, e)| BackendSession {
                session_id: id.clone(),
                owner: e.owner.clone(),
                created_at: e.created_at.to_string(),
                ready: true,
                phase: None,
            })
            .collect()
    }
}
