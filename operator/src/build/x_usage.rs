//! The producer's X usage path, as objects: a ConfigMap the producer writes its monthly usage into, and a Role and
//! RoleBinding that let the producer read and patch exactly that one object. `crate::x_usage` reads it back into
//! the pipeline's status.

use k8s_openapi::api::{
    core::v1::{ConfigMap, EnvVar, PodSpec},
    rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject},
};
use kube::ResourceExt;

use cilvest_crds::{
    CilvestPipeline,
    usage::{USAGE_CONFIGMAP_ENV, usage_configmap_name},
};

use crate::meta::object_meta;

/// The objects of the usage path.
#[derive(Clone, Debug)]
pub struct UsageChildren {
    pub config_map: ConfigMap,
    pub role: Role,
    pub role_binding: RoleBinding,
}

/// The usage ConfigMap (no `data`: the producer owns it), and the producer's right to read and patch it.
pub fn children(pipeline: &CilvestPipeline) -> UsageChildren {
    let name = pipeline.name_any();
    let map_name = usage_configmap_name(&name);
    let role_name = format!("{name}-producer-x-usage");
    UsageChildren {
        config_map: ConfigMap {
            metadata: object_meta(pipeline, &map_name, "x-usage"),
            ..ConfigMap::default()
        },
        role: Role {
            metadata: object_meta(pipeline, &role_name, "x-usage"),
            rules: Some(vec![PolicyRule {
                api_groups: Some(vec![String::new()]),
                resources: Some(vec!["configmaps".to_owned()]),
                resource_names: Some(vec![map_name]),
                verbs: vec!["get".to_owned(), "patch".to_owned()],
                ..PolicyRule::default()
            }]),
        },
        role_binding: RoleBinding {
            metadata: object_meta(pipeline, &role_name, "x-usage"),
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".to_owned(),
                kind: "Role".to_owned(),
                name: role_name.clone(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".to_owned(),
                name: format!("{name}-producer"),
                namespace: pipeline.namespace(),
                ..Subject::default()
            }]),
        },
    }
}

/// Give the producer's pod its token and the name of its usage ConfigMap.
pub fn producer_pod(pipeline: &CilvestPipeline, pod: &mut PodSpec) {
    pod.automount_service_account_token = Some(true);
    if let Some(container) = pod.containers.first_mut() {
        container.env.get_or_insert_with(Vec::new).push(EnvVar {
            name: USAGE_CONFIGMAP_ENV.to_owned(),
            value: Some(usage_configmap_name(&pipeline.name_any())),
            ..EnvVar::default()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_producer_may_read_and_patch_only_its_configmap() {
        let mut pipeline: CilvestPipeline =
            serde_saphyr::from_str(include_str!("../../../examples/minimal.yaml")).expect("example");
        pipeline.metadata.namespace = Some("ns".into());
        let children = children(&pipeline);
        assert!(children.config_map.data.is_none(), "the producer owns data");
        let rules = children.role.rules.expect("rules");
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].resource_names, Some(vec!["minimal-x-usage".to_owned()]));
        assert_eq!(rules[0].verbs, ["get", "patch"]);
        let subjects = children.role_binding.subjects.expect("subjects");
        assert_eq!(subjects[0].name, "minimal-producer");
        assert_eq!(subjects[0].namespace.as_deref(), Some("ns"));
    }
}
