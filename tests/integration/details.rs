//! What a verdict carries besides its code: EOP's status line, certificate details even when
//! validation fails, the exact conversation.

use std::time::Duration;

use connector_probe::config::{Config, TlsMode};
use connector_probe::demo::Lab;
use connector_probe::lab::certs::{LeafSpec, Pki};
use connector_probe::lab::smtp::{Script, SmtpServer};
use connector_probe::probe::{ProbeContext, probe_connector};
use regex::Regex;

use crate::util::{connector_to, uniform};

async fn one(id: &str) -> (Lab, connector_probe::verdict::ConnectorVerdict) {
    let lab = Lab::start(|c| c == id).await.expect("lab starts");
    let v = lab.run().await.remove(0).1;
    (lab, v)
}

#[tokio::test]
async fn refused_status_line_is_in_eops_format() {
    let (_lab, v) = one("connect-refused").await;
    let re = Regex::new(
        r"^450 4\.4\.316 Connection refused \[Message=Socket error code 10061\] \[LastAttemptedServerName=127\.0\.0\.1\] \[LastAttemptedIP=127\.0\.0\.1:\d+\]$",
    )
    .unwrap();
    let line = v
        .eop_status
        .as_deref()
        .expect("failing connector has a status line");
    assert!(re.is_match(line), "{line}");
    assert_eq!(v.title, Some("Connection refused"));
    assert!(
        v.targets[0]
            .timings_ms
            .contains_key(&connector_probe::verdict::Stage::Connect)
    );
}

#[tokio::test]
async fn subject_mismatch_status_line_names_both_subjects_and_thumbprint() {
    let (_lab, v) = one("cert-subject-mismatch").await;
    let line = v.eop_status.as_deref().unwrap();
    let re = Regex::new(
        r"^450 4\.4\.317 Cannot connect to remote server \[Message=SubjectMismatch Expected Subject: mail\.contoso\.com\. Presented Subject: CN=cert-subject-mismatch\.lab\.test\. Thumbprint: [0-9A-F]{40}\.\] \[LastAttemptedServerName=cert-subject-mismatch\.lab\.test\] \[LastAttemptedIP=127\.0\.0\.1:\d+\]$",
    )
    .unwrap();
    assert!(re.is_match(line), "{line}");
    // The alert's code stays the mail flow intelligence one.
    assert_eq!(v.code, Some("450 4.7.320"));
    assert_eq!(v.title, Some("Certificate validation failed"));
    assert_eq!(v.queue_code, Some("450 4.4.317"));
    assert_eq!(v.ndr, Some("550 5.4.317"));
    let ndr = Regex::new(
        r"^550 5\.4\.317 Message expired, cannot connect to remote server\(SubjectMismatch Expected Subject: mail\.contoso\.com\. Presented Subject: CN=cert-subject-mismatch\.lab\.test\. Thumbprint: [0-9A-F]{40}\.\)$",
    )
    .unwrap();
    let ndr_line = v.ndr_line.as_deref().unwrap();
    assert!(ndr.is_match(ndr_line), "{ndr_line}");
}

#[tokio::test]
async fn certificate_details_are_reported_when_validation_fails() {
    let (_lab, v) = one("cert-expired").await;
    let t = &v.targets[0];
    assert_eq!(t.stage.as_str(), "certificate");
    let c = t
        .certificate
        .as_ref()
        .expect("details of the failing certificate");
    assert!(c.days_left < 0, "expired: {}", c.days_left);
    assert_eq!(c.chain_length, 2);
    assert!(
        c.subject.contains("CN=cert-expired.lab.test"),
        "{}",
        c.subject
    );
    assert!(c.issuer.contains("lab intermediate"), "{}", c.issuer);
    assert_eq!(c.names, vec!["cert-expired.lab.test"]);
    assert!(
        Regex::new("^[0-9A-F]{40}$")
            .unwrap()
            .is_match(&c.sha1_thumbprint)
    );
    assert!(
        Regex::new("^([0-9A-F]{2}:){31}[0-9A-F]{2}$")
            .unwrap()
            .is_match(&c.sha256_fingerprint)
    );
    assert!(
        v.eop_status
            .as_deref()
            .unwrap()
            .contains(&format!(
                "[Message=CertificateExpired Expected Subject: cert-expired.lab.test. Presented Subject: CN=cert-expired.lab.test. Thumbprint: {}.]",
                c.sha1_thumbprint
            ))
    );
    let tls = t
        .tls
        .as_ref()
        .expect("TLS was negotiated before the judgement");
    assert!(tls.version.starts_with("TLSv1."));
}

#[tokio::test]
async fn field_spelling_uses_4_4_317_with_the_certificate_status() {
    let (_lab, v) = one("cert-expired-field-spelling").await;
    let line = v.eop_status.unwrap();
    assert!(
        line.starts_with("450 4.4.317 Cannot connect to remote server [Message=CertificateExpired"),
        "{line}"
    );
}

#[tokio::test]
async fn a_healthy_conversation_is_ehlo_starttls_ehlo_quit_and_nothing_else() {
    let pki = Pki::new();
    let server = SmtpServer::start(Script::healthy(
        pki.leaf(&LeafSpec::valid("127.0.0.1")).server_config(),
    ))
    .await
    .unwrap();
    let mut config = Config::parse("", std::path::Path::new("<test>")).unwrap();
    config.tls.extra_roots = vec![pki.root.cert.clone()];
    let ctx = ProbeContext::new(&config);
    let c = connector_to(
        server.addr,
        TlsMode::EncryptionOnly,
        uniform(Duration::from_secs(5)),
    );
    let v = probe_connector(&ctx, &c).await;
    assert_eq!(v.status.as_str(), "ok", "{:#?}", v.targets);
    let sent: Vec<String> = server
        .received()
        .iter()
        .map(|l| l.split_whitespace().next().unwrap().to_owned())
        .collect();
    assert_eq!(sent, ["EHLO", "STARTTLS", "EHLO", "QUIT"]);
    let t = &v.targets[0];
    assert!(
        t.extensions.iter().any(|e| e == "STARTTLS"),
        "{:?}",
        t.extensions
    );
    assert_eq!(t.banner.as_deref(), Some("220 lab.example ESMTP ready"));
    for stage in [
        "connect",
        "banner",
        "ehlo",
        "starttls",
        "tls",
        "certificate",
        "ehlo_tls",
        "quit",
    ] {
        assert!(
            t.timings_ms.keys().any(|s| s.as_str() == stage),
            "timing for {stage}: {:?}",
            t.timings_ms
        );
    }
    let json = serde_json::to_value(&v).unwrap();
    for key in [
        "connector",
        "status",
        "code",
        "title",
        "eop_status",
        "started_at",
        "duration_ms",
        "targets",
    ] {
        assert!(json.get(key).is_some(), "connector field {key}");
    }
    let target = &json["targets"][0];
    for key in [
        "host",
        "address",
        "port",
        "stage",
        "code",
        "detail",
        "timings_ms",
        "banner",
        "extensions",
        "tls",
        "certificate",
        "warnings",
    ] {
        assert!(target.get(key).is_some(), "target field {key}");
    }
    assert_eq!(target["stage"], "done");
    assert_eq!(json["code"], serde_json::Value::Null);
}

#[tokio::test]
async fn ip_literal_gets_no_sni_and_dns_name_does() {
    use std::sync::{Arc, Mutex};
    // A server that records the SNI of each handshake.
    let pki = Pki::new();
    let leaf = pki.leaf(&LeafSpec::valid("sni.lab.test"));
    let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let resolver = Arc::new(RecordSni {
        inner: leaf.server_config(),
        seen: seen.clone(),
    });
    let mut config = (*leaf.server_config()).clone();
    config.cert_resolver = resolver;
    let server = SmtpServer::start(Script::healthy(Arc::new(config)))
        .await
        .unwrap();

    let lab_dns = connector_probe::lab::dns::DnsServer::start().await.unwrap();
    lab_dns.address("sni.lab.test", "127.0.0.1".parse().unwrap());
    let text = format!("[dns]\nnameservers = [\"{}\"]\n", lab_dns.addr);
    let mut config = Config::parse(&text, std::path::Path::new("<test>")).unwrap();
    config.tls.extra_roots = vec![pki.root.cert.clone()];
    let ctx = ProbeContext::new(&config);

    let by_ip = connector_to(
        server.addr,
        TlsMode::EncryptionOnly,
        uniform(Duration::from_secs(5)),
    );
    let mut by_name = by_ip.clone();
    by_name.route = connector_probe::config::Route::SmartHosts(vec![
        connector_probe::config::SmartHost::parse(&format!("sni.lab.test:{}", server.addr.port()))
            .unwrap(),
    ]);
    assert_eq!(probe_connector(&ctx, &by_ip).await.status.as_str(), "ok");
    assert_eq!(probe_connector(&ctx, &by_name).await.status.as_str(), "ok");
    assert_eq!(
        *seen.lock().unwrap(),
        vec![None, Some("sni.lab.test".to_owned())]
    );
}

#[derive(Debug)]
struct RecordSni {
    inner: std::sync::Arc<rustls::ServerConfig>,
    seen: std::sync::Arc<std::sync::Mutex<Vec<Option<String>>>>,
}

impl rustls::server::ResolvesServerCert for RecordSni {
    fn resolve(
        &self,
        hello: rustls::server::ClientHello<'_>,
    ) -> Option<std::sync::Arc<rustls::sign::CertifiedKey>> {
        self.seen
            .lock()
            .unwrap()
            .push(hello.server_name().map(str::to_owned));
        self.inner.cert_resolver.resolve(hello)
    }
}
