//! Revocation through the whole pipeline: a lab CA whose CRL a local HTTP server publishes,
//! a revoked leaf that names it, and a leaf whose distribution point is a closed port.

use std::time::Duration;

use connector_probe::config::{Config, TlsMode};
use connector_probe::lab::certs::{LeafSpec, Pki};
use connector_probe::lab::http::HttpServer;
use connector_probe::lab::smtp::{Script, SmtpServer};
use connector_probe::probe::{ProbeContext, probe_connector};
use connector_probe::verdict::ConnectorVerdict;

use crate::util::{connector_to, uniform};

const REVOKED: u64 = 4242;

async fn probe(pki: &Pki, leaf: LeafSpec, mode: TlsMode) -> ConnectorVerdict {
    let server = SmtpServer::start(Script::healthy(pki.leaf(&leaf).server_config()))
        .await
        .unwrap();
    let mut config = Config::parse("", std::path::Path::new("<test>")).unwrap();
    config.tls.extra_roots = vec![pki.root.cert.clone()];
    let ctx = ProbeContext::new(&config);
    let c = connector_to(server.addr, mode, uniform(Duration::from_secs(5)));
    probe_connector(&ctx, &c).await
}

fn leaf(serial: u64, url: String) -> LeafSpec {
    LeafSpec {
        serial,
        crl_urls: vec![url],
        ..LeafSpec::valid("127.0.0.1")
    }
}

#[tokio::test]
async fn a_leaf_revoked_by_its_distribution_points_crl_is_certificate_revoked() {
    let pki = Pki::new();
    let crl = HttpServer::serve(pki.crl(&[REVOKED]).to_vec())
        .await
        .unwrap();
    let v = probe(
        &pki,
        leaf(REVOKED, crl.url("/lab.crl")),
        TlsMode::CertificateValidation,
    )
    .await;
    assert_eq!(v.status.as_str(), "failing", "{:#?}", v.targets);
    assert_eq!(v.code, Some("450 4.7.320"));
    let eop = v.eop_status.as_deref().unwrap();
    assert!(eop.contains("[Message=CertificateRevoked"), "{eop}");
    assert_eq!(v.targets[0].stage.as_str(), "certificate");
    assert_eq!(crl.hits(), 1);

    let good = probe(
        &pki,
        leaf(REVOKED + 1, crl.url("/lab.crl")),
        TlsMode::CertificateValidation,
    )
    .await;
    assert_eq!(good.status.as_str(), "ok", "{:#?}", good.targets);
}

#[tokio::test]
async fn modes_that_do_not_validate_fetch_nothing() {
    let pki = Pki::new();
    let crl = HttpServer::serve(pki.crl(&[REVOKED]).to_vec())
        .await
        .unwrap();
    for mode in [TlsMode::EncryptionOnly, TlsMode::Opportunistic] {
        let v = probe(&pki, leaf(REVOKED, crl.url("/lab.crl")), mode).await;
        assert_eq!(v.status.as_str(), "ok", "{mode:?}: {:#?}", v.targets);
    }
    assert_eq!(crl.hits(), 0);
}

#[tokio::test]
async fn an_unreachable_distribution_point_is_a_warning_not_a_failure() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/lab.crl", closed.local_addr().unwrap());
    drop(closed);
    let pki = Pki::new();
    let v = probe(&pki, leaf(7, url.clone()), TlsMode::CertificateValidation).await;
    assert_eq!(v.status.as_str(), "warning", "{:#?}", v.targets);
    assert_eq!(v.code, None);
    let t = &v.targets[0];
    assert_eq!(t.stage.as_str(), "done");
    assert!(
        t.warnings
            .iter()
            .any(|w| w.starts_with("revocation not checked: ") && w.contains(&url)),
        "{:?}",
        t.warnings
    );
}
