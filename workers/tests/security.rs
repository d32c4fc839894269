//! Secrets and TLS: the Elasticsearch client trusts exactly the CA it is given (ECK's), and the Elasticsearch password
//! never reaches a log line, an error, the termination message or the run report, on success or on a 401. The X
//! bearer token's counterpart is in `producer.rs` (`a_rejected_token_backs_off_is_logged_once_and_never_printed`).

mod support;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use elasticsearch::http::{Method, headers::HeaderMap};
use serde_json::json;
use support::{service_env, unique};

const PASSWORD: &str = "es-password-marker-3f9c1a";

fn temp_dir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique(prefix));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl (the test environment's k8s service needs it too)");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A self-signed CA `NAME.crt`/`NAME.key` in `dir`.
fn make_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

/// `server.crt`/`server.key` for 127.0.0.1, signed by CA `ca`.
fn make_server_cert(dir: &Path, ca: &str) {
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n",
    )
    .expect("extensions");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ],
    );
}

/// `openssl s_server -www`: a TLS server that answers `GET /` with 200, killed when dropped.
struct TlsServer {
    child: Child,
    port: u16,
}

impl TlsServer {
    async fn start(dir: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let child = Command::new("openssl")
            .current_dir(dir)
            .args([
                "s_server",
                "-quiet",
                "-www",
                "-cert",
                "server.crt",
                "-key",
                "server.key",
                "-accept",
            ])
            .arg(format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_server");
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(Instant::now() < deadline, "openssl s_server did not listen");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { child, port }
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn get_root(url: &str, ca: Option<&[u8]>) -> Result<u16, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let es = cilvest_workers::search::client(url, None, ca).map_err(|e| e.to_string())?;
    let response = es
        .send::<(), ()>(Method::Get, "/", HeaderMap::new(), None, None, None)
        .await
        .map_err(|e| format!("{e} ({e:?})"))?;
    Ok(response.status_code().as_u16())
}

#[tokio::test]
async fn the_search_client_trusts_only_the_ca_it_is_given() {
    let dir = temp_dir("cilvest-es-ca");
    make_ca(&dir, "eck-ca");
    make_ca(&dir, "other-ca");
    make_server_cert(&dir, "eck-ca");
    let server = TlsServer::start(&dir).await;
    let url = format!("https://127.0.0.1:{}", server.port);
    let eck_ca = std::fs::read(dir.join("eck-ca.crt")).expect("ca");
    let other_ca = std::fs::read(dir.join("other-ca.crt")).expect("ca");

    assert_eq!(
        get_root(&url, Some(&eck_ca)).await,
        Ok(200),
        "the server signed by the given CA"
    );
    for (what, ca) in [
        ("another CA", Some(other_ca.as_slice())),
        ("no CA (the system roots)", None),
    ] {
        let err = get_root(&url, ca).await.expect_err(what);
        assert!(
            err.to_lowercase().contains("certificate") || err.contains("UnknownIssuer"),
            "with {what} the client must refuse the server's certificate: {err}"
        );
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The worker configuration of a pipeline whose search target needs user `elastic`.
fn config(dir: &Path, search_url: &str, alias: &str) -> PathBuf {
    let config = json!({
        "pipeline": "demo",
        "namespace": "default",
        "kafkaBootstrap": "127.0.0.1:19092",
        "rawTopic": "cilvest.demo.raw",
        "consumerGroup": "cilvest.demo.lake",
        "searchUrl": search_url,
        "searchUsername": "elastic",
        "spec": {
            "keywords": [{"name": "saham", "terms": ["saham"]}],
            "language": "in",
            "schedule": {"timeZone": "Asia/Jakarta"},
            "targets": {
                "lake": {"uri": "gs://unused/lake"},
                "bigquery": {"project": "unused", "dataset": "unused"},
                "elasticsearch": {"external": {"url": search_url, "username": "elastic",
                    "passwordSecretRef": {"name": "es", "key": "password"}}, "index": alias},
            },
        },
    });
    let path = dir.join("pipeline.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&config).expect("json")).expect("write config");
    path
}

/// Run `cilvest daily` for an empty day on a local lake against `search_url`, with the password in its environment
/// and every log level on; everything it printed or wrote, and whether it succeeded.
fn run_daily(dir: &Path, search_url: &str, alias: &str) -> (bool, String) {
    std::fs::create_dir_all(dir).expect("run dir");
    let config = config(dir, search_url, alias);
    let lake = dir.join("lake");
    std::fs::create_dir_all(&lake).expect("lake");
    let termination = dir.join("termination-log");
    let output = Command::new(env!("CARGO_BIN_EXE_cilvest"))
        .args([
            "--log-format",
            "text",
            "daily",
            "--date",
            "2026-11-01",
            "--skip-warehouse",
            "--config",
        ])
        .arg(&config)
        .arg(format!("--lake=file://{}", lake.display()))
        .arg("--termination-log")
        .arg(&termination)
        .env("CILVEST_ES_PASSWORD", PASSWORD)
        .env("RUST_LOG", "trace")
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run cilvest daily");
    let mut everything = String::from_utf8_lossy(&output.stdout).into_owned();
    everything.push_str(&String::from_utf8_lossy(&output.stderr));
    everything.push_str(&std::fs::read_to_string(&termination).unwrap_or_default());
    everything.push_str(&std::fs::read_to_string(lake.join("reports/dt=2026-11-01.json")).unwrap_or_default());
    (output.status.success(), everything)
}

fn assert_no_password(everything: &str) {
    // Basic auth sends base64("elastic:<password>"); neither form may show up.
    let basic = base64_encode(format!("elastic:{PASSWORD}").as_bytes());
    assert!(
        !everything.contains(PASSWORD),
        "the password was printed:\n{everything}"
    );
    assert!(
        !everything.contains(&basic),
        "the basic-auth header was printed:\n{everything}"
    );
}

fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[tokio::test]
async fn the_search_password_never_appears_in_logs_errors_or_reports() {
    assert_eq!(base64_encode(b"elastic:pw"), "ZWxhc3RpYzpwdw==");
    // An Elasticsearch that refuses the credentials, as a wrong ECK password would.
    let app = axum::Router::new().fallback(|| async {
        (
            axum::http::StatusCode::UNAUTHORIZED,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            json!({"error": {"type": "security_exception",
                "reason": "unable to authenticate user [elastic] for REST request [/]"}, "status": 401})
            .to_string(),
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let refusing = format!("http://{}", listener.local_addr().expect("address"));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = temp_dir("cilvest-es-secret");
    let failed = tokio::task::spawn_blocking({
        let (dir, refusing) = (dir.join("refused"), refusing.clone());
        move || run_daily(&dir, &refusing, "sec-refused")
    })
    .await
    .expect("daily");
    server.abort();
    let (succeeded, everything) = failed;
    assert!(!succeeded, "a 401 fails the run:\n{everything}");
    assert!(
        everything.contains("401"),
        "the failure names the status:\n{everything}"
    );
    assert_no_password(&everything);

    // The search server of the test environment, which takes any credentials: the success path logs nothing either.
    let search = service_env("CILVEST_ES_URL", "search");
    let alias = unique("sec-tweets");
    let (succeeded, everything) = tokio::task::spawn_blocking({
        let (dir, search, alias) = (dir.join("accepted"), search.clone(), alias.clone());
        move || run_daily(&dir, &search, &alias)
    })
    .await
    .expect("daily");
    assert!(succeeded, "{everything}");
    assert_no_password(&everything);
    let _ = reqwest::Client::new()
        .delete(format!("{search}/{alias}-2026.11"))
        .send()
        .await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn debug_output_of_the_search_credentials_leaves_the_password_out() {
    let auth = cilvest_workers::search::BasicAuth {
        username: "elastic".to_owned(),
        password: PASSWORD.to_owned(),
    };
    let printed = format!("{auth:?} {auth:#?}");
    assert!(printed.contains("elastic"), "{printed}");
    assert!(!printed.contains(PASSWORD), "{printed}");
}
