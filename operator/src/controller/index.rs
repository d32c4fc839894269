//! The caches of one child kind, indexed by pipeline: kube-runtime's store, and which names each pipeline's children
//! have, so that a reconcile looks up its own children instead of scanning every cached child of the kind. At 2,000
//! pipelines those scans (thirteen kinds, up to 10,000 children each, for each of 2,000 reconciles) were 40 % of a
//! restarted operator's CPU (BENCHMARKS.md, issue 25).
//!
//! The index may still list a name the store no longer holds under that pipeline (a child relabelled by hand stays
//! listed under its old pipeline until the next relist), never the other way round: each name is checked against
//! the store, so a lookup returns exactly the cached children that carry the pipeline's label.

use std::{
    collections::HashMap,
    hash::Hash,
    sync::{Arc, Mutex},
};

use kube::{
    Resource,
    runtime::{
        reflector::{ObjectRef, Store},
        watcher::Event,
    },
};

use super::compact::Compact;

/// Children's names by namespace and pipeline.
type Names = HashMap<(String, String), Vec<String>>;

/// Which children each pipeline has, kept from the same watch events as the store.
#[derive(Default)]
pub struct Index {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    live: Names,
    /// The relist under way (between `Init` and `InitDone`); it replaces `live` when done, as the store does.
    relist: Option<Names>,
}

impl Index {
    /// Follow one watch event; called before the store applies it, so the index is never behind the store.
    pub fn observe<K: Resource>(&self, event: &Event<Compact<K>>) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match event {
            Event::Apply(child) => {
                insert(&mut inner.live, child);
                if let Some(relist) = inner.relist.as_mut() {
                    insert(relist, child);
                }
            }
            Event::Delete(child) => {
                remove(&mut inner.live, child);
                if let Some(relist) = inner.relist.as_mut() {
                    remove(relist, child);
                }
            }
            Event::Init => inner.relist = Some(Names::new()),
            Event::InitApply(child) => insert(inner.relist.get_or_insert_default(), child),
            Event::InitDone => {
                if let Some(relist) = inner.relist.take() {
                    inner.live = relist;
                }
            }
        }
    }

    fn names(&self, namespace: &str, pipeline: &str) -> Vec<String> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .live
            .get(&(namespace.to_owned(), pipeline.to_owned()))
            .cloned()
            .unwrap_or_default()
    }
}

/// Where a child is listed: its namespace and pipeline label, and its name; `None` for a child without them.
fn place<K: Resource>(child: &Compact<K>) -> Option<((String, String), &str)> {
    let meta = child.meta();
    let key = (meta.namespace.clone()?, child.pipeline()?.to_owned());
    Some((key, meta.name.as_deref()?))
}

fn insert<K: Resource>(names: &mut Names, child: &Compact<K>) {
    let Some((key, name)) = place(child) else { return };
    let listed = names.entry(key).or_default();
    if !listed.iter().any(|n| n == name) {
        listed.push(name.to_owned());
    }
}

fn remove<K: Resource>(names: &mut Names, child: &Compact<K>) {
    let Some((key, name)) = place(child) else { return };
    if let Some(listed) = names.get_mut(&key) {
        listed.retain(|n| n != name);
        if listed.is_empty() {
            names.remove(&key);
        }
    }
}

/// One kind's cache: kube-runtime's store of compact children, and the index by pipeline.
pub struct Cached<K: Resource + 'static>
where
    K::DynamicType: Eq + Hash + Clone,
{
    pub store: Store<Compact<K>>,
    pub index: Arc<Index>,
}

impl<K: Resource + 'static> Clone for Cached<K>
where
    K::DynamicType: Eq + Hash + Clone,
{
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            index: self.index.clone(),
        }
    }
}

impl<K: Resource + 'static> Cached<K>
where
    K::DynamicType: Eq + Hash + Clone,
{
    /// The cached children of `pipeline` in `namespace`, by name (the order a LIST returns them in).
    pub fn of(&self, namespace: &str, pipeline: &str, kind: &K::DynamicType) -> Vec<Arc<Compact<K>>> {
        let mut found: Vec<_> = self
            .index
            .names(namespace, pipeline)
            .into_iter()
            .filter_map(|name| {
                self.store
                    .get(&ObjectRef::new_with(&name, kind.clone()).within(namespace))
            })
            .filter(|child| child.meta().namespace.as_deref() == Some(namespace) && child.pipeline() == Some(pipeline))
            .collect();
        found.sort_by(|a, b| a.meta().name.cmp(&b.meta().name));
        found
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::reflector::store::Writer;
    use serde_json::json;

    use super::*;
    use crate::meta::PIPELINE_LABEL;

    fn map(name: &str, pipeline: &str) -> Compact<ConfigMap> {
        Compact::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "ns", "labels": {PIPELINE_LABEL: pipeline}}
            }))
            .expect("config map"),
        )
    }

    fn names(found: &[Arc<Compact<ConfigMap>>]) -> Vec<String> {
        found.iter().filter_map(|c| c.meta().name.clone()).collect()
    }

    /// Apply each event to the index and then the store, as the watch does.
    fn feed(
        cached: &Cached<ConfigMap>,
        writer: &mut Writer<Compact<ConfigMap>>,
        events: Vec<Event<Compact<ConfigMap>>>,
    ) {
        for event in events {
            cached.index.observe(&event);
            writer.apply_watcher_event(&event);
        }
    }

    #[test]
    fn a_lookup_finds_a_pipelines_children_through_relists_moves_and_deletes() {
        let mut writer = Writer::default();
        let cached = Cached {
            store: writer.as_reader(),
            index: Arc::default(),
        };
        feed(
            &cached,
            &mut writer,
            vec![
                Event::Init,
                Event::InitApply(map("p-b", "p")),
                Event::InitApply(map("p-a", "p")),
                Event::InitApply(map("q-a", "q")),
                Event::InitDone,
            ],
        );
        assert_eq!(names(&cached.of("ns", "p", &())), ["p-a", "p-b"]);
        assert_eq!(names(&cached.of("other", "p", &())), Vec::<String>::new());

        // Relabelled to q: it leaves p at once, though p's index still lists it.
        feed(&cached, &mut writer, vec![Event::Apply(map("p-b", "q"))]);
        assert_eq!(names(&cached.of("ns", "p", &())), ["p-a"]);
        assert_eq!(names(&cached.of("ns", "q", &())), ["p-b", "q-a"]);

        feed(&cached, &mut writer, vec![Event::Delete(map("q-a", "q"))]);
        assert_eq!(names(&cached.of("ns", "q", &())), ["p-b"]);

        // A relist replaces everything once done, and until then the old children are still found.
        feed(
            &cached,
            &mut writer,
            vec![Event::Init, Event::InitApply(map("p-c", "p"))],
        );
        assert_eq!(names(&cached.of("ns", "p", &())), ["p-a"]);
        feed(&cached, &mut writer, vec![Event::InitDone]);
        assert_eq!(names(&cached.of("ns", "p", &())), ["p-c"]);
        assert_eq!(names(&cached.of("ns", "q", &())), Vec::<String>::new());
    }
}
