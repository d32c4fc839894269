//! The daily job's Elasticsearch user on a managed search target (`crate::build::search`): the roles Secret kept as
//! built, and the user's Secret created once with a random password. Neither is cached: the operator reads them
//! only here, by name, and holds no Secret in memory beyond the reconcile.

use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams, PostParams},
};

use cilvest_crds::CilvestPipeline;

use super::{Context, Error};
use crate::{build::search, meta::MANAGER};

/// Make sure both Secrets exist for a pipeline with managed search; nothing otherwise.
pub async fn ensure(pipeline: &CilvestPipeline, ctx: &Context) -> Result<(), Error> {
    let Some(roles) = search::roles_secret(pipeline) else {
        return Ok(());
    };
    let namespace = pipeline.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let failed = |name: &str| {
        let name = name.to_owned();
        move |source| Error::Secret { name, source }
    };

    let roles_name = roles.name_any();
    let wanted = roles.string_data.clone().unwrap_or_default();
    let live = secrets.get_opt(&roles_name).await.map_err(failed(&roles_name))?;
    let current = live.and_then(|s| s.data).map(|data| {
        data.into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
            .collect()
    });
    if current.as_ref() != Some(&wanted) {
        secrets
            .patch(&roles_name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&roles))
            .await
            .map_err(failed(&roles_name))?;
    }

    let writer_name = search::writer_secret_name(&pipeline.name_any());
    if secrets
        .get_metadata_opt(&writer_name)
        .await
        .map_err(failed(&writer_name))?
        .is_some()
    {
        return Ok(());
    }
    let Some(writer) = search::writer_secret(pipeline, &password()?) else {
        return Ok(());
    };
    match secrets.create(&PostParams::default(), &writer).await {
        Ok(_) => {
            tracing::info!(secret = %writer_name, "created the daily job's search user");
            Ok(())
        }
        // Another reconcile (or a person) made it first: keep theirs.
        Err(kube::Error::Api(response)) if response.code == 409 => Ok(()),
        Err(source) => Err(failed(&writer_name)(source)),
    }
}

/// 24 random bytes from the operating system, as 32 URL-safe characters; never a weak fallback.
fn password() -> Result<String, Error> {
    use base64::Engine as _;
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(|err| Error::Random(err.to_string()))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}
