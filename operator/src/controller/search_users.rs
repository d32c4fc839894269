//! The operator's Elasticsearch users on a managed search target (`crate::build::search`: the daily job's, and the
//! Kibana dashboard import's): the roles Secret kept as built, and each user's Secret created once with a random
//! password. None is cached: the operator reads them only here, by name, and holds no Secret in memory beyond the
//! reconcile.

use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams, PostParams},
};

use cilvest_crds::CilvestPipeline;

use super::{Context, Error};
use crate::{build::search, meta::MANAGER};

/// Make sure the roles and every user Secret exist for a pipeline with managed search; nothing otherwise.
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

    for user in search::users(pipeline) {
        let name = user.secret.clone();
        if secrets.get_metadata_opt(&name).await.map_err(failed(&name))?.is_some() {
            continue;
        }
        let secret = search::user_secret(pipeline, &user, &password()?);
        match secrets.create(&PostParams::default(), &secret).await {
            Ok(_) => tracing::info!(secret = %name, user = %user.username, "created a search user"),
            // Another reconcile (or a person) made it first: keep theirs.
            Err(kube::Error::Api(response)) if response.code == 409 => {}
            Err(source) => return Err(failed(&name)(source)),
        }
    }
    Ok(())
}

/// 24 random bytes from the operating system, as 32 URL-safe characters; never a weak fallback.
fn password() -> Result<String, Error> {
    use base64::Engine as _;
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(|err| Error::Random(err.to_string()))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}
