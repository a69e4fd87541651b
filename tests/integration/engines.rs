//! EOP's cipher suites through the whole pipeline: a server limited to one suite, played by
//! OpenSSL in the lab. EOP reaches a server that takes only AES-CBC with ECDHE-RSA or RSA key
//! exchange (so the probe must too, by its OpenSSL engine on a second connection), and cannot
//! reach one that takes only ChaCha20 (so the probe must not either).

use std::time::Duration;

use connector_probe::config::{Config, TlsMode};
use connector_probe::lab::certs::{LeafSpec, Pki};
use connector_probe::lab::smtp::{Script, SmtpServer};
use connector_probe::probe::{ProbeContext, probe_connector};
use connector_probe::verdict::ConnectorVerdict;

use crate::util::{connector_to, uniform};

/// The probe's verdict on a TLS 1.2 server limited to `ciphers` (OpenSSL's names), and the
/// commands that server received over all connections.
async fn probe_suite(ciphers: &str, mode: TlsMode) -> (ConnectorVerdict, Vec<String>) {
    let pki = Pki::new();
    let leaf = pki.leaf(&LeafSpec {
        rsa: true,
        ..LeafSpec::valid("127.0.0.1")
    });
    let server = SmtpServer::start(Script::healthy_openssl(leaf.openssl_acceptor(ciphers)))
        .await
        .unwrap();
    let mut config = Config::parse("", std::path::Path::new("<test>")).unwrap();
    config.tls.extra_roots = vec![pki.root.cert.clone()];
    let ctx = ProbeContext::new(&config);
    let c = connector_to(server.addr, mode, uniform(Duration::from_secs(5)));
    let v = probe_connector(&ctx, &c).await;
    let verbs = server
        .received()
        .iter()
        .map(|l| l.split_whitespace().next().unwrap_or("").to_owned())
        .collect();
    (v, verbs)
}

const MODES: [TlsMode; 3] = [
    TlsMode::CertificateValidation,
    TlsMode::EncryptionOnly,
    TlsMode::Opportunistic,
];

async fn reached_by_openssl(ciphers: &str, iana: &str) {
    for mode in MODES {
        let (v, verbs) = probe_suite(ciphers, mode).await;
        assert_eq!(
            v.status.as_str(),
            "ok",
            "{ciphers} {mode:?}: {:#?}",
            v.targets
        );
        let t = &v.targets[0];
        let tls = t.tls.as_ref().expect("a TLS session");
        assert_eq!(
            (
                tls.engine.as_str(),
                tls.cipher.as_str(),
                tls.version.as_str()
            ),
            ("openssl", iana, "TLSv1.2"),
            "{mode:?}"
        );
        assert!(
            t.certificate.is_some(),
            "the chain OpenSSL received is judged"
        );
        assert!(
            !t.extensions_tls.is_empty(),
            "EHLO after TLS went over OpenSSL"
        );
        // rustls's attempt ends at its failed handshake; the second connection replays the
        // dialogue and goes on to QUIT.
        assert_eq!(
            verbs,
            ["EHLO", "STARTTLS", "EHLO", "STARTTLS", "EHLO", "QUIT"],
            "{mode:?}"
        );
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["targets"][0]["tls"]["engine"], "openssl");
        assert_eq!(json["targets"][0]["tls"]["cipher"], iana);
    }
}

#[tokio::test]
async fn ecdhe_rsa_aes_cbc_only_is_reached() {
    reached_by_openssl(
        "ECDHE-RSA-AES256-SHA384",
        "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384",
    )
    .await;
}

#[tokio::test]
async fn rsa_key_exchange_only_is_reached() {
    reached_by_openssl("AES256-GCM-SHA384", "TLS_RSA_WITH_AES_256_GCM_SHA384").await;
}

#[tokio::test]
async fn chacha20_only_fails_the_negotiation() {
    for mode in [TlsMode::CertificateValidation, TlsMode::EncryptionOnly] {
        let (v, verbs) = probe_suite("ECDHE-RSA-CHACHA20-POLY1305", mode).await;
        assert_eq!(v.status.as_str(), "failing", "{mode:?}: {:#?}", v.targets);
        assert_eq!(v.code, Some("450 4.4.317"), "{mode:?}");
        let t = &v.targets[0];
        assert_eq!(t.stage.as_str(), "tls");
        // rustls's failure is the one reported; the OpenSSL engine was tried and agreed on
        // nothing either.
        assert!(
            t.detail
                .starts_with("TLS handshake failed: received fatal alert: HandshakeFailure; EOP's suites that only OpenSSL speaks were refused too (TLS handshake failed (OpenSSL): "),
            "{}",
            t.detail
        );
        assert_eq!(verbs, ["EHLO", "STARTTLS", "EHLO", "STARTTLS"], "{mode:?}");
    }
}

#[tokio::test]
async fn an_aes_gcm_server_is_reached_by_rustls_on_one_connection() {
    let (v, verbs) = probe_suite(
        "ECDHE-RSA-AES256-GCM-SHA384",
        TlsMode::CertificateValidation,
    )
    .await;
    assert_eq!(v.status.as_str(), "ok", "{:#?}", v.targets);
    let tls = v.targets[0].tls.as_ref().unwrap();
    assert_eq!(tls.engine, "rustls");
    assert_eq!(tls.cipher, "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384");
    assert_eq!(verbs, ["EHLO", "STARTTLS", "EHLO", "QUIT"]);
}
