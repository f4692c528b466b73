//! When each RSession of a namespace was first seen Ready, from a watch started before the
//! sessions are created: how the benches time the operator's Ready status as this machine sees it
//! (millisecond resolution, unlike status timestamps).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::watcher;
use rsession_api::RSession;
use std::time::Instant;

/// The first time each RSession was seen with `Ready=True`; the watch ends when this is dropped.
pub struct ReadyTimes {
    seen: Arc<Mutex<HashMap<String, Instant>>>,
    /// Woken whenever an RSession is first seen Ready.
    changed: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl ReadyTimes {
    /// Starts watching `api`'s RSessions.
    pub fn watch(api: Api<RSession>) -> Self {
        let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let record = seen.clone();
        let changed: Arc<tokio::sync::Notify> = Arc::default();
        let wake = changed.clone();
        let task = tokio::spawn(async move {
            let mut stream = watcher(api, watcher::Config::default()).boxed();
            while let Some(ev) = stream.next().await {
                if let Ok(watcher::Event::Apply(rs) | watcher::Event::InitApply(rs)) = ev
                    && rs.is_ready()
                {
                    let now = Instant::now();
                    record
                        .lock()
                        .expect("lock")
                        .entry(kube::ResourceExt::name_any(&rs))
                        .or_insert(now);
                    wake.notify_waiters();
                }
            }
        });
        ReadyTimes {
            seen,
            changed,
            task,
        }
    }

    /// When RSession `name` was first seen Ready, waiting up to `timeout` for it; `None` if it
    /// was not Ready by then.
    pub async fn wait(&self, name: &str, timeout: std::time::Duration) -> Option<Instant> {
        let until = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            if let Some(t) = self.get(name) {
                return Some(t);
            }
            if tokio::time::timeout_at(until, notified).await.is_err() {
                return self.get(name);
            }
        }
    }

    /// When RSession `name` was first seen Ready, if it was.
    pub fn get(&self, name: &str) -> Option<Instant> {
        self.seen.lock().expect("lock").get(name).copied()
    }
}

impl Drop for ReadyTimes {
    fn drop(&mut self) {
        self.task.abort();
    }
}
