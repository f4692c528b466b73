//! One watch of the namespace's MCP-created RSessions (label [`LABEL_OWNER`] present), shared
//! by every `create_session` and resume waiting for its session to be usable.
//!
//! Why: a watch per wait (`watch_object`: a LIST, then a WATCH, both sent after the create's
//! apply returned) put two more API calls on every session's way to its first result, and a
//! burst of 20 creates opened 20 watches at once against an API server sharing the node's CPUs
//! with the claims. Here the events of one long-running watch land in a reflector store, and a
//! `tokio::sync::watch` channel holding the watch's [`SyncState`] state wakes the waiters after each
//! event; they read their own object from the store.
//!
//! [`SessionWatch::object`] yields what `watch_object` yields (the object's states, `None` once
//! it is deleted), so the wait loop is the same on both paths. While the watch is not in sync
//! (its first list failed, or after an error until the relist), [`SessionWatch::in_sync`] is
//! false and waits use their own `watch_object` as before.

use std::time::Duration;

use futures::{Stream, StreamExt};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use rsession_api::RSession;
use tokio::sync::watch as notify;

use super::LABEL_OWNER;

/// Whether the store reflects the API server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SyncState {
    /// The first list has not completed or failed yet.
    Starting,
    /// A list completed and no error came since.
    InSync,
    /// The watch failed; the watcher retries and lists again.
    Broken,
}

/// The namespace's MCP-created RSessions as one watch last showed them.
pub(super) struct SessionWatch {
    store: Store<RSession>,
    namespace: String,
    /// The watch's state, sent (so every receiver wakes) after each event has reached `store`.
    feed: notify::Receiver<SyncState>,
    /// The task feeding `store`; ends with this watch.
    _feed: tokio_util::task::AbortOnDropHandle<()>,
}

impl SessionWatch {
    /// Starts the watch on `api` (`list` and `watch` on rsessions in its namespace). Must run
    /// inside a Tokio runtime.
    pub(super) fn start(api: Api<RSession>, namespace: &str) -> Self {
        let (store, writer) = reflector::store();
        let (state, feed) = notify::channel(SyncState::Starting);
        let task = async move {
            let mut refused_logged = false;
            let events = watcher(api, watcher::Config::default().labels(LABEL_OWNER))
                .default_backoff()
                .reflect(writer);
            let mut events = std::pin::pin!(events);
            while let Some(event) = events.next().await {
                if let Err(e) = &event
                    && !std::mem::replace(&mut refused_logged, true)
                {
                    tracing::warn!(error = %e, "watching RSessions failed; each create_session watches its own RSession until this watch is back");
                }
                // Sent even when the state stays: the waiters look for their object after
                // every event.
                state.send_modify(|s| match event {
                    Ok(watcher::Event::InitDone) => *s = SyncState::InSync,
                    Err(_) => *s = SyncState::Broken,
                    Ok(_) => {}
                });
            }
        };
        SessionWatch {
            store,
            namespace: namespace.to_string(),
            feed,
            _feed: tokio_util::task::AbortOnDropHandle::new(tokio::spawn(task)),
        }
    }

    /// Whether the store reflects the API server (its list done and no error since). Right
    /// after the start, waits up to `limit` for the first list to complete or fail, so the
    /// first sessions of a new server use this watch too.
    pub(super) async fn in_sync(&self, limit: Duration) -> bool {
        let mut feed = self.feed.clone();
        let settled = feed.wait_for(|s| *s != SyncState::Starting);
        // Timed out or the task ended: still Starting, not in sync.
        let _ = tokio::time::timeout(limit, settled).await;
        *self.feed.borrow() == SyncState::InSync
    }

    /// The states of RSession `name` as this watch sees them, in the shape of
    /// `kube::runtime::watcher::watch_object`: `Some` for each new resourceVersion (the current
    /// one first, when the store holds it), `None` once it is gone after having been seen. Not
    /// seen yet is not gone: a create's apply may return before its watch event arrives. Ends
    /// when the watch task ends.
    pub(super) fn object(
        &self,
        name: &str,
    ) -> impl Stream<Item = Result<Option<RSession>, watcher::Error>> + Send + 'static {
        let key = ObjectRef::new(name).within(&self.namespace);
        // Marked seen now: any event from here on wakes the loop, so none is missed between the
        // first read of the store and the first wait.
        let mut changed = self.feed.clone();
        changed.mark_unchanged();
        let state = Follow {
            store: self.store.clone(),
            key,
            changed,
            last_version: None,
            seen: false,
            gone: false,
        };
        futures::stream::unfold(state, |mut s| async move {
            if s.gone {
                return None;
            }
            loop {
                match s.store.get(&s.key) {
                    Some(obj) if obj.resource_version() != s.last_version => {
                        s.last_version = obj.resource_version();
                        s.seen = true;
                        let obj = RSession::clone(&obj);
                        return Some((Ok(Some(obj)), s));
                    }
                    None if s.seen => {
                        s.gone = true;
                        return Some((Ok(None), s));
                    }
                    _ => {}
                }
                s.changed.changed().await.ok()?;
            }
        })
    }
}

/// Where [`SessionWatch::object`] is in following one RSession.
struct Follow {
    store: Store<RSession>,
    key: ObjectRef<RSession>,
    changed: notify::Receiver<SyncState>,
    last_version: Option<String>,
    seen: bool,
    gone: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::reflector::store::Writer;
    use rsession_api::RSessionSpec;

    /// A watch whose store and wake-ups the test feeds by hand, as the feed task would.
    fn by_hand(sync: SyncState) -> (SessionWatch, Writer<RSession>, notify::Sender<SyncState>) {
        let (store, writer) = reflector::store();
        let (state, feed) = notify::channel(sync);
        let watch = SessionWatch {
            store,
            namespace: "ns".into(),
            feed,
            _feed: tokio_util::task::AbortOnDropHandle::new(tokio::spawn(async {})),
        };
        (watch, writer, state)
    }

    fn rs(name: &str, version: &str) -> RSession {
        let mut rs = RSession::new(name, RSessionSpec::default());
        rs.metadata.namespace = Some("ns".into());
        rs.metadata.resource_version = Some(version.into());
        rs
    }

    fn feed(
        writer: &mut Writer<RSession>,
        state: &notify::Sender<SyncState>,
        e: watcher::Event<RSession>,
    ) {
        writer.apply_watcher_event(&e);
        state.send_modify(|_| {});
    }

    type State = Option<Result<Option<RSession>, watcher::Error>>;

    /// The next state within 200 ms (`Err`: none came; the negative checks wait that long).
    async fn next(
        states: &mut (impl Stream<Item = Result<Option<RSession>, watcher::Error>> + Unpin),
    ) -> Result<State, tokio::time::error::Elapsed> {
        tokio::time::timeout(Duration::from_millis(200), states.next()).await
    }

    #[tokio::test]
    async fn follows_one_object_from_before_it_exists_until_it_is_deleted() {
        let (watch, mut writer, bump) = by_hand(SyncState::InSync);
        let mut states = std::pin::pin!(watch.object("a"));
        // Not in the store yet: nothing, not a deletion.
        assert!(next(&mut states).await.is_err());
        // Another object's events do not yield.
        feed(&mut writer, &bump, watcher::Event::Apply(rs("b", "1")));
        assert!(next(&mut states).await.is_err());
        feed(&mut writer, &bump, watcher::Event::Apply(rs("a", "2")));
        let first = next(&mut states).await.unwrap().unwrap().unwrap().unwrap();
        assert_eq!(first.resource_version().as_deref(), Some("2"));
        // The same version again (a relist) is no new state.
        feed(&mut writer, &bump, watcher::Event::Apply(rs("a", "2")));
        assert!(next(&mut states).await.is_err());
        feed(&mut writer, &bump, watcher::Event::Apply(rs("a", "3")));
        let second = next(&mut states).await.unwrap().unwrap().unwrap().unwrap();
        assert_eq!(second.resource_version().as_deref(), Some("3"));
        feed(&mut writer, &bump, watcher::Event::Delete(rs("a", "4")));
        assert!(
            next(&mut states).await.unwrap().unwrap().unwrap().is_none(),
            "deleted"
        );
        assert!(
            next(&mut states).await.unwrap().is_none(),
            "the stream ends after the deletion"
        );
    }

    #[tokio::test]
    async fn an_object_already_in_the_store_comes_first() {
        let (watch, mut writer, bump) = by_hand(SyncState::InSync);
        feed(&mut writer, &bump, watcher::Event::Apply(rs("a", "7")));
        let mut states = std::pin::pin!(watch.object("a"));
        let got = states.next().await.unwrap().unwrap().unwrap();
        assert_eq!(got.resource_version().as_deref(), Some("7"));
    }

    #[tokio::test]
    async fn in_sync_waits_for_the_first_list_and_is_false_after_an_error() {
        let (watch, _writer, state) = by_hand(SyncState::Starting);
        // Never settles: false after the limit.
        assert!(!watch.in_sync(Duration::from_millis(50)).await);
        // Polled after the wait has started (join polls in order).
        let list_done = async { state.send_replace(SyncState::InSync) };
        let (synced, _) = tokio::join!(watch.in_sync(Duration::from_secs(10)), list_done);
        assert!(synced);
        state.send_replace(SyncState::Broken);
        assert!(
            !watch.in_sync(Duration::from_secs(10)).await,
            "no wait once settled"
        );
    }
}
