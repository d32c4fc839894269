//! The managed search target: an ECK `Elasticsearch` and, when asked for, a `Kibana` pointing at it; and the
//! operator's own Elasticsearch users (ECK file realm), each with one role, never the `elastic` superuser: the
//! daily job's, which may only manage, read and write the pipeline's indices, and, with Kibana, the dashboard
//! import's (`build::kibana`), which may only manage Kibana's saved objects and read those indices.
//!
//! | Secret | holds | made |
//! | --- | --- | --- |
//! | `<pipeline>-search-roles` | `roles.yml`: the roles `cilvest-<pipeline>-{writer,reader,dashboards}` | applied like any child |
//! | `<pipeline>-search-writer` | `kubernetes.io/basic-auth`: user `<pipeline>-daily`, a random password, the writer role | created once, never rewritten |
//! | `<pipeline>-kibana-setup` | the same for user `<pipeline>-kibana-setup` and the dashboards role (with Kibana only) | created once, never rewritten |

use std::collections::BTreeMap;

use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::{ResourceExt, api::DynamicObject};
use serde_json::json;

use cilvest_crds::{CilvestPipeline, ManagedSearch};

use crate::meta::{elasticsearch_resource, kibana_resource, object_meta};

/// The Secret holding the daily job's search user (ECK file realm, `kubernetes.io/basic-auth`).
pub fn writer_secret_name(pipeline: &str) -> String {
    format!("{pipeline}-search-writer")
}

/// The Secret holding the role definitions (ECK `spec.auth.roles`).
pub fn roles_secret_name(pipeline: &str) -> String {
    format!("{pipeline}-search-roles")
}

/// The daily job's search user, as `WorkerConfig::search_username` names it.
use cilvest_crds::worker_config::managed_search_username as writer_username;

fn writer_role(pipeline: &str) -> String {
    format!("cilvest-{pipeline}-writer")
}

/// The Secret (and user name) of the Kibana dashboard import.
pub fn kibana_setup_secret_name(pipeline: &str) -> String {
    format!("{pipeline}-kibana-setup")
}

fn dashboards_role(pipeline: &str) -> String {
    format!("cilvest-{pipeline}-dashboards")
}

/// One of the operator's file-realm users: its Secret, its name and its one role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchUser {
    pub secret: String,
    pub username: String,
    pub role: String,
}

/// The file-realm users of `pipeline`: the daily job's with managed search, and the dashboard import's with managed
/// Kibana.
pub fn users(pipeline: &CilvestPipeline) -> Vec<SearchUser> {
    let Some(managed) = managed(pipeline) else {
        return Vec::new();
    };
    let name = pipeline.name_any();
    let mut users = vec![SearchUser {
        secret: writer_secret_name(&name),
        username: writer_username(&name),
        role: writer_role(&name),
    }];
    if managed.kibana {
        users.push(SearchUser {
            secret: kibana_setup_secret_name(&name),
            username: kibana_setup_secret_name(&name),
            role: dashboards_role(&name),
        });
    }
    users
}

/// The analysts' role: read the pipeline's indices in Discover and Dashboards, change nothing.
pub fn reader_role(pipeline: &str) -> String {
    format!("cilvest-{pipeline}-reader")
}

/// `roles.yml`: the writer role, on the pipeline's alias and its monthly indices only (`manage` covers creating an
/// index, its alias and mapping, and refreshing it; `read` the delete-by-query of a day; `write` the bulk); the
/// analysts' read-only role on the same indices with Kibana's Discover and Dashboards, for users made in Kibana;
/// and the dashboard import's role: Kibana's saved objects management with the object types it imports (data views,
/// visualizations, dashboards, saved searches), reading the same indices, nothing else.
pub fn roles_yml(pipeline: &CilvestPipeline) -> Option<String> {
    let search = pipeline
        .spec
        .targets
        .elasticsearch
        .as_ref()
        .filter(|s| s.managed.is_some())?;
    let index = &search.index;
    let name = pipeline.name_any();
    Some(format!(
        "{writer}:\n  cluster: []\n  indices:\n    - names: [\"{index}\", \"{index}-*\"]\n      privileges: [\"manage\", \"read\", \"write\"]\n\
         {reader}:\n  cluster: []\n  indices:\n    - names: [\"{index}\", \"{index}-*\"]\n      privileges: [\"read\", \"view_index_metadata\"]\n\
         \x20 applications:\n    - application: kibana-.kibana\n      privileges: [\"feature_discover.read\", \"feature_dashboard.read\"]\n      resources: [\"*\"]\n\
         {dashboards}:\n  cluster: []\n  indices:\n    - names: [\"{index}\", \"{index}-*\"]\n      privileges: [\"read\", \"view_index_metadata\"]\n\
         \x20 applications:\n    - application: kibana-.kibana\n      privileges: [\"feature_savedObjectsManagement.all\", \"feature_indexPatterns.all\", \"feature_visualize.all\", \"feature_dashboard.all\", \"feature_discover.all\"]\n      resources: [\"*\"]\n",
        writer = writer_role(&name),
        reader = reader_role(&name),
        dashboards = dashboards_role(&name),
    ))
}

/// The roles Secret, applied and compared like every child.
pub fn roles_secret(pipeline: &CilvestPipeline) -> Option<Secret> {
    let roles = roles_yml(pipeline)?;
    let name = pipeline.name_any();
    Some(Secret {
        metadata: object_meta(pipeline, &roles_secret_name(&name), "search-roles"),
        string_data: Some(BTreeMap::from([("roles.yml".to_owned(), roles)])),
        ..Secret::default()
    })
}

/// A user's Secret with `password`: created once by the reconcile when it is missing, never applied again (the
/// password stays what it was; deleting the Secret makes a new one).
pub fn user_secret(pipeline: &CilvestPipeline, user: &SearchUser, password: &str) -> Secret {
    let component = user
        .secret
        .strip_prefix(&format!("{}-", pipeline.name_any()))
        .unwrap_or("search-user");
    Secret {
        metadata: object_meta(pipeline, &user.secret, component),
        type_: Some("kubernetes.io/basic-auth".to_owned()),
        data: Some(BTreeMap::from([
            ("username".to_owned(), ByteString(user.username.clone().into_bytes())),
            ("password".to_owned(), ByteString(password.as_bytes().to_vec())),
            ("roles".to_owned(), ByteString(user.role.clone().into_bytes())),
        ])),
        ..Secret::default()
    }
}

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
        // Said, not left to ECK's default: deleting the pipeline deletes the data volumes, and with them the
        // tweets and Kibana's saved objects (`build::kibana`).
        "volumeClaimDeletePolicy": "DeleteOnScaledownAndClusterDeletion",
        // The daily job's user and its role (file realm).
        "auth": {
            "fileRealm": users(pipeline).iter().map(|u| json!({"secretName": u.secret})).collect::<Vec<_>>(),
            "roles": [{"secretName": roles_secret_name(&name)}],
        },
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline() -> CilvestPipeline {
        super::super::full_example("jkt")
    }

    #[test]
    fn the_daily_job_writes_as_its_own_user_limited_to_the_pipelines_indices() {
        let p = pipeline();
        let es = elasticsearch(&p).expect("managed search");
        assert_eq!(
            es.data["spec"]["volumeClaimDeletePolicy"],
            "DeleteOnScaledownAndClusterDeletion"
        );
        assert_eq!(
            es.data["spec"]["auth"]["fileRealm"][0]["secretName"],
            "cilvest-search-writer"
        );
        assert_eq!(
            es.data["spec"]["auth"]["roles"][0]["secretName"],
            "cilvest-search-roles"
        );

        let roles: serde_json::Value =
            serde_saphyr::from_str(&roles_yml(&p).expect("roles")).expect("roles.yml is YAML");
        let role = &roles["cilvest-cilvest-writer"];
        assert_eq!(role["cluster"], json!([]), "no cluster privilege");
        assert_eq!(
            role["indices"][0]["names"],
            json!(["cilvest-tweets", "cilvest-tweets-*"])
        );
        assert_eq!(role["indices"][0]["privileges"], json!(["manage", "read", "write"]));
        let reader = &roles["cilvest-cilvest-reader"];
        assert_eq!(
            reader["indices"][0]["names"],
            json!(["cilvest-tweets", "cilvest-tweets-*"])
        );
        assert_eq!(
            reader["indices"][0]["privileges"],
            json!(["read", "view_index_metadata"])
        );
        assert_eq!(reader["applications"][0]["application"], "kibana-.kibana");
        let dashboards = &roles["cilvest-cilvest-dashboards"];
        assert_eq!(
            dashboards["indices"][0]["privileges"],
            json!(["read", "view_index_metadata"])
        );
        let kibana = dashboards["applications"][0]["privileges"]
            .as_array()
            .expect("privileges");
        assert!(kibana.contains(&json!("feature_savedObjectsManagement.all")));
        assert!(
            kibana
                .iter()
                .all(|p| p.as_str().is_some_and(|p| p.starts_with("feature_"))),
            "no base privilege"
        );
        assert_eq!(roles.as_object().map(|r| r.len()), Some(3));

        let all = users(&p);
        assert_eq!(
            all.iter().map(|u| u.secret.as_str()).collect::<Vec<_>>(),
            ["cilvest-search-writer", "cilvest-kibana-setup"],
            "the example has Kibana: two users"
        );
        assert_eq!(
            es.data["spec"]["auth"]["fileRealm"][1]["secretName"],
            "cilvest-kibana-setup"
        );
        let writer = user_secret(&p, &all[0], "s3cret");
        assert_eq!(writer.type_.as_deref(), Some("kubernetes.io/basic-auth"));
        let data = writer.data.expect("data");
        assert_eq!(data["username"].0, b"cilvest-daily");
        assert_eq!(data["roles"].0, b"cilvest-cilvest-writer");
        assert_eq!(
            writer
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(crate::meta::PIPELINE_LABEL))
                .map(String::as_str),
            Some("cilvest")
        );
    }

    #[test]
    fn no_search_user_without_managed_search() {
        let mut p = pipeline();
        p.spec.targets.elasticsearch = None;
        assert!(roles_secret(&p).is_none() && users(&p).is_empty());
    }
}
