//! Where Kafka is and who the worker is there: the bootstrap servers, TLS (the CA that signed the brokers, and for
//! mutual TLS the worker's own certificate) and SASL SCRAM-SHA-512. Every Kafka client of the workers starts from
//! [`Brokers::client_config`], so the producer, its resume reader and the consumer connect the same way.
//!
//! The operator hands a worker its identity through the environment ([`cilvest_crds::kafka_access`]): files
//! mounted from the Secrets Strimzi makes, the user name, and the password from the user's Secret. The password is
//! read from the environment only (never a flag, which `ps` would show) and never logged: `Debug` hides it.

use std::{fmt, path::PathBuf};

use rdkafka::ClientConfig;

use cilvest_crds::kafka_access::{CA_FILE_ENV, CERT_FILE_ENV, KEY_FILE_ENV, PASSWORD_ENV, USERNAME_ENV};

/// The flags (each also read from its environment variable) that say how to reach Kafka.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct KafkaAuthArgs {
    /// PEM file of the CA that signed the brokers' certificates: connect over TLS and verify them.
    #[arg(long, env = CA_FILE_ENV)]
    pub kafka_ca_file: Option<PathBuf>,
    /// SASL SCRAM-SHA-512 user name; its password is read from CILVEST_KAFKA_PASSWORD.
    #[arg(long, env = USERNAME_ENV)]
    pub kafka_username: Option<String>,
    /// PEM client certificate for mutual TLS (with --kafka-key-file and --kafka-ca-file).
    #[arg(long, env = CERT_FILE_ENV, requires = "kafka_key_file")]
    pub kafka_cert_file: Option<PathBuf>,
    /// PEM private key of --kafka-cert-file.
    #[arg(long, env = KEY_FILE_ENV, requires = "kafka_cert_file")]
    pub kafka_key_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "kafka user {user} has no password: set {PASSWORD_ENV} (the operator takes it from the KafkaUser's Secret)"
    )]
    NoPassword { user: String },
    #[error("{PASSWORD_ENV} is set but no kafka user is: set {USERNAME_ENV} or --kafka-username")]
    NoUser,
    #[error("{what} {path}: {source}")]
    File {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("a kafka client certificate needs the CA of the brokers too: set {CA_FILE_ENV} or --kafka-ca-file")]
    CertWithoutCa,
}

/// Kafka's address and the worker's credentials for it.
#[derive(Clone)]
pub struct Brokers {
    pub bootstrap: String,
    ca_file: Option<PathBuf>,
    client_cert: Option<(PathBuf, PathBuf)>,
    scram: Option<(String, String)>,
}

impl fmt::Debug for Brokers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Brokers")
            .field("bootstrap", &self.bootstrap)
            .field("ca_file", &self.ca_file)
            .field("client_cert", &self.client_cert)
            .field("scram_user", &self.scram.as_ref().map(|(user, _)| user))
            .finish()
    }
}

impl Brokers {
    /// No TLS, no authentication: a development Kafka, or the tests'.
    pub fn plaintext(bootstrap: impl Into<String>) -> Self {
        Self {
            bootstrap: bootstrap.into(),
            ca_file: None,
            client_cert: None,
            scram: None,
        }
    }

    /// From the flags and the environment; every file named must be readable now, so that a missing mount is
    /// named at start-up rather than as a TLS handshake failure later.
    pub fn new(bootstrap: impl Into<String>, args: &KafkaAuthArgs) -> Result<Self, AuthError> {
        let password = std::env::var(PASSWORD_ENV).ok().filter(|p| !p.is_empty());
        let scram = match (&args.kafka_username, password) {
            (Some(user), Some(password)) => Some((user.clone(), password)),
            (Some(user), None) => return Err(AuthError::NoPassword { user: user.clone() }),
            (None, Some(_)) => return Err(AuthError::NoUser),
            (None, None) => None,
        };
        let client_cert = args.kafka_cert_file.clone().zip(args.kafka_key_file.clone());
        if client_cert.is_some() && args.kafka_ca_file.is_none() {
            return Err(AuthError::CertWithoutCa);
        }
        let files = [
            ("kafka CA file", args.kafka_ca_file.as_ref()),
            ("kafka client certificate", args.kafka_cert_file.as_ref()),
            ("kafka client key", args.kafka_key_file.as_ref()),
        ];
        for (what, path) in files {
            if let Some(path) = path {
                std::fs::File::open(path).map_err(|source| AuthError::File {
                    what,
                    path: path.clone(),
                    source,
                })?;
            }
        }
        Ok(Self {
            bootstrap: bootstrap.into(),
            ca_file: args.kafka_ca_file.clone(),
            client_cert,
            scram,
        })
    }

    /// The settings every client of these brokers starts from.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        let protocol = match (self.ca_file.is_some(), self.scram.is_some()) {
            (false, false) => "plaintext",
            (true, false) => "ssl",
            (false, true) => "sasl_plaintext",
            (true, true) => "sasl_ssl",
        };
        config.set("security.protocol", protocol);
        if let Some(ca) = &self.ca_file {
            config
                .set("ssl.ca.location", ca.to_string_lossy())
                // Verify the broker's name against its certificate, as Java clients do by default.
                .set("ssl.endpoint.identification.algorithm", "https");
        }
        if let Some((cert, key)) = &self.client_cert {
            config
                .set("ssl.certificate.location", cert.to_string_lossy())
                .set("ssl.key.location", key.to_string_lossy());
        }
        if let Some((user, password)) = &self.scram {
            config
                .set("sasl.mechanisms", "SCRAM-SHA-512")
                .set("sasl.username", user)
                .set("sasl.password", password);
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_protocol_follows_the_credentials_and_debug_hides_the_password() {
        let mut brokers = Brokers::plaintext("kafka:9093");
        assert_eq!(brokers.client_config().get("security.protocol"), Some("plaintext"));
        brokers.scram = Some(("saham-kafka-producer".into(), "s3cr3t-pass".into()));
        assert_eq!(brokers.client_config().get("security.protocol"), Some("sasl_plaintext"));
        brokers.ca_file = Some("/var/run/cilvest/kafka-ca/ca.crt".into());
        let config = brokers.client_config();
        assert_eq!(config.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(config.get("sasl.mechanisms"), Some("SCRAM-SHA-512"));
        assert_eq!(config.get("ssl.ca.location"), Some("/var/run/cilvest/kafka-ca/ca.crt"));
        let shown = format!("{brokers:?}");
        assert!(
            shown.contains("saham-kafka-producer") && !shown.contains("s3cr3t-pass"),
            "{shown}"
        );
        brokers.scram = None;
        assert_eq!(brokers.client_config().get("security.protocol"), Some("ssl"));
        assert_eq!(brokers.client_config().get("sasl.password"), None);
    }

    #[test]
    fn missing_files_and_half_credentials_are_named() {
        let missing = KafkaAuthArgs {
            kafka_ca_file: Some("/nonexistent/ca.crt".into()),
            ..KafkaAuthArgs::default()
        };
        let error = Brokers::new("kafka:9093", &missing)
            .expect_err("no such file")
            .to_string();
        assert!(error.contains("kafka CA file /nonexistent/ca.crt"), "{error}");

        let cert_only = KafkaAuthArgs {
            kafka_cert_file: Some("/etc/hostname".into()),
            kafka_key_file: Some("/etc/hostname".into()),
            ..KafkaAuthArgs::default()
        };
        let error = Brokers::new("kafka:9093", &cert_only).expect_err("no CA").to_string();
        assert!(error.contains(CA_FILE_ENV), "{error}");
    }
}
