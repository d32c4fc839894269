//! The managed search target: an ECK `Elasticsearch` and, when asked for, a `Kibana` pointing at it.

use kube::{ResourceExt, api::DynamicObject};
use serde_json::json;

use cilvest_crds::{CilvestPipeline, ManagedSearch};

use crate::meta::{elasticsearch_resource, kibana_resource, object_meta};

fn managed(pipeline: &CilvestPipeline) -> Option<&ManagedSearch> {
    pipeline.spec.targets.elasticsearch.as_ref()?.managed.as_ref()
}

pub(super) fn elasticsearch(pipeline: &CilvestPipeline) -> Option<DynamicObject> {
    let managed = managed(pipeline)?;
    let name = pipeline.name_any();
    let mut es = DynamicObject::new(&name, &elasticsearch_resource());
    es.metadata = object_meta(pipeline, &name, "elasticsearch");
    es.data = json!({"spec": {
        "version": managed.version,
        "nodeSets": [{
            "name": "default",
            "count": managed.nodes,
            // GKE nodes do not raise vm.max_map_count; this avoids needing a privileged init container.
            "config": {"node.store.allow_mmap": false},
            "volumeClaimTemplates": [{
                "metadata": {"name": "elasticsearch-data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": managed.storage}}},
            }],
        }],
    }});
    Some(es)
}

pub(super) fn kibana(pipeline: &CilvestPipeline) -> Option<DynamicObject> {
    let managed = managed(pipeline).filter(|m| m.kibana)?;
    let name = pipeline.name_any();
    let mut kibana = DynamicObject::new(&name, &kibana_resource());
    kibana.metadata = object_meta(pipeline, &name, "kibana");
    kibana.data = json!({"spec": {"version": managed.version, "count": 1, "elasticsearchRef": {"name": name}}});
    Some(kibana)
}
